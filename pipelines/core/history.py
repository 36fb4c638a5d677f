"""Daily history of the progress marts: lecture_progress as of the end of each day, a per-lecture
risk summary per day, and the risk alerts (who rose since the day before).

Pure Polars on top of `build_marts`: the history for a date D is exactly the lecture_progress
mart computed as of D 23:59:59 (local, naive) from the same raw tables, plus an `as_of_date`
column. Nothing here knows about Dagster; the DuckDB helpers at the end replace the rows of
some dates in the history tables inside one transaction.

**"Previous date".** An alert for D compares the enrollment's risk as of D 23:59:59 with its risk
as of (D-1) 23:59:59, the calendar day before. `daily_history` always computes D-1 on the fly
from the same raw tables; it never reads a stored partition. So the alerts for D are the same
whether or not D-1 was ever materialized, whatever the backfill order, and they never report a
"rise" caused only by an extract corrected since D-1 was stored: an operator reads "who is worse
today than yesterday, by what we know now". `risk_alerts(history)` on a hand-made or stored
history follows the same calendar rule: a date whose previous calendar date is absent from the
frame gets no alerts (there is nothing to compare with); an enrollment present on D but not on
D-1 counts as NORMAL on D-1.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime, time, timedelta

import duckdb
import polars as pl

from .marts import (
    LECTURE_PROGRESS_COLUMNS,
    RiskThresholds,
    build_marts,
    lecture_progress_at,
)
from .vocabulary import LEVEL_RANK, LOW_SCORE, risk_reason
from .warehouse import (
    TableDoc,
    column_names,
    document_table,
    ident,
    registered,
    table_exists,
    target,
    transaction,
)

E = "enrollment_id"
AS_OF_DATE = "as_of_date"
END_OF_DAY = time(23, 59, 59)

HISTORY_TABLES = ("lecture_progress_daily", "risk_daily_summary", "risk_alerts")
LECTURE_PROGRESS_DAILY_COLUMNS = [AS_OF_DATE, *LECTURE_PROGRESS_COLUMNS]
RISK_DAILY_SUMMARY_COLUMNS = [
    AS_OF_DATE,
    "academy_id",
    "lecture_id",
    "enrollments",
    "active_enrollments",
    "normal_count",
    "warning_count",
    "danger_count",
    "completion_rate",
]
RISK_ALERT_COLUMNS = [
    AS_OF_DATE,
    E,
    "lecture_id",
    "academy_id",
    "student_id",
    "previous_level",
    "risk_level",
    "rule",
    "streak",
    "reason",
    "last_session_id",
]


def end_of_day(day: date) -> datetime:
    """The as-of instant of a history date: D 23:59:59, naive local time."""
    return datetime.combine(day, END_OF_DAY)


def days_between(start: date, end: date) -> list[date]:
    """Every date from start to end, both included (empty when end < start)."""
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


def _with_date(progress: pl.DataFrame, day: date) -> pl.DataFrame:
    return progress.with_columns(pl.lit(day, pl.Date).alias(AS_OF_DATE)).select(
        AS_OF_DATE, *progress.columns
    )


def lecture_progress_on(
    raw: Mapping[str, pl.DataFrame], day: date, thresholds: RiskThresholds | None = None
) -> pl.DataFrame:
    """lecture_progress as of D 23:59:59 with an `as_of_date` = D column (first)."""
    return _with_date(lecture_progress_at(dict(raw), end_of_day(day), thresholds), day)


def lecture_progress_history(
    raw: Mapping[str, pl.DataFrame],
    days: Iterable[date],
    thresholds: RiskThresholds | None = None,
) -> pl.DataFrame:
    """lecture_progress_on for every date, stacked (one row per date x enrollment)."""
    frames = [lecture_progress_on(raw, day, thresholds) for day in days]
    if not frames:
        raise ValueError("no dates given")
    return pl.concat(frames).sort(AS_OF_DATE, E)


def risk_daily_summary(history: pl.DataFrame) -> pl.DataFrame:
    """Per (date, academy, lecture): enrollments, risk counts and completion rate.

    Risk counts are over ACTIVE enrollments (only they get a risk; they sum to
    active_enrollments); completion_rate is the mean completion_rate of the ACTIVE enrollments
    (null when none), so students who dropped do not drag the lecture's rate down.
    """
    active = pl.col("status") == "ACTIVE"
    level = pl.col("risk_level")
    count = lambda cond: cond.sum().cast(pl.Int64)  # noqa: E731
    return (
        history.group_by(AS_OF_DATE, "academy_id", "lecture_id")
        .agg(
            pl.len().cast(pl.Int64).alias("enrollments"),
            count(active).alias("active_enrollments"),
            count(active & (level == "NORMAL")).alias("normal_count"),
            count(active & (level == "WARNING")).alias("warning_count"),
            count(active & (level == "DANGER")).alias("danger_count"),
            pl.col("completion_rate")
            .filter(active)
            .mean()
            .cast(pl.Float64)
            .alias("completion_rate"),
        )
        .select(RISK_DAILY_SUMMARY_COLUMNS)
        .sort(AS_OF_DATE, "academy_id", "lecture_id")
    )


def _rank(column: str) -> pl.Expr:
    return pl.col(column).replace_strict(LEVEL_RANK, return_dtype=pl.Int8)


def risk_alerts(history: pl.DataFrame) -> pl.DataFrame:
    """Per date D, the enrollments whose risk level rose since D-1 (NORMAL->WARNING, ->DANGER).

    Dates whose previous calendar date is not in `history` get no alerts; an enrollment absent
    on D-1 was NORMAL then. `streak` is the current streak of the rule (consecutive not-completed
    held sessions, or consecutive low counted scores) and `reason` its Korean text, exactly as
    marts.risk_log writes them.
    """
    dates = history.select(AS_OF_DATE).unique()
    previous_date = pl.col(AS_OF_DATE).dt.offset_by("-1d")
    comparable = dates.filter(previous_date.is_in(dates[AS_OF_DATE].implode()))
    before = history.select(
        pl.col(AS_OF_DATE).dt.offset_by("1d"), E, pl.col("risk_level").alias("previous_level")
    )
    rule = pl.col("risk_rule")
    streak = (
        pl.when(rule == LOW_SCORE)
        .then(pl.col("consecutive_low_scores"))
        .otherwise(pl.col("consecutive_failed_sessions"))
        .cast(pl.Int64)
    )
    reason = risk_reason(rule, pl.col("streak"))
    return (
        history.join(comparable, on=AS_OF_DATE, how="semi")
        .join(before, on=[AS_OF_DATE, E], how="left")
        .with_columns(pl.col("previous_level").fill_null("NORMAL"))
        .filter(_rank("risk_level") > _rank("previous_level"))
        .with_columns(rule.alias("rule"), streak.alias("streak"))
        .with_columns(reason.alias("reason"))
        .select(RISK_ALERT_COLUMNS)
        .sort(AS_OF_DATE, E)
    )


def history_for_days(
    raw: Mapping[str, pl.DataFrame],
    days: Iterable[date],
    thresholds: RiskThresholds | None = None,
) -> dict[str, pl.DataFrame]:
    """The three history tables' rows for the given dates, each table stacked.

    lecture_progress is computed once per date of `days` and of their previous dates (computed
    on the fly, never read back), so a range of n consecutive dates costs n + 1 computations.
    """
    days = sorted(set(days))
    if not days:
        raise ValueError("no dates given")
    wanted = pl.Series(days, dtype=pl.Date).implode()
    needed = sorted(set(days) | {d - timedelta(days=1) for d in days})
    every = lecture_progress_history(raw, needed, thresholds)
    progress = every.filter(pl.col(AS_OF_DATE).is_in(wanted))
    return {
        "lecture_progress_daily": progress,
        "risk_daily_summary": risk_daily_summary(progress),
        "risk_alerts": risk_alerts(every).filter(pl.col(AS_OF_DATE).is_in(wanted)),
    }


def daily_history(
    raw: Mapping[str, pl.DataFrame], day: date, thresholds: RiskThresholds | None = None
) -> dict[str, pl.DataFrame]:
    """The three history tables' rows for one date (the previous date computed on the fly)."""
    return history_for_days(raw, [day], thresholds)


