"""Dagster resources: where the extracts land, how the marts are computed, and the warehouse."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import duckdb
from filelock import FileLock
from pydantic import PrivateAttr

from pipelines.core import publish
from pipelines.core.marts import RiskThresholds
from pipelines.core.parse import parse_instant

DEFAULT_TIMEZONE = "Asia/Seoul"
# Dagster concurrency pool of every asset that writes the warehouse (see dagster.yaml).
WAREHOUSE_POOL = "warehouse"


class ProgressSettings(dg.ConfigurableResource):
    """Landing folder, local time zone, as-of instant and risk thresholds of a run."""

    landing_dir: str = "data/landing"
    timezone: str = DEFAULT_TIMEZONE
    as_of: str = ""  # contract timestamp text; empty means "now" in `timezone`
    warning_streak: int = 2
    danger_streak: int = 3
    # marts are computed this many enrollments at a time (bounds memory at ~1M enrollments)
    marts_bucket_enrollments: int = 100_000

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


class WarehouseResource(dg.ConfigurableResource):
    """The DuckDB warehouse, written through a staging copy and published atomically.

    For the whole run the resource holds the one-writer lock; every connection it hands out
    is to the staging file, and when the run ends whatever it wrote is published with one
    rename, with a `marts.publication` row. Readers open `path` read-only at any time.
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
        return Path(self.path)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._run_id = context.run.run_id if context.run else ""
        self._lock = publish.writer_lock(self.published, self.lock_timeout_seconds)
        if context.log:
            context.log.info(f"waiting for the writer lock of {self.published}")
        publish.acquire(self._lock, self.published, self.lock_timeout_seconds)
        publish.begin_staging(self.published)

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        try:
            if self._wrote:
                marts = self._marts or publish.Publication(self._run_id, None, False, {})
                publish.publish(self.published, marts)
            else:
                publish.discard_staging(self.published)
        finally:
            if self._lock is not None:
                self._lock.release()

    def _connect(self) -> duckdb.DuckDBPyConnection:
        return duckdb.connect(str(publish.staging_path(self.published)), config={
            "memory_limit": self.duckdb_memory_limit, "threads": self.duckdb_threads})

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
        published = Path(self.path)
        target = publish.staging_path(published) if staging else published
        if not target.exists():
            raise FileNotFoundError(f"warehouse {target} does not exist; run `progress run` first")
        con = duckdb.connect(str(target), read_only=True)
        try:
            yield con
        finally:
            con.close()
