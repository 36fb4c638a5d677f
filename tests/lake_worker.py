"""A lake reader or publisher in its own process, for tests/test_lake.py (`python -m
tests.lake_worker read STOP_FILE` or `publish RUN_ID BUCKETS`); the lake comes from the
`PROGRESS_LAKE_*` environment variables, as a deployed process would get it."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import duckdb
import polars as pl

from pipelines.core import lake

TABLES = ("marts.a", "marts.b")  # every publication writes its run id into both


def frames(run_id: str, rows: int = 200, buckets: int = 2) -> dict[str, list[pl.DataFrame]]:
    """Per table, one frame per academy bucket, every row carrying `run_id`."""
    base = pl.DataFrame({"academy_id": pl.int_range(rows, eager=True) % 10}).with_columns(
        pl.lit(run_id).alias("run_id"),
        (pl.col("academy_id") * 1.5).alias("score"),
        pl.int_range(pl.len()).alias("enrollment_id"),
    )
    return {
        table: [base.filter(pl.col("academy_id") % buckets == b) for b in range(buckets)]
        for table in TABLES
    }


def schemas() -> dict[str, pl.Schema]:
    return {table: parts[0].schema for table, parts in frames("").items()}


def stage(config: lake.LakeConfig, run_id: str, buckets: int = 2) -> dict[str, list[str]]:
    staged: dict[str, list[str]] = {}
    for table, parts in frames(run_id, buckets=buckets).items():
        for b, frame in enumerate(parts):
            path = lake.stage_path(config, run_id, table, b)
            lake.write_staged(frame, path, config)
            staged.setdefault(table, []).append(path)
    return staged


def publish(
    con: duckdb.DuckDBPyConnection, config: lake.LakeConfig, run_id: str, buckets: int = 2
) -> int:
    staged = stage(config, run_id, buckets)
    return lake.publish(
        con, staged, schemas(), None, {"run_id": run_id}, f"test publication {run_id}"
    )


def read_once(con: duckdb.DuckDBPyConnection) -> set[str]:
    """The run ids one transaction sees in both tables and the last publication row."""
    con.execute("BEGIN TRANSACTION")
    try:
        seen = {
            r[0] for t in TABLES for r in con.execute(f"SELECT DISTINCT run_id FROM {t}").fetchall()
        }
        last = con.execute(
            "SELECT run_id FROM marts.publication ORDER BY published_at DESC LIMIT 1"
        ).fetchone()
        seen.add(last[0] if last else None)
    finally:
        con.execute("COMMIT")
    return seen


def read_loop(config: lake.LakeConfig, stop: Path) -> dict:
    con = lake.connect(config, read_only=True)
    reads, failed, mixed, runs, errors = 0, 0, 0, set(), []
    Path(str(stop) + ".ready").touch()
    while not stop.exists():
        reads += 1
        try:
            seen = read_once(con)
        except duckdb.Error as exc:
            failed += 1
            errors.append(str(exc).splitlines()[0])
            continue
        if len(seen) != 1:
            mixed += 1
        runs |= seen
        time.sleep(0.005)
    return {
        "reads": reads,
        "failed": failed,
        "mixed": mixed,
        "runs": sorted(map(str, runs)),
        "errors": errors[:3],
    }


def main(argv: list[str]) -> None:
    config = lake.LakeConfig.from_env()
    if argv[0] == "read":
        print(json.dumps(read_loop(config, Path(argv[1]))), flush=True)
    elif argv[0] == "publish":
        con = lake.connect(config)
        staged = stage(config, argv[1], int(argv[2]))
        print("staged", flush=True)  # the test kills it from here on: in or around publish
        snapshot = lake.publish(
            con, staged, schemas(), None, {"run_id": argv[1]}, f"killable {argv[1]}"
        )
        print("published", snapshot, flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
