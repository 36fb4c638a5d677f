"""Faults and readers of the lake run (issue 14): SIGKILL of a step of a multiprocess
`lake_job` run, then re-execution from failure; readers reading while publications happen.

    uv run python -m pipelines.bench.lake_trials --trials 20 --reads 500 \\
        --out bench-results/lake_trials.json

starts its own Postgres (the DuckLake catalog and the Dagster instance's storage,
`pipelines.bench.postgres`), generates two small extracts (two seeds), publishes a reference
publication of each in-process, then runs the trials and the reader loop and writes a JSON
summary. The same functions are used by tests/test_lake_faults.py.

- `kill_trial`: a lake run with the multiprocess executor against a lake that already holds a
  publication; at a random moment (seeded) one bucket step's process, or the publish step's,
  is SIGKILLed (its pid from the run's STEP_WORKER_STARTED event, checked to be a child of
  this process). The lake must then hold the previous publication whole (same snapshots, same
  content hashes), or, when the kill came after the commit, the new one whole. Then the run is
  re-executed from failure (Dagster's `ReexecutionOptions.from_failure`), which must publish
  the extracts whole: the content hashes of the reference publication of the same extracts.
- `reader_loop`: reader threads, each read one transaction (the latest `marts.publication`
  row, every published table's row count and `raw.ingest_audit`'s content hash, whose
  `loaded_at` differs in every run); a read is mixed when what it saw is not exactly the
  publication whose row it read (its recorded `table_rows` and hash).

Dagster-facing; no pytest here.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

from pipelines.core import lake, lake_run
from pipelines.core.publish import content_hash
from pipelines.core.warehouse import read_table

AS_OF = "2026-11-25 23:59:59"
TIMEZONE = "Asia/Seoul"
# Wall-clock columns, different in any two runs of the same extracts: left out when a
# publication is compared with the reference publication of the same extracts.
WALL_CLOCK = {"raw.ingest_audit": ["loaded_at"]}
WORKER_STARTED = "STEP_WORKER_STARTED"
TRIAL_TAG = "lake_trials/run"
# What the trials kill, in turn: a bucket step once (its retry policy reruns it within the
# run), a bucket step and its two retries (the run fails), the publish step at a random moment,
# and now and then the publish step right after its commit.
TARGETS = ("bucket", "publish", "bucket*3", "publish", "bucket", "publish", "bucket*3",
           "publish", "bucket", "commit")  # fmt: skip


@dataclass(frozen=True)
class LakeRun:
    """What a lake run needs besides its extracts: the lake, the build folder's warehouse
    path, and how the buckets are cut."""

    config: lake.LakeConfig
    warehouse: Path
    bucket_enrollments: int = 60
    steps: int = 3

    def run_config(self, landing: Path) -> dict:
        from pipelines.runner import run_config

        config = run_config(
            landing, self.warehouse, TIMEZONE, datetime.fromisoformat(AS_OF), verbose=False
        )
        config["resources"]["settings"]["config"]["bucket_enrollments"] = self.bucket_enrollments
        config["resources"]["lake"] = {
            "config": {
                "path": str(self.warehouse),
                "lake_catalog": self.config.catalog,
                "lake_data_path": self.config.data_path,
                "steps": self.steps,
            }
        }
        return config


def job(workers: int):
    import dagster as dg

    return dg.build_reconstructable_job(
        "pipelines.runner", "lake_job", reconstructable_args=(workers,)
    )


def execute(setup: LakeRun, landing: Path, instance, workers: int = 2, tags: dict | None = None):
    """One lake run (the result; failures are not raised)."""
    import dagster as dg

    return dg.execute_job(
        job(workers), instance, run_config=setup.run_config(landing), tags=tags or {}
    )


def reexecute(run_id: str, instance, workers: int = 2):
    """Re-execute `run_id` from failure: its failed and not-run steps, then what follows."""
    import dagster as dg

    options = dg.ReexecutionOptions.from_failure(run_id, instance)
    return dg.execute_job(job(workers), instance, reexecution_options=options)


# --- what the lake shows --------------------------------------------------------------------


def table_hashes(con, comparable: bool = False) -> dict[str, str]:
    found = {}
    for table in lake_run.published_tables(con):
        frame = read_table(con, table)
        if comparable:
            frame = frame.drop(WALL_CLOCK.get(table, []))
        found[table] = content_hash(frame)
    return found


@dataclass
class LakeState:
    snapshots: list[tuple[int, str]]  # (snapshot id, run id) of every publication kept
    hashes: dict[str, str]  # every published table, wall clock included
    comparable: dict[str, str]  # the same without the wall-clock columns
    recorded: dict[str, str]  # the hashes the latest marts.publication row recorded
    run_id: str | None  # the latest publication's run id


def lake_state(config: lake.LakeConfig) -> LakeState:
    with lake.connect(config, read_only=True) as con:
        con.execute("BEGIN")
        shots = lake.snapshots(con)
        row = con.execute(
            "SELECT run_id, content_hashes FROM marts.publication "
            "ORDER BY published_at DESC LIMIT 1"
        ).fetchone()
        hashes = table_hashes(con)
        comparable = table_hashes(con, comparable=True)
        con.execute("COMMIT")
    return LakeState(
        list(zip(shots["snapshot_id"].to_list(), shots["run_id"].to_list(), strict=True)),
        hashes,
        comparable,
        json.loads(row[1]) if row else {},
        row[0] if row else None,
    )


def whole(state: LakeState) -> bool:
    """The latest publication's tables are exactly what its publication row recorded."""
    return bool(state.recorded) and state.recorded == state.hashes


