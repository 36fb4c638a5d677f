"""Consumer assets (issue 6): the analyst views in the warehouse and the per-academy exports.

- `analyst_views` (one multi-asset, four keys `marts/v_*`, group `marts`): (re)creates the
  documented views over the marts in one transaction; metadata gives each view's row count and
  column schema, the risk distribution and preview tables, so the UI tells the story too.
- `academy_exports` (key `exports/academy_exports`, group `exports`): after the marts and
  views, writes every mart and view per academy as Parquet + CSV with a manifest, published
  atomically. The folder is the asset config `out_dir`, else the environment variable
  PROGRESS_EXPORTS, else `exports/` beside the warehouse file (data/warehouse.duckdb ->
  data/exports, the same as `progress export`).

No `from __future__ import annotations` here: Dagster must see the real annotation types of the
context, config and resources.
"""

import os
from pathlib import Path

import dagster as dg
import polars as pl
from pydantic import Field

from pipelines.core.exports import ExportError, read_snapshot, write_export
from pipelines.core.views import VIEWS, View, create_views
from pipelines.metadata import preview
from pipelines.resources import WAREHOUSE_POOL, WarehouseResource

MART_KEYS = [
    dg.AssetKey(["marts", name])
    for name in ("session_progress", "lecture_progress", "risk_log", "clinic_links", "dim_labels")
]
TITLE_KEYS = [dg.AssetKey(["raw", "lectures"]), dg.AssetKey(["raw", "sessions"])]
VIEW_KEYS = [dg.AssetKey(["marts", name]) for name in VIEWS]
EXPORTS_KEY = dg.AssetKey(["exports", "academy_exports"])


def _schema(view: View, types: dict[str, str] | None = None) -> dg.TableSchema:
    types = types or {}
    return dg.TableSchema(columns=[
        dg.TableColumn(name, types.get(name, ""), description=text)
        for name, text in view.columns.items()
    ])


def _view_spec(view: View) -> dg.AssetSpec:
    return dg.AssetSpec(
        ["marts", view.name], group_name="marts", deps=[*MART_KEYS, *TITLE_KEYS],
        kinds={"duckdb", "sql"}, description=view.description,
        metadata={"dagster/column_schema": _schema(view)},
    )


def _level_counts(frame: pl.DataFrame) -> dict[str, int]:
    counts = dict(frame.group_by("risk_level").len().iter_rows())
    return {level: int(counts.get(level, 0)) for level in ("WARNING", "DANGER")}


def _extra_metadata(name: str, frame: pl.DataFrame) -> dict[str, object]:
    if name == "v_at_risk_students":
        return {
            "risk_distribution": _level_counts(frame),
            "preview": preview(frame.select(
                "academy_id", "lecture_title", "student_id", "risk_level_ko", "reason",
                "days_since_last_activity")),
        }
    if name == "v_lecture_summary":
        return {"preview": preview(frame.select(
            "academy_id", "lecture_title", "active_enrollments", "normal_enrollments",
            "warning_enrollments", "danger_enrollments", "held_completion_rate",
            "clinic_pending"), rows=20)}
    if name == "v_session_funnel":
        return {"preview": preview(
            frame.filter(pl.col("held")).sort("completed_share_drop", descending=True,
                                               nulls_last=True).select(
                "academy_id", "lecture_title", "session_order", "active_enrollments",
                "completed_share", "completed_share_drop"))}
    if name == "v_clinic_queue":
        by_reason = dict(frame.group_by("reason_ko").len().iter_rows())
        return {
            "pending_by_reason": {k: int(v) for k, v in sorted(by_reason.items())},
            "preview": preview(frame.select(
                "queued_since", "days_waiting", "lecture_title", "session_order", "student_id",
                "reason_ko", "memo")),
        }
    return {}


@dg.multi_asset(name="analyst_views", specs=[_view_spec(v) for v in VIEWS.values()],
                pool=WAREHOUSE_POOL)
def analyst_views(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    """Documented analyst views over the marts, with Korean labels from marts.dim_labels."""
    with warehouse.get_connection() as con:
        counts = create_views(con)
        frames = {name: con.sql(f"SELECT * FROM marts.{name}").pl() for name in VIEWS}
        types = {
            (t, c): d for t, c, d in con.execute(
                "SELECT table_name, column_name, data_type FROM duckdb_columns() "
                "WHERE schema_name = 'marts'").fetchall()
        }
    context.log.info("views: " + ", ".join(f"{n} {c:,} rows" for n, c in counts.items()))
    for name, view in VIEWS.items():
        column_types = {c: types.get((name, c), "") for c in view.columns}
        yield dg.MaterializeResult(
            asset_key=["marts", name],
            metadata={
                "dagster/row_count": counts[name],
                "dagster/column_schema": _schema(view, column_types),
                **_extra_metadata(name, frames[name]),
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
    """The published warehouse file (WarehouseResource.path; DuckDBResource.database)."""
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


@dg.asset(
    key=EXPORTS_KEY, group_name="exports", deps=[*MART_KEYS, *VIEW_KEYS],
    kinds={"parquet", "csv"}, pool=WAREHOUSE_POOL,
    description=(
        "Per-academy exports for dashboards: every mart and analyst view as "
        "<out>/<name>/academy_id=<id>/part-0.parquet (hive-partitioned) and <name>.csv (UTF-8 "
        "with BOM), dim_labels once, and manifest.json (as_of, run_id, schema_version, files "
        "with rows and sha256), published atomically."
    ),
)
def academy_exports(context: dg.AssetExecutionContext, config: ExportConfig,
                    warehouse: WarehouseResource) -> dg.MaterializeResult:
    source = warehouse_file(warehouse)
    out = export_folder(config.out_dir, source)
    try:
        # this run's connection (its staging file): the published file is only replaced
        # when the run ends, so reading it here would export the previous run's marts
        with warehouse.get_connection() as con:
            snapshot = read_snapshot(con, f"warehouse {source}")
        manifest = write_export(snapshot, out, run_id=context.run.run_id, source=str(source))
    except ExportError as exc:
        raise dg.Failure(description=str(exc)) from exc
    context.log.info(f"exported {len(manifest['files'])} files to {out}")
    return dg.MaterializeResult(metadata={
        "path": dg.MetadataValue.path(str(out.resolve())),
        "manifest": dg.MetadataValue.path(str((out / "manifest.json").resolve())),
        "as_of": manifest["as_of"] or "",
        "schema_version": manifest["schema_version"],
        "academies": dg.MetadataValue.json(manifest["academies"]),
        "files": len(manifest["files"]),
        "bytes": sum(f["bytes"] for f in manifest["files"]),
        "rows_per_academy": _rows_table(manifest),
    })


consume_assets = [analyst_views, academy_exports]
