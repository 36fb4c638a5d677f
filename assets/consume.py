"""Consumer assets (issue 6): the analyst views in the warehouse and the per-academy exports.

- `analyst_views` (one multi-asset, four keys `marts/v_*`, group `marts`): (re)creates the
  documented views over the marts in one transaction; metadata gives each view's row count and
  column schema, the risk distribution and preview tables, so the UI tells the story too.
- `academy_exports` (key `exports/academy_exports`, group `exports`): after the marts and
  views, writes every mart and view per academy as Parquet + CSV with a manifest, published
  atomically. The folder is the asset config `out_dir`, else the environment variable
  PROGRESS_EXPORTS, else `exports/` beside the warehouse file (data/warehouse.duckdb ->
  data/exports, the same as `progress export`). It is its own job (`exports_job`), launched by
  the `exports_after_publication` sensor when a run that publishes the marts succeeds: the
  marts reach analysts without waiting for the exports, and a failed export never holds back a
  publication. It reads the published file read-only (`WarehouseReader`), never taking the
  writer lock.

No `from __future__ import annotations` here: Dagster must see the real annotation types of the
context, config and resources.
"""

import os
from pathlib import Path

import dagster as dg
import duckdb
from pydantic import Field

from pipelines.core.exports import ExportError, read_snapshot, write_export
from pipelines.core.paths import UnsafePath, check_output
from pipelines.core.views import VIEWS, View, create_views
from pipelines.core.vocabulary import FLAGGED_LEVELS
from pipelines.metadata import preview
from pipelines.operations import EXPORTS_GROUP
from pipelines.resources import WAREHOUSE_POOL, WarehouseReader, WarehouseResource

MART_KEYS = [
    dg.AssetKey(["marts", name])
    for name in ("session_progress", "lecture_progress", "risk_log", "clinic_links", "dim_labels")
]
TITLE_KEYS = [dg.AssetKey(["raw", "lectures"]), dg.AssetKey(["raw", "sessions"])]
VIEW_KEYS = [dg.AssetKey(["marts", name]) for name in VIEWS]
EXPORTS_KEY = dg.AssetKey([EXPORTS_GROUP, "academy_exports"])


def _schema(view: View, types: dict[str, str] | None = None) -> dg.TableSchema:
    types = types or {}
    return dg.TableSchema(
        columns=[
            dg.TableColumn(name, types.get(name, ""), description=text)
            for name, text in view.columns.items()
        ]
    )


def _view_spec(view: View) -> dg.AssetSpec:
    return dg.AssetSpec(
        ["marts", view.name],
        group_name="marts",
        deps=[*MART_KEYS, *TITLE_KEYS],
        kinds={"duckdb", "sql"},
        description=view.description,
        metadata={"dagster/column_schema": _schema(view)},
    )


def _extra_metadata(con: duckdb.DuckDBPyConnection, name: str) -> dict[str, object]:
    """Row count, risk distribution, counts by reason and preview tables of one view.

    The view runs once, into a temporary table (in order); every figure comes from that copy,
    so no view is executed twice nor pulled whole into Python.
    """
    con.execute(f"CREATE OR REPLACE TEMP TABLE _view AS SELECT * FROM marts.{name}")
    try:
        extra: dict[str, object] = {
            "dagster/row_count": con.execute("SELECT count(*) FROM _view").fetchone()[0]
        }
        extra |= _view_figures(con, name)
    finally:
        con.execute("DROP TABLE IF EXISTS _view")
    return extra


def _head(
    con: duckdb.DuckDBPyConnection,
    columns: str,
    rows: int = 10,
    where: str = "",
    order: str = "rowid",
) -> dg.MarkdownMetadataValue:
    where = f"WHERE {where}" if where else ""
    frame = con.sql(f"SELECT {columns} FROM _view {where} ORDER BY {order} LIMIT {rows}").pl()
    return preview(frame, rows=rows)


def _view_figures(con: duckdb.DuckDBPyConnection, name: str) -> dict[str, object]:
    if name == "v_at_risk_students":
        found = dict(con.execute("SELECT risk_level, count(*) FROM _view GROUP BY 1").fetchall())
        return {
            "risk_distribution": {level: int(found.get(level, 0)) for level in FLAGGED_LEVELS},
            "preview": _head(
                con,
                "academy_id, lecture_title, student_id, risk_level_ko, reason, "
                "days_since_last_activity",
            ),
        }
    if name == "v_lecture_summary":
        return {
            "preview": _head(
                con,
                "academy_id, lecture_title, active_enrollments, normal_enrollments, "
                "warning_enrollments, danger_enrollments, held_completion_rate, clinic_pending",
                rows=20,
            )
        }
    if name == "v_session_funnel":
        return {
            "preview": _head(
                con,
                "academy_id, lecture_title, session_order, active_enrollments, completed_share, "
                "completed_share_drop",
                where="held",
                order="completed_share_drop DESC NULLS LAST, rowid",
            )
        }
    if name == "v_clinic_queue":
        by_reason = con.execute(
            "SELECT reason_ko, count(*) FROM _view GROUP BY 1 ORDER BY 1"
        ).fetchall()
        return {
            "pending_by_reason": {k: int(v) for k, v in by_reason},
            "preview": _head(
                con,
                "queued_since, days_waiting, lecture_title, session_order, "
                "student_id, reason_ko, memo",
            ),
        }
    return {}