# --- the step processes ---------------------------------------------------------------------


def _parent(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])  # the field after the state


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def worker_pids(instance, run_id: str) -> list[tuple[str, int]]:
    """(step key, pid) of every step process the run started, in order, from its
    STEP_WORKER_STARTED events (a retried step has one per attempt)."""
    import dagster as dg

    found = []
    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.STEP_WORKER_STARTED
    ).records
    for record in records:
        event = record.event_log_entry.dagster_event
        if event is not None and event.pid and event.step_key:
            found.append((event.step_key, event.pid))
    return found


def _run_with_tag(instance, tag: str) -> str | None:
    import dagster as dg

    runs = instance.get_run_records(dg.RunsFilter(tags={TRIAL_TAG: tag}), limit=1)
    return runs[0].dagster_run.run_id if runs else None


@dataclass
class Kill:
    step: str | None = None
    after: float | None = None  # seconds after the step's first process started
    kills: int = 0  # processes of the step killed (its attempts)
    committed_first: bool | None = None  # "commit" target: the publication seen before


def _kill(pid: int) -> bool:
    # only a live child of this process (the executor's step process), never a recycled pid
    if _parent(pid) == os.getpid() and _alive(pid):
        os.kill(pid, signal.SIGKILL)
        return True
    return False


def _wait_published(config: lake.LakeConfig, run_id: str, done: threading.Event) -> bool:
    """Poll the lake until run `run_id`'s publication shows (or the run ended)."""
    with lake.connect(config, read_only=True) as con:
        while True:
            if lake_run.snapshot_of(con, run_id) is not None:
                return True
            if done.is_set():
                return False
            time.sleep(0.01)


def _killer(
    instance,
    config: lake.LakeConfig,
    tag: str,
    target: str,
    delay: float,
    attempts: int,
    done: threading.Event,
    kill: Kill,
) -> None:
    """Wait for the run's target step's process, wait `delay` (for target "commit": until the
    run's publication is in the lake), SIGKILL it if still alive; then kill the step's next
    `attempts - 1` processes (its retries) as soon as each starts."""
    prefix = "lake_bucket" if target == "bucket" else "lake_publish"
    run_id, killed = None, set()
    while not done.is_set() and kill.kills < attempts:
        run_id = run_id or _run_with_tag(instance, tag)
        started = [(k, p) for k, p in (worker_pids(instance, run_id) if run_id else [])]
        fresh = [
            (k, p)
            for k, p in started
            if k.startswith(prefix) and (kill.step in (None, k)) and p not in killed
        ]
        if not fresh:
            time.sleep(0.05)
            continue
        kill.step, pid = fresh[0]
        killed.add(pid)
        if not killed - {pid}:  # the step's first process: the random moment
            began = time.monotonic()
            if target == "commit":
                kill.committed_first = _wait_published(config, run_id, done)
            else:
                done.wait(delay)
            kill.after = round(time.monotonic() - began, 3)
        kill.kills += _kill(pid)


