"""Issue 11, continued: SIGKILLs at random moments of `progress run`, `backfill` and `export`
leave whole publications and whole exports (split from test_publication_safety.py, whose
helpers it uses, so `--dist loadfile` can run the two files on different workers)."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pytest

from tests.test_publication_safety import AS_OF, MORE_SESSIONS, consistent, publish, state

# --------------------------------------------------------------------------------------------
# Kills at random moments
# --------------------------------------------------------------------------------------------


def _progress(*args: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    return subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _kill_at_random(args: list[str], rng: random.Random, seconds: float) -> bool:
    """Start `progress args` and SIGKILL its process group at a random moment of the last 70%
    of `seconds` (the command's measured duration; the first 30% is mostly imports); True if
    it was killed before it finished."""
    proc = _progress(*args)
    deadline = time.monotonic() + rng.uniform(0.3, 1.0) * seconds
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    killed = proc.poll() is None
    if killed:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return killed


def _timed(args: list[str]) -> float:
    started = time.monotonic()
    assert _progress(*args).wait() == 0, args
    return time.monotonic() - started


KILLS = 4
DAYS = ["--start", "2026-03-02", "--end", "2026-03-04"]


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> tuple[Path, Path]:
    """A landing folder and the warehouse one successful run published from it."""
    return publish(tmp_path_factory.mktemp("published"))


@pytest.fixture(scope="module")
def published_b(published, tmp_path_factory) -> tuple[Path, Path]:
    """A second landing (more sessions) and its publication: what a killed command may
    switch to."""
    return publish(tmp_path_factory.mktemp("published_b"), sessions=MORE_SESSIONS)


def test_killed_runs_and_backfills_leave_whole_publications(published, published_b, tmp_path):
    """After each SIGKILL every table and view equals the previous publication's or the new
    one's (content hashes of all tables, not only the marts), and the file is consistent."""
    from pipelines.backfill import run_backfill

    rng = random.Random(11)
    figures = {}
    landings = [published[0], published_b[0]]
    # a whole publication of a landing: its run's tables depend on the landing alone
    expected = [state(published[1], exact=False), state(published_b[1], exact=False)]
    warehouse = tmp_path / "wh.duckdb"
    shutil.copyfile(published[1], warehouse)
    seconds = _timed(
        ["run", "--landing", str(landings[1]), "--warehouse", str(tmp_path / "t"), "--as-of", AS_OF]
    )
    outcomes = {"killed": 0, "previous": 0, "new": 0}
    for trial in range(KILLS):
        previous, target = state(warehouse, exact=False), expected[(trial + 1) % 2]
        outcomes["killed"] += _kill_at_random(
            [
                "run",
                "--landing",
                str(landings[(trial + 1) % 2]),
                "--warehouse",
                str(warehouse),
                "--as-of",
                AS_OF,
                "--lock-timeout",
                "30",
            ],
            rng,
            seconds,
        )
        now = state(warehouse, exact=False)
        assert now in (previous, target) and consistent(warehouse), trial
        outcomes["previous" if now == previous else "new"] += 1
    figures["run"] = outcomes

    # backfill: an ingest publication, then a history one. The final state of each landing
    # (raw and history replaced, the current marts kept) is made once without a kill.
    reference = tmp_path / "ref.duckdb"
    shutil.copyfile(warehouse, reference)
    seconds = _timed(
        ["backfill", *DAYS, "--landing", str(landings[0]), "--warehouse", str(reference)]
    )
    finals = [state(reference, exact=False)]
    first, last = (date.fromisoformat(d) for d in DAYS[1::2])
    run_backfill(first, last, landings[1], reference)
    finals.append(state(reference, exact=False))
    shutil.copyfile(reference, warehouse)
    outcomes = {"killed": 0, "tables_previous": 0, "tables_new": 0}
    for trial in range(KILLS):
        previous, final = state(warehouse, exact=False), finals[trial % 2]
        outcomes["killed"] += _kill_at_random(
            [
                "backfill",
                *DAYS,
                "--landing",
                str(landings[trial % 2]),
                "--warehouse",
                str(warehouse),
            ],
            rng,
            seconds,
        )
        now = state(warehouse, exact=False)
        assert now.keys() == previous.keys() and consistent(warehouse), trial
        for name, value in now.items():  # the ingest and history publications: per table
            assert value in (previous[name], final[name]), (trial, name)
            outcomes["tables_previous" if value == previous[name] else "tables_new"] += 1
    figures["backfill"] = outcomes
    print(f"\nRELIABILITY kills: {json.dumps(figures)}")


def test_killed_exports_leave_a_whole_export(published, published_b, tmp_path):
    from pipelines.core.exports import export_warehouse

    rng = random.Random(5)
    sources = [published[1], published_b[1]]
    before = [state(s) for s in sources]
    out = tmp_path / "exports"
    seconds = _timed(["export", "--warehouse", str(sources[0]), "--out", str(out)])
    expected = [
        json.loads((out / "manifest.json").read_text(encoding="utf-8")),
        export_warehouse(sources[1], out),
    ]
    expected = [sorted(f["sha256"] for f in m["files"]) for m in expected]
    killed = 0
    for trial in range(KILLS):
        previous = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
        killed += _kill_at_random(
            ["export", "--warehouse", str(sources[trial % 2]), "--out", str(out)], rng, seconds
        )
        manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
        shas = sorted(f["sha256"] for f in manifest["files"])
        assert shas in (sorted(f["sha256"] for f in previous["files"]), expected[trial % 2])
        for entry in manifest["files"]:  # whole: every listed file there, with its bytes
            assert (out / entry["path"]).stat().st_size == entry["bytes"], entry["path"]
    assert [state(s) for s in sources] == before  # the warehouses are only read
    print(f"\nRELIABILITY export kills: {json.dumps({'trials': KILLS, 'killed': killed})}")
