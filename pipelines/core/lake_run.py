"""The lake publish step's pieces: which tables a publication carries, their docs, staging
the tables the bucket steps do not split, and the ONE lake transaction that registers every
staged file (`register`).

The fan-out (`fanout.py`) stages the marts and the raw tables keyed by enrollment one file per
academy bucket, rows sorted by academy; the publish step (pipelines/lake_steps.py) stages
the rest here whole (the quarantine tables keep the delivered text, the reference, audit,
label and evaluation tables are small), creates the missing lake tables from the staged
column types with the build's comments, and registers everything with the
`marts.publication` row (run id, as-of, row counts, content hashes) and the snapshot's
commit message. A blocked or failed run never gets here, so it publishes nothing to the lake.
The engine's internal tables (`engine.*`) and the analyst views are not published
(docs/lake.md).

No Dagster here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime

import duckdb
import polars as pl

from . import lake
from .publish import PUBLICATION_TABLE, content_hash
from .views import create_views
from .warehouse import BUILDING_PREFIX, TableDoc, target

PUBLISHED_SCHEMAS = ("raw", "quarantine", "marts")
# the tables the analyst views read (pipelines/core/views.py)
VIEW_INPUTS = {
    "marts.lecture_progress",
    "marts.session_progress",
    "marts.risk_log",
    "marts.clinic_links",
    "marts.dim_labels",
    "raw.lectures",
    "raw.sessions",
}


def lake_tables(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The tables the attached lake has, `schema.table`."""
    return [
        f"{s}.{t}"
        for s, t in con.execute(
            "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = ?",
            [lake.LAKE],
        ).fetchall()
    ]


@dataclass
class LakePublication:
    """What one publication registered: its snapshot, files and per-table figures."""

    snapshot: int
    run_id: str
    files: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    hashes: dict[str, str] = field(default_factory=dict)


def published_tables(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Every table a publication carries, `schema.table`, in name order."""
    rows = con.execute(
        "SELECT schema_name, table_name FROM duckdb_tables() "
        "WHERE database_name = current_database() AND schema_name IN "
        f"({', '.join('?' for _ in PUBLISHED_SCHEMAS)}) ORDER BY 1, 2",
        list(PUBLISHED_SCHEMAS),
    ).fetchall()
    return [  # a bucketed write's side table is never published (warehouse.building)
        f"{s}.{t}"
        for s, t in rows
        if f"{s}.{t}" != PUBLICATION_TABLE and not t.startswith(BUILDING_PREFIX)
    ]


def table_docs(con: duckdb.DuckDBPyConnection, tables: list[str]) -> dict[str, TableDoc]:
    """The comments of `tables` in the build, as the docs the lake tables get."""
    docs: dict[str, TableDoc] = {}
    for qualified in tables:
        schema, table = qualified.split(".")
        (description,) = con.execute(
            "SELECT comment FROM duckdb_tables() WHERE database_name = current_database() "
            "AND schema_name = ? AND table_name = ?",
            [schema, table],
        ).fetchone()
        columns = con.execute(
            "SELECT column_name, comment FROM duckdb_columns() WHERE database_name = "
            "current_database() AND schema_name = ? AND table_name = ? AND comment IS NOT NULL",
            [schema, table],
        ).fetchall()
        docs[qualified] = TableDoc(description or "", dict(columns))
    return docs


def stage_whole(
    con: duckdb.DuckDBPyConnection, config: lake.LakeConfig, run_id: str, tables: list[str]
) -> tuple[dict[str, list[str]], dict[str, int], dict[str, str], dict[str, pl.Schema]]:
    """Stage each of `tables` of the build as one file (the tables the bucket steps do not
    split: references, quarantine, audit, labels, evaluation): (files, rows, content hashes,
    schemas) per table."""
    staged: dict[str, list[str]] = {}
    rows: dict[str, int] = {}
    hashes: dict[str, str] = {}
    schemas: dict[str, pl.Schema] = {}
    for qualified in tables:
        frame = con.execute(f"SELECT * FROM {target(qualified)}").pl()
        schemas[qualified], rows[qualified] = frame.schema, frame.height
        hashes[qualified], staged[qualified] = content_hash(frame), []
        if frame.height:
            path = lake.stage_path(config, run_id, qualified, 0)
            lake.write_staged(frame, path, config)
            staged[qualified].append(path)
    return staged, rows, hashes, schemas


def register(
    config: lake.LakeConfig,
    staged: dict[str, list[str]],
    rows: dict[str, int],
    hashes: dict[str, str],
    schemas: dict[str, pl.Schema],
    docs: dict[str, TableDoc],
    run_id: str,
    as_of: datetime | None,
    marts_refreshed: bool = True,
    replace_where: dict[str, tuple[str, list]] | None = None,
    stage_id: str | None = None,
) -> LakePublication:
    """Create the missing lake tables and register every staged file in ONE `lake.publish`
    transaction, with the `marts.publication` row and the snapshot's commit message
    (`replace_where`: tables of which only some rows are replaced, see `lake.publish`)."""
    writer = lake.connect(config)
    try:
        lake.ensure_schema(writer, schemas, docs)
        if set(lake_tables(writer)) >= VIEW_INPUTS:
            # the analyst views, recreated from this code's SQL (their column docs stay in
            # docs/analyst-guide.md: DuckLake refuses comments on a view's columns)
            create_views(writer, count=False, column_comments=False)
        row = {
            "run_id": run_id,
            "as_of": as_of,
            "marts_refreshed": marts_refreshed,
            "table_rows": json.dumps(rows, sort_keys=True),
            "content_hashes": json.dumps(hashes, sort_keys=True),
        }
        as_of_text = as_of.isoformat(sep=" ") if as_of else "-"
        message = f"progress run {run_id} as of {as_of_text}"
        snapshot = lake.publish(
            writer, staged, schemas, docs, row, message, replace_where, stage_id
        )
    finally:
        writer.close()
    files = sum(len(f) for f in staged.values())
    return LakePublication(snapshot, run_id, files, rows, hashes)


def snapshot_of(
    con: duckdb.DuckDBPyConnection, run_id: str | None = None, stage_id: str | None = None
) -> int | None:
    """The last kept snapshot that published run `run_id`, or that registered the files staged
    under `stage_id` (the root run id: a publish step re-executed after its commit publishes
    nothing itself); None when none is kept."""
    kept = lake.snapshots(con)
    found = kept.filter(
        pl.any_horizontal(
            [pl.col(c) == v for c, v in (("run_id", run_id), ("stage_id", stage_id)) if v]
            or [pl.lit(False)]
        )
    )
    return int(found["snapshot_id"][-1]) if found.height else None


def run_snapshot(config: lake.LakeConfig, run_id: str, stage_id: str | None = None) -> int | None:
    """`snapshot_of` run `run_id` or staging `stage_id` (default: the run's own id), read-only."""
    with lake.connect(config, read_only=True) as con:
        return snapshot_of(con, run_id, stage_id or run_id)


def staged_snapshot(config: lake.LakeConfig, stage_id: str) -> int | None:
    """`snapshot_of` staging `stage_id` (a publish step killed after its commit, then
    re-executed)."""
    with lake.connect(config) as con:  # not read-only: a first publication creates the lake
        return snapshot_of(con, stage_id=stage_id)
