"""Backfilling the daily history through Dagster, and reading the risk alerts (no CLI here).

Backfill: Dagster's own partition machinery, in-process, through the jobs the definitions
define. One run of `ingest_job` (raw + quarantine and their checks, from the landing folder),
then runs of `history_job` over the daily partitions, in
chunks of `--days-per-run` dates (default 7): a one-date chunk is a run with `partition_key=D`,
a longer one a single run over the partition range (the `dagster/asset_partition_range_start`
/ `_end` tags, exactly what `dagster asset materialize --partition-range` and a UI backfill of
these assets, `BackfillPolicy.single_run()`, launch). All runs go to the same instance: the one
at DAGSTER_HOME when set (runs, partition tags and the partition status of
marts/lecture_progress_daily show in the UI), else an ephemeral one. Every run carries
`progress/backfill=<id>` (filter the Runs page on it).

Why chunks: a run in a persistent (SQLite) instance costs 1-3 s of event-log writes whatever
it computes, so one run per date makes a year take ~20 minutes; a week per run keeps the
progress bar moving and a year under two minutes. Each chunk is one transaction and one
publication of the warehouse: a failure stops the backfill with the earlier chunks kept, and
re-running is idempotent. The instance's asynchronous backfill API needs the daemon and a code
location, so it is not used. The current marts are not touched.
"""

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl

from pipelines.core.engine import alerts_in_buckets
from pipelines.core.history import (
    AS_OF_DATE,
    days_between,
    end_of_day,
    read_dates,
    stored_dates,
)
from pipelines.core.marts import RiskThresholds
from pipelines.core.vocabulary import FLAGGED_LEVELS
from pipelines.core.warehouse import table_exists
from pipelines.exit_codes import CommandFailed, ExitCode
from pipelines.resources import DEFAULT_TIMEZONE
from pipelines.runner import check_landing, dagster_instance, job, run_config, run_failure

BACKFILL_TAG = "progress/backfill"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
DAYS_PER_RUN = 7
ALERTS_TABLE = "marts.risk_alerts"
# the dates of the history: a day backfilled with no alert is still a day ("0 alerts")
DAILY_TABLE = "marts.lecture_progress_daily"


class BackfillFailed(CommandFailed):
    """The backfill stopped; the message is the one line shown to the user."""

    def __init__(self, message: str, code: ExitCode = ExitCode.USAGE) -> None:
        super().__init__(message, code)


@dataclass
class BackfillReport:
    backfill_id: str
    start: date
    end: date
    ingest_run_id: str = ""
    runs: dict[date, str] = field(default_factory=dict)  # date -> id of the run that made it
    per_date: pl.DataFrame | None = None  # as_of_date, enrollments, warning, danger, alerts


