"""Run the job the definitions define, as one in-process Dagster run, and summarize it.

Used by `progress run`: `progress_job` from `pipelines.definitions.defs` (the same job the UI
shows), with run config giving its resources the landing folder, the warehouse and the as-of
instant, recorded in the instance at DAGSTER_HOME when that is set (so it shows in the UI).

The as-of is fixed once, before Dagster starts, and handed to the run as config: the instant
printed, `marts.publication.as_of`, every mart's `calculated_at` and the printed alerts are one
value. (A resource object copied in the runner never reaches the assets: Dagster rebuilds each
resource from its config.)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pipelines.core.landing import LANDING_FILE, LandingFileInvalid, recorded_as_of
from pipelines.exit_codes import CommandFailed, ExitCode, Interrupted

JOB_NAME = "progress_job"
LAKE_JOB_NAME = "lake_job"
DEFAULT_TIMEZONE = "Asia/Seoul"  # = pipelines.resources.DEFAULT_TIMEZONE (not imported: Dagster)
# error classes that mean the run was interrupted (Ctrl-C, SIGTERM) rather than failed
INTERRUPT_ERRORS = {"DagsterExecutionInterruptedError", "KeyboardInterrupt", "Interrupted"}


class RunFailed(CommandFailed):
    """The run did not publish; the message is the one line shown to the user."""

    def __init__(self, message: str, code: ExitCode = ExitCode.INTERNAL) -> None:
        super().__init__(message, code)


@dataclass
class RunReport:
    run_id: str
    as_of: datetime
    table_rows: dict[str, int] = field(default_factory=dict)
    quarantine_reasons: dict[str, dict[str, int]] = field(default_factory=dict)
    refused_files: list[str] = field(default_factory=list)
    risk_levels: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    ledger: list[dict] = field(default_factory=list)
    publication: dict = field(default_factory=dict)
    snapshot: int | None = None  # the lake backend: the snapshot this run published
    alerts: object = None  # the lake backend: the alerts its bucket steps computed (a frame)


def check_timezone(timezone: str) -> None:
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise RunFailed(
            f"--timezone {timezone!r} is not a time zone (e.g. Asia/Seoul)", ExitCode.USAGE
        ) from None


def resolve_as_of(
    as_of: str | datetime | None, landing: Path, timezone: str
) -> tuple[datetime, str]:
    """The run's as-of (naive local time, whole seconds unless given finer) and where it came
    from: `--as-of`, the landing folder's recorded as-of (`_landing.json`), or now."""
    from pipelines.core.parse import parse_instant

    check_timezone(timezone)
    source = "--as-of"
    if as_of is None or (isinstance(as_of, str) and not as_of.strip()):
        try:
            as_of, source = recorded_as_of(landing), f"{landing / LANDING_FILE}"
        except LandingFileInvalid as exc:
            raise RunFailed(str(exc), ExitCode.USAGE) from None
    if as_of is None:
        now = datetime.now(ZoneInfo(timezone)).replace(tzinfo=None, microsecond=0)
        return now, "now"
    try:
        return parse_instant(as_of, timezone), source
    except ValueError as exc:
        raise RunFailed(f"{source}: {exc}", ExitCode.USAGE) from None


def check_landing(landing: Path) -> None:
    from pipelines.core.contract import TABLES
    from pipelines.core.extracts import find_files

    if not landing.is_dir():
        raise RunFailed(f"landing folder {landing} does not exist", ExitCode.USAGE)
    if not any(find_files(landing, t) for t in TABLES):
        raise RunFailed(f"no extracts in landing folder {landing}", ExitCode.USAGE)


def dagster_instance():
    """The instance at DAGSTER_HOME (runs show in the UI), else a throwaway one."""
    import dagster as dg

    if os.environ.get("DAGSTER_HOME"):
        return dg.DagsterInstance.get()
    return dg.DagsterInstance.ephemeral()


def _root(error):
    while getattr(error, "cause", None) is not None:
        error = error.cause
    return error


def _root_message(error) -> str:
    """The innermost error's first line, without a `module.Class: ` prefix."""
    from pipelines.exit_codes import one_line

    error = _root(error)
    return one_line(Exception(error.message if error else "")) or "failed"


def _errors(result):
    for event in result.all_events:
        error = getattr(event.event_specific_data, "error", None)
        if error is not None:
            yield event, error


