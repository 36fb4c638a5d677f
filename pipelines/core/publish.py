"""Publishing the warehouse so readers are never blocked and never see a half-made state.

DuckDB allows one read-write process or many read-only ones on a file, never both. So a run
never writes the file readers open: it takes the writer lock, copies the published file to a
staging file beside it, writes every table there, and at the end renames the staging file over
the published one (an atomic rename on the same file system). Readers attach the published
file read-only and see either the previous publication or the new one, whole.

Only a run that succeeded publishes (every step done, every gate passed; the resource decides,
see `pipelines.resources.WarehouseResource`). Any other run's build is moved aside as the
*rejected build* (`warehouse.rejected.duckdb`, `reject`), with a `marts.rejection` row saying
why, for `progress` commands and analysts to inspect; the next rejected build replaces it and
the next publication removes it (it then describes an older state than the published one).

The published file cannot change under readers: a run refuses to start or to swap while
another program holds the published file read-write (`WarehouseHeld`), and a write-ahead log
beside it that no run wrote (left by such a program killed before its checkpoint) is renamed
aside, loudly, never copied nor left to be replayed onto the new file by its readers.

The warehouse path is resolved (symlinks followed) before the lock, staging and rejected paths
are derived from it (`pipelines.core.paths.resolve_warehouse`).

A run killed at any instant leaves the published file untouched; its staging file is discarded
by the next run, and the kernel releases its lock.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import polars as pl
from filelock import FileLock, Timeout

from .paths import rejected_path, resolve_warehouse
from .warehouse import TableDoc, document_table, table_rows, transaction

PUBLICATION_TABLE = "marts.publication"
PUBLICATION_DDL = f"""
CREATE TABLE IF NOT EXISTS {PUBLICATION_TABLE} (
    run_id VARCHAR,
    published_at TIMESTAMP,
    as_of TIMESTAMP,
    marts_refreshed BOOLEAN,
    table_rows VARCHAR,
    content_hashes VARCHAR
)"""
PUBLICATION_DOC = TableDoc(
    "One row per publication of this warehouse file, newest last: which run published it, "
    "as of when its marts were computed, and the row counts and content hashes of its tables.",
    {
        "run_id": "Dagster run id that published this file.",
        "published_at": "Wall-clock time (UTC) of the atomic swap.",
        "as_of": "The as-of instant (local time) of the marts in this publication.",
        "marts_refreshed": "False when the run did not compute the current marts (a history-only "
        "run) and kept the previous ones.",
        "table_rows": "JSON object: table -> row count at publication.",
        "content_hashes": "JSON object: mart -> order-independent content hash (same extracts and "
        "as-of give the same hash).",
    },
)
REJECTION_TABLE = "marts.rejection"


class WriterBusy(Exception):
    """Another run holds the writer lock longer than we were willing to wait."""


class WarehouseHeld(Exception):
    """Another program holds the published file read-write; the message is one line."""


class PublishFailed(Exception):
    """The build could not be published; the message is one line for the user."""


def staging_path(warehouse: Path) -> Path:
    warehouse = resolve_warehouse(warehouse)
    return warehouse.with_name(warehouse.name + ".building")


def lock_path(warehouse: Path) -> Path:
    warehouse = resolve_warehouse(warehouse)
    return warehouse.with_name(warehouse.name + ".lock")


def wal_path(database: Path) -> Path:
    """DuckDB's write-ahead log of a database file."""
    return database.with_name(database.name + ".wal")


def writer_lock(warehouse: Path, timeout: float) -> FileLock:
    """The one-writer lock of a warehouse (released by the kernel if the holder dies)."""
    warehouse = resolve_warehouse(warehouse)
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(lock_path(warehouse)), timeout=timeout)


def acquire(lock: FileLock, warehouse: Path, timeout: float) -> None:
    try:
        lock.acquire(timeout=timeout)
    except Timeout:
        raise WriterBusy(
            f"another run is writing {warehouse} (lock {lock_path(warehouse)} held for more "
            f"than {timeout:.0f} s); try again when it finishes"
        ) from None


