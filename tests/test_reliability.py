"""Issue 4: readers during runs, one writer, idempotency (kills: test_publication_kills.py)."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import polars as pl
import pytest

from pipelines.core.publish import writer_lock
from pipelines.runner import RunFailed, run_pipeline
from tests.conftest import HEADERS, landing_with

AS_OF = "2026-11-25 12:00:00"
EVENTS = {
    "video_progress": ["1000,101,95,2026-03-02 10:00", "1000,102,20,2026-03-09 10:00"],
    "submissions": ["1,1000,102,exam,80,,2026-03-09 11:00", "2,1000,102,homework,,1,2026-03-09"],
}
READER = r"""
import json, sys, time, duckdb
path, stop = sys.argv[1], sys.argv[2]
reads = failures = inconsistent = 0
import os
while not os.path.exists(stop):
    try:
        with duckdb.connect(path, read_only=True) as con:
            rows = json.loads(con.execute("SELECT table_rows FROM marts.publication "
                                          "ORDER BY published_at DESC LIMIT 1").fetchone()[0])
            actual = con.execute("SELECT count(*) FROM marts.session_progress").fetchone()[0]
            if rows["marts.session_progress"] != actual:
                inconsistent += 1
        reads += 1
    except Exception as exc:
        failures += 1
        print(repr(exc), file=sys.stderr)
print(json.dumps({"reads": reads, "failures": failures, "inconsistent": inconsistent}))
"""


def test_readers_never_fail_during_runs(tmp_path):
    warehouse = tmp_path / "wh.duckdb"
    small = landing_with(tmp_path / "a", **EVENTS)
    bigger = landing_with(
        tmp_path / "b",
        **EVENTS,
        sessions=[f"{100 + k},1,{k},,2026-03-{k:02d}" for k in range(1, 29)],
    )
    run_pipeline(small, warehouse, AS_OF)
    stop = tmp_path / "stop"
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(warehouse), str(stop)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for landing in (bigger, small, bigger, small):
            run_pipeline(landing, warehouse, AS_OF)
    finally:
        stop.touch()
        out, err = reader.communicate(timeout=60)
    figures = json.loads(out)
    assert figures["reads"] > 20, figures
    assert figures["failures"] == 0 and figures["inconsistent"] == 0, (figures, err)
    print(f"\nRELIABILITY readers: {out.strip()}")


def test_second_writer_waits_then_refuses_with_reason(tmp_path):
    warehouse = tmp_path / "wh.duckdb"
    landing = landing_with(tmp_path / "l", **EVENTS)
    lock = writer_lock(warehouse, 1)
    lock.acquire()
    try:
        started = time.monotonic()
        with pytest.raises(RunFailed, match="another run is writing"):
            run_pipeline(landing, warehouse, AS_OF, lock_timeout=1.5)
        assert time.monotonic() - started >= 1.5
    finally:
        lock.release()
    run_pipeline(landing, warehouse, AS_OF, lock_timeout=1.5)  # free again: succeeds


def _hashes(warehouse: Path) -> dict:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return json.loads(
            con.execute(
                "SELECT content_hashes FROM marts.publication ORDER BY published_at DESC LIMIT 1"
            ).fetchone()[0]
        )


def test_same_extracts_same_marts_whatever_the_delivery(tmp_path):
    from pipelines.generate import generate_extracts

    csv = tmp_path / "csv"
    generate_extracts(csv, enrollments=80, seed=11, fmt="csv")
    variants = {"csv": csv}
    pq = tmp_path / "parquet"
    generate_extracts(pq, enrollments=80, seed=11, fmt="parquet")
    variants["parquet"] = pq
    # one file per table, rows shuffled; and every table split into a folder of two drops
    single, split = tmp_path / "single", tmp_path / "split"
    for target in (single, split):
        target.mkdir()
    rng = random.Random(3)
    for table in HEADERS:
        files = sorted(csv.glob(f"{table}.csv")) + sorted((csv / table).glob("*.csv"))
        frame = pl.concat(
            [pl.read_csv(f, infer_schema=False).rename(str.strip) for f in files], how="diagonal"
        )
        frame.sample(fraction=1.0, shuffle=True, seed=rng.randrange(1000)).write_csv(
            single / f"{table}.csv"
        )
        (split / table).mkdir()
        half = frame.height // 2
        frame.head(half).write_csv(split / table / "1.csv")
        frame.tail(frame.height - half).write_parquet(split / table / "2.parquet")
    variants |= {"single-shuffled": single, "split": split}
    hashes = {}
    for name, landing in variants.items():
        run_pipeline(landing, tmp_path / f"{name}.duckdb", AS_OF)
        hashes[name] = _hashes(tmp_path / f"{name}.duckdb")
    assert len({json.dumps(h, sort_keys=True) for h in hashes.values()}) == 1, hashes
    assert set(hashes["csv"]) == {
        "session_progress",
        "lecture_progress",
        "risk_log",
        "clinic_links",
    }
