"""Pandera schemas of the history tables (daily as-of lecture_progress, risk summary, alerts).

Same conventions as `pipelines.core.schemas`: strict, ordered, never coerced, a description on
every column and table (published to DuckDB COMMENT ON and the Dagster UI). Each history table
holds one slice per `as_of_date`; a date's slice is replaced as a whole.
"""

import pandera.polars as pa
import polars as pl
from pandera.api.polars.model import DataFrameModel

from .schemas import LectureProgress, ReasonFromRule, Timestamp, dataframe_check
from .vocabulary import FLAGGED_LEVELS, LEVEL_RANK, RISK_RULES

__all__ = [
    "HISTORY_MODELS",
    "LectureProgressDaily",
    "RiskAlerts",
    "RiskDailySummary",
]

_AS_OF_DATE = (
    "History date D: the row is computed as of D 23:59:59, naive local time in the pipeline's "
    "configured zone (default Asia/Seoul), from the raw tables at the time it was materialized."
)


class _HistoryModel(DataFrameModel):
    class Config:
        strict = True
        coerce = False
        ordered = True


class _AsOfDate(_HistoryModel):
    as_of_date: pl.Date = pa.Field(description=_AS_OF_DATE)


class LectureProgressDaily(LectureProgress, _AsOfDate):
    """marts.lecture_progress as of the end of each day (as_of_date first, then its columns)."""

    enrollment_id: pl.Int64 = pa.Field(
        description="Enrollment (a student in one lecture). One row per as_of_date each."
    )
    calculated_at: Timestamp = pa.Field(
        description=(
            "as_of_date at 23:59:59, naive local time: the instant the row is computed as of; "
            "events timestamped after it are ignored."
        )
    )

    @dataframe_check(
        name="calculated_at_is_end_of_day",
        error="calculated_at must be as_of_date 23:59:59",
    )
    @classmethod
    def _end_of_day_rule(cls, data) -> pl.LazyFrame:
        end = pl.col("as_of_date").cast(pl.Datetime("us")) + pl.duration(
            hours=23, minutes=59, seconds=59
        )
        return data.lazyframe.select(pl.col("calculated_at") == end)

    class Config:
        description = (
            "Daily history of marts.lecture_progress: one row per as_of_date x enrollment (all "
            "statuses), unique on (as_of_date, enrollment_id), equal to lecture_progress "
            "computed as of as_of_date 23:59:59 (`progress run --as-of 'D 23:59:59'`). "
            "Re-materializing a date replaces that date's rows only."
        )
        unique = ["as_of_date", "enrollment_id"]


class RiskDailySummary(_HistoryModel):
    as_of_date: pl.Date = pa.Field(description=_AS_OF_DATE)
    academy_id: pl.Int64 = pa.Field(description="Academy (tenant) running the lecture.")
    lecture_id: pl.Int64 = pa.Field(description="Lecture summarized.")
    enrollments: pl.Int64 = pa.Field(
        ge=1, description="Enrollments of the lecture on that date, all statuses."
    )
    active_enrollments: pl.Int64 = pa.Field(
        ge=0, description="ACTIVE enrollments (a null delivered status is ACTIVE)."
    )
    normal_count: pl.Int64 = pa.Field(
        ge=0, description="ACTIVE enrollments at risk_level NORMAL as of as_of_date 23:59:59."
    )
    warning_count: pl.Int64 = pa.Field(
        ge=0, description="ACTIVE enrollments at risk_level WARNING as of as_of_date 23:59:59."
    )
    danger_count: pl.Int64 = pa.Field(
        ge=0, description="ACTIVE enrollments at risk_level DANGER as of as_of_date 23:59:59."
    )
    completion_rate: pl.Float64 = pa.Field(
        nullable=True,
        ge=0,
        le=1,
        description=(
            "Mean completion_rate (completed_sessions / total_sessions) of the lecture's ACTIVE "
            "enrollments, between 0 and 1; null when it has no ACTIVE enrollment."
        ),
    )

    @dataframe_check(
        name="risk_counts_sum_to_active",
        error="normal_count + warning_count + danger_count must equal active_enrollments "
        "<= enrollments",
    )
    @classmethod
    def _counts_rule(cls, data) -> pl.LazyFrame:
        total = pl.col("normal_count") + pl.col("warning_count") + pl.col("danger_count")
        return data.lazyframe.select(
            (total == pl.col("active_enrollments"))
            & (pl.col("active_enrollments") <= pl.col("enrollments"))
        )

    class Config:
        description = (
            "Risk per lecture per day: one row per (as_of_date, academy_id, lecture_id) with at "
            "least one enrollment, from marts.lecture_progress_daily of that date. Risk counts "
            "and completion_rate are over ACTIVE enrollments."
        )
        unique = ["as_of_date", "academy_id", "lecture_id"]