@dataclass
class Trial:
    target: str  # "bucket", "publish", or "commit" (publish, killed once its commit shows)
    delay: float  # the random moment drawn: seconds after the step's process started
    attempts: int = 1  # processes of the step to kill: 1, or its retries too (run fails)
    step: str | None = None
    killed_after: float | None = None  # seconds after the step's process started
    kills: int = 0
    killed: bool = False
    # previous-whole | new-whole | retried-in-run | killed-after-step | not-killed | broken
    outcome: str = ""
    run_failed: bool = False
    reexecuted: bool = False
    reexecution_ok: bool = False
    reexecution_seconds: float | None = None
    # the snapshot the re-execution's exports would read (lake_run.run_snapshot, as
    # lake_exports_job finds it); None when not re-executed or not found
    reexecution_snapshot: int | None = None
    final_equal_reference: bool = False
    snapshots_added: int = 0
    run_seconds: float = 0.0
    note: str = ""


def kill_trial(
    setup: LakeRun,
    landing: Path,
    instance,
    reference: dict[str, str],
    target: str,
    rng: random.Random,
    step_seconds: float,
    workers: int = 2,
    attempts: int = 1,
) -> Trial:
    """One trial (the lake must already hold a publication; `reference`: the comparable
    hashes of a publication of `landing`; `step_seconds`: how long the target step's process
    lives, the moment is drawn uniformly in it). `attempts` > 1 also kills the step's retries
    (lake_bucket has a retry policy: killed once, the run retries it and may succeed)."""
    assert target in ("bucket", "publish", "commit"), target
    before = lake_state(setup.config)
    delay = 0.0 if target == "commit" else round(rng.uniform(0.0, step_seconds), 3)
    trial = Trial(target, delay, attempts)
    tag = f"{target}-{rng.getrandbits(48):012x}"
    done, kill = threading.Event(), Kill()
    killer = threading.Thread(
        target=_killer,
        args=(instance, setup.config, tag, target, delay, attempts, done, kill),
        daemon=True,
    )
    killer.start()
    started = time.perf_counter()
    try:
        result = execute(setup, landing, instance, workers, {TRIAL_TAG: tag})
    finally:
        done.set()
        killer.join()
    trial.run_seconds = round(time.perf_counter() - started, 2)
    trial.step, trial.kills, trial.killed = kill.step, kill.kills, kill.kills > 0
    trial.killed_after = kill.after
    trial.run_failed = not result.success
    after = lake_state(setup.config)
    new = after.snapshots[len(before.snapshots) :]
    if after.snapshots == before.snapshots and after.hashes == before.hashes:
        trial.outcome = "previous-whole"
    elif (
        after.snapshots[: len(before.snapshots)] == before.snapshots
        and [r for _, r in new] == [result.run_id]
        and whole(after)
        and after.comparable == reference
    ):
        if not trial.killed:
            trial.outcome = "not-killed"
        elif not result.success:
            trial.outcome = "new-whole"
        else:  # killed, yet the run succeeded: the step was retried, or had finished its work
            attempts = [k for k, _ in worker_pids(instance, result.run_id) if k == trial.step]
            trial.outcome = "retried-in-run" if len(attempts) > 1 else "killed-after-step"
    else:
        trial.outcome = "broken"
    if result.success:
        trial.note = {
            "retried-in-run": "the run succeeded: the killed step was retried within the run",
            "killed-after-step": "the run succeeded: the step had done its work when killed",
        }.get(trial.outcome, "the run succeeded: the step ended before the moment drawn")
    else:
        trial.reexecuted = True
        started = time.perf_counter()
        again = reexecute(result.run_id, instance, workers)
        trial.reexecution_seconds = round(time.perf_counter() - started, 2)
        final = lake_state(setup.config)
        trial.reexecution_ok = again.success
        trial.final_equal_reference = whole(final) and final.comparable == reference
        trial.reexecution_snapshot = lake_run.run_snapshot(
            setup.config, again.run_id, result.run_id
        )
        if not again.success:
            trial.note = "re-execution failed: " + _first_error(again)
        elif final.run_id == result.run_id:
            trial.note = "the killed run had committed: re-execution published nothing again"
        elif final.run_id != again.run_id:
            trial.note = f"latest publication is {final.run_id}, not the re-execution's"
    final = lake_state(setup.config)
    trial.snapshots_added = len(final.snapshots) - len(before.snapshots)
    if not trial.reexecuted:
        trial.final_equal_reference = whole(final) and final.comparable == reference
    return trial


