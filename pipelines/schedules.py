"""The daily schedule: every morning, ingest the extracts, publish the current marts as of now,
and materialize yesterday's history partition, in one run of `daily_job`.

Time: 06:00 Asia/Seoul by default. Set `PROGRESS_SCHEDULE_CRON` (a cron string, evaluated in
Asia/Seoul, e.g. `30 5 * * *`) in the environment or in `.env`; it is read when the code
location loads (`dagster dev` start or "Reload" in the UI), since Dagster shows and ticks the
schedule from its definition.
"""

import os
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import dagster as dg

import assets
from assets.history import HISTORY_KEYS, HISTORY_START, HISTORY_TIMEZONE
from pipelines.jobs import daily_job, lake_job
from pipelines.resources import BACKEND_ENV
from pipelines.timing import CRON_ENV, DEFAULT_CRON


def previous_day_partition(when: datetime) -> str | None:
    """The history partition of the day before `when` (a Seoul day), or None when that day is
    before the first partition."""
    local = when.astimezone(ZoneInfo(HISTORY_TIMEZONE)) if when.tzinfo else when
    key = (local.date() - timedelta(days=1)).isoformat()
    return key if date.fromisoformat(key) >= date.fromisoformat(HISTORY_START) else None


def current_asset_keys() -> list[dg.AssetKey]:
    """Every asset except the history ones: what a run without a history date materializes."""
    history = set(HISTORY_KEYS.values())
    return [key for asset in assets.core_assets for key in asset.keys if key not in history]


def on_lake() -> bool:
    """PROGRESS_BACKEND=lake in the code location's environment: the daily runs are lake_job
    runs (docs/lake.md), read when the definitions load."""
    return os.environ.get(BACKEND_ENV, "").strip() == "lake"


def daily_run_request(
    when: datetime, run_key: str, trigger: str, extra_tags: dict[str, str] | None = None
) -> dg.RunRequest:
    """One run of daily_job: the current marts, plus yesterday's history partition (only the
    current marts on the first day, when yesterday is before the first partition). On the
    lake backend, one run of lake_job with yesterday as its history date."""
    tags = {"progress/trigger": trigger, **(extra_tags or {})}
    partition = previous_day_partition(when)
    if on_lake():
        dates = [partition] if partition else []
        config = {"ops": {"lake_prepare": {"config": {"history_dates": dates}}}}
        return dg.RunRequest(run_key=run_key, tags=tags, job_name=lake_job.name, run_config=config)
    if partition is None:
        return dg.RunRequest(run_key=run_key, tags=tags, asset_selection=current_asset_keys())
    return dg.RunRequest(run_key=run_key, partition_key=partition, tags=tags)


def build_daily_schedule(cron: str | None = None) -> dg.ScheduleDefinition:
    cron = cron or os.environ.get(CRON_ENV, "").strip() or DEFAULT_CRON

    @dg.schedule(
        name="daily_schedule",
        cron_schedule=cron,
        job=lake_job if on_lake() else daily_job,
        execution_timezone=HISTORY_TIMEZONE,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=(
            f"Every day at `{cron}` ({HISTORY_TIMEZONE}): ingest, publish the current marts as of "
            "now and yesterday's history partition (lecture_progress_daily, risk summary, "
            "alerts)."
        ),
    )
    def daily_schedule(context: dg.ScheduleEvaluationContext):
        when = context.scheduled_execution_time or datetime.now(ZoneInfo(HISTORY_TIMEZONE))
        local = when.astimezone(ZoneInfo(HISTORY_TIMEZONE))
        return daily_run_request(local, run_key=f"daily-{local:%Y-%m-%d}", trigger="schedule")

    return daily_schedule


daily_schedule = build_daily_schedule()