class RiskAlerts(_HistoryModel, ReasonFromRule):
    as_of_date: pl.Date = pa.Field(description=_AS_OF_DATE)
    enrollment_id: pl.Int64 = pa.Field(description="Enrollment whose risk rose (always ACTIVE).")
    lecture_id: pl.Int64 = pa.Field(description="Lecture of the enrollment.")
    academy_id: pl.Int64 = pa.Field(description="Academy (tenant) running the lecture.")
    student_id: pl.Int64 = pa.Field(description="Student of the enrollment.")
    previous_level: pl.String = pa.Field(
        isin=["NORMAL", "WARNING"],
        description=(
            "risk_level as of the previous calendar day at 23:59:59, computed from the same raw "
            "tables (NORMAL when the enrollment did not exist then)."
        ),
    )
    risk_level: pl.String = pa.Field(
        isin=list(FLAGGED_LEVELS),
        description=(
            "risk_level as of as_of_date 23:59:59: WARNING or DANGER, higher than "
            "previous_level (NORMAL->WARNING, NORMAL->DANGER or WARNING->DANGER)."
        ),
    )
    rule: pl.String = pa.Field(
        isin=list(RISK_RULES),
        description=(
            "risk_rule as of as_of_date 23:59:59: CONSECUTIVE_LOW_SCORE when the low-score "
            "streak alone reaches the level, else CONSECUTIVE_INCOMPLETE."
        ),
    )
    streak: pl.Int64 = pa.Field(
        ge=1,
        description=(
            "The rule's streak as of as_of_date 23:59:59: consecutive_failed_sessions for "
            "CONSECUTIVE_INCOMPLETE, consecutive_low_scores for CONSECUTIVE_LOW_SCORE."
        ),
    )
    reason: pl.String = pa.Field(
        description=(
            "Display text, as in marts.risk_log: 연속 {streak}차시 미완료 for "
            "CONSECUTIVE_INCOMPLETE, 연속 {streak}회 저점수 for CONSECUTIVE_LOW_SCORE."
        )
    )
    last_session_id: pl.Int64 = pa.Field(
        nullable=True,
        description="The last held session as of as_of_date (where an AUTO_RISK clinic goes).",
    )

    @dataframe_check(name="level_rose", error="risk_level must be above previous_level")
    @classmethod
    def _rose_rule(cls, data) -> pl.LazyFrame:
        rank = LEVEL_RANK
        return data.lazyframe.select(
            pl.col("risk_level").replace_strict(rank, return_dtype=pl.Int8)
            > pl.col("previous_level").replace_strict(rank, return_dtype=pl.Int8)
        )

    class Config:
        description = (
            "Risk alerts, the rows a notifier or a teacher's morning list reads: one row per "
            "(as_of_date, enrollment_id) whose risk_level as of as_of_date 23:59:59 is higher "
            "than as of the previous day 23:59:59 (NORMAL->WARNING, NORMAL->DANGER, "
            "WARNING->DANGER), with the rule, streak and Korean reason. A fall back to NORMAL, "
            "or a change of rule at the same level, is not an alert."
        )
        unique = ["as_of_date", "enrollment_id"]


HISTORY_MODELS: dict[str, type[DataFrameModel]] = {
    "lecture_progress_daily": LectureProgressDaily,
    "risk_daily_summary": RiskDailySummary,
    "risk_alerts": RiskAlerts,
}