def _first_error(result) -> str:
    for event in result.all_events:
        error = getattr(event.event_specific_data, "error", None)
        if error is not None:
            while getattr(error, "cause", None) is not None:
                error = error.cause
            return (error.message or "").strip().splitlines()[0][:300]
    return "failed"


def step_durations(instance, run_id: str) -> dict[str, float]:
    """step key -> seconds from its process's start to its success (a finished run)."""
    import dagster as dg

    starts, ends = {}, {}
    for record in instance.get_records_for_run(run_id).records:
        entry = record.event_log_entry
        event = entry.dagster_event
        if event is None or not event.step_key:
            continue
        if event.event_type_value == WORKER_STARTED:
            starts[event.step_key] = entry.timestamp
        elif event.event_type == dg.DagsterEventType.STEP_SUCCESS:
            ends[event.step_key] = entry.timestamp
    return {k: round(ends[k] - starts[k], 3) for k in starts if k in ends}


# --- readers --------------------------------------------------------------------------------


@dataclass
class Readings:
    reads: int = 0
    failed: int = 0
    mixed: int = 0
    publications_seen: int = 0
    publications_made: int = 0
    latencies: list[float] = field(default_factory=list, repr=False)
    errors: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        ordered = sorted(self.latencies)

        def pct(q: float) -> float | None:
            if not ordered:
                return None
            return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1)

        return {
            "reads": self.reads,
            "failed": self.failed,
            "mixed": self.mixed,
            "publications_seen": self.publications_seen,
            "publications_made": self.publications_made,
            "p50_ms": pct(0.50),
            "p95_ms": pct(0.95),
            "mean_ms": round(statistics.fmean(ordered) * 1000, 1) if ordered else None,
            "errors": self.errors[:5],
        }


def read_once(con, tables: list[str]) -> tuple[str, bool]:
    """One read, one transaction: the latest publication's run id, and whether the tables
    read were not exactly that publication (row counts of every table and the content hash
    of raw.ingest_audit, unique to each run, against what its publication row recorded)."""
    con.execute("BEGIN")
    try:
        run_id, rows, hashes = con.execute(
            "SELECT run_id, table_rows, content_hashes FROM marts.publication "
            "ORDER BY published_at DESC LIMIT 1"
        ).fetchone()
        counts = con.execute(
            "SELECT " + ", ".join(f"(SELECT count(*) FROM {t})" for t in tables)
        ).fetchone()
        audit = content_hash(read_table(con, "raw.ingest_audit"))
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    seen = dict(zip(tables, counts, strict=True))
    return run_id, is_mixed(seen, audit, json.loads(rows), json.loads(hashes))


def is_mixed(counts: dict[str, int], audit: str, rows: dict, hashes: dict) -> bool:
    """Whether row `counts` per table and raw.ingest_audit's content hash `audit`, read in
    one transaction, are not the publication whose recorded `rows` and `hashes` were read."""
    return counts != {t: rows.get(t, 0) for t in counts} or audit != hashes["raw.ingest_audit"]


class Readers:
    """`count` reader threads reading the lake (`read_once`, each its own connection, `pause`
    seconds between two reads) until stopped: `with Readers(config, 3) as readers: ...` then `readers.readings`."""

    def __init__(self, config: lake.LakeConfig, count: int = 3, pause: float = 0.0) -> None:
        self.config, self.count, self.pause = config, count, pause
        self.readings = Readings()
        self.lock, self.stop = threading.Lock(), threading.Event()
        self.seen: set[str] = set()
        self.threads: list[threading.Thread] = []

    def __enter__(self) -> Readers:
        with lake.connect(self.config, read_only=True) as con:
            self.tables = lake_run.published_tables(con)
        self.threads = [threading.Thread(target=self._read, daemon=True) for _ in range(self.count)]
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()
        self.readings.publications_seen = len(self.seen)

    def _read(self) -> None:
        readings = self.readings
        con = lake.connect(self.config, read_only=True)
        try:
            while not self.stop.is_set():
                started = time.perf_counter()
                try:
                    run_id, mixed = read_once(con, self.tables)
                except Exception as exc:  # a failed read is counted, the loop goes on
                    with self.lock:
                        readings.reads += 1
                        readings.failed += 1
                        readings.errors.append(f"{type(exc).__name__}: {exc}"[:300])
                    continue
                elapsed = time.perf_counter() - started
                with self.lock:
                    readings.reads += 1
                    readings.mixed += mixed
                    readings.latencies.append(elapsed)
                    self.seen.add(run_id)
                if self.pause:  # leave the publishing run some CPU (a 2-core machine)
                    self.stop.wait(self.pause)
        finally:
            con.close()