def parse_day(text: str, option: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise BackfillFailed(f"{option} {text!r} is not a date (YYYY-MM-DD)") from None


def check_range(start: date, end: date) -> None:
    from assets.history import HISTORY_START, history_partitions

    first = date.fromisoformat(HISTORY_START)
    last_key = history_partitions.get_last_partition_key()
    if end < start:
        raise BackfillFailed(f"--end {end} is before --start {start}")
    if start < first:
        raise BackfillFailed(f"--start {start} is before the first history date {first}")
    if last_key is None or end > date.fromisoformat(last_key):
        raise BackfillFailed(
            f"--end {end} is not a finished day yet (the latest history date is {last_key})"
        )


def run_backfill(
    start: date,
    end: date,
    landing: Path,
    warehouse: Path,
    timezone: str = DEFAULT_TIMEZONE,
    on_chunk: Callable[[list[date], str], None] | None = None,
    verbose: bool = False,
    instance: dg.DagsterInstance | None = None,
    days_per_run: int = DAYS_PER_RUN,
) -> BackfillReport:
    """Ingest the landing folder, then materialize the history partitions start..end, in runs
    of at most `days_per_run` dates; `on_chunk(dates, run_id)` after each run."""
    from pipelines.operations import WAREHOUSE_TAG

    check_range(start, end)
    check_landing(landing)
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    report = BackfillReport(backfill_id=uuid.uuid4().hex[:12], start=start, end=end)
    tags = {
        BACKFILL_TAG: report.backfill_id,
        "progress/backfill_range": f"{start}...{end}",
        "progress/landing": str(landing),
        WAREHOUSE_TAG: "write",
    }
    config = run_config(landing, warehouse, timezone, verbose=verbose)
    instance = instance or dagster_instance()

    ingest = job("ingest_job").execute_in_process(
        run_config=config, instance=instance, raise_on_error=False, tags=tags
    )
    failure = run_failure(ingest, warehouse)
    if failure:
        raise BackfillFailed(f"ingest: {failure}", failure.code)
    report.ingest_run_id = ingest.run_id
    days = days_between(start, end)
    history = job("history_job")
    for chunk in (
        days[i : i + max(days_per_run, 1)] for i in range(0, len(days), max(days_per_run, 1))
    ):
        first, last = chunk[0].isoformat(), chunk[-1].isoformat()
        partition = {"partition_key": first} if len(chunk) == 1 else {}
        range_tags = {} if partition else {RANGE_START_TAG: first, RANGE_END_TAG: last}
        result = history.execute_in_process(
            run_config=config,
            instance=instance,
            raise_on_error=False,
            tags=tags | range_tags,
            **partition,
        )
        failure = run_failure(result, warehouse)
        if failure:
            done = f" ({len(report.runs)} earlier dates kept)" if report.runs else ""
            span = first if len(chunk) == 1 else f"{first} .. {last}"
            raise BackfillFailed(f"{span}: {failure}{done}", failure.code)
        report.runs.update(dict.fromkeys(chunk, result.run_id))
        if on_chunk:
            on_chunk(chunk, result.run_id)
    report.per_date = _per_date(warehouse, start, end)
    return report


def _per_date(warehouse: Path, start: date, end: date) -> pl.DataFrame:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(
            """
            SELECT p.as_of_date, count(*) AS enrollments,
                   count(*) FILTER (p.risk_level = 'WARNING') AS warning,
                   count(*) FILTER (p.risk_level = 'DANGER') AS danger,
                   (SELECT count(*) FROM marts.risk_alerts a
                     WHERE a.as_of_date = p.as_of_date) AS alerts
            FROM marts.lecture_progress_daily p
            WHERE p.as_of_date BETWEEN ? AND ?
            GROUP BY ALL ORDER BY 1
            """,
            [start, end],
        ).pl()


# --------------------------------------------------------------------------------------------
# Alerts: stored (per history date) and on the fly (for a `progress run`)
# --------------------------------------------------------------------------------------------


@dataclass
class AlertsSummary:
    """Alerts of one date (or one run's instant) and what they were compared with."""

    as_of: datetime
    previous: datetime
    alerts: pl.DataFrame  # RISK_ALERT_COLUMNS

    @property
    def counts(self) -> dict[str, int]:
        found = dict(self.alerts.group_by("risk_level").len().iter_rows())
        return {level: int(found.get(level, 0)) for level in FLAGGED_LEVELS}


def alerts_summary(
    warehouse: Path, as_of: datetime, thresholds: RiskThresholds | None = None
) -> AlertsSummary:
    """Who rose between the end of the previous day and `as_of` (e.g. a run's instant),
    computed from the warehouse's raw tables (read-only), one academy bucket at a time. For
    as_of = D 23:59:59 this equals the stored marts.risk_alerts of D.

    When the published marts were computed as of `as_of` (the run that just published), their
    lecture_progress is the current side: only the previous day is computed, and only for the
    enrollments at risk now."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return alerts_from(con, as_of, thresholds)


def alerts_from(
    con: duckdb.DuckDBPyConnection, as_of: datetime, thresholds: RiskThresholds | None = None
) -> AlertsSummary:
    """`alerts_summary` over an open connection (a warehouse file, or the lake at the
    snapshot a run published)."""
    thresholds = thresholds or RiskThresholds()
    current = None
    published = (
        con.execute(
            "SELECT as_of FROM marts.publication WHERE marts_refreshed "
            "ORDER BY published_at DESC LIMIT 1"
        ).fetchone()
        if table_exists(con, "marts.publication")
        else None
    )
    if published and published[0] == as_of and table_exists(con, "marts.lecture_progress"):
        current = con.execute(
            "SELECT * FROM marts.lecture_progress WHERE risk_level <> 'NORMAL'"
        ).pl()
    return summarize_alerts(con, as_of, alerts_in_buckets(con, as_of, thresholds, current))


def summarize_alerts(
    con: duckdb.DuckDBPyConnection, as_of: datetime, alerts: pl.DataFrame
) -> AlertsSummary:
    """Alerts as of `as_of` (computed elsewhere: by `alerts_in_buckets`, or by a lake run's
    bucket steps) with their lecture titles from `con`."""
    previous = end_of_day(as_of.date() - timedelta(days=1))
    ordered = alerts.sort(AS_OF_DATE, "enrollment_id")
    return AlertsSummary(as_of=as_of, previous=previous, alerts=with_titles(con, ordered))


def with_titles(con: duckdb.DuckDBPyConnection, alerts: pl.DataFrame) -> pl.DataFrame:
    """The alerts with their lecture's title (raw.lectures; null when it has none)."""
    titles = con.execute("SELECT lecture_id, title AS lecture_title FROM raw.lectures").pl()
    return alerts.join(
        titles.cast({"lecture_id": alerts.schema["lecture_id"]}), on="lecture_id", how="left"
    )


def stored_alerts(warehouse: Path, day: date | None = None) -> AlertsSummary:
    """marts.risk_alerts of `day` (default: the latest date of the daily history); a date
    of the history without alerts gives none, not an error."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        dates = stored_dates(con, DAILY_TABLE)
        if not dates:
            raise BackfillFailed(
                f"no history in {warehouse} yet: run `progress backfill` or the daily schedule"
            )
        day = day or dates[-1]
        if day not in dates:
            raise BackfillFailed(
                f"no history for {day} in {warehouse} (stored: {dates[0]} .. {dates[-1]}, "
                f"{len(dates)} dates)"
            )
        alerts = with_titles(con, read_dates(con, ALERTS_TABLE, [day]))
    return AlertsSummary(
        as_of=end_of_day(day), previous=end_of_day(day - timedelta(days=1)), alerts=alerts
    )
