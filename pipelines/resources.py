"""Dagster resources: where the extracts land, how the marts are computed, and the warehouse."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import duckdb
from filelock import FileLock
from pydantic import PrivateAttr

from pipelines.core import publish
from pipelines.core.buckets import DEFAULT_BUCKET_ENROLLMENTS
from pipelines.core.marts import RiskThresholds
from pipelines.core.parse import parse_instant
from pipelines.core.paths import resolve_warehouse

DEFAULT_TIMEZONE = "Asia/Seoul"
BACKEND_ENV = "PROGRESS_BACKEND"
# Dagster concurrency pool of every asset that writes the warehouse (see dagster.yaml).
WAREHOUSE_POOL = "warehouse"


class ProgressSettings(dg.ConfigurableResource):
    """Landing folder, local time zone, as-of instant and risk thresholds of a run."""

    landing_dir: str = "data/landing"
    timezone: str = DEFAULT_TIMEZONE
    as_of: str = ""  # contract timestamp text; empty means "now" in `timezone`
    warning_streak: int = 2
    danger_streak: int = 3
    # enrollments per academy bucket of the engine (pipelines/core/buckets.py)
    bucket_enrollments: int = DEFAULT_BUCKET_ENROLLMENTS

    @property
    def landing(self) -> Path:
        return Path(self.landing_dir)

    def as_of_instant(self) -> datetime:
        """The run's as-of as naive local time (contract §3)."""
        if self.as_of.strip():
            return parse_instant(self.as_of, self.timezone)
        now = datetime.now(ZoneInfo(self.timezone)).replace(tzinfo=None)
        return now.replace(microsecond=now.microsecond)

    @property
    def thresholds(self) -> RiskThresholds:
        return RiskThresholds(warning=self.warning_streak, danger=self.danger_streak)


INTERRUPTED = "the run was interrupted; nothing published"
_INTERRUPTS = ("KeyboardInterrupt", "DagsterExecutionInterruptedError", "SystemExit", "Interrupted")


def _root_message(error, warehouse: Path | None = None) -> str:
    """The innermost error's first line, without a `module.Class: ` prefix; a full disk and
    an interrupt in the user's words."""
    while getattr(error, "cause", None) is not None:
        error = error.cause
    if error is not None and getattr(error, "cls_name", None) in _INTERRUPTS:
        return INTERRUPTED
    lines = [line for line in (error.message if error else "").splitlines() if line.strip()]
    message = lines[0].strip() if lines else "failed"
    if warehouse is not None and publish.disk_full(message):
        return publish.disk_full_message(warehouse)
    head, _, rest = message.partition(": ")
    return rest if rest and "." in head and " " not in head else message


def first_cause(events: Iterable[dg.DagsterEvent], warehouse: Path | None = None) -> str | None:
    """Why a run must not publish, from its events: the first failed check of ERROR severity
    (a gate), else the first error (a failed step, an interrupt, a resource that could not
    start). None when there is neither."""
    events = list(events)
    for event in events:
        if event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            evaluation = event.event_specific_data
            if not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR:
                return evaluation.description or f"check {evaluation.check_name} failed"
    for event in events:
        error = getattr(event.event_specific_data, "error", None)
        if error is not None:
            return _root_message(error, warehouse)
    return None


def run_outcome(context: dg.InitResourceContext, warehouse: Path) -> str | None:
    """None when the run succeeded so far: every step of its plan reported success and no
    check of ERROR severity failed; else the first cause in the user's words."""
    instance, run = context.instance, context.run
    if instance is None or run is None:  # used outside a run: nothing to judge
        return None
    events = [
        entry.dagster_event
        for entry in instance.all_logs(run.run_id)
        if entry.dagster_event is not None
    ]
    cause = first_cause(events, warehouse)
    if cause is not None:
        return cause
    planned = run.step_keys_to_execute
    if planned is None and run.execution_plan_snapshot_id:
        snapshot = instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
        planned = snapshot.step_keys_to_execute
    done = {e.step_key for e in events if e.event_type == dg.DagsterEventType.STEP_SUCCESS}
    unfinished = [key for key in planned or [] if key not in done]
    return f"step {unfinished[0]} did not finish; nothing published" if unfinished else None


def lake_config(catalog: str = "", data_path: str = ""):
    """The lake to publish to: `catalog` and `data_path` when given, else the environment's,
    with the S3 settings of the environment (never stored in run config)."""
    from pipelines.core.lake import ENV, LakeConfig

    environ = dict(os.environ)
    if catalog:
        environ[ENV + "CATALOG"] = catalog
    if data_path:
        environ[ENV + "DATA_PATH"] = data_path
    return LakeConfig.from_env(environ)


