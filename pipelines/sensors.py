"""The sensors: `exports_after_publication` (an exports_job run after each successful
publishing run, at the end of this file) and the landing-folder sensor: a run of `daily_job`
when extract files are added, changed or removed, judged by content (SHA-256), never by
timestamps.

- Files considered: exactly those the contract reads (`find_files(landing, table)` for every
  table), so a `.tmp`/hidden file or an unrelated file never triggers a run.
- Cursor: JSON `{relative path: sha256}` of the files last acted on, stored by Dagster in the
  instance (so it survives restarts of `dagster dev` when DAGSTER_HOME is persistent). A tick
  whose files hash to the cursor does nothing.
- run_key: `landing-<sha256 of the cursor JSON>`, so the same set of file contents never launches
  twice, even if it comes back after a change (Dagster drops a request with a used run_key).
- The run: ingest, the current marts as of now, and yesterday's history partition (late events
  for yesterday update it).

Drop files atomically (write to a dot-file or another folder, then rename): a file hashed while
half-written triggers a run on the partial content, then another one once it is complete.
"""

import hashlib
import json
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg

from assets.history import HISTORY_TIMEZONE
from pipelines.core.contract import TABLES
from pipelines.core.extracts import find_files
from pipelines.jobs import daily_job, exports_job, lake_exports_job, lake_job, progress_job
from pipelines.lake_steps import PUBLISHED_BY
from pipelines.resources import ProgressSettings
from pipelines.schedules import daily_run_request, on_lake

MINIMUM_INTERVAL_SECONDS = 60


def file_sha256(path: Path) -> str:
    """Streaming sha256 of a file (hex)."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def landing_hashes(landing: Path) -> dict[str, str]:
    """{path relative to landing: sha256} of every file the contract reads, sorted by path."""
    hashes = {
        rel: file_sha256(path) for table in TABLES for rel, path in find_files(landing, table)
    }
    return dict(sorted(hashes.items()))


def cursor_text(hashes: dict[str, str]) -> str:
    return json.dumps(hashes, sort_keys=True, separators=(",", ":"))


def run_key_for(hashes: dict[str, str]) -> str:
    return "landing-" + hashlib.sha256(cursor_text(hashes).encode()).hexdigest()


def _previous(cursor: str | None) -> dict[str, str]:
    if not cursor:
        return {}
    try:
        loaded = json.loads(cursor)
    except json.JSONDecodeError:
        return {}  # an unreadable cursor: act as on a first tick
    return loaded if isinstance(loaded, dict) else {}


def _now() -> datetime:
    return datetime.now(ZoneInfo(HISTORY_TIMEZONE))


@dg.sensor(
    name="landing_sensor",
    job=lake_job if on_lake() else daily_job,  # the backend, as the code location loads
    minimum_interval_seconds=MINIMUM_INTERVAL_SECONDS,
    # Stopped until an operator starts it (Automation page): starting `dagster dev` must not
    # republish the warehouse from whatever folder `.env` points at.
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Launches daily_job (ingest, current marts, yesterday's history) when the "
    "content of the landing folder's extract files changes (SHA-256 per file). Stopped by "
    "default: start it on the Automation page once PROGRESS_LANDING is the real landing folder.",
)
def landing_sensor(context: dg.SensorEvaluationContext, settings: ProgressSettings):
    landing = settings.landing
    hashes = landing_hashes(landing)
    if not hashes:
        return dg.SkipReason(f"no extract files in {landing}")
    previous = _previous(context.cursor)
    if hashes == previous:
        return dg.SkipReason("extract files unchanged since the last run request")
    added = [p for p in hashes if p not in previous]
    changed = [p for p in hashes if p in previous and previous[p] != hashes[p]]
    removed = [p for p in previous if p not in hashes]
    context.log.info(
        f"landing {landing}: {len(added)} added, {len(changed)} changed, {len(removed)} removed"
    )
    run_key = run_key_for(hashes)
    request = daily_run_request(
        _now(),
        run_key=run_key,
        trigger="landing_sensor",
        extra_tags={
            "progress/landing_digest": run_key.removeprefix("landing-")[:16],
            "progress/landing_changes": f"+{len(added)} ~{len(changed)} -{len(removed)}",
        },
    )
    return dg.SensorResult(run_requests=[request], cursor=cursor_text(hashes))


@dg.run_status_sensor(
    name="exports_after_publication",
    run_status=dg.DagsterRunStatus.SUCCESS,
    monitored_jobs=[progress_job, daily_job],
    request_job=exports_job,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Launches exports_job (per-academy Parquet + CSV) when a run that publishes the "
    "warehouse succeeds.",
)
def exports_after_publication(context: dg.RunStatusSensorContext):
    """One exports run per successful publishing run (the run_key makes it at most one)."""
    return _exports_request(context)


@dg.run_status_sensor(
    name="lake_exports_after_publication",
    run_status=dg.DagsterRunStatus.SUCCESS,
    monitored_jobs=[lake_job],
    request_job=lake_exports_job,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Launches lake_exports_job (per-academy Parquet + CSV of that run's "
    "publication) when a lake_job run succeeds.",
)
def lake_exports_after_publication(context: dg.RunStatusSensorContext):
    """One export of each lake publication, pinned to the snapshot of the run that made it."""
    return _exports_request(context)


def _exports_request(context: dg.RunStatusSensorContext) -> dg.RunRequest:
    run = context.dagster_run
    return dg.RunRequest(run_key=f"exports-after-{run.run_id}", tags={PUBLISHED_BY: run.run_id})
