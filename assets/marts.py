"""Mart assets: the progress marts as of the run's instant, plus the label dimension.

The four progress marts come from one grid, so they are computed together (an academy bucket
at a time, `pipelines.core.engine.compute_marts`) and swapped in together by one transaction: a reader never sees
session_progress from one run and risk_log from another. The asset reports their schema and
invariant checks itself (checks/mart_checks.py).
"""

import contextlib

import dagster as dg
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
from pipelines.core.engine import MartsOutcome, MartsRefused, compute_marts
from pipelines.core.evaluation import sweep_pairs
from pipelines.core.labels import dim_labels
from pipelines.core.schemas import MART_MODELS, table_description
from pipelines.core.warehouse import replace_tables, stored_schema
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


def check_bucket(
    marts: dict[str, pl.DataFrame], valid_enrollments: int
) -> tuple[dict[str, str], dict[str, list[str]]]:
    """A bucket's schema failures (Pandera, in memory, before anything is written) and
    invariant violations, for `engine.compute_marts`."""
    failures = {}
    for name, frame in marts.items():
        failure = schema_failure(MART_MODELS[name], frame)
        if failure is not None:
            failures[name] = failure
    return failures, {} if failures else mart_violations(marts, valid_enrollments)


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
    # Enrollments are independent in every mart, so the engine computes one academy bucket
    # at a time (memory bounded by the bucket); all buckets are swapped in together.
    out = MartsOutcome()
    docs = {name: table_doc(MART_MODELS[name]) for name in PROGRESS_MARTS}
    # MartsRefused: nothing was swapped in; out.failures says why
    with warehouse.get_connection() as con, contextlib.suppress(MartsRefused):
        compute_marts(
            con,
            as_of,
            settings.thresholds,
            check_bucket,
            out,
            docs,
            settings.bucket_enrollments,
            # the rule evaluation of this run takes the marts' streaks (assets/evaluation.py)
            evaluation=(context.run.run_id, max(map(max, sweep_pairs(settings.thresholds)))),
        )
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
        f"marts computed in {out.buckets} academy bucket(s): "
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