def alerts_since_previous_day(
    raw: Mapping[str, pl.DataFrame], as_of: datetime, thresholds: RiskThresholds | None = None
) -> pl.DataFrame:
    """Alerts for an arbitrary instant: risk as of `as_of` vs as of the previous day 23:59:59.

    For as_of = D 23:59:59 this is exactly the stored risk_alerts of D; for a run in the
    morning it is "who is worse now than at the end of yesterday". `as_of_date` is as_of's date.
    """
    day = as_of.date()
    current = _with_date(build_marts(dict(raw), as_of, thresholds)["lecture_progress"], day)
    previous = lecture_progress_on(raw, day - timedelta(days=1), thresholds)
    return risk_alerts(pl.concat([previous, current])).filter(pl.col(AS_OF_DATE) == day)


# --------------------------------------------------------------------------------------------
# DuckDB: replace one date's rows of the history tables, atomically
# --------------------------------------------------------------------------------------------


def prepare_dates(
    con: duckdb.DuckDBPyConnection,
    qualified: str,
    frame: pl.DataFrame,
    days: Iterable[date],
    doc: TableDoc | None = None,
) -> None:
    """Make `schema.table` ready to take `frame`'s rows for `days`: create it on first use
    (with the frame's types), add a column the frame has but the table lacks (older dates
    read null there), delete the rows of `days`, and COMMENT ON it from `doc`. Rows of other
    dates are never touched."""
    name = target(qualified)
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {ident(qualified.split('.')[0])}")
    with registered(con, frame.head(0)) as incoming:
        con.execute(f"CREATE TABLE IF NOT EXISTS {name} AS SELECT * FROM {incoming} LIMIT 0")
        types = {r[0]: r[1] for r in con.execute(f"DESCRIBE SELECT * FROM {incoming}").fetchall()}
    existing = set(column_names(con, qualified))
    for column in frame.columns:
        if column not in existing:
            con.execute(f"ALTER TABLE {name} ADD COLUMN {ident(column)} {types[column]}")
    con.execute(
        f"DELETE FROM {name} WHERE {ident(AS_OF_DATE)} IN (SELECT unnest(?::DATE[]))",
        [sorted(set(days))],
    )
    if doc is not None:
        document_table(con, qualified, doc)


