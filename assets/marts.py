"""Mart assets: the progress marts as of the run's instant, plus the label dimension.

The four progress marts come from one grid, so they are computed together (a bucket of
enrollments at a time) and swapped in together by one transaction: a reader never sees
session_progress from one run and risk_log from another. The asset reports their schema and
invariant checks itself (checks/mart_checks.py).
"""

import contextlib
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import dagster as dg
import duckdb
import polars as pl

from checks.mart_checks import (
    PROGRESS_MARTS,
    invariant_result,
    labels_check_spec,
    mart_check_specs,
    mart_violations,
    schema_result,
)
from pipelines.core.contract import TABLES
from pipelines.core.labels import dim_labels
from pipelines.core.marts import LEVELS, MART_INPUT_COLUMNS, build_marts
from pipelines.core.publish import content_hash
from pipelines.core.schemas import MART_MODELS, table_description
from pipelines.core.warehouse import (
    document_table,
    read_table,
    replace_tables,
    stored_schema,
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
from pipelines.pandera_checks import schema_failure
from pipelines.resources import WAREHOUSE_POOL, ProgressSettings, WarehouseResource


def _spec(name: str, deps: list[dg.AssetKey]) -> dg.AssetSpec:
    return dg.AssetSpec(
        ["marts", name],
        group_name="marts",
        deps=deps,
        kinds={"duckdb", "polars"},
        freshness_policy=MARTS_FRESHNESS,
        metadata=definition_metadata(MART_MODELS[name]),
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
    for table, columns in MART_INPUT_COLUMNS.items():
        if enrollments is None or "enrollment_id" not in columns:
            frames[table] = read_table(con, f"raw.{table}", columns)
        else:
            frames[table] = read_table(
                con, f"raw.{table}", columns, "enrollment_id BETWEEN ? AND ?", list(enrollments)
            )
    return frames


def enrollment_buckets(con: duckdb.DuckDBPyConnection, size: int) -> list[tuple[int, int] | None]:
    """Consecutive ranges of about `size` enrollment ids, in id order (None: one pass)."""
    ids = con.sql("SELECT enrollment_id FROM raw.enrollments ORDER BY 1").pl().to_series()
    if ids.len() <= size:
        return [None]
    return [
        (int(chunk[0]), int(chunk[-1]))
        for chunk in (ids.slice(start, size) for start in range(0, ids.len(), size))
    ]


def _add_hashes(a: str, b: str) -> str:
    """Content hashes are sums of row hashes, so the hash of a union is the sum."""
    return f"{(int(a, 16) + int(b, 16)) % 2**64:016x}"


def risk_distribution(progress: pl.DataFrame) -> dict[str, int]:
    counts = progress.group_by("risk_level").len()
    found = dict(zip(counts["risk_level"], counts["len"], strict=True))
    return {level: int(found.get(level, 0)) for level in LEVELS}


class MartsRefused(Exception):
    """A bucket of marts broke its schema: nothing of this computation is published."""


@dataclass
class MartsOutcome:
    """What the bucketed computation produced, summed over the buckets."""

    buckets: int = 0
    rows: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PROGRESS_MARTS, 0))
    hashes: dict[str, str] = field(
        default_factory=lambda: dict.fromkeys(PROGRESS_MARTS, content_hash(pl.DataFrame()))
    )
    risk: dict[str, int] = field(default_factory=lambda: dict.fromkeys(LEVELS, 0))
    at_risk: list[pl.DataFrame] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)
    violations: dict[str, list[str]] = field(
        default_factory=lambda: {name: [] for name in PROGRESS_MARTS}
    )
    stored: dict[str, pl.Schema] = field(default_factory=dict)
    # wall seconds per phase, summed over the buckets: read, compute, checks, and write (the
    # content hashes, and waiting for the writer thread)
    seconds: dict[str, float] = field(
        default_factory=lambda: dict.fromkeys(("read", "compute", "checks", "write"), 0.0)
    )

    def lap(self, phase: str, since: float) -> float:
        """Add the time since `since` to `phase`; return now."""
        now = time.perf_counter()
        self.seconds[phase] += now - since
        return now