def reader_loop(
    setup: LakeRun,
    landings: list[Path],
    instance,
    reads: int,
    readers: int = 3,
    min_publications: int = 2,
    workers: int = 1,
) -> Readings:
    """`readers` threads read the lake (`Readers`) while this thread publishes the `landings`
    in turn, until `reads` reads were made and at least `min_publications` publications
    happened during them. The lake must already hold a publication."""
    with Readers(setup.config, readers) as running:
        readings, turn = running.readings, 0
        while readings.reads < reads or readings.publications_made < min_publications:
            result = execute(setup, landings[turn % len(landings)], instance, workers)
            turn += 1
            if not result.success:
                readings.errors.append("publication failed: " + _first_error(result))
                break
            readings.publications_made += 1
    return readings


# --- the command ----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.bench.lake_trials")
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--reads", type=int, default=500)
    parser.add_argument("--readers", type=int, default=3)
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--enrollments", type=int, default=360)
    parser.add_argument("--academies", type=int, default=6)
    parser.add_argument("--bucket-enrollments", type=int, default=60)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--targets",
        default=",".join(TARGETS),
        help="what trial i kills, cycling: bucket, bucket*N (also its N-1 retries), publish, "
        "commit (publish, once its commit shows)",
    )
    parser.add_argument("--out", type=Path, default=Path("bench-results/lake_trials.json"))
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = parser.parse_args(argv)

    import dagster as dg

    from pipelines.bench.postgres import dagster_home, start_postgres, stop_postgres
    from pipelines.generate import generate_extracts

    scratch = Path(tempfile.mkdtemp(prefix="lake-trials-"))
    began = time.perf_counter()
    pg_root = Path(tempfile.mkdtemp(prefix="lake-trials-pg-"))  # its own: chowned to postgres
    server = start_postgres(pg_root)
    try:
        home = dagster_home(server, scratch / "dagster_home")
        os.environ["DAGSTER_HOME"] = str(home)
        landings = []
        for i, seed in enumerate((args.seed, args.seed + 1)):
            landing = scratch / f"landing_{i}"
            generate_extracts(
                landing, academies=args.academies, enrollments=args.enrollments, seed=seed
            )
            landings.append(landing)
        config = lake.LakeConfig(server.dsn(server.create_database()), str(scratch / "lake"))
        setup = LakeRun(config, scratch / "work" / "build.duckdb", args.bucket_enrollments,
                        args.steps)  # fmt: skip
        setup.warehouse.parent.mkdir(parents=True)
        rng = random.Random(args.seed)
        context: dict = {}
        with dg.DagsterInstance.from_config(str(home)) as instance:
            references, durations = [], {}
            for landing in landings:  # in-process references, then one multiprocess run
                done = execute(setup, landing, instance, workers=1)
                assert done.success, _first_error(done)
                references.append(lake_state(config).comparable)
            assert references[0] != references[1]
            done = execute(setup, landings[0], instance, workers=args.workers)
            assert done.success, _first_error(done)
            context["multiprocess_equal"] = lake_state(config).comparable == references[0]
            context["durations"] = durations = step_durations(instance, done.run_id)
            bucket_seconds = max(v for k, v in durations.items() if k.startswith("lake_bucket"))
            publish_seconds = durations["lake_publish"]
            trials: list[Trial] = []
            targets = args.targets.split(",")
            shots = len(lake_state(config).snapshots)
            began_reading = time.perf_counter()
            # the readers read all along the trials: every trial's run or re-execution publishes
            with Readers(config, args.readers) as readers:
                for i in range(args.trials):
                    target, _, attempts = targets[i % len(targets)].partition("*")
                    which = (i + 1) % 2  # alternate the extracts: each trial changes the lake
                    trial = kill_trial(
                        setup,
                        landings[which],
                        instance,
                        references[which],
                        target,
                        rng,
                        bucket_seconds if target == "bucket" else publish_seconds,
                        args.workers,
                        int(attempts or 1),
                    )
                    trials.append(trial)
                    print(
                        f"trial {i + 1:2d} {target:7s} x{trial.kills} {trial.step or '-':20s} at "
                        f"{trial.killed_after or 0:6.2f} s {trial.outcome:14s} "
                        f"re-exec {trial.reexecution_seconds or 0:6.1f} s "
                        f"ok={trial.reexecution_ok} equal={trial.final_equal_reference} "
                        f"reads {readers.readings.reads}"
                        + (f"  ({trial.note})" if trial.note else ""),
                        flush=True,
                    )
                    readers.readings.publications_made = len(lake_state(config).snapshots) - shots
                    readers.readings.publications_seen = len(readers.seen)
                    context["readers"] = readers.readings.summary() | {
                        "readers": args.readers,
                        "seconds": round(time.perf_counter() - began_reading, 1),
                    }
                    _write(args, argv, context, trials, began, complete=False)
                turn = 0  # more publications if the reads are not done yet
                while readers.readings.reads < args.reads:
                    done = execute(setup, landings[turn % 2], instance, workers=1)
                    turn += 1
                    assert done.success, _first_error(done)
            readers.readings.publications_made = len(lake_state(config).snapshots) - shots
            context["readers"] = readers.readings.summary() | {
                "readers": args.readers,
                "seconds": round(time.perf_counter() - began_reading, 1),
            }
    finally:
        stop_postgres(server)
        shutil.rmtree(pg_root, ignore_errors=True)
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)

    summary = _write(args, argv, context, trials, began, complete=True)
    t, r = summary["trials"], summary["readers"]
    print()
    print(f"{'trials':>10} {'killed':>7} {'broken':>7} {'re-exec ok':>11} {'= ref':>6}")
    print(f"{t['count']:>10} {t['killed']:>7} {t['broken_publications']:>7} "
          f"{t['reexecutions_completed']:>5}/{t['reexecutions']:<5} "
          f"{t['final_equal_reference']:>6}")  # fmt: skip
    print(f"outcomes: {t['outcomes']}; re-execution seconds {t['reexecution_seconds']}")
    print(f"{'reads':>10} {'failed':>7} {'mixed':>7} {'p50 ms':>8} {'p95 ms':>8} {'pubs':>5}")
    print(f"{r['reads']:>10} {r['failed']:>7} {r['mixed']:>7} {r['p50_ms']:>8} "
          f"{r['p95_ms']:>8} {r['publications_made']:>5}")  # fmt: skip
    print(f"written {args.out}")
    ok = t["broken_publications"] == 0 and r["failed"] == 0 and r["mixed"] == 0
    return 0 if ok else 1