class WarehouseResource(dg.ConfigurableResource):
    """The DuckDB warehouse, written through a staging copy and published atomically, only
    when the run succeeded.

    For the whole run the resource holds the one-writer lock, and every connection it hands
    out is to the staging file. When the run ends, the resource reads the run's own event log
    (`run_outcome`): if every step of the run's plan succeeded and no check of ERROR severity
    failed (the quarantine gate, a refused file, a schema), it publishes what the run wrote with
    one rename and a `marts.publication` row. Otherwise (a failed or skipped step, a failed
    gate, an interrupt, a failure while publishing) the build is kept aside as the rejected
    build (`pipelines.core.publish.reject`) and the published file is not touched. Deciding in
    the resource rather than in a terminal asset covers every job and every UI selection that
    writes the warehouse (progress_job, daily_job, history_job, backfills), and checks that run
    after the last asset. Readers open `path` read-only at any time.
    """

    path: str
    lock_timeout_seconds: float = 600.0
    # DuckDB inside a run, set deliberately rather than left at "80% of RAM, every core": the
    # heavy lifting is in Polars, whose frames share the machine with DuckDB's buffer pool;
    # past the limit DuckDB spills to `<warehouse>.building.tmp/`, beside the file it writes.
    duckdb_memory_limit: str = "2GB"
    duckdb_threads: int = 2

    _lock: FileLock | None = PrivateAttr(default=None)
    _wrote: bool = PrivateAttr(default=False)
    _marts: publish.Publication | None = PrivateAttr(default=None)
    _run_id: str = PrivateAttr(default="")

    @property
    def published(self) -> Path:
        """The real warehouse file (symlinks resolved before any companion path is derived)."""
        return resolve_warehouse(self.path)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._run_id = context.run.run_id if context.run else ""
        self._lock = publish.writer_lock(self.published, self.lock_timeout_seconds)
        if context.log:
            context.log.info(f"waiting for the writer lock of {self.published}")
        publish.acquire(self._lock, self.published, self.lock_timeout_seconds)
        try:
            aside = publish.begin_staging(self.published, self._run_id)
        except BaseException:
            self._lock.release()
            raise
        if aside is not None and context.log:
            context.log.warning(publish.stale_log_warning(self.published, aside))

    @contextmanager
    def yield_for_execution(self, context: dg.InitResourceContext) -> Iterator[WarehouseResource]:
        self.setup_for_execution(context)
        completed = False
        try:
            yield self
            completed = True
        finally:
            self.finish(context, completed)

    def finish(self, context: dg.InitResourceContext, completed: bool) -> None:
        """Publish the build if the run succeeded, else keep it aside as the rejected build;
        always release the writer lock. A failure to publish is raised with one line."""
        try:
            cause = run_outcome(context, self.published) if completed else INTERRUPTED
            if cause is None and self._wrote:
                marts = self._marts or publish.Publication(self._run_id, None, False, {})
                try:
                    publish.publish(self.published, marts, self._run_id)
                except Exception as exc:  # the published file is untouched: keep the build
                    lines = str(exc).strip().splitlines() or [type(exc).__name__]
                    publish.reject(self.published, self._run_id, lines[0])
                    if context.log:
                        context.log.error(f"nothing published: {lines[0]}")
                    raise
            elif cause is None:
                publish.discard_staging(self.published)
            else:
                publish.reject(self.published, self._run_id, cause)
                if context.log:
                    context.log.error(f"nothing published: {cause}")
        finally:
            if self._lock is not None:
                self._lock.release()

    def _connect(self) -> duckdb.DuckDBPyConnection:
        return duckdb.connect(
            str(publish.staging_path(self.published)),
            config={"memory_limit": self.duckdb_memory_limit, "threads": self.duckdb_threads},
        )

    @contextmanager
    def get_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-write connection to this run's staging file."""
        self._wrote = True
        con = self._connect()
        try:
            yield con
        finally:
            con.close()

    @contextmanager
    def read_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection for checks that only read this run's staging file."""
        con = self._connect()
        try:
            yield con
        finally:
            con.close()

    def record_marts(self, as_of: datetime, hashes: dict[str, str]) -> None:
        """Note that this run refreshed the marts (as of `as_of`) for the publication row."""
        self._marts = publish.Publication(self._run_id, as_of, True, hashes)


class WarehouseReader(dg.ConfigurableResource):
    """Read-only access to the published warehouse, without the writer lock or a staging copy.

    For assets that only read what a run published (the exports): a run of them never waits
    for, nor blocks, a writer, and a writer's atomic swap never disturbs them (an open file
    keeps the publication it was opened on).
    """

    path: str

    @contextmanager
    def connection(self, staging: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """The published file read-only, or with `staging` this run's own staging file (the
        marts computed earlier in the same run, not yet published)."""
        published = resolve_warehouse(self.path)
        target = publish.staging_path(published) if staging else published
        if not target.exists():
            raise FileNotFoundError(f"warehouse {target} does not exist; run `progress run` first")
        con = duckdb.connect(str(target), read_only=True)
        try:
            yield con
        finally:
            con.close()


class LakeResource(dg.ConfigurableResource):
    """The lake run's settings (`lake_job`, pipelines/lake_steps.py): where its private build
    is made, the lake it publishes to, and into how many steps its buckets are cut.

    Unlike WarehouseResource it holds no state between steps: every step of a lake run may run
    in its own process (the multiprocess or Kubernetes executor) and reads what it needs from
    the run's build folder, keyed by the run's root run id (a re-execution finds the build of
    the run it re-executes)."""

    path: str  # the warehouse file: the builds live beside it, in `<stem>.lake-runs/`
    lake_catalog: str = ""
    lake_data_path: str = ""
    # Steps the buckets are cut into (contiguous buckets per step). A step in its own process
    # pays the imports (about 3 s measured here), so a few steps per worker, not one per bucket.
    steps: int = 8
    duckdb_memory_limit: str = "2GB"
    duckdb_threads: int = 2

    def lake_config(self):
        return lake_config(self.lake_catalog, self.lake_data_path)

    @property
    def warehouse(self) -> Path:
        return resolve_warehouse(self.path)

    def build_dir(self, root_run_id: str) -> Path:
        warehouse = self.warehouse
        return warehouse.with_name(f"{warehouse.stem}.lake-runs") / root_run_id

    @property
    def duckdb_config(self) -> dict:
        return {"memory_limit": self.duckdb_memory_limit, "threads": self.duckdb_threads}