@dg.multi_asset(
    name="analyst_views", specs=[_view_spec(v) for v in VIEWS.values()], pool=WAREHOUSE_POOL
)
def analyst_views(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    """Documented analyst views over the marts, with Korean labels from marts.dim_labels."""
    with warehouse.get_connection() as con:
        create_views(con, count=False)
        extra = {name: _extra_metadata(con, name) for name in VIEWS}
        types = {
            (t, c): d
            for t, c, d in con.execute(
                "SELECT table_name, column_name, data_type FROM duckdb_columns() "
                "WHERE schema_name = 'marts'"
            ).fetchall()
        }
    context.log.info(
        "views: " + ", ".join(f"{n} {e['dagster/row_count']:,} rows" for n, e in extra.items())
    )
    for name, view in VIEWS.items():
        column_types = {c: types.get((name, c), "") for c in view.columns}
        yield dg.MaterializeResult(
            asset_key=["marts", name],
            metadata={
                "dagster/column_schema": _schema(view, column_types),
                **extra[name],
            },
        )


class ExportConfig(dg.Config):
    out_dir: str = Field(
        default="",
        description=(
            "Export folder. Empty: $PROGRESS_EXPORTS if set, else exports/ beside the "
            "warehouse file."
        ),
    )


def warehouse_file(warehouse) -> Path:
    """The published warehouse file (WarehouseReader.path; DuckDBResource.database)."""
    return Path(getattr(warehouse, "path", None) or warehouse.database)


def export_folder(config_dir: str, warehouse_path: Path) -> Path:
    if config_dir.strip():
        return Path(config_dir)
    if os.environ.get("PROGRESS_EXPORTS", "").strip():
        return Path(os.environ["PROGRESS_EXPORTS"])
    return warehouse_path.parent / "exports"


def _rows_table(manifest: dict) -> dg.MarkdownMetadataValue:
    academies = manifest["academies"]
    rows: dict[str, dict] = {}
    for entry in manifest["files"]:
        if entry["format"] == "parquet":
            rows.setdefault(entry["table"], {})[entry["academy_id"]] = entry["rows"]
    head = ["table / view", *(f"academy {a}" for a in academies)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, per in rows.items():
        if None in per:  # dim_labels: one file for every academy
            cells = [f"{per[None]} (shared)"] * len(academies)
        else:
            cells = [str(per.get(a, 0)) for a in academies]
        lines.append("| " + " | ".join([name, *cells]) + " |")
    return dg.MetadataValue.md("\n".join(lines))


def marts_computed_in_this_run(context: dg.AssetExecutionContext) -> bool:
    """Whether this run materialized the marts itself (they are then still in its staging
    file: the published file is only replaced when the run ends)."""
    event = context.instance.get_latest_materialization_event(MART_KEYS[0])
    return event is not None and event.run_id == context.run.run_id


@dg.asset(
    key=EXPORTS_KEY,
    group_name=EXPORTS_GROUP,
    deps=[*MART_KEYS, *VIEW_KEYS],
    kinds={"parquet", "csv"},
    description=(
        "Per-academy exports for dashboards: every mart and analyst view as "
        "<out>/<name>/academy_id=<id>/part-0.parquet (hive-partitioned) and <name>.csv (UTF-8 "
        "with BOM), dim_labels once, and manifest.json (as_of, run_id, schema_version, files "
        "with rows and sha256), published atomically. Runs in `exports_job`, launched after "
        "each successful publication, so the marts never wait for the exports."
    ),
)
def academy_exports(
    context: dg.AssetExecutionContext, config: ExportConfig, warehouse_reader: WarehouseReader
) -> dg.MaterializeResult:
    source = warehouse_file(warehouse_reader)
    out = export_folder(config.out_dir, source)
    try:
        check_output(out, source)  # never onto the warehouse, never into the landing folder
        # The published file, read-only and without the writer lock; when this same run also
        # computed the marts, they are still in its staging file, so read that instead.
        with warehouse_reader.connection(staging=marts_computed_in_this_run(context)) as con:
            snapshot = read_snapshot(con, f"warehouse {source}")
            manifest = write_export(snapshot, out, run_id=context.run.run_id, source=str(source))
    except (ExportError, FileNotFoundError, UnsafePath) as exc:
        raise dg.Failure(description=str(exc)) from exc
    context.log.info(f"exported {len(manifest['files'])} files to {out}")
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(out.absolute())),
            "manifest": dg.MetadataValue.path(str((out / "manifest.json").absolute())),
            "as_of": manifest["as_of"] or "",
            "schema_version": manifest["schema_version"],
            "academies": dg.MetadataValue.json(manifest["academies"]),
            "files": len(manifest["files"]),
            "bytes": sum(f["bytes"] for f in manifest["files"]),
            "rows_per_academy": _rows_table(manifest),
        }
    )


# the two halves, for tests that materialize one without the other
view_assets = [analyst_views]
export_assets = [academy_exports]