def run_failure(result, warehouse: Path | None = None) -> RunFailed | None:
    """Why a run did not publish, with its exit code: a failed ERROR check (BLOCKED), the
    writer lock not obtained or the warehouse held read-write by another program (BUSY), else
    the first error's root cause (INTERNAL; a full disk as `disk full while writing <dir>`).
    An interrupted run raises Interrupted."""
    import dagster as dg

    for _, error in _errors(result):
        chain = error
        while chain is not None:
            if chain.cls_name in INTERRUPT_ERRORS:
                raise Interrupted("the run was interrupted")
            chain = getattr(chain, "cause", None)
    for evaluation in result.get_asset_check_evaluations():
        if not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR:
            return RunFailed(
                evaluation.description or f"check {evaluation.check_name} failed", ExitCode.BLOCKED
            )
    for _, error in _errors(result):
        if _root(error).cls_name == "PublicationBlocked":  # the lake run's gate
            return RunFailed(_root_message(error), ExitCode.BLOCKED)
    for _, error in _errors(result):
        busy = _root(error).cls_name in ("WriterBusy", "WarehouseHeld")
        message = _root_message(error)
        if warehouse is not None:
            from pipelines.core.publish import disk_full, disk_full_message

            message = disk_full_message(warehouse) if disk_full(message) else message
        return RunFailed(message, ExitCode.BUSY if busy else ExitCode.INTERNAL)
    return None if result.success else RunFailed("the Dagster run failed")


def run_config(
    landing: Path,
    warehouse: Path,
    timezone: str,
    as_of: datetime | None = None,
    lock_timeout: float = 600.0,
    verbose: bool = False,
) -> dict:
    """Config of the definitions' resources for one run (overrides `.env`'s values)."""
    settings = {"landing_dir": str(landing), "timezone": timezone}
    if as_of is not None:
        settings["as_of"] = as_of.isoformat(sep=" ")
    store = {"path": str(warehouse), "lock_timeout_seconds": lock_timeout}
    return {
        "resources": {
            "settings": {"config": settings},
            "warehouse": {"config": store},
            "warehouse_reader": {"config": {"path": str(warehouse)}},
        },
        "loggers": {"console": {"config": {"log_level": "INFO" if verbose else "CRITICAL"}}},
    }


def job(name: str):
    """A job exactly as the definitions define it (the one the UI shows and launches)."""
    from pipelines.definitions import defs

    return defs.resolve_job_def(name)


def _summarize(report: RunReport, con) -> None:
    """The summary of the publication just made, from `con` (the file read-only, or the
    lake at the snapshot the run published)."""
    from pipelines.core.contract import TABLES
    from pipelines.core.warehouse import table_rows

    report.table_rows.update(table_rows(con))
    for table in TABLES:
        rows = con.execute(
            f"SELECT _reason, count(*) FROM quarantine.{table} GROUP BY 1 ORDER BY 1"
        ).fetchall()
        if rows:
            report.quarantine_reasons[table] = dict(rows)
    report.refused_files = [
        r[0]
        for r in con.execute(
            "SELECT refused_files FROM raw.ingest_audit WHERE refused_files IS NOT NULL"
        ).fetchall()
    ]
    report.ledger = (
        con.execute(
            "SELECT table_name, delivered_rows, used_rows, collapsed_duplicates, "
            "quarantined_rows FROM raw.ingest_audit ORDER BY table_name"
        )
        .pl()
        .to_dicts()
    )
    report.publication = (
        con.execute("SELECT * FROM marts.publication ORDER BY published_at DESC LIMIT 1")
        .pl()
        .to_dicts()[0]
    )
    report.risk_levels = dict(
        con.execute("SELECT risk_level, count(*) FROM marts.lecture_progress GROUP BY 1").fetchall()
    )


def lake_job(workers: int = 1):
    """lake_job as the definitions define it, run by the in-process executor (`workers` 1)
    or by the multiprocess executor with at most `workers` steps at once. Every step process
    of a multiprocess run rebuilds it by this function (`dg.build_reconstructable_job`)."""
    from pipelines import deploy
    from pipelines.definitions import build

    environ = dict(os.environ)
    environ[deploy.EXECUTOR_ENV] = "multiprocess" if workers > 1 else "in_process"
    environ[deploy.WORKERS_ENV] = str(workers)
    return build(environ).resolve_job_def(LAKE_JOB_NAME)


@contextmanager
def _instance_for(workers: int, scratch: Path):
    """The instance at DAGSTER_HOME; else a throwaway one: in memory for one worker, in a
    temporary folder (removed after the run) for several, whose processes share it."""
    import dagster as dg

    if os.environ.get("DAGSTER_HOME"):
        with dg.DagsterInstance.get() as instance:
            yield instance
    elif workers == 1:
        with dg.DagsterInstance.ephemeral() as instance:
            yield instance
    else:
        with (
            tempfile.TemporaryDirectory(prefix=".dagster-", dir=scratch) as home,
            dg.DagsterInstance.local_temp(home) as instance,
        ):
            yield instance