def disk_full(error: BaseException | str) -> bool:
    """Whether an error (an OSError, or DuckDB's text for one) is a full disk."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return "no space left on device" in str(error).lower()


def disk_full_message(warehouse: Path) -> str:
    return f"disk full while writing {resolve_warehouse(warehouse).parent}"


def read_write_holder(warehouse: Path) -> str | None:
    """The program holding the published file read-write ("process 123"), or None.

    DuckDB takes a shared file lock for read-only connections and an exclusive one for a
    read-write connection, so a read-only open fails exactly while such a holder exists."""
    if not warehouse.exists():
        return None
    try:
        duckdb.connect(str(warehouse), read_only=True).close()
    except duckdb.IOException as exc:
        text = str(exc)
        if "lock" not in text.lower():
            raise
        found = re.search(r"PID (\d+)", text)
        return f"process {found.group(1)}" if found else "another program"
    return None


def guard_published(warehouse: Path, run_id: str = "") -> Path | None:
    """Before a run copies the published file, and again before it replaces it.

    Refuse (WarehouseHeld) while another program holds it read-write: its changes live in a
    write-ahead log beside the file, which DuckDB would replay onto the new publication for
    every reader. A log left without a holder (the program was killed before it checkpointed)
    is renamed aside to `<warehouse>.wal.stale-<run>`; the path is returned so the run can say
    so. Neither is ever copied into a build nor published."""
    holder = read_write_holder(warehouse)
    if holder is not None:
        raise WarehouseHeld(
            f"{warehouse} is open read-write by {holder}; close it (readers open the warehouse "
            "read-only, e.g. `duckdb -readonly`) and run again"
        )
    wal = wal_path(warehouse)
    if not wal.exists():
        return None
    aside = wal.with_name(f"{wal.name}.stale-{run_id[:8] or 'run'}")
    os.replace(wal, aside)
    return aside


def stale_log(warehouse: Path, run_id: str) -> Path | None:
    """The write-ahead log this run set aside (see `guard_published`), if any."""
    aside = wal_path(resolve_warehouse(warehouse)).with_name(
        f"{resolve_warehouse(warehouse).name}.wal.stale-{run_id[:8] or 'run'}"
    )
    return aside if aside.exists() else None


def stale_log_warning(warehouse: Path, aside: Path) -> str:
    return (
        f"a write-ahead log no run wrote was beside {warehouse} (a program opened it "
        f"read-write and was stopped before saving): set aside as {aside.name}, not "
        "published; open the warehouse read-only"
    )


def _remove(path: Path) -> None:
    for candidate in (path, wal_path(path)):
        candidate.unlink(missing_ok=True)


def begin_staging(warehouse: Path, run_id: str = "") -> Path | None:
    """A fresh staging copy of the published file (stale ones from killed runs discarded).

    Returns the stale write-ahead log set aside, if any (see `guard_published`). The copy is
    made while a read-only connection holds DuckDB's shared lock, so no program can open the
    file read-write and change it halfway through the copy."""
    warehouse = resolve_warehouse(warehouse)
    staging = staging_path(warehouse)
    _remove(staging)
    aside = guard_published(warehouse, run_id)
    if warehouse.exists():
        try:
            with duckdb.connect(str(warehouse), read_only=True):
                clone_or_copy(warehouse, staging)
        except OSError as exc:
            _remove(staging)
            if disk_full(exc):
                raise PublishFailed(disk_full_message(warehouse)) from None
            raise
    return aside


FICLONE = 0x40049409  # linux/fs.h: _IOW(0x94, 9, int)


def clone_or_copy(source: Path, target: Path) -> bool:
    """Copy `source` to `target`: a copy-on-write clone where the file system has one (XFS,
    btrfs: no bytes copied, the run then pays only for the blocks it changes), else a byte
    copy (ext4: the copy reads and writes the whole file). True when cloned."""
    try:
        with open(source, "rb") as src, open(target, "wb") as dst:
            fcntl.ioctl(dst.fileno(), FICLONE, src.fileno())
        return True
    except OSError as exc:
        if exc.errno not in (
            errno.EOPNOTSUPP,
            errno.EXDEV,
            errno.EINVAL,
            errno.ENOTTY,
            errno.EBADF,
        ):
            target.unlink(missing_ok=True)
            raise
    shutil.copyfile(source, target)
    return False


def discard_staging(warehouse: Path) -> None:
    _remove(staging_path(warehouse))


def reject(warehouse: Path, run_id: str, cause: str, build: Path | None = None) -> Path | None:
    """Keep this run's build for inspection instead of publishing it: rename the staging file
    (or `build`, a lake run's own build file) to the rejected build (replacing an older one)
    and record why in `marts.rejection`."""
    warehouse = resolve_warehouse(warehouse)
    staging, rejected = build or staging_path(warehouse), rejected_path(warehouse)
    if not staging.exists():
        return None
    _remove(rejected)
    os.replace(staging, rejected)
    if wal_path(staging).exists():
        os.replace(wal_path(staging), wal_path(rejected))
    # e.g. the disk is full: the build stays, without its cause
    with contextlib.suppress(duckdb.Error, OSError), duckdb.connect(str(rejected)) as con:
        con.execute("CREATE SCHEMA IF NOT EXISTS marts")
        con.execute(
            f"CREATE OR REPLACE TABLE {REJECTION_TABLE} (run_id VARCHAR, "
            "rejected_at TIMESTAMP, cause VARCHAR)"
        )
        con.execute(
            f"INSERT INTO {REJECTION_TABLE} VALUES (?, ?, ?)",
            [run_id, datetime.now(UTC).replace(tzinfo=None), cause],
        )
    return rejected


def rejection(warehouse: Path) -> dict | None:
    """The rejected build beside the warehouse: {path, run_id, rejected_at, cause}, or None
    when there is none (the last run published, or no run was ever rejected)."""
    rejected = rejected_path(warehouse)
    if not rejected.exists():
        return None
    found: dict = {"path": rejected, "run_id": None, "rejected_at": None, "cause": None}
    with contextlib.suppress(duckdb.Error):
        with duckdb.connect(str(rejected), read_only=True) as con:
            row = con.execute(
                f"SELECT run_id, rejected_at, cause FROM {REJECTION_TABLE}"
            ).fetchone()
        if row:
            found |= dict(zip(("run_id", "rejected_at", "cause"), row, strict=True))
    return found


def content_hash(frame: pl.DataFrame) -> str:
    """Order-independent hash of a table's content (same rows in any order, same hash)."""
    if frame.is_empty():
        return "0" * 16
    frame = frame.select(sorted(frame.columns))
    parts = frame.select(pl.struct(pl.all()).hash(seed=0).alias("h")).select(
        (pl.col("h") & 0xFFFFFFFF).sum().alias("low"),  # split so the sums cannot overflow
        (pl.col("h") // 2**32).sum().alias("high"),
    )
    low, high = int(parts["low"][0]), int(parts["high"][0])
    return f"{((high << 32) + low) % 2**64:016x}"


def add_hashes(a: str, b: str) -> str:
    """Content hashes are sums of row hashes, so the hash of a union is the sum."""
    return f"{(int(a, 16) + int(b, 16)) % 2**64:016x}"


@dataclass
class Publication:
    run_id: str
    as_of: datetime | None
    marts_refreshed: bool
    content_hashes: dict[str, str]


def publish(warehouse: Path, publication: Publication, run_id: str = "") -> dict[str, int]:
    """Record the publication in the staging file, then atomically swap it into place.

    Raises WarehouseHeld (another program holds the published file read-write) or
    PublishFailed (e.g. the disk is full) with the published file untouched."""
    warehouse = resolve_warehouse(warehouse)
    staging = staging_path(warehouse)
    try:
        rows = _record(staging, publication)
        if wal_path(staging).exists():  # the checkpoint did not complete
            raise PublishFailed(f"the build of {warehouse} could not be completed")
        with open(staging, "rb") as handle:  # durable before it becomes visible
            os.fsync(handle.fileno())
    except (OSError, duckdb.Error) as exc:
        if disk_full(exc):
            raise PublishFailed(disk_full_message(warehouse)) from None
        raise
    guard_published(warehouse, run_id or publication.run_id)
    os.replace(staging, warehouse)
    directory = os.open(warehouse.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    _remove(rejected_path(warehouse))  # it described a state older than this publication
    return rows


def _record(staging: Path, publication: Publication) -> dict[str, int]:
    with duckdb.connect(str(staging)) as con:
        with transaction(con):
            con.execute("CREATE SCHEMA IF NOT EXISTS marts")
            con.execute(PUBLICATION_DDL)
            document_table(con, PUBLICATION_TABLE, PUBLICATION_DOC)
            previous = con.execute(
                f"SELECT as_of, content_hashes FROM {PUBLICATION_TABLE} "
                "ORDER BY published_at DESC LIMIT 1"
            ).fetchone()
            as_of, hashes = publication.as_of, publication.content_hashes
            if not publication.marts_refreshed and previous:  # the marts are the previous ones
                as_of, hashes = previous[0], json.loads(previous[1] or "{}")
            rows = table_rows(con)
            rows[PUBLICATION_TABLE] = rows.get(PUBLICATION_TABLE, 0) + 1
            con.execute(
                f"INSERT INTO {PUBLICATION_TABLE} VALUES (?, now()::TIMESTAMP, ?, ?, ?, ?)",
                [
                    publication.run_id,
                    as_of,
                    publication.marts_refreshed,
                    json.dumps(rows, sort_keys=True),
                    json.dumps(hashes, sort_keys=True),
                ],
            )
        con.execute("CHECKPOINT")
    return rows
