"""Mart assets: the progress marts as of the run's instant, plus the label dimension.

The four progress marts come from one grid, so they are computed and published together in
one transaction: a reader never sees session_progress from one run and risk_log from another.
"""


import dagster as dg
import duckdb
import polars as pl

from pipelines.core.contract import TABLES
from pipelines.core.labels import dim_labels
from pipelines.core.marts import MART_INPUT_COLUMNS, build_marts
from pipelines.core.publish import content_hash
from pipelines.core.schemas import MART_MODELS, table_description, validate
from pipelines.core.warehouse import (
    document_table,
    read_table,
    replace_tables,
    transaction,
    write_table,
)
from pipelines.metadata import (
    column_schema,
    definition_metadata,
    frame_metadata,
    preview,
    table_doc,
)
from pipelines.operations import MARTS_FRESHNESS
from pipelines.resources import WAREHOUSE_POOL, ProgressSettings, WarehouseResource

PROGRESS_MARTS = ("session_progress", "lecture_progress", "risk_log", "clinic_links")


def _spec(name: str, deps: list[dg.AssetKey]) -> dg.AssetSpec:
    return dg.AssetSpec(
        ["marts", name], group_name="marts", deps=deps, kinds={"duckdb", "polars"},
        freshness_policy=MARTS_FRESHNESS, metadata=definition_metadata(MART_MODELS[name]),
        description=table_description(MART_MODELS[name]),
    )


def read_mart_inputs(
    con: duckdb.DuckDBPyConnection, enrollments: tuple[int, int] | None = None
) -> dict[str, pl.DataFrame]:
    """The raw tables with only the columns build_marts uses (MART_INPUT_COLUMNS).

    Lineage columns (`_source_file` is most of an event table's bytes) and titles stay in
    DuckDB. With `enrollments` = (first, last), only those enrollments and their events are
    read (the reference tables whole): every mart row belongs to one enrollment.
    """
    frames = {}
    for table in TABLES:
        columns = MART_INPUT_COLUMNS[table]
        if enrollments is None or "enrollment_id" not in columns:
            frames[table] = read_table(con, f"raw.{table}", columns)
        else:
            frames[table] = read_table(con, f"raw.{table}", columns,
                                       "enrollment_id BETWEEN ? AND ?", list(enrollments))
    return frames


def enrollment_buckets(con: duckdb.DuckDBPyConnection, size: int) -> list[tuple[int, int] | None]:
    """Consecutive ranges of about `size` enrollment ids, in id order (None: one pass)."""
    ids = con.sql("SELECT enrollment_id FROM raw.enrollments ORDER BY 1").pl().to_series()
    if ids.len() <= size:
        return [None]
    return [(int(chunk[0]), int(chunk[-1])) for chunk in
            (ids.slice(start, size) for start in range(0, ids.len(), size))]


def _add_hashes(a: str, b: str) -> str:
    """Content hashes are sums of row hashes, so the hash of a union is the sum."""
    return f"{(int(a, 16) + int(b, 16)) % 2**64:016x}"


def risk_distribution(progress: pl.DataFrame) -> dict[str, int]:
    counts = progress.group_by("risk_level").len()
    found = dict(zip(counts["risk_level"], counts["len"], strict=True))
    return {level: int(found.get(level, 0)) for level in ("NORMAL", "WARNING", "DANGER")}


@dg.multi_asset(
    name="progress_marts",
    pool=WAREHOUSE_POOL,
    specs=[_spec(name, [dg.AssetKey(["raw", t]) for t in TABLES]) for name in PROGRESS_MARTS],
)
def progress_marts(context: dg.AssetExecutionContext, settings: ProgressSettings,
                   warehouse: WarehouseResource):
    """Session completion, lecture aggregates, risk trajectory and clinic candidates."""
    as_of = settings.as_of_instant()
    context.log.info(f"computing marts as of {as_of:%Y-%m-%d %H:%M:%S} ({settings.timezone})")
    rows = dict.fromkeys(PROGRESS_MARTS, 0)
    hashes = dict.fromkeys(PROGRESS_MARTS, content_hash(pl.DataFrame()))
    risk = dict.fromkeys(("NORMAL", "WARNING", "DANGER"), 0)
    at_risk: list[pl.DataFrame] = []
    # Enrollments are independent in every mart, so large warehouses are computed a range of
    # enrollments at a time (memory bounded by the bucket); all buckets commit together.
    with warehouse.get_connection() as con, transaction(con):
        buckets = enrollment_buckets(con, settings.marts_bucket_enrollments)
        for i, bucket in enumerate(buckets):
            marts = build_marts(read_mart_inputs(con, bucket), as_of, settings.thresholds)
            for name, frame in marts.items():  # refuse to publish what the contract forbids
                validate(MART_MODELS[name], frame)
                write_table(con, f"marts.{name}", frame, append=i > 0)
                rows[name] += frame.height
                hashes[name] = _add_hashes(hashes[name], content_hash(frame))
            for level, count in risk_distribution(marts["lecture_progress"]).items():
                risk[level] += count
            at_risk.append(marts["lecture_progress"].filter(pl.col("risk_level") != "NORMAL")
                           .sort("consecutive_failed_sessions", descending=True).head(10))
            del marts
        for name in PROGRESS_MARTS:
            document_table(con, f"marts.{name}", table_doc(MART_MODELS[name]))
    context.log.info(f"marts computed in {len(buckets)} enrollment bucket(s)")
    warehouse.record_marts(as_of, hashes)
    for name in PROGRESS_MARTS:
        extra: dict[str, object] = {"as_of": as_of.isoformat(sep=" "),
                                    "content_hash": hashes[name], "buckets": len(buckets)}
        if name == "lecture_progress":
            extra["risk_distribution"] = risk
            extra["preview"] = preview(
                pl.concat(at_risk).sort("consecutive_failed_sessions", descending=True)
            )
        yield dg.MaterializeResult(
            asset_key=["marts", name],
            metadata={"dagster/row_count": rows[name],
                      "dagster/column_schema": column_schema(MART_MODELS[name])} | extra,
        )


@dg.asset(key=["marts", "dim_labels"], group_name="marts", kinds={"duckdb"}, pool=WAREHOUSE_POOL,
          metadata=definition_metadata(MART_MODELS["dim_labels"]),
          description=table_description(MART_MODELS["dim_labels"]))
def dim_labels_mart(warehouse: WarehouseResource) -> dg.MaterializeResult:
    frame = dim_labels()
    validate(MART_MODELS["dim_labels"], frame)
    with warehouse.get_connection() as con:
        replace_tables(con, {"marts.dim_labels": frame},
                       {"marts.dim_labels": table_doc(MART_MODELS["dim_labels"])})
    return dg.MaterializeResult(metadata=frame_metadata(MART_MODELS["dim_labels"], frame))


mart_assets = [progress_marts, dim_labels_mart]