def _discard_run(warehouse: Path, lake, run_id: str) -> None:
    """After a failed lake run from the CLI (which never re-executes): its build folder and,
    in a local lake folder, the files it staged (on S3, `progress expire` deletes them)."""
    from pipelines.core import lake as lake_store
    from pipelines.resources import LakeResource

    folder = LakeResource(path=str(warehouse)).build_dir(run_id)
    shutil.rmtree(folder, ignore_errors=True)
    with contextlib.suppress(OSError):
        folder.parent.rmdir()  # only when no other run's build is there
    if not lake.on_s3:
        shutil.rmtree(Path(lake.root) / lake_store.STAGE / run_id, ignore_errors=True)


def run_lake(
    landing: Path,
    warehouse: Path,
    instant: datetime,
    timezone: str,
    lake,
    workers: int = 1,
    steps: int | None = None,
    verbose: bool = False,
    history_dates: list[str] | None = None,
    bucket_enrollments: int | None = None,
) -> RunReport:
    """Execute `lake_job` once (`workers` steps at once; with `history_dates`, those dates
    of the daily history too) and summarize its publication from the snapshot it made; raise
    RunFailed (with its exit code) or Interrupted."""
    import dagster as dg

    config = run_config(landing, warehouse, timezone, instant, verbose=verbose)
    lake_settings = {"path": str(warehouse), "lake_catalog": lake.catalog}
    lake_settings["lake_data_path"] = lake.data_path
    if steps:
        lake_settings["steps"] = steps
    config["resources"]["lake"] = {"config": lake_settings}
    if bucket_enrollments:  # the engine's bucket size (tests cut a small extract in several)
        config["resources"]["settings"]["config"]["bucket_enrollments"] = bucket_enrollments
    if history_dates:
        config["ops"] = {"lake_prepare": {"config": {"history_dates": list(history_dates)}}}
    job_ = dg.build_reconstructable_job(
        "pipelines.runner", "lake_job", reconstructable_args=(workers,)
    )
    tags = {
        "progress/as_of": instant.isoformat(sep=" "),
        "progress/landing": str(landing),
        "progress/trigger": "cli",
        "progress/workers": str(workers),
    }
    with (
        _instance_for(workers, warehouse.parent) as instance,
        dg.execute_job(job_, instance, run_config=config, tags=tags) as result,
    ):
        try:
            failure = run_failure(result, warehouse)
        except Interrupted:
            _discard_run(warehouse, lake, result.run_id)
            raise
        if failure:
            _discard_run(warehouse, lake, result.run_id)
            raise failure
        report = RunReport(run_id=result.run_id, as_of=instant)
        report.alerts = result.output_for_node("lake_publish")["alerts"]
    from pipelines.core.lake import connect
    from pipelines.core.lake_run import snapshot_of
    from pipelines.resources import LakeResource

    with contextlib.suppress(OSError):  # the builds folder, once no run's build is in it
        LakeResource(path=str(warehouse)).build_dir("x").parent.rmdir()
    with connect(lake, read_only=True) as con:
        report.snapshot = snapshot_of(con, report.run_id)
    with connect(lake, snapshot=report.snapshot) as con:
        _summarize(report, con)
    return report


def run_pipeline(
    landing: Path,
    warehouse: Path,
    as_of: str | datetime | None = None,
    timezone: str = DEFAULT_TIMEZONE,
    verbose: bool = False,
    lock_timeout: float = 600.0,
    on_event: Callable[[object], None] | None = None,
) -> RunReport:
    """Execute `progress_job` once; raise RunFailed (with its exit code) or Interrupted.

    `on_event(entry)` receives every Dagster event log entry of the run as it happens (the
    CLI's progress display). The lake backend runs `lake_job` instead (`run_lake`)."""
    instant = (
        as_of
        if isinstance(as_of, datetime) and as_of.tzinfo is None
        else (resolve_as_of(as_of, landing, timezone)[0])
    )
    check_landing(landing)
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    instance = dagster_instance()
    run_id = str(uuid.uuid4())
    if on_event is not None:
        instance.add_event_listener(run_id, on_event)
    result = job(JOB_NAME).execute_in_process(
        run_config=run_config(landing, warehouse, timezone, instant, lock_timeout, verbose),
        instance=instance,
        raise_on_error=False,
        run_id=run_id,
        tags={
            "progress/as_of": instant.isoformat(sep=" "),
            "progress/landing": str(landing),
            "progress/trigger": "cli",
        },
    )
    failure = run_failure(result, warehouse)
    if failure:
        raise failure
    report = RunReport(run_id=result.run_id, as_of=instant)
    report.warnings = [
        e.description or e.check_name for e in result.get_asset_check_evaluations() if not e.passed
    ]
    from pipelines.core.publish import stale_log, stale_log_warning

    aside = stale_log(warehouse, result.run_id)  # a write-ahead log no run wrote, set aside
    if aside is not None:
        report.warnings.append(stale_log_warning(warehouse, aside))
    import duckdb

    with duckdb.connect(str(warehouse), read_only=True) as con:
        _summarize(report, con)
    return report
