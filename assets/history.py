"""History assets: one date of `marts.lecture_progress_daily`, `marts.risk_daily_summary` and
`marts.risk_alerts` per daily partition (Asia/Seoul days from 2026-03-01).

The three tables come from one computation (lecture_progress as of D 23:59:59 and, for the
alerts, as of D-1 23:59:59 from the same raw tables), so they are one multi-asset, partitioned
the same way, and a date is replaced in all three inside one transaction: a reader never sees
alerts of one computation next to history rows of another. Other dates are never touched.

A partition is a day that is over: the newest partition is yesterday (Seoul), which the
schedule and the sensor materialize. The history ignores the run's `as_of` setting; each date
is computed as of its own end. A backfill launched from the UI runs as one run over the whole
range (`BackfillPolicy.single_run()`): one writer lock, one staging copy of the warehouse, one
transaction, published at once; `progress backfill` runs a week of dates per run by default,
to show progress.
"""

from datetime import date

import dagster as dg

from pipelines.core.contract import TABLES
from pipelines.core.engine import history_in_buckets, risk_distribution
from pipelines.core.history import HISTORY_TABLES, end_of_day
from pipelines.core.history_schemas import HISTORY_MODELS
from pipelines.core.schemas import table_description, validate
from pipelines.core.warehouse import table_exists
from pipelines.metadata import (
    column_schema,
    definition_metadata,
    frame_metadata,
    preview,
    table_doc,
)
from pipelines.operations import HISTORY_GROUP, MARTS_FRESHNESS
from pipelines.resources import WAREHOUSE_POOL, ProgressSettings, WarehouseResource

HISTORY_START = "2026-03-01"
HISTORY_TIMEZONE = "Asia/Seoul"  # partition boundaries; the as-of instants use settings.timezone
history_partitions = dg.DailyPartitionsDefinition(
    start_date=HISTORY_START, timezone=HISTORY_TIMEZONE
)

RAW_KEYS = [dg.AssetKey(["raw", t]) for t in TABLES]
HISTORY_KEYS = {name: dg.AssetKey(["marts", name]) for name in HISTORY_TABLES}
DAILY_KEY = HISTORY_KEYS["lecture_progress_daily"]
_DEPS = {
    "lecture_progress_daily": RAW_KEYS,
    "risk_daily_summary": [DAILY_KEY],
    "risk_alerts": [DAILY_KEY],
}


def _spec(name: str) -> dg.AssetSpec:
    return dg.AssetSpec(
        HISTORY_KEYS[name],
        group_name=HISTORY_GROUP,
        deps=_DEPS[name],
        kinds={"duckdb", "polars"},
        description=table_description(HISTORY_MODELS[name]),
        freshness_policy=MARTS_FRESHNESS,
        metadata=definition_metadata(HISTORY_MODELS[name]),
    )


@dg.multi_asset(
    name="history_marts",
    specs=[_spec(name) for name in HISTORY_TABLES],
    partitions_def=history_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool=WAREHOUSE_POOL,
)
def history_marts(
    context: dg.AssetExecutionContext, settings: ProgressSettings, warehouse: WarehouseResource
):
    """lecture_progress as of the end of each of the run's dates, its risk summary and alerts."""
    days = sorted(date.fromisoformat(key) for key in context.partition_keys)
    span = f"{days[0]}" if len(days) == 1 else f"{days[0]} .. {days[-1]} ({len(days)} dates)"
    context.log.info(f"history of {span}, each as of 23:59:59 ({settings.timezone})")
    docs = {name: table_doc(HISTORY_MODELS[name]) for name in HISTORY_TABLES}
    with warehouse.get_connection() as con:
        if not table_exists(con, "raw.enrollments"):
            raise dg.Failure(
                "the warehouse has no raw tables yet: ingest first (`progress run`, or "
                "materialize the raw assets)",
                allow_retries=False,
            )
        # every frame is validated before it is written: a refusal publishes nothing
        out = history_in_buckets(
            con,
            days,
            settings.thresholds,
            lambda name, frame: validate(HISTORY_MODELS[name], frame),
            docs,
            settings.bucket_enrollments,
        )
    context.log.info(
        f"history computed in {out.buckets} academy bucket(s): "
        + ", ".join(f"{phase} {seconds:.1f} s" for phase, seconds in out.seconds.items())
    )
    alerts = out.alerts
    extra: dict[str, dict[str, object]] = {
        "lecture_progress_daily": {"risk_distribution": out.risk_latest},
        "risk_daily_summary": {},
        "risk_alerts": {
            "alerts_by_level": risk_distribution(alerts),
            "preview": preview(
                alerts.sort("as_of_date", "risk_level", "streak", descending=[True, False, True])
            ),
        },
    }
    as_of = {
        "as_of": ", ".join(end_of_day(d).isoformat(sep=" ") for d in days[:3])
        + (" ..." if len(days) > 3 else "")
    }
    frames = {"risk_daily_summary": out.summary, "risk_alerts": alerts}
    for name in HISTORY_TABLES:
        if name in frames:
            metadata = frame_metadata(HISTORY_MODELS[name], frames[name])
        else:  # written bucket by bucket, never whole in memory
            metadata = {
                "dagster/row_count": out.rows[name],
                "dagster/column_schema": column_schema(HISTORY_MODELS[name]),
            }
        yield dg.MaterializeResult(
            asset_key=HISTORY_KEYS[name], metadata=metadata | as_of | extra[name]
        )


history_assets = [history_marts]