def _write(args, argv, context: dict, trials: list[Trial], began: float, complete: bool) -> dict:
    """The JSON summary, written after every trial (`complete` false until the end)."""
    summary = {
        "command": "uv run python -m pipelines.bench.lake_trials "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "complete": complete,
        "date": datetime.now().isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "load_avg": os.getloadavg()},
        "extracts": {
            "academies": args.academies,
            "enrollments": args.enrollments,
            "seeds": [args.seed, args.seed + 1],
            "bucket_enrollments": args.bucket_enrollments,
            "steps": args.steps,
            "workers": args.workers,
        },
        "multiprocess_equals_in_process": context.get("multiprocess_equal"),
        "step_seconds": context.get("durations"),
        "trials": {
            "count": len(trials),
            "killed": sum(t.killed for t in trials),
            "broken_publications": sum(t.outcome == "broken" for t in trials),
            "outcomes": {
                o: sum(t.outcome == o for t in trials)
                for o in (
                    "previous-whole",
                    "new-whole",
                    "retried-in-run",
                    "killed-after-step",
                    "not-killed",
                    "broken",
                )
            },
            "reexecutions": sum(t.reexecuted for t in trials),
            "reexecutions_completed": sum(t.reexecution_ok for t in trials),
            "final_equal_reference": sum(t.final_equal_reference for t in trials),
            "reexecution_seconds": _spread([t.reexecution_seconds for t in trials]),
            "per_trial": [asdict(t) for t in trials],
        },
        "readers": context.get("readers", {}),
        "seconds": round(time.perf_counter() - began, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return summary


def _spread(values: list[float | None]) -> dict:
    found = sorted(v for v in values if v is not None)
    if not found:
        return {}
    return {
        "min": found[0],
        "median": round(statistics.median(found), 2),
        "max": found[-1],
    }


if __name__ == "__main__":
    raise SystemExit(main())