def _building(name: str) -> str:
    return f"marts._building_{name}"


def _append_bucket(
    con: duckdb.DuckDBPyConnection, marts: dict[str, pl.DataFrame], append: bool
) -> None:
    for name, frame in marts.items():
        write_table(con, _building(name), frame, append=append)


def compute_marts(
    con: duckdb.DuckDBPyConnection, settings: ProgressSettings, as_of, out: MartsOutcome
) -> None:
    """Compute, validate, check and write the marts a bucket of enrollments at a time, into
    `out`: all buckets are published together, or (MartsRefused, any error) none.

    Buckets are appended to side tables (`marts._building_<name>`), each append committed on
    its own, and one short transaction swaps them in for the published marts. One transaction
    around every append would keep all of them in DuckDB's transaction-local memory until
    the commit (measured at L: +450 MB per 100k-enrollment bucket).

    A writer thread appends bucket i (on its own DuckDB connection to the same database)
    while bucket i+1 is computed: DuckDB and Polars both release the GIL, so writing (a third
    of the step at L) overlaps computing. One bucket is written at a time, in order.
    """
    writer = con.cursor()  # a second connection to the same database, for the writer thread
    for connection in (con, writer):
        # Mart rows have no meaningful physical order (every reader sorts or groups): DuckDB
        # may append them in parallel (-20% write time at L).
        connection.execute("SET preserve_insertion_order = false")
    try:
        for name in PROGRESS_MARTS:
            con.execute(f"DROP TABLE IF EXISTS {_building(name)}")
        buckets = enrollment_buckets(con, settings.marts_bucket_enrollments)
        out.buckets = len(buckets)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="marts-writer") as pool:
            pending: Future | None = None
            for i, bucket in enumerate(buckets):
                started = time.perf_counter()
                inputs = read_mart_inputs(con, bucket)
                valid_enrollments = inputs["enrollments"].height
                started = out.lap("read", started)
                marts = build_marts(inputs, as_of, settings.thresholds)
                del inputs
                started = out.lap("compute", started)
                for name, frame in marts.items():  # refuse to publish what the contract forbids
                    failure = schema_failure(MART_MODELS[name], frame)
                    if failure is not None:
                        out.failures[name] = failure
                if out.failures:
                    raise MartsRefused
                for name, found in mart_violations(marts, valid_enrollments).items():
                    out.violations[name] += found
                started = out.lap("checks", started)
                for name, frame in marts.items():
                    out.rows[name] += frame.height
                    out.hashes[name] = _add_hashes(out.hashes[name], content_hash(frame))
                for level, count in risk_distribution(marts["lecture_progress"]).items():
                    out.risk[level] += count
                out.at_risk.append(
                    marts["lecture_progress"]
                    .filter(pl.col("risk_level") != "NORMAL")
                    .sort("consecutive_failed_sessions", descending=True)
                    .head(10)
                )
                if pending is not None:
                    pending.result()  # the previous bucket is written (or its error raised)
                pending = pool.submit(_append_bucket, writer, marts, i > 0)
                del marts
                out.lap("write", started)
            if pending is not None:
                started = time.perf_counter()
                pending.result()
                out.lap("write", started)
        with transaction(con):
            for name in PROGRESS_MARTS:
                con.execute(f"DROP TABLE IF EXISTS marts.{name}")
                con.execute(f"ALTER TABLE {_building(name)} RENAME TO {name}")
                document_table(con, f"marts.{name}", table_doc(MART_MODELS[name]))
                out.stored[name] = stored_schema(con, f"marts.{name}")
    finally:  # after a refusal or an error, nothing of this computation stays behind
        writer.close()
        for name in PROGRESS_MARTS:
            con.execute(f"DROP TABLE IF EXISTS {_building(name)}")


