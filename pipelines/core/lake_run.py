"""Publishing a run's build to the lake: the lake backend's one publish step.

A lake run computes exactly as a file run does, in its private staging DuckDB file (the same
job, assets, engine and checks). When the run succeeded (the file backend's own judgement:
every step done, no gate failed), `publish_build` turns that build into one lake publication:

1. the academy bucket plan of the build (`engine.bucket_plan`, the one the marts used);
2. every published table (`raw.*`, `quarantine.*`, `marts.*` but `marts.publication`) staged
   as Parquet, one file per bucket per table, rows sorted by academy (`lake.stage_path`,
   `lake.write_staged`); a table without an integer `enrollment_id` or `academy_id` (the
   quarantine tables keep the delivered text, the reference and audit tables) is one file;
   rows that belong to no bucket go to one more file after the last bucket;
3. the missing lake tables created from the build's column types, with the build's comments;
4. ONE `lake.publish` transaction registering every file, with the `marts.publication` row
   (run id, as-of, row counts, content hashes of every table) and the snapshot's commit
   message.

A blocked or failed run never gets here, so it publishes nothing to the lake. The engine's
internal tables (`engine.*`) and the analyst views are not published (docs/lake.md).

No Dagster here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import duckdb
import polars as pl

from . import lake
from .bucket_store import read_pairs, read_plan
from .buckets import DEFAULT_BUCKET_ENROLLMENTS, Bucket, assign_buckets
from .engine import bucket_plan
from .publish import PUBLICATION_TABLE, add_hashes, content_hash
from .warehouse import BUILDING_PREFIX, TableDoc, target

PUBLISHED_SCHEMAS = ("raw", "quarantine", "marts")
INTEGER_TYPES = ("BIGINT", "INTEGER", "SMALLINT", "TINYINT", "HUGEINT")


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


def _types(con: duckdb.DuckDBPyConnection, qualified: str) -> dict[str, str]:
    schema, table = qualified.split(".")
    return dict(
        con.execute(
            "SELECT column_name, data_type FROM duckdb_columns() WHERE database_name = "
            "current_database() AND schema_name = ? AND table_name = ?",
            [schema, table],
        ).fetchall()
    )


def _bucket_column(con: duckdb.DuckDBPyConnection, qualified: str) -> tuple[str, str] | None:
    """(SQL join giving each row's bucket as `_b`, ORDER BY) for a table split by bucket, or
    None for a table staged whole."""
    types = _types(con, qualified)
    if types.get("enrollment_id") in INTEGER_TYPES:
        academy = "t.academy_id" if "academy_id" in types else "m._academy"
        order = f"{academy}, t.enrollment_id"
        return (
            f"FROM {target(qualified)} t LEFT JOIN _lake_members m USING (enrollment_id)",
            order,
        )
    if types.get("academy_id") in INTEGER_TYPES:
        return (
            f"FROM {target(qualified)} t LEFT JOIN _lake_academies m USING (academy_id)",
            "t.academy_id",
        )
    return None


def _prepare_members(con: duckdb.DuckDBPyConnection, plan: list[Bucket]) -> None:
    """Temporary tables: each valid enrollment's academy and bucket, each academy's first
    bucket (a split academy's rows without an enrollment go with its first piece)."""
    pairs = read_pairs(con)
    members = pairs.select(
        pl.col("enrollment_id"),
        pl.col("academy_id").alias("_academy"),
        assign_buckets(pairs, plan).alias("_b"),
    )
    con.register("_lake_members_frame", members.to_arrow())
    con.execute("CREATE OR REPLACE TEMP TABLE _lake_members AS FROM _lake_members_frame")
    con.unregister("_lake_members_frame")
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _lake_academies AS SELECT _academy AS academy_id, "
        "min(_b) AS _b FROM _lake_members GROUP BY 1"
    )


def stage_build(
    con: duckdb.DuckDBPyConnection,
    config: lake.LakeConfig,
    run_id: str,
    tables: list[str],
    plan: list[Bucket],
) -> tuple[dict[str, list[str]], dict[str, int], dict[str, str], dict[str, pl.Schema]]:
    """Stage every table of the build: (files, rows, content hashes, schemas) per table."""
    _prepare_members(con, plan)
    staged: dict[str, list[str]] = {}
    rows: dict[str, int] = {}
    hashes: dict[str, str] = {}
    schemas: dict[str, pl.Schema] = {}
    for qualified in tables:
        staged[qualified], rows[qualified] = [], 0
        hashes[qualified] = content_hash(pl.DataFrame())
        split = _bucket_column(con, qualified) if plan else None
        if split is None:
            parts = [(0, f"SELECT * FROM {target(qualified)}")]
        else:
            source, order = split
            parts = [
                (b.index, f"SELECT t.* {source} WHERE m._b = {b.index} ORDER BY {order}")
                for b in plan
            ]
            parts.append((len(plan), f"SELECT t.* {source} WHERE m._b IS NULL ORDER BY {order}"))
        for index, sql in parts:
            frame = con.execute(sql).pl()
            schemas.setdefault(qualified, frame.schema)
            if frame.is_empty():
                continue
            path = lake.stage_path(config, run_id, qualified, index)
            lake.write_staged(frame, path, config)
            staged[qualified].append(path)
            rows[qualified] += frame.height
            hashes[qualified] = add_hashes(hashes[qualified], content_hash(frame))
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
) -> LakePublication:
    """Create the missing lake tables and register every staged file in ONE `lake.publish`
    transaction, with the `marts.publication` row and the snapshot's commit message
    (`replace_where`: tables of which only some rows are replaced, see `lake.publish`)."""
    writer = lake.connect(config)
    try:
        lake.ensure_schema(writer, schemas, docs)
        row = {
            "run_id": run_id,
            "as_of": as_of,
            "marts_refreshed": marts_refreshed,
            "table_rows": json.dumps(rows, sort_keys=True),
            "content_hashes": json.dumps(hashes, sort_keys=True),
        }
        as_of_text = as_of.isoformat(sep=" ") if as_of else "-"
        message = f"progress run {run_id} as of {as_of_text}"
        snapshot = lake.publish(writer, staged, docs, row, message, replace_where)
    finally:
        writer.close()
    files = sum(len(f) for f in staged.values())
    return LakePublication(snapshot, run_id, files, rows, hashes)


def publish_build(
    build: Path,
    config: lake.LakeConfig,
    run_id: str,
    as_of: datetime | None,
    marts_refreshed: bool = True,
    target_enrollments: int = DEFAULT_BUCKET_ENROLLMENTS,
) -> LakePublication:
    """Stage the tables of the build file `build` and publish them to the lake in one
    transaction. Raises lake.PublicationConflict when another publisher committed first
    (nothing of this run is then published)."""
    with duckdb.connect(str(build)) as con:
        tables = published_tables(con)
        docs = table_docs(con, tables)
        plan = read_plan(con)  # the plan the run's ingest and marts used
        if plan is None:
            plan = bucket_plan(con, target_enrollments) if "raw.enrollments" in tables else []
        staged, rows, hashes, schemas = stage_build(con, config, run_id, tables, plan)
    return register(config, staged, rows, hashes, schemas, docs, run_id, as_of, marts_refreshed)


def publication_snapshot(con: duckdb.DuckDBPyConnection, run_id: str) -> int | None:
    """The snapshot that published run `run_id`, if still kept."""
    found = lake.snapshots(con).filter(pl.col("run_id") == run_id)
    return int(found["snapshot_id"][-1]) if found.height else None
