"""Publishing the warehouse so readers are never blocked and never see a half-made state.

DuckDB allows one read-write process or many read-only ones on a file, never both. So a run
never writes the file readers open: it takes the writer lock, copies the published file to a
staging file beside it, writes every table there, and at the end renames the staging file over
the published one (an atomic rename on the same file system). Readers attach the published
file read-only and see either the previous publication or the new one, whole.

A run killed at any instant leaves the published file untouched; its staging file is discarded
by the next run, and the kernel releases its lock.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb
import polars as pl
from filelock import FileLock, Timeout

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
PUBLICATION_COMMENTS = {
    "": "One row per publication of this warehouse file, newest last: which run published it, "
    "as of when its marts were computed, and the row counts and content hashes of its tables.",
    "run_id": "Dagster run id that published this file.",
    "published_at": "Wall-clock time (UTC) of the atomic swap.",
    "as_of": "The as-of instant (local time) of the marts in this publication.",
    "marts_refreshed": "False when the marts were blocked (broken extract) and kept from the "
    "previous publication; raw and quarantine are always this run's.",
    "table_rows": "JSON object: table -> row count at publication.",
    "content_hashes": "JSON object: mart -> order-independent content hash (same extracts and "
    "as-of give the same hash).",
}


class WriterBusy(Exception):
    """Another run holds the writer lock longer than we were willing to wait."""


def staging_path(warehouse: Path) -> Path:
    return warehouse.with_name(warehouse.name + ".building")


def lock_path(warehouse: Path) -> Path:
    return warehouse.with_name(warehouse.name + ".lock")


def writer_lock(warehouse: Path, timeout: float) -> FileLock:
    """The one-writer lock of a warehouse (released by the kernel if the holder dies)."""
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


def _remove(path: Path) -> None:
    for candidate in (path, path.with_name(path.name + ".wal")):
        candidate.unlink(missing_ok=True)


def begin_staging(warehouse: Path) -> Path:
    """A fresh staging copy of the published file (stale ones from killed runs discarded)."""
    staging = staging_path(warehouse)
    _remove(staging)
    if warehouse.exists():
        shutil.copyfile(warehouse, staging)
    return staging


def discard_staging(warehouse: Path) -> None:
    _remove(staging_path(warehouse))


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


@dataclass
class Publication:
    run_id: str
    as_of: datetime | None
    marts_refreshed: bool
    content_hashes: dict[str, str]


def _table_rows(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    rows = {}
    for schema, table in con.execute(
        "SELECT schema_name, table_name FROM duckdb_tables() ORDER BY 1, 2"
    ).fetchall():
        rows[f"{schema}.{table}"] = con.execute(f'SELECT count(*) FROM "{schema}"."{table}"'
                                                ).fetchone()[0]
    return rows


def publish(warehouse: Path, publication: Publication) -> dict[str, int]:
    """Record the publication in the staging file, then atomically swap it into place."""
    staging = staging_path(warehouse)
    with duckdb.connect(str(staging)) as con:
        con.execute("BEGIN TRANSACTION")
        con.execute("CREATE SCHEMA IF NOT EXISTS marts")
        con.execute(PUBLICATION_DDL)
        for column, text in PUBLICATION_COMMENTS.items():
            target = f"COLUMN {PUBLICATION_TABLE}.{column}" if column else f"TABLE {PUBLICATION_TABLE}"
            con.execute(f"COMMENT ON {target} IS '{text.replace(chr(39), chr(39) * 2)}'")
        previous = con.execute(
            f"SELECT as_of, content_hashes FROM {PUBLICATION_TABLE} "
            "ORDER BY published_at DESC LIMIT 1"
        ).fetchone()
        as_of, hashes = publication.as_of, publication.content_hashes
        if not publication.marts_refreshed and previous:  # the marts are still the previous ones
            as_of, hashes = previous[0], json.loads(previous[1] or "{}")
        rows = _table_rows(con)
        rows[PUBLICATION_TABLE] = rows.get(PUBLICATION_TABLE, 0) + 1
        con.execute(
            f"INSERT INTO {PUBLICATION_TABLE} VALUES (?, now()::TIMESTAMP, ?, ?, ?, ?)",
            [publication.run_id, as_of, publication.marts_refreshed,
             json.dumps(rows, sort_keys=True), json.dumps(hashes, sort_keys=True)],
        )
        con.execute("COMMIT")
        con.execute("CHECKPOINT")
    with open(staging, "rb") as handle:  # durable before it becomes visible
        os.fsync(handle.fileno())
    os.replace(staging, warehouse)
    directory = os.open(warehouse.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return rows
