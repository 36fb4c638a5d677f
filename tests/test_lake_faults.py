"""Faults and readers of the lake run (issue 14), with the multiprocess executor, a Dagster
instance on a real Postgres (`dagster_pg_instance`, tests/lake_fixtures.py) and a real
Postgres catalog. No mocks; the trials are `pipelines.bench.lake_trials`'s, which the full
benchmark (`python -m pipelines.bench.lake_trials`) runs 20 times.

- a multiprocess lake run (2 workers, 2 bucket steps in their own processes) publishes the
  same content hashes as an in-process run of the same extracts;
- SIGKILL of a bucket step's process (and of its retries, so the run fails), and of the
  publish step's process right after its commit: the lake keeps one whole publication, and
  re-execution from failure publishes the extracts whole (the in-process run's hashes), once.
  (Kills of the publish step at random moments before its commit are the benchmark's 20
  trials: each costs a run and a re-execution, too long for the suite);
- meanwhile reader threads read the lake, each read one transaction: none fails and none
  sees tables of two publications.
"""

from __future__ import annotations

import random

import pytest

from pipelines.bench import lake_trials as lt
from pipelines.core import lake
from pipelines.generate import generate_extracts

# Small, yet 4 academy buckets cut into 2 steps (2 bucket processes).
ACADEMIES, ENROLLMENTS, BUCKET_ENROLLMENTS, STEPS = 4, 200, 50, 2


@pytest.fixture(scope="module")
def world(postgres, dagster_pg_instance, tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    landing = root / "landing"
    generate_extracts(landing, academies=ACADEMIES, enrollments=ENROLLMENTS, seed=14)
    config = lake.LakeConfig(postgres.dsn(postgres.create_database()), str(root / "lake"))
    setup = lt.LakeRun(config, root / "work" / "build.duckdb", BUCKET_ENROLLMENTS, STEPS)
    setup.warehouse.parent.mkdir()
    return {"landing": landing, "setup": setup, "instance": dagster_pg_instance}


def test_a_multiprocess_lake_run_publishes_what_an_in_process_run_does(world):
    setup, landing, instance = world["setup"], world["landing"], world["instance"]
    in_process = lt.execute(setup, landing, instance, workers=1)
    assert in_process.success, lt._first_error(in_process)
    reference = lt.lake_state(setup.config)
    assert lt.whole(reference) and len(reference.hashes) >= 25

    multiprocess = lt.execute(setup, landing, instance, workers=2)
    assert multiprocess.success, lt._first_error(multiprocess)
    state = lt.lake_state(setup.config)
    assert state.comparable == reference.comparable  # all tables, wall clock left out
    assert lt.whole(state) and state.run_id == multiprocess.run_id
    assert [r for _, r in state.snapshots] == [in_process.run_id, multiprocess.run_id]
    # really fanned out: every step in its own process, two bucket steps
    pids = lt.worker_pids(instance, multiprocess.run_id)
    buckets = [k for k, _ in pids if k.startswith("lake_bucket")]
    assert len(buckets) == STEPS and len({p for _, p in pids}) == len(pids)
    world["reference"] = reference.comparable
    world["seconds"] = lt.step_durations(instance, multiprocess.run_id)


def test_killed_steps_leave_one_whole_publication_and_reexecution_publishes(world):
    if "reference" not in world:
        pytest.skip("needs the multiprocess run of the test above")
    setup, landing, instance = world["setup"], world["landing"], world["instance"]
    seconds, rng = world["seconds"], random.Random(14)
    bucket = max(v for k, v in seconds.items() if k.startswith("lake_bucket"))
    with lt.Readers(setup.config, 2, pause=0.3) as readers:
        trials = [  # a moment in the first half of the step's life, so the kill lands
            lt.kill_trial(setup, landing, instance, world["reference"], "bucket", rng,
                          bucket / 2, attempts=3),
            # right after its commit: re-execution must not fail on the deleted build, nor
            # publish a second time (lake_run.staged_snapshot)
            lt.kill_trial(setup, landing, instance, world["reference"], "commit", rng, 0.0),
        ]  # fmt: skip
        while readers.readings.reads < 100 and not readers.readings.failed:
            readers.stop.wait(0.2)
    for trial in trials:
        assert trial.killed, trial
        assert trial.outcome in ("previous-whole", "new-whole"), trial  # never broken
        assert trial.run_failed and trial.reexecuted and trial.reexecution_ok, trial
        assert trial.final_equal_reference, trial
    assert trials[0].kills == 3 and trials[0].step.startswith("lake_bucket[")
    assert trials[1].step == "lake_publish"
    assert trials[1].outcome == "new-whole" and trials[1].snapshots_added == 1, trials[1]
    final = lt.lake_state(setup.config)
    # the re-execution published nothing itself; its exports find the snapshot of its root run
    assert trials[1].reexecution_snapshot == final.snapshots[-1][0], trials[1]
    assert lt.whole(final) and final.comparable == world["reference"]

    readings = readers.readings
    assert readings.reads >= 100, readings.summary()
    assert readings.failed == 0 and readings.mixed == 0, readings.summary()
    assert readings.publications_seen >= 2, readings.summary()  # read across publications


def test_a_read_of_two_publications_counts_as_mixed():
    """The reader's check itself: counts or the audit hash of another publication."""
    rows, hashes = {"raw.enrollments": 3, "marts.risk_log": 5}, {"raw.ingest_audit": "a1"}
    assert not lt.is_mixed({"raw.enrollments": 3, "marts.risk_log": 5}, "a1", rows, hashes)
    assert lt.is_mixed({"raw.enrollments": 3, "marts.risk_log": 6}, "a1", rows, hashes)
    assert lt.is_mixed({"raw.enrollments": 3, "marts.risk_log": 5}, "a2", rows, hashes)