def _empty(name: str) -> pl.DataFrame:
    """An empty frame of a mart (its rows were validated bucket by bucket)."""
    columns = MART_MODELS[name].to_schema().columns
    return pl.DataFrame(schema={c: column.dtype.type for c, column in columns.items()})


@dg.multi_asset(
    name="progress_marts",
    pool=WAREHOUSE_POOL,
    specs=[_spec(name, [dg.AssetKey(["raw", t]) for t in TABLES]) for name in PROGRESS_MARTS],
    check_specs=mart_check_specs(),
)
def progress_marts(
    context: dg.AssetExecutionContext, settings: ProgressSettings, warehouse: WarehouseResource
):
    """Session completion, lecture aggregates, risk trajectory and clinic candidates."""
    as_of = settings.as_of_instant()
    context.log.info(f"computing marts as of {as_of:%Y-%m-%d %H:%M:%S} ({settings.timezone})")
    # Enrollments are independent in every mart, so large warehouses are computed a range of
    # enrollments at a time (memory bounded by the bucket); all buckets commit together.
    out = MartsOutcome()
    # MartsRefused: the transaction rolled back; out.failures says why
    with warehouse.get_connection() as con, contextlib.suppress(MartsRefused):
        compute_marts(con, settings, as_of, out)
    if out.failures:
        for name in PROGRESS_MARTS:
            yield schema_result(
                MART_MODELS[name], _empty(name), name, failure=out.failures.get(name)
            )
        raise dg.Failure(
            description="marts not published: "
            + ", ".join(f"marts.{n} breaks its schema" for n in out.failures)
        )
    context.log.info(
        f"marts computed in {out.buckets} enrollment bucket(s): "
        + ", ".join(f"{phase} {seconds:.1f} s" for phase, seconds in out.seconds.items())
    )
    warehouse.record_marts(as_of, out.hashes)
    for name in PROGRESS_MARTS:
        extra: dict[str, object] = {
            "as_of": as_of.isoformat(sep=" "),
            "content_hash": out.hashes[name],
            "buckets": out.buckets,
        }
        if name == "lecture_progress":
            extra["risk_distribution"] = out.risk
            extra["preview"] = preview(
                pl.concat(out.at_risk).sort("consecutive_failed_sessions", descending=True)
            )
        yield dg.MaterializeResult(
            asset_key=["marts", name],
            metadata={
                "dagster/row_count": out.rows[name],
                "dagster/column_schema": column_schema(MART_MODELS[name]),
            }
            | extra,
        )
        yield schema_result(
            MART_MODELS[name], _empty(name), name, stored=out.stored[name], rows=out.rows[name]
        )
        yield invariant_result(name, out.violations[name])


@dg.asset(
    key=["marts", "dim_labels"],
    group_name="marts",
    kinds={"duckdb"},
    pool=WAREHOUSE_POOL,
    metadata=definition_metadata(MART_MODELS["dim_labels"]),
    description=table_description(MART_MODELS["dim_labels"]),
    check_specs=[labels_check_spec()],
)
def dim_labels_mart(warehouse: WarehouseResource):
    model = MART_MODELS["dim_labels"]
    frame = dim_labels()
    failure = schema_failure(model, frame)
    if failure is not None:  # refuse to publish what the contract forbids
        yield schema_result(model, frame, "dim_labels", failure=failure)
        raise dg.Failure(description="marts.dim_labels breaks its schema: not published")
    with warehouse.get_connection() as con:
        replace_tables(con, {"marts.dim_labels": frame}, {"marts.dim_labels": table_doc(model)})
        stored = stored_schema(con, "marts.dim_labels")
    yield dg.MaterializeResult(metadata=frame_metadata(model, frame))
    yield schema_result(model, frame, "dim_labels", stored=stored, failure=failure)


mart_assets = [progress_marts, dim_labels_mart]
