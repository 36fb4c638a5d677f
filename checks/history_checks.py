"""Checks on the history tables: Pandera schemas and agreement between the three tables.

The checks are not partitioned (partitioned checks are a preview API in Dagster 1.13): in a run
with a partition key (or a partition range, for a single-run backfill) they look at those dates
only, so a daily run costs the same however long the history grows; run on their own (from the
UI) they look at every date. They read the run's staging copy of the warehouse.
"""

from datetime import date

import dagster as dg
import polars as pl

from assets.history import DAILY_KEY, HISTORY_KEYS
from pipelines.core.history import AS_OF_DATE, days_between, read_dates, risk_daily_summary
from pipelines.core.history_schemas import HISTORY_MODELS
from pipelines.pandera_checks import schema_check_result
from pipelines.resources import WarehouseResource

PARTITION_TAG = "dagster/partition"
RANGE_TAGS = ("dagster/asset_partition_range_start", "dagster/asset_partition_range_end")


def run_dates(tags: dict[str, str]) -> list[date] | None:
    """The dates a run materializes, from its tags; None for a run without partitions."""
    if tags.get(PARTITION_TAG):
        return [date.fromisoformat(tags[PARTITION_TAG])]
    start, end = (tags.get(t) for t in RANGE_TAGS)
    if start and end:
        return days_between(date.fromisoformat(start), date.fromisoformat(end))
    return None


def _read(
    context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource, name: str
) -> pl.DataFrame:
    with warehouse.read_connection() as con:
        return read_dates(con, f"marts.{name}", run_dates(dict(context.run.tags)))


def build_history_schema_check(name: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=HISTORY_KEYS[name],
        name="schema",
        description="Types, nullability, enums, ranges and the (date, key) grain, "
        "for the run's date (every date when run alone).",
    )
    def _schema(
        context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource
    ) -> dg.AssetCheckResult:
        return schema_check_result(HISTORY_MODELS[name], _read(context, warehouse, name))

    return _schema


def history_violations(
    progress: pl.DataFrame, summary: pl.DataFrame, alerts: pl.DataFrame
) -> list[str]:
    """What breaks the agreement of the three history tables (over the dates given)."""
    problems: list[str] = []
    dates = set(progress[AS_OF_DATE].unique().to_list())
    for label, frame in (("risk_daily_summary", summary), ("risk_alerts", alerts)):
        extra = set(frame[AS_OF_DATE].unique().to_list()) - dates
        if extra:
            problems.append(
                f"{label} has dates missing from lecture_progress_daily: {sorted(extra)[:5]}"
            )
    expected = risk_daily_summary(progress)
    keys = [AS_OF_DATE, "academy_id", "lecture_id"]
    rate = "completion_rate"
    exact = [c for c in expected.columns if c != rate]
    compared = summary.join(expected, on=keys, how="full", suffix="_expected", coalesce=False)
    differs = pl.any_horizontal(
        *(pl.col(c).ne_missing(pl.col(f"{c}_expected")) for c in exact if c not in keys),
        *(pl.col(c).is_null() for c in keys),
        *(pl.col(f"{c}_expected").is_null() for c in keys),
        pl.col(rate).is_null() != pl.col(f"{rate}_expected").is_null(),
        ((pl.col(rate) - pl.col(f"{rate}_expected")).abs() > 1e-9).fill_null(False),
    )
    mismatched = compared.filter(differs).height
    if mismatched:
        problems.append(
            f"{mismatched} risk_daily_summary rows differ from the aggregate of "
            "lecture_progress_daily"
        )
    joined = alerts.join(
        progress.select(AS_OF_DATE, "enrollment_id", "risk_level", "risk_rule"),
        on=[AS_OF_DATE, "enrollment_id"],
        how="left",
    )
    disagree = joined.filter(
        pl.col("risk_level").ne_missing(pl.col("risk_level_right"))
        | pl.col("rule").ne_missing(pl.col("risk_rule"))
    )
    if disagree.height:
        problems.append(
            f"{disagree.height} risk_alerts rows disagree with "
            "lecture_progress_daily's risk_level / risk_rule of the same date"
        )
    return problems


@dg.asset_check(
    asset=HISTORY_KEYS["risk_alerts"],
    name="agrees_with_history",
    additional_deps=[DAILY_KEY, HISTORY_KEYS["risk_daily_summary"]],
    description="Alerts carry the same risk as lecture_progress_daily on their "
    "date; the summary is the aggregate of lecture_progress_daily.",
)
def history_agreement(
    context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource
) -> dg.AssetCheckResult:
    frames = [_read(context, warehouse, name) for name in HISTORY_KEYS]
    violations = history_violations(*frames)
    return dg.AssetCheckResult(
        passed=not violations,
        metadata={"dates": frames[0][AS_OF_DATE].n_unique(), "violations": violations or ["none"]},
        description="; ".join(violations) or None,
    )


history_checks = [
    *(build_history_schema_check(name) for name in HISTORY_KEYS),
    history_agreement,
]
