"""The whole-process stages: the commands users (and the schedule) run, started as they start
them, each measured by `pipelines.bench.measure` (wall time, peak RSS of the process tree).

  cmd_run          progress run --landing L --warehouse W --as-of A      (the README command)
  cmd_daily_job    dagster job execute -m pipelines.definitions -j daily_job
                   --tags '{"dagster/partition": <A's date - 1>, "progress/trigger": "schedule"}'
                   with PROGRESS_LANDING / PROGRESS_WAREHOUSE / PROGRESS_TIMEZONE (also in a
                   `.env` in its working directory, which the dagster CLI loads) and a
                   DAGSTER_HOME holding the project's dagster.yaml: the run the schedule requests
                   (`pipelines.schedules.daily_run_request`) on cmd_run's warehouse
  cmd_backfill_7d  progress backfill --start A-6 --end A --landing L --warehouse W
  cmd_export       progress export --warehouse W --out <fresh folder>
  cmd_report       progress report --warehouse W --out <file>
  cmd_second_run   progress run again (same L and A) on a warehouse holding 30 days of history

The runner (standard library only) builds the command lines here; the helpers below that need
DuckDB or Dagster run in their own processes, untimed:

  python -m pipelines.bench.commands steps --dagster-home H
      the daily_job run recorded in H: status, tags, planned and succeeded step keys (JSON)
  python -m pipelines.bench.commands prepare-history --source W --warehouse W2 ...
      the 30-day warehouse for cmd_second_run (JSON)

The lake stage (`progress bench --backend lake`, one measurement per worker count):

  cmd_run_lake     progress run --landing L --warehouse W --as-of A --backend lake
                   --catalog DSN --data-path DIR --workers N --json
                   with DAGSTER_HOME a fresh folder, so the run's events persist; afterwards

  python -m pipelines.bench.commands lake-steps --dagster-home H
      the lake_job run recorded in H: step times from its event log (STEP_START /
      STEP_SUCCESS), the phases, the staging and publication figures the steps logged (JSON)
  python -m pipelines.bench.commands lake-reader --catalog DSN --data-path DIR --out F
      --stop-file S
      a reader of the lake during a run: `SELECT count(*) FROM marts.lecture_progress` in a
      loop on one read-only connection until S exists; one JSON line per query in F
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COMMAND_STAGES = (
    "cmd_run",
    "cmd_daily_job",
    "cmd_backfill_7d",
    "cmd_export",
    "cmd_report",
    "cmd_second_run",
)
LAKE_STAGE = "cmd_run_lake"
LAKE_READER_QUERY = "SELECT count(*) FROM marts.lecture_progress"
LAKE_READER_INTERVAL = 0.1  # seconds between two reader queries
HISTORY_TABLES = ("lecture_progress_daily", "risk_daily_summary", "risk_alerts")
HISTORY_DAYS = 30
BACKFILL_DAYS = 7
SCHEDULE_TRIGGER = "schedule"
# the `progress` commands' default --timezone (pipelines.resources.DEFAULT_TIMEZONE; a test
# checks they agree): left off the command line when it is the zone, as users type it
DEFAULT_TIMEZONE = "Asia/Seoul"


def tool(name: str) -> str:
    """The console script of this environment (`progress`, `dagster`), as a shell finds it
    after `uv sync` (.venv/bin), else on PATH."""
    here = Path(sys.executable).parent / name
    if here.is_file():
        return str(here)
    found = shutil.which(name)
    if not found:
        raise FileNotFoundError(f"the {name} command is not installed (run `uv sync`)")
    return found


def as_of_day(as_of: str) -> date:
    """The local date of a contract timestamp text (`YYYY-MM-DD HH:MM:SS`)."""
    return date.fromisoformat(as_of.strip()[:10])


def daily_partition(as_of: str) -> str:
    """The partition the schedule requests when it fires at `as_of`: the previous local day
    (`pipelines.schedules.previous_day_partition`; the test checks they agree)."""
    return (as_of_day(as_of) - timedelta(days=1)).isoformat()


def daily_tags(as_of: str) -> dict[str, str]:
    """The tags of the schedule's run request at `as_of` (its partition as the
    `dagster/partition` tag, as `dagster job execute` takes it)."""
    return {"dagster/partition": daily_partition(as_of), "progress/trigger": SCHEDULE_TRIGGER}


def user_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment without DAGSTER_HOME (the README's commands run with a throwaway
    instance unless the user sets one; a user's instance must not collect bench runs)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k != "DAGSTER_HOME" and k != "PROGRESS_BACKEND" and not k.startswith("PROGRESS_LAKE_")
    }
    env.update(extra or {})
    return env


def command_line(
    stage: str,
    *,
    landing: Path,
    warehouse: Path,
    as_of: str,
    timezone: str,
    out: Path | None = None,
) -> list[str]:
    """The command a user types for `stage` (cmd_daily_job: what the schedule's run does)."""
    progress = tool("progress")
    zone = [] if timezone == DEFAULT_TIMEZONE else ["--timezone", timezone]
    if stage in ("cmd_run", "cmd_second_run"):
        # the README's command
        run = [progress, "run", "--landing", str(landing), "--warehouse", str(warehouse)]
        return [*run, "--as-of", as_of, *zone]
    if stage == "cmd_daily_job":
        return [
            tool("dagster"),
            "job",
            "execute",
            "-m",
            "pipelines.definitions",
            "-d",
            str(ROOT),
            "-j",
            "daily_job",
            "--tags",
            json.dumps(daily_tags(as_of)),
        ]
    if stage == "cmd_backfill_7d":
        last = as_of_day(as_of)
        first = last - timedelta(days=BACKFILL_DAYS - 1)
        return [
            progress,
            "backfill",
            "--start",
            first.isoformat(),
            "--end",
            last.isoformat(),
            "--landing",
            str(landing),
            "--warehouse",
            str(warehouse),
            *zone,
        ]
    if stage in ("cmd_export", "cmd_report"):
        assert out is not None
        verb = "export" if stage == "cmd_export" else "report"
        return [progress, verb, "--warehouse", str(warehouse), "--out", str(out)]
    raise ValueError(f"unknown command stage {stage!r}")


def lake_command_line(
    *,
    landing: Path,
    warehouse: Path,
    as_of: str,
    timezone: str,
    catalog: str,
    data_path: Path,
    workers: int,
) -> list[str]:
    """The documented lake run (docs/lake.md), with its summary as JSON."""
    zone = [] if timezone == DEFAULT_TIMEZONE else ["--timezone", timezone]
    run = [tool("progress"), "run", "--landing", str(landing), "--warehouse", str(warehouse)]
    run += ["--as-of", as_of, *zone, "--backend", "lake", "--catalog", catalog]
    return [*run, "--data-path", str(data_path), "--workers", str(workers), "--json"]


def lake_home(folder: Path) -> Path:
    """A fresh DAGSTER_HOME (an instance on SQLite, telemetry off) for one lake run."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    (folder / "dagster.yaml").write_text("telemetry:\n  enabled: false\n", encoding="utf-8")
    return folder


def daily_job_setup(folder: Path, landing: Path, warehouse: Path, timezone: str) -> dict:
    """Working directory, `.env` and DAGSTER_HOME of the scheduled run; returns its env."""
    folder.mkdir(parents=True, exist_ok=True)
    home = folder / "dagster_home"
    home.mkdir(exist_ok=True)
    shutil.copyfile(ROOT / "dagster.yaml", home / "dagster.yaml")
    values = {
        "PROGRESS_LANDING": str(landing),
        "PROGRESS_WAREHOUSE": str(warehouse),
        "PROGRESS_TIMEZONE": timezone,
    }
    # the dagster CLI loads `.env` from its working directory over the environment: the
    # project's own .env (data/landing, data/warehouse.duckdb) must not be the one it finds
    (folder / ".env").write_text("".join(f"{k}={v}\n" for k, v in values.items()), encoding="utf-8")
    return user_env({**values, "DAGSTER_HOME": str(home)})


# -- helpers run in their own process --------------------------------------------------------
def run_steps(dagster_home: Path) -> dict:
    """The daily_job run recorded in the instance at `dagster_home` (the only one there)."""
    os.environ["DAGSTER_HOME"] = str(dagster_home)
    import dagster as dg

    with dg.DagsterInstance.get() as instance:
        runs = instance.get_runs(filters=dg.RunsFilter(job_name="daily_job"))
        if not runs:
            return {"runs": 0}
        run = runs[0]
        planned = run.step_keys_to_execute
        if planned is None and run.execution_plan_snapshot_id:
            snapshot = instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
            planned = snapshot.step_keys_to_execute
        stats = instance.get_run_step_stats(run.run_id)
        return {
            "runs": len(runs),
            "run_id": run.run_id,
            "run_status": run.status.value,
            "tags": {k: v for k, v in run.tags.items() if k.startswith(("dagster/p", "progress/"))},
            "planned_step_keys": sorted(planned or []),
            "succeeded_step_keys": sorted(
                s.step_key for s in stats if getattr(s.status, "value", s.status) == "SUCCESS"
            ),
        }


_BUCKET_LOG = re.compile(r"^buckets (\d+)\.\.(\d+): (.*)$")
_PHASE = re.compile(r"(\w+) ([0-9.]+) s")
_PUBLISHED = re.compile(r"snapshot (\d+), (\d+) files, (\d+) tables")
_PLAN = re.compile(r"^(\d+) academy bucket\(s\) in (\d+) step\(s\)")


def _span(times: list[tuple[float, float]]) -> float | None:
    return round(max(e for _, e in times) - min(s for s, _ in times), 3) if times else None


def lake_steps(dagster_home: Path) -> dict:
    """Phases of the lake_job run recorded at `dagster_home` (the only run there), from its
    event log: per step its launch (first event of the step: the subprocess being started,
    with the multiprocess executor), STEP_START and STEP_SUCCESS (wall clock, seconds)."""
    os.environ["DAGSTER_HOME"] = str(dagster_home)
    import dagster as dg

    with dg.DagsterInstance.get() as instance:
        runs = instance.get_runs(filters=dg.RunsFilter(job_name="lake_job"))
        if not runs:
            return {"runs": 0}
        run = runs[0]
        first: dict[str, float] = {}
        start: dict[str, float] = {}
        success: dict[str, float] = {}
        run_start = run_end = None
        phases: dict[str, float] = {}
        published: dict[str, int] = {}
        plan: dict[str, int] = {}
        for entry in instance.all_logs(run.run_id):
            event = entry.dagster_event
            kind = event.event_type_value if event else None
            key = entry.step_key
            if kind == "PIPELINE_START" or kind == "RUN_START":
                run_start = entry.timestamp
            elif kind in ("PIPELINE_SUCCESS", "RUN_SUCCESS", "PIPELINE_FAILURE", "RUN_FAILURE"):
                run_end = entry.timestamp
            if key:
                first.setdefault(key, entry.timestamp)
                if kind == "STEP_START":
                    start[key] = entry.timestamp  # the last attempt's (retries)
                elif kind == "STEP_SUCCESS":
                    success[key] = entry.timestamp
            if event is None and entry.user_message:
                text = entry.user_message
                if found := _BUCKET_LOG.match(text):
                    for name, seconds in _PHASE.findall(found.group(3)):
                        phases[name] = round(phases.get(name, 0.0) + float(seconds), 3)
                elif found := _PUBLISHED.search(text):
                    published = dict(
                        zip(("snapshot", "files", "tables"), map(int, found.groups()), strict=True)
                    )
                elif found := _PLAN.match(text):
                    plan = {"buckets": int(found.group(1)), "pieces": int(found.group(2))}

    def step(key: str) -> dict[str, float | None]:
        s, e, f = start.get(key), success.get(key), first.get(key)
        return {
            "seconds": round(e - s, 3) if s and e else None,
            "with_launch_seconds": round(e - f, 3) if f and e else None,
            "start": s,
            "end": e,
        }

    steps = {key: step(key) for key in sorted(first)}
    buckets = {k: v for k, v in steps.items() if k.startswith("lake_bucket")}
    prepare, publish = steps.get("lake_prepare", {}), steps.get("lake_publish", {})
    bucket_times = [(first[k], success[k]) for k in buckets if k in success]
    in_steps = [v["seconds"] for v in buckets.values()]
    return {
        "runs": len(runs),
        "run_id": run.run_id,
        "run_status": run.status.value,
        "run_seconds": round(run_end - run_start, 3) if run_start and run_end else None,
        "run_start": run_start,
        "run_end": run_end,
        "steps": {k: v["seconds"] for k, v in steps.items()},
        "bucket_steps": len(buckets),
        "prepare_seconds": prepare.get("seconds"),
        "prepare_with_launch_seconds": prepare.get("with_launch_seconds"),
        "bucket_steps_sum_seconds": (
            round(sum(in_steps), 3) if in_steps and None not in in_steps else None
        ),
        "bucket_steps_span_seconds": _span(bucket_times),
        "publish_seconds": publish.get("seconds"),
        "publish_with_launch_seconds": publish.get("with_launch_seconds"),
        "publish_start": publish.get("start"),
        "publish_end": publish.get("end"),
        "bucket_phase_seconds": phases,
        "plan": plan,
        "publication": published,
    }


def lake_reader(
    catalog: str, data_path: str, out: Path, stop_file: Path, interval: float = LAKE_READER_INTERVAL
) -> dict:
    """Query the lake until `stop_file` exists; every query as one JSON line of `out`:
    wall-clock start `t`, `seconds`, the count or the error. Prints `ready` after the
    connection is made (the caller starts the measured run then)."""
    from pipelines.core.lake import LakeConfig, connect

    config = LakeConfig(catalog, data_path)
    queries = errors = 0
    with open(out, "w", encoding="utf-8") as f, connect(config, read_only=True) as con:
        print("ready", flush=True)
        while not stop_file.exists():
            t0 = time.time()
            p0 = time.perf_counter()
            row: dict[str, object] = {"t": t0}
            try:
                row["count"] = con.execute(LAKE_READER_QUERY).fetchone()[0]
            except Exception as exc:  # e.g. no table yet in an empty lake
                errors += 1
                row["error"] = str(exc).strip().splitlines()[0][:200]
            row["seconds"] = round(time.perf_counter() - p0, 6)
            queries += 1
            f.write(json.dumps(row) + "\n")
            f.flush()
            time.sleep(interval)
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "queries": queries,
        "errors": errors,
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 3),
    }


def _table_rows(con, day: date) -> dict[str, dict[str, int]]:
    out = {}
    for name in HISTORY_TABLES:
        total, dates, on_day = con.execute(
            f"SELECT count(*), count(DISTINCT as_of_date), count(*) FILTER (as_of_date = ?) "
            f"FROM marts.{name}",
            [day],
        ).fetchone()
        out[name] = {"rows": total, "dates": dates, "rows_per_date": on_day}
    return out


def prepare_history(
    source: Path, warehouse: Path, landing: Path, as_of: str, timezone: str, days: int
) -> dict:
    """A copy of `source` whose history tables hold `days` dates ending at as_of's date D.

    D's rows are real: already in `source` (cmd_backfill_7d computed them) or made now with
    `progress backfill --start D --end D`. Building 30 real days at L would take too long, so
    every other date's rows are replaced by a copy of D's rows dated D-1 .. D-(days-1) (SQL):
    the volume of 30 days, not their content.
    """
    import time

    import duckdb

    day = as_of_day(as_of)
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    for path in warehouse.parent.glob(warehouse.name + "*"):
        if path.is_file():
            path.unlink()
    shutil.copyfile(source, warehouse)
    t0 = time.perf_counter()
    with duckdb.connect(str(warehouse), read_only=True) as con:
        have = {
            r[0]
            for r in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'marts'"
            ).fetchall()
        }
        real = set(HISTORY_TABLES) <= have and bool(
            con.execute(
                "SELECT count(*) FROM marts.lecture_progress_daily WHERE as_of_date = ?", [day]
            ).fetchone()[0]
        )
    backfill_seconds = None
    if not real:
        cmd = [tool("progress"), "backfill", "--start", day.isoformat(), "--end", day.isoformat()]
        cmd += ["--landing", str(landing), "--warehouse", str(warehouse), "--timezone", timezone]
        t1 = time.perf_counter()
        done = subprocess.run(cmd, env=user_env(), capture_output=True, text=True, check=False)
        backfill_seconds = round(time.perf_counter() - t1, 3)
        if done.returncode != 0:
            tail = [line for line in done.stderr.splitlines() if line.strip()]
            raise RuntimeError(f"progress backfill of {day}: {tail[-1] if tail else 'failed'}")
    with duckdb.connect(str(warehouse)) as con:
        con.execute("BEGIN TRANSACTION")
        for name in HISTORY_TABLES:
            con.execute(f"DELETE FROM marts.{name} WHERE as_of_date <> ?", [day])
            for back in range(1, days):
                con.execute(
                    f"INSERT INTO marts.{name} SELECT * REPLACE (CAST(as_of_date - "
                    f"INTERVAL {back} DAY AS DATE) AS as_of_date) FROM marts.{name} "
                    "WHERE as_of_date = ?",
                    [day],
                )
        con.execute("COMMIT")
        con.execute("CHECKPOINT")
        rows = _table_rows(con, day)
    return {
        "history_days": days,
        "real_day": day.isoformat(),
        "real_day_source": "source warehouse" if real else "progress backfill",
        "backfill_seconds": backfill_seconds,
        "setup_seconds": round(time.perf_counter() - t0, 3),
        "history_rows": rows,
        "warehouse_bytes_before": warehouse.stat().st_size,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipelines.bench.commands")
    sub = p.add_subparsers(dest="what", required=True)
    steps = sub.add_parser("steps")
    steps.add_argument("--dagster-home", required=True)
    prep = sub.add_parser("prepare-history")
    for name in ("--source", "--warehouse", "--landing", "--as-of", "--tz"):
        prep.add_argument(name, required=True)
    prep.add_argument("--days", type=int, default=HISTORY_DAYS)
    lake = sub.add_parser("lake-steps")
    lake.add_argument("--dagster-home", required=True)
    reader = sub.add_parser("lake-reader")
    for name in ("--catalog", "--data-path", "--out", "--stop-file"):
        reader.add_argument(name, required=True)
    reader.add_argument("--interval", type=float, default=LAKE_READER_INTERVAL)
    a = p.parse_args(argv)
    try:
        if a.what == "steps":
            out = run_steps(Path(a.dagster_home))
        elif a.what == "lake-steps":
            out = lake_steps(Path(a.dagster_home))
        elif a.what == "lake-reader":
            out = lake_reader(a.catalog, a.data_path, Path(a.out), Path(a.stop_file), a.interval)
        else:
            out = prepare_history(
                Path(a.source), Path(a.warehouse), Path(a.landing), a.as_of, a.tz, a.days
            )
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(f"{type(exc).__name__}: {first}".rstrip(": "), file=sys.stderr)
        return 1
    print(json.dumps(out, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