def _dated_within(qualified: str, frame: pl.DataFrame, days: list[date]) -> None:
    if AS_OF_DATE not in frame.columns:
        raise ValueError(f"{qualified}: no {AS_OF_DATE} column")
    other = frame.filter(~pl.col(AS_OF_DATE).is_in(pl.Series(days, dtype=pl.Date).implode()))
    if other.height:
        raise ValueError(f"{qualified}: {other.height} rows are dated outside {days}")


def append_dates(
    con: duckdb.DuckDBPyConnection, qualified: str, frame: pl.DataFrame, days: Iterable[date]
) -> None:
    """Append rows dated within `days` to a table `prepare_dates` made ready."""
    _dated_within(qualified, frame, sorted(set(days)))
    with registered(con, frame) as incoming:
        con.execute(f"INSERT INTO {target(qualified)} BY NAME SELECT * FROM {incoming}")


def replace_dates(
    con: duckdb.DuckDBPyConnection,
    tables: Mapping[str, pl.DataFrame],
    days: Iterable[date],
    docs: Mapping[str, TableDoc] | None = None,
) -> None:
    """For each `schema.table` -> frame (rows dated within `days`): DELETE those dates' rows,
    INSERT the frame; all tables in one transaction, so readers see the old dates or the new.
    A date in `days` with no rows in a frame ends up with none in its table."""
    days = sorted(set(days))
    for qualified, frame in tables.items():
        _dated_within(qualified, frame, days)
    docs = docs or {}
    with transaction(con):
        for qualified, frame in tables.items():
            prepare_dates(con, qualified, frame, days, docs.get(qualified))
            append_dates(con, qualified, frame, days)


def read_dates(
    con: duckdb.DuckDBPyConnection, qualified: str, days: Iterable[date] | None = None
) -> pl.DataFrame:
    """Rows of a history table, all dates or only `days`, sorted by date then key columns."""
    sql = f"SELECT * FROM {target(qualified)}"
    params: list = []
    if days is not None:
        sql += f" WHERE {ident(AS_OF_DATE)} IN (SELECT unnest(?::DATE[]))"
        params.append(list(days))
    frame = con.execute(sql, params).pl()
    keys = [c for c in (AS_OF_DATE, "academy_id", "lecture_id", E) if c in frame.columns]
    return frame.sort(keys)


def stored_dates(con: duckdb.DuckDBPyConnection, qualified: str) -> list[date]:
    """The dates a history table holds, ascending; empty when the table does not exist."""
    if not table_exists(con, qualified):
        return []
    rows = con.execute(
        f"SELECT DISTINCT {ident(AS_OF_DATE)} FROM {target(qualified)} ORDER BY 1"
    ).fetchall()
    return [r[0] for r in rows]
