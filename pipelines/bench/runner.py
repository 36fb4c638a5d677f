"""`run_bench`: generate (or reuse) a tier's extracts, run every stage in its own process,
print the figures as tables and write them as JSON (keys documented in BENCHMARKS.md).

This process stays small (standard library and rich only): the stages import Polars, DuckDB
and (end to end only) Dagster in their own processes.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from pipelines.bench import AS_OF, TIERS, Tier
from pipelines.bench import commands as cmds
from pipelines.bench.measure import kill_tree, over_limit, tree_rss_kb

SCHEMA_VERSION = 2
MAX_RSS_GB = 20.0  # a stage above this is killed (the machine has 24 GB)
STAGE_TIMEOUT_S = 3600.0
SQL_PEER_MEMORY_LIMIT = "12GB"
SQL_PEER_THREADS = 2
TIMEZONE = "Asia/Seoul"
STAGE_ORDER = (
    "lower_bound",
    "ingest",
    "marts",
    "sql_peer",
    "e2e",
    "exports",
    "per_event",
    *cmds.COMMAND_STAGES,
    cmds.LAKE_STAGE,  # --backend lake: one stage `cmd_run_lake_w<N>` per worker count
)
NEEDS = {
    "marts": ("ingest",),
    "sql_peer": ("marts",),
    "exports": ("e2e",),
    "per_event": ("marts",),
    **{name: ("cmd_run",) for name in cmds.COMMAND_STAGES if name != "cmd_run"},
}
TARGETS_TIER = "L"
BACKENDS = ("file", "lake")
DEFAULT_WORKERS = (1, 2)
LAKE_RATIO_TARGET = 1.2  # lake run (most workers) / file progress run, at most
LAKE_PUBLISH_TARGET_S = 10.0  # the publish step at L, at most


class BenchError(Exception):
    """The benchmark could not produce trustworthy figures; the message is one line."""


# -- machine -----------------------------------------------------------------------------------
def machine() -> dict[str, object]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    versions = {}
    for package in ("polars", "duckdb", "dagster", "pyarrow"):
        try:
            from importlib.metadata import version

            versions[package] = version(package)
        except Exception:
            versions[package] = None
    return {
        "nproc": os.cpu_count(),
        "memory_gb": memory_gb,
        "cpu_model": cpu,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "packages": versions,
    }


def code_version() -> dict[str, object]:
    """The commit measured, and how many files differ from it (uncommitted work)."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", *args],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
                cwd=Path(__file__).resolve().parent,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain")
    return {
        "commit": commit.strip() if commit else None,
        "changed_files": len(status.splitlines()) if status is not None else None,
    }


# -- extracts ----------------------------------------------------------------------------------
def extracts_complete(landing: Path, tier: Tier) -> bool:
    """The tier's extracts are there, whole: the manifest (written last) matches the tier."""
    manifest = landing / "_manifest.json"
    if not manifest.is_file():
        return False
    try:
        args = json.loads(manifest.read_text(encoding="utf-8")).get("args", {})
    except (OSError, ValueError):
        return False
    if any(args.get(k) != v for k, v in tier.generate_args().items()):
        return False
    from pipelines.core.contract import SPECS, TABLES

    return all(
        (landing / f"{t}.parquet").is_file() or any((landing / t).glob("*.parquet"))
        for t in TABLES
        if not SPECS[t].is_optional
    )


def _manifest_rows(landing: Path) -> dict[str, int]:
    try:
        return json.loads((landing / "_manifest.json").read_text(encoding="utf-8"))["rows"]
    except (OSError, ValueError, KeyError):
        return {}


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*.parquet") if p.is_file())


# -- one stage in its own process ----------------------------------------------------------------
def run_stage(
    name: str,
    args: list[str],
    work: Path,
    *,
    max_rss_gb: float = MAX_RSS_GB,
    timeout: float = STAGE_TIMEOUT_S,
    on_progress=None,
) -> dict[str, object]:
    """Run `python -m pipelines.bench.stage NAME ARGS`; return its result plus process figures.

    `process_seconds` is the child's whole wall time (interpreter start and imports included);
    `peak_rss_mb` its peak resident set from `os.wait4` (ru_maxrss). A watchdog kills its whole
    process tree when the tree's summed RSS passes `max_rss_gb` or after `timeout` seconds; the
    result then says so in `error`.
    """
    result_file = work / f"stage-{name}.json"
    stderr_file = work / f"stage-{name}.stderr"
    result_file.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "pipelines.bench.stage", name, "--result", str(result_file), *args]
    killed: list[str] = []
    last_note = [""]
    start = time.perf_counter()
    with open(stderr_file, "w", encoding="utf-8") as stderr:
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=stderr, text=True, start_new_session=True
        )
        done = threading.Event()

        def read_stdout() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                if line.startswith("@progress ") and on_progress is not None:
                    _, a, b = line.split()
                    on_progress(int(a), int(b))
                elif line.startswith("@note "):
                    last_note[0] = line[len("@note ") :].strip()

        def watchdog() -> None:
            while not done.wait(0.25):
                rss, _ = tree_rss_kb(proc.pid)  # the stage and any process it started
                verdict = over_limit(rss, max_rss_gb, time.perf_counter() - start, timeout)
                if verdict:
                    killed.append(verdict)
                if killed:
                    kill_tree(proc.pid)
                    return

        threads = [
            threading.Thread(target=read_stdout, daemon=True),
            threading.Thread(target=watchdog, daemon=True),
        ]
        for t in threads:
            t.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        done.set()
        for t in threads:
            t.join(timeout=5)
    outcome: dict[str, object] = {}
    if result_file.is_file():
        outcome = json.loads(result_file.read_text(encoding="utf-8"))
    error = killed[0] if killed else outcome.get("error")
    if killed and last_note[0]:
        error += f" (last progress: at {last_note[0]})"
    if proc.returncode != 0 and not error:
        tail = [
            line for line in stderr_file.read_text(errors="replace").splitlines() if line.strip()
        ]
        error = tail[-1] if tail else f"exit code {proc.returncode}"
    return {
        "status": "failed" if error else "ok",
        "seconds": None if error else outcome.get("seconds"),
        "cpu_seconds": None if error else outcome.get("cpu_seconds"),
        "process_seconds": round(wall, 3),
        "process_cpu_seconds": round(usage.ru_utime + usage.ru_stime, 3),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "details": outcome.get("details", {}),
        "error": error,
        "note": None,
    }


def _skipped(note: str | None) -> dict[str, object]:
    return {
        "status": "skipped",
        "seconds": None,
        "cpu_seconds": None,
        "process_seconds": None,
        "process_cpu_seconds": None,
        "peak_rss_mb": None,
        "details": {},
        "error": None,
        "note": note,
    }


# -- one command as a user starts it ----------------------------------------------------------
def _helper(args: list[str], timeout: float) -> dict:
    """An untimed helper of `pipelines.bench.commands` in its own process; its JSON."""
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.bench.commands", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        tail = [line for line in done.stderr.splitlines() if line.strip()]
        raise BenchError(tail[-1] if tail else f"helper {args[0]} failed")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_command(
    name: str,
    cmd: list[str],
    work: Path,
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    max_rss_gb: float = MAX_RSS_GB,
    timeout: float = STAGE_TIMEOUT_S,
) -> dict[str, object]:
    """Run `cmd` under `python -m pipelines.bench.measure` (its own process: RUSAGE_CHILDREN
    there is this command's alone); the stage result in the layout of `run_stage`.

    `seconds` and `process_seconds` are both the command's whole wall time; `peak_rss_mb` the
    larger of the tree-sum peak (sampled every 50 ms) and the two ru_maxrss figures.
    """
    result_file, out_file, err_file = (work / f"{name}.{x}" for x in ("json", "stdout", "stderr"))
    result_file.unlink(missing_ok=True)
    wrapper = [sys.executable, "-m", "pipelines.bench.measure", "--result", str(result_file)]
    wrapper += ["--stdout", str(out_file), "--stderr", str(err_file)]
    wrapper += ["--max-rss-gb", str(max_rss_gb), "--timeout", str(timeout), "--", *cmd]
    done = subprocess.run(
        wrapper, env=env, cwd=cwd, timeout=timeout + 60, check=False, capture_output=True
    )
    if done.returncode != 0 or not result_file.is_file():
        tail = [line for line in done.stderr.decode(errors="replace").splitlines() if line]
        raise BenchError(f"measuring {name} failed: {tail[-1] if tail else done.returncode}")
    m = json.loads(result_file.read_text(encoding="utf-8"))
    ok = m["status"] == "ok"
    return {
        "status": m["status"],
        "seconds": m["seconds"] if ok else None,
        "cpu_seconds": m["cpu_seconds"] if ok else None,
        "process_seconds": m["seconds"],
        "process_cpu_seconds": m["cpu_seconds"],
        "peak_rss_mb": m["peak_rss_mb"],
        "details": {
            "command": shlex.join(cmd),
            "exit_code": m["exit_code"],
            "tree_peak_rss_mb": m["tree_peak_rss_mb"],
            "top_maxrss_mb": m["top_maxrss_mb"],
            "children_maxrss_mb": m["children_maxrss_mb"],
            "max_processes": m["max_processes"],
            "rss_samples": m["samples"],
        },
        "error": m["error"],
        "note": None,
    }


def _export_files(folder: Path) -> dict[str, object]:
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"files": None, "bytes": None}
    files = manifest.get("files", [])
    return {"files": len(files), "bytes": sum(f.get("bytes", 0) for f in files)}


def command_stage(
    name: str,
    *,
    landing: Path,
    work: Path,
    as_of: str,
    timezone: str,
    max_rss_gb: float,
    timeout: float,
) -> dict[str, object]:
    """One of `commands.COMMAND_STAGES`: its set-up (untimed), the command, its checks."""
    folder = work / "cmd"
    folder.mkdir(exist_ok=True)
    warehouse = folder / "warehouse.duckdb"  # cmd_run's, then the later commands'
    env, cwd, out, extra, note = cmds.user_env(), cmds.ROOT, None, {}, None
    target = warehouse
    if name == "cmd_run":  # a fresh warehouse (the work folder is new; a rerun of the stage)
        for path in folder.glob(warehouse.name + "*"):
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
    elif name == "cmd_daily_job":
        cwd = folder / "daily"
        env = cmds.daily_job_setup(cwd, landing, warehouse, timezone)
        extra = {"partition": cmds.daily_partition(as_of), "tags": cmds.daily_tags(as_of)}
    elif name == "cmd_backfill_7d":
        last = cmds.as_of_day(as_of)
        extra = {"dates": cmds.BACKFILL_DAYS, "end": last.isoformat()}
    elif name == "cmd_export":
        out = folder / "exports"
    elif name == "cmd_report":
        out = folder / "report.html"
    elif name == "cmd_second_run":
        target = folder / "history" / "warehouse.duckdb"
        extra = _helper(
            [
                "prepare-history",
                "--source",
                str(warehouse),
                "--warehouse",
                str(target),
                "--landing",
                str(landing),
                "--as-of",
                as_of,
                "--tz",
                timezone,
                "--days",
                str(cmds.HISTORY_DAYS),
            ],
            timeout,
        )
        note = (
            f"{cmds.HISTORY_DAYS} dates of history: {extra['real_day']} computed for real, its "
            f"rows copied (SQL) to the {cmds.HISTORY_DAYS - 1} previous dates"
        )
    cmd = cmds.command_line(
        name, landing=landing, warehouse=target, as_of=as_of, timezone=timezone, out=out
    )
    stage = run_command(name, cmd, work, env=env, cwd=cwd, max_rss_gb=max_rss_gb, timeout=timeout)
    details = stage["details"]
    details.update(extra)
    stage["note"] = note
    if stage["status"] != "ok":
        return stage
    if name in ("cmd_run", "cmd_daily_job", "cmd_backfill_7d", "cmd_second_run"):
        details["warehouse_bytes"] = target.stat().st_size
    if name == "cmd_daily_job":
        steps = _helper(["steps", "--dagster-home", str(cwd / "dagster_home")], timeout)
        details.update(
            {
                "run_status": steps.get("run_status"),
                "planned_step_keys": steps.get("planned_step_keys"),
                "succeeded_step_keys": steps.get("succeeded_step_keys"),
            }
        )
        unfinished = set(steps.get("planned_step_keys") or ()) - set(
            steps.get("succeeded_step_keys") or ()
        )
        if steps.get("run_status") != "SUCCESS" or unfinished or not steps.get("runs"):
            stage.update(status="failed", seconds=None, cpu_seconds=None)
            stage["error"] = (
                f"daily_job run {steps.get('run_status')}; steps not succeeded: "
                f"{', '.join(sorted(unfinished)) or '-'}"
            )
    elif name == "cmd_export":
        details.update(_export_files(out))
    elif name == "cmd_report":
        details["bytes"] = out.stat().st_size if out.is_file() else None
    return stage


# -- the lake backend: progress run --backend lake, one measurement per worker count ---------------
def lake_stage_name(workers: int) -> str:
    return f"{cmds.LAKE_STAGE}_w{workers}"


def _percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of `values`, None when empty."""
    if not values:
        return None
    import math

    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


def _latency(rows: list[dict]) -> dict[str, object]:
    ok = [r["seconds"] for r in rows if "error" not in r]
    return {
        "queries": len(rows),
        "errors": len(rows) - len(ok),
        "p50_ms": None if not ok else round(_percentile(ok, 50) * 1000, 1),
        "p95_ms": None if not ok else round(_percentile(ok, 95) * 1000, 1),
        "max_ms": None if not ok else round(max(ok) * 1000, 1),
    }


def reader_figures(rows: list[dict], steps: dict) -> dict[str, object]:
    """The reader's latencies over the whole run and over the queries started while the
    publish step ran (its STEP_START .. STEP_SUCCESS in the event log)."""
    lo, hi = steps.get("publish_start"), steps.get("publish_end")
    during = [r for r in rows if lo and hi and lo <= r["t"] <= hi]
    counts = sorted({r["count"] for r in rows if "count" in r})
    return {
        "query": cmds.LAKE_READER_QUERY,
        "interval_seconds": cmds.LAKE_READER_INTERVAL,
        "whole_run": _latency(rows),
        "during_publish": _latency(during),
        "counts_seen": counts[:5],
    }


class LakeServer:
    """The benchmark's own Postgres (the catalog, `pipelines/bench/postgres.py`) and the tier's
    lake folder; one catalog database per measurement."""

    def __init__(self, folder: Path) -> None:
        import tempfile

        from pipelines.bench import postgres

        self.folder = folder
        # the server's folder must be the postgres user's: a temporary folder, not the work tree
        self.scratch = Path(tempfile.mkdtemp(prefix="bench-pg-"))
        self.scratch.chmod(0o755)  # the postgres user reaches its folder inside
        try:
            self.server = postgres.start_postgres(self.scratch / "pg")
        except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
            shutil.rmtree(self.scratch, ignore_errors=True)
            raise BenchError(f"could not start Postgres for the lake: {exc}") from None

    def create_database(self, template: str | None = None) -> str:
        """A new catalog database: empty, or a copy of `template` (`createdb -T`)."""
        if template is None:
            return self.server.create_database()
        from pipelines.bench import postgres

        name = f"lake_{next(self.server._databases)}"
        server = self.server
        postgres._run([server.bin / "createdb", "-h", server.socket_dir, "-p", server.port,
                       "-U", "postgres", "-T", template, name])  # fmt: skip
        return name

    def close(self) -> None:
        from pipelines.bench import postgres

        try:
            postgres.stop_postgres(self.server)
        finally:
            shutil.rmtree(self.scratch, ignore_errors=True)


def lake_stage(
    workers: int,
    server: LakeServer,
    previous: dict | None,
    *,
    landing: Path,
    work: Path,
    as_of: str,
    timezone: str,
    max_rss_gb: float,
    timeout: float,
    reader: bool,
) -> tuple[dict[str, object], dict]:
    """`progress run --backend lake --workers N` measured as a process tree, on a fresh catalog
    database: empty for the first measurement, else a copy (`createdb -T`) of the previous
    measurement's catalog on the same data folder (one previous publication). Returns the
    stage and the lake it left (`database`, `data_path`) for the next measurement."""
    name = lake_stage_name(workers)
    folder = server.folder
    data_path = folder / "data"
    if previous is None:
        shutil.rmtree(data_path, ignore_errors=True)
        data_path.mkdir(parents=True)
        database = server.create_database()
    else:
        database = server.create_database(template=previous["database"])
    catalog = server.server.dsn(database)
    home = cmds.lake_home(folder / f"dagster-w{workers}")
    warehouse = folder / f"w{workers}" / "warehouse.duckdb"
    shutil.rmtree(warehouse.parent, ignore_errors=True)
    warehouse.parent.mkdir(parents=True)
    env = cmds.user_env({"DAGSTER_HOME": str(home)})
    cmd = cmds.lake_command_line(
        landing=landing,
        warehouse=warehouse,
        as_of=as_of,
        timezone=timezone,
        catalog=catalog,
        data_path=data_path,
        workers=workers,
    )
    reader_proc = None
    reader_out, stop = folder / f"reader-w{workers}.jsonl", folder / f"reader-w{workers}.stop"
    reader_err = folder / f"reader-w{workers}.stderr"
    stop.unlink(missing_ok=True)
    if reader:
        err_file = reader_err.open("w", encoding="utf-8")
        reader_proc = subprocess.Popen(
            [sys.executable, "-m", "pipelines.bench.commands", "lake-reader", "--catalog",
             catalog, "--data-path", str(data_path), "--out", str(reader_out),
             "--stop-file", str(stop)],
            stdout=subprocess.PIPE, stderr=err_file, text=True, env=cmds.user_env(),
        )  # fmt: skip
        assert reader_proc.stdout is not None
        if reader_proc.stdout.readline().strip() != "ready":
            reader_proc.kill()
            reader_proc.wait()
            err_file.close()
            tail = [line for line in reader_err.read_text().splitlines() if line.strip()]
            raise BenchError(f"the lake reader did not start: {tail[-1] if tail else '?'}")
    try:
        stage = run_command(
            name, cmd, work, env=env, cwd=cmds.ROOT, max_rss_gb=max_rss_gb, timeout=timeout
        )
    finally:
        if reader_proc is not None:
            stop.touch()
            try:
                reader_proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                reader_proc.kill()
                reader_proc.wait()
            err_file.close()
    details = stage["details"]
    details.update(
        {
            "workers": workers,
            "catalog_database": database,
            "data_path": str(data_path),
            "lake_before": "empty" if previous is None else "one previous publication",
        }
    )
    stage["note"] = (
        "empty lake"
        if previous is None
        else f"lake holding one publication ({lake_stage_name(previous['workers'])}'s)"
    )
    if stage["status"] == "ok":
        try:
            summary = json.loads((work / f"{name}.stdout").read_text(encoding="utf-8"))
            details["snapshot"] = summary.get("snapshot")
        except (OSError, ValueError):
            details["snapshot"] = None
        steps = _helper(["lake-steps", "--dagster-home", str(home)], timeout)
        details.update(
            {k: v for k, v in steps.items() if k not in ("runs", "run_start", "run_end")}
        )
        wall = stage["seconds"]
        inside = sum(
            v or 0
            for v in (
                steps.get("prepare_seconds"),
                steps.get("bucket_steps_span_seconds"),
                steps.get("publish_seconds"),
            )
        )
        details["outside_steps_seconds"] = round(wall - inside, 3)
        details["serial_seconds"] = (
            round(wall - steps["bucket_steps_sum_seconds"], 3)
            if steps.get("bucket_steps_sum_seconds") is not None
            else None
        )
        if steps.get("run_status") != "SUCCESS":
            stage.update(status="failed", seconds=None, cpu_seconds=None)
            stage["error"] = f"lake_job run {steps.get('run_status')}"
        if reader_proc is not None:
            rows = [
                json.loads(line)
                for line in reader_out.read_text(encoding="utf-8").splitlines()
                if line.strip()
            ]
            own = {}
            with contextlib.suppress(OSError, ValueError, IndexError):
                own = json.loads(reader_proc.stdout.read().strip().splitlines()[-1])
            details["reader"] = reader_figures(rows, steps) | {
                "concurrent_with_run": True,
                # the reader process's own CPU (imports and attach included): what it took
                # from the measured run's 2 cores
                "reader_cpu_seconds": own.get("cpu_seconds"),
            }
    return stage, {"database": database, "workers": workers}


def lake_ratios(result: dict, workers: tuple[int, ...]) -> dict[str, object]:
    """Speed-up, serial share, lake / file ratio and publish time of the lake stages."""
    stages = result["stages"]

    def ok(n: int) -> dict:
        stage = stages.get(lake_stage_name(n)) or {}
        return stage if stage.get("status") == "ok" else {}

    one, most = ok(min(workers)), ok(max(workers))
    d1, dn = one.get("details") or {}, most.get("details") or {}
    serial = d1.get("serial_seconds")
    return {
        "workers": list(workers),
        "speedup": _ratio(one.get("seconds"), most.get("seconds")) if len(workers) > 1 else None,
        "speedup_workers": f"{min(workers)} -> {max(workers)}",
        "serial_share": (
            _ratio(serial, one.get("seconds")) if min(workers) == 1 and serial is not None else None
        ),
        "bucket_steps_share": (
            _ratio(d1.get("bucket_steps_sum_seconds"), one.get("seconds"))
            if min(workers) == 1
            else None
        ),
        "lake_over_file_run": _ratio(most.get("seconds"), _seconds(stages, "cmd_run")),
        "publish_seconds": dn.get("publish_seconds"),
        "files_per_publication": (dn.get("publication") or {}).get("files"),
        "bucket_steps": dn.get("bucket_steps"),
        "reader": dn.get("reader"),
    }


def lake_targets(result: dict) -> list[dict[str, object]]:
    lake = result.get("lake") or {}
    binding = result["tier"]["name"] == TARGETS_TIER
    rows = [
        (
            f"lake run ({max(lake.get('workers') or [0])} workers) / file progress run "
            f"<= {LAKE_RATIO_TARGET}",
            lake.get("lake_over_file_run"),
            lambda v: v <= LAKE_RATIO_TARGET,
        ),
        (
            f"lake publish step <= {LAKE_PUBLISH_TARGET_S:g} s",
            lake.get("publish_seconds"),
            lambda v: v <= LAKE_PUBLISH_TARGET_S,
        ),
    ]
    return [
        {
            "target": name,
            "value": value,
            "met": None if value is None else bool(test(value)),
            "binding": binding,
        }
        for name, value, test in rows
    ]


def run_lake_stages(
    result: dict,
    workers: tuple[int, ...],
    *,
    landing: Path,
    work: Path,
    as_of: str,
    console: Console,
    max_rss_gb: float,
    timeout: float,
) -> dict[str, object]:
    """Every lake measurement, fewest workers first, on the benchmark's own Postgres; the
    reader runs during the last one (most workers) when its lake holds a previous publication
    (with one worker count alone, the lake is empty and there is no reader)."""
    folder = work / "lake"
    folder.mkdir(exist_ok=True)
    t0 = time.perf_counter()
    server = LakeServer(folder)
    info: dict[str, object] = {
        "postgres": str(server.server.bin),
        "postgres_start_seconds": round(time.perf_counter() - t0, 3),
        "data_path": str(folder / "data"),
        "lake_before": (
            f"{lake_stage_name(workers[0])}: empty; each later measurement: a copy of the "
            "previous one's catalog (createdb -T) on the same data folder, i.e. one previous "
            "publication"
        ),
    }
    previous = None
    try:
        for n in workers:
            name = lake_stage_name(n)
            try:
                stage, lake_left = lake_stage(
                    n, server, previous, landing=landing, work=work, as_of=as_of,
                    timezone=TIMEZONE, max_rss_gb=max_rss_gb, timeout=timeout,
                    # a read-only attach needs an existing lake: not beside the first run
                    reader=n == workers[-1] and previous is not None,
                )  # fmt: skip
            except (BenchError, OSError, RuntimeError, subprocess.SubprocessError) as exc:
                stage, lake_left = _skipped(None) | {"status": "failed", "error": str(exc)}, None
            result["stages"][name] = stage
            if stage["status"] == "ok":
                previous = lake_left
            d = stage["details"]
            console.print(
                f"  {name}: {stage['status']}: {_fmt(stage['seconds'])} s, "
                f"{_fmt(stage['peak_rss_mb'], 0)} MB peak RSS; prepare "
                f"{_fmt(d.get('prepare_seconds'))} s, {d.get('bucket_steps')} bucket step(s) "
                f"{_fmt(d.get('bucket_steps_sum_seconds'))} s summed / "
                f"{_fmt(d.get('bucket_steps_span_seconds'))} s span, publish "
                f"{_fmt(d.get('publish_seconds'))} s"
                + (f" [red]{stage['error']}[/]" if stage["error"] else ""),
                highlight=False,
            )
    finally:
        server.close()
    return info


# -- ratios and targets ------------------------------------------------------------------------
def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 4) if a is not None and b else None


def _seconds(stages: dict, name: str) -> float | None:
    stage = stages.get(name) or {}
    return stage.get("seconds") if stage.get("status") == "ok" else None


def _load(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def ratios(result: dict, siblings: dict[str, dict]) -> dict[str, object]:
    stages = result["stages"]
    session_rows = result["data"].get("session_progress_rows") or 0
    millions = session_rows / 1e6 if session_rows else None
    marts, peer, floor = (_seconds(stages, n) for n in ("marts", "sql_peer", "lower_bound"))
    e2e = stages.get("e2e", {})
    compute = (stages.get("marts", {}).get("details") or {}).get("compute_seconds")
    spm: dict[str, float | None] = {}
    for name in ("e2e", "ingest", "marts", "sql_peer", "lower_bound"):
        seconds = _seconds(stages, name)
        spm[name] = round(seconds / millions, 4) if millions and seconds is not None else None
    spm["e2e_process"] = (
        round(e2e["process_seconds"] / millions, 4)
        if millions and e2e.get("status") == "ok"
        else None
    )
    out: dict[str, object] = {
        "second_run_over_first": _ratio(
            _seconds(stages, "cmd_second_run"), _seconds(stages, "cmd_run")
        ),
        # the same in CPU seconds of the process trees: steadier than wall time when other work
        # shares the machine (reported, no target)
        "second_run_over_first_cpu": _ratio(
            (stages.get("cmd_second_run") or {}).get("cpu_seconds"),
            (stages.get("cmd_run") or {}).get("cpu_seconds"),
        ),
        "sql_peer_over_marts": _ratio(peer, marts),
        "marts_over_lower_bound": _ratio(marts, floor),
        "marts_compute_over_lower_bound": _ratio(compute, floor) if marts else None,
        "seconds_per_million_session_rows": spm,
    }
    # linear growth: L's seconds per million session rows over M's
    me = result["tier"]["name"]
    other = {"L": "M", "M": "L"}.get(me)
    out["linearity_L_over_M"] = None
    out["linearity_source"] = None
    if other and other in siblings:
        mine = spm
        theirs = siblings[other].get("ratios", {}).get("seconds_per_million_session_rows", {})
        large, medium = (mine, theirs) if me == "L" else (theirs, mine)
        out["linearity_L_over_M"] = {
            k: _ratio(large.get(k), medium.get(k))
            for k in ("e2e", "e2e_process", "marts", "ingest", "sql_peer")
        }
        out["linearity_source"] = siblings[other].get("_path")
    # throughput: events per second, per-event service vs the pipeline end to end
    event_rows = result["data"].get("event_rows")
    pipeline_eps = (
        round(event_rows / e2e["process_seconds"], 1)
        if event_rows and e2e.get("status") == "ok"
        else None
    )
    per_event = stages.get("per_event", {})
    per_event_eps, source = None, None
    if per_event.get("status") == "ok":
        per_event_eps = per_event["details"].get("events_per_second")
        source = "this run"
    elif "S" in siblings:
        sib = siblings["S"].get("stages", {}).get("per_event", {})
        if sib.get("status") == "ok":
            per_event_eps, source = sib["details"].get("events_per_second"), siblings["S"]["_path"]
    out["pipeline_events_per_second"] = pipeline_eps
    out["per_event_events_per_second"] = round(per_event_eps, 1) if per_event_eps else None
    out["per_event_source"] = source
    out["per_event_over_pipeline"] = _ratio(per_event_eps, pipeline_eps)
    out["pipeline_over_per_event"] = _ratio(pipeline_eps, per_event_eps)
    return out


# (stage, wall seconds at most, peak RSS MiB at most): the commands as users run them
COMMAND_TARGETS = (
    ("cmd_run", "progress run", 60, 3072),
    ("cmd_daily_job", "daily_job (the schedule's run)", 90, 3072),
    ("cmd_backfill_7d", "progress backfill, 7 days", 240, 3072),
    ("cmd_export", "progress export", 30, 2048),
    ("cmd_report", "progress report", 15, 2048),
)


def targets(result: dict) -> list[dict[str, object]]:
    """The issue's targets (stated for tier L), evaluated on this run's figures."""
    stages, r = result["stages"], result["ratios"]

    def ok(name: str) -> dict:
        stage = stages.get(name, {})
        return stage if stage.get("status") == "ok" else {}

    rows = []
    for name, words, seconds, mb in COMMAND_TARGETS:
        rows.append(
            (f"{words}: wall <= {seconds} s", ok(name).get("seconds"), lambda v, c=seconds: v <= c)
        )
        rows.append(
            (
                f"{words}: peak RSS (process tree) <= {mb} MB",
                ok(name).get("peak_rss_mb"),
                lambda v, c=mb: v <= c,
            )
        )
    rows += [
        (
            "second progress run (30 days of history) / first <= 1.10",
            r.get("second_run_over_first"),
            lambda v: v <= 1.10,
        ),
        ("SQL peer / marts >= 1.5", r.get("sql_peer_over_marts"), lambda v: v >= 1.5),
        # the previous round's targets, on progress_job alone (stage e2e: no alerts)
        (
            "e2e (progress_job only) wall (process) <= 90 s",
            ok("e2e").get("process_seconds"),
            lambda v: v <= 90,
        ),
        (
            "e2e (progress_job only) peak RSS <= 4096 MB",
            ok("e2e").get("peak_rss_mb"),
            lambda v: v <= 4096,
        ),
        ("marts / lower bound <= 2.5", r.get("marts_over_lower_bound"), lambda v: v <= 2.5),
        (
            "s per M session rows, L / M <= 1.3 (e2e)",
            (r.get("linearity_L_over_M") or {}).get("e2e_process"),
            lambda v: v <= 1.3,
        ),
    ]
    out = [
        {
            "target": name,
            "value": value,
            "met": None if value is None else bool(test(value)),
            "binding": result["tier"]["name"] == TARGETS_TIER,
        }
        for name, value, test in rows
    ]
    out.append(
        {
            "target": "per-event / pipeline events per second (reported, no target)",
            "value": r.get("per_event_over_pipeline"),
            "met": None,
            "binding": False,
        }
    )
    return out


# -- printing ----------------------------------------------------------------------------------
def _fmt(v, digits: int = 2, missing: str = "-") -> str:
    if v is None:
        return missing
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def _note(name: str, stage: dict) -> str:
    d = stage.get("details") or {}
    if name.startswith(cmds.LAKE_STAGE) and d:
        return (
            f"{d.get('lake_before')}; prepare {_fmt(d.get('prepare_seconds'))}, "
            f"{d.get('bucket_steps')} bucket step(s) {_fmt(d.get('bucket_steps_sum_seconds'))} "
            f"summed / {_fmt(d.get('bucket_steps_span_seconds'))} span, publish "
            f"{_fmt(d.get('publish_seconds'))} s, "
            f"{(d.get('publication') or {}).get('files')} files"
        )
    if name.startswith("cmd_") and d:
        text = (
            f"tree {_fmt(d.get('tree_peak_rss_mb'), 0)} MB sampled, largest process "
            f"{_fmt(d.get('top_maxrss_mb'), 0)} MB, {d.get('max_processes')} process(es)"
        )
        if name == "cmd_second_run":
            text += f"; {d.get('history_days')} days of history (1 real, copied)"
        return text
    if name == "marts":
        return (
            f"{d.get('buckets')} bucket(s): read {_fmt(d.get('read_seconds'))}, compute "
            f"{_fmt(d.get('compute_seconds'))} (with checks), write "
            f"{_fmt(d.get('write_seconds'))} s"
        )
    if name == "e2e":
        return (
            f"steps: ingest {_fmt(d.get('ingest_steps_seconds'))}, marts "
            f"{_fmt(d.get('marts_step_seconds'))}, checks "
            f"{_fmt(d.get('check_steps_seconds'))} s"
        )
    if name == "sql_peer":
        return "verified = marts" if d.get("verified") else ""
    if name == "per_event":
        eps = d.get("events_per_second") or 0
        return (
            f"{eps:,.0f} events/s, {d.get('events_replayed', 0):,}/"
            f"{d.get('events_total', 0):,} events"
            + (", verified" if d.get("verified") else ", extrapolated")
        )
    return ""


def print_result(result: dict, console: Console) -> None:
    data = result["data"]
    console.print(
        f"tier [bold]{result['tier']['name']}[/]: {result['tier']['enrollments']:,} enrollments, "
        f"{_fmt(data.get('session_progress_rows'))} session rows, "
        f"{_fmt(data.get('event_rows'))} event rows, as of {result['as_of']}; load average "
        f"{result['load_average_start'][0]:.2f} at start, "
        f"{result.get('load_average_end', [0])[0]:.2f} at end",
        highlight=False,
    )
    table = Table(title="stages (each in a fresh process)")
    table.add_column("stage", no_wrap=True)
    table.add_column("status", no_wrap=True)
    for header in ("work s", "work cpu s", "process s", "peak RSS MB", "s/M sess rows"):
        table.add_column(header, justify="right")
    table.add_column("notes")
    spm = result["ratios"]["seconds_per_million_session_rows"]
    for name, stage in result["stages"].items():
        table.add_row(
            name,
            {"ok": "[green]ok[/]", "failed": "[red]failed[/]"}.get(
                stage["status"], f"[yellow]{stage['status']}[/]"
            ),
            _fmt(stage.get("seconds")),
            _fmt(stage.get("cpu_seconds")),
            _fmt(stage.get("process_seconds")),
            _fmt(stage.get("peak_rss_mb"), 0),
            _fmt(spm.get(name)),
            stage.get("error")
            or (stage.get("note") if stage["status"] == "skipped" else None)
            or _note(name, stage),
        )
    console.print(table)
    r = result["ratios"]
    ratios_table = Table("ratio", "value", title="ratios")
    for key in (
        "second_run_over_first",
        "second_run_over_first_cpu",
        "sql_peer_over_marts",
        "marts_over_lower_bound",
        "marts_compute_over_lower_bound",
        "pipeline_events_per_second",
        "per_event_events_per_second",
        "per_event_over_pipeline",
        "pipeline_over_per_event",
    ):
        ratios_table.add_row(key, _fmt(r.get(key), 4 if "over" in key else 1))
    for key, value in (r.get("linearity_L_over_M") or {}).items():
        ratios_table.add_row(f"linearity_L_over_M.{key}", _fmt(value, 3))
    console.print(ratios_table)
    lake = result.get("lake")
    if lake:
        lake_table = Table("lake figure", "value", title="lake backend")
        for key in (
            "speedup",
            "serial_share",
            "bucket_steps_share",
            "lake_over_file_run",
            "publish_seconds",
            "files_per_publication",
            "bucket_steps",
        ):
            lake_table.add_row(key, _fmt(lake.get(key), 3))
        reader = lake.get("reader") or {}
        for part in ("during_publish", "whole_run"):
            r = reader.get(part) or {}
            lake_table.add_row(
                f"reader {part.replace('_', ' ')} p50 / p95 ms ({r.get('queries')} queries)",
                f"{_fmt(r.get('p50_ms'), 1)} / {_fmt(r.get('p95_ms'), 1)}",
            )
        console.print(lake_table)
    t = Table("target (tier L)", "value", "met", title="targets")
    for row in result["targets"]:
        met = {True: "[green]met[/]", False: "[red]missed[/]", None: "-"}[row["met"]]
        t.add_row(row["target"], _fmt(row["value"], 3), met)
    console.print(t)


# -- the benchmark -------------------------------------------------------------------------------
def _tier(tier: str | Tier) -> Tier:
    if isinstance(tier, Tier):
        return tier
    if tier not in TIERS:
        raise BenchError(f"unknown tier {tier!r}; choose one of {', '.join(TIERS)}")
    return TIERS[tier]


def default_out(tier: Tier) -> Path:
    return Path("bench-results") / f"{tier.name}.json"


def run_bench(
    tier: str | Tier,
    out_json: Path | None = None,
    *,
    base: Path | None = None,
    as_of: str = AS_OF,
    console: Console | None = None,
    max_rss_gb: float = MAX_RSS_GB,
    stage_timeout: float = STAGE_TIMEOUT_S,
    stages: tuple[str, ...] | None = None,
    backend: str = "file",
    workers: tuple[int, ...] = DEFAULT_WORKERS,
) -> dict:
    """Benchmark one tier; write the JSON to `out_json` (default bench-results/<tier>.json).

    `backend="lake"` adds the stage cmd_run_lake (one measurement per count of `workers`,
    `progress run --backend lake`) on a Postgres catalog this benchmark starts and stops; the
    JSON then has a `lake` object (speed-up, serial share, lake / file ratio, publish time,
    reader latency). With the file backend the stage is not run.

    Raises BenchError (after writing the JSON) when a stage failed, e.g. the SQL peer's tables
    differ from the pipeline's marts: its figures must not be used.
    """
    tier = _tier(tier)
    if backend not in BACKENDS:
        raise BenchError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    workers = tuple(sorted(set(workers)))
    if not workers or min(workers) < 1:
        raise BenchError("--workers must be positive counts, e.g. 1,2")
    if stages is None:
        stages = tuple(n for n in STAGE_ORDER if backend == "lake" or n != cmds.LAKE_STAGE)
    unknown = [name for name in stages if name not in STAGE_ORDER]
    if unknown or not stages:
        raise BenchError(
            f"unknown stage(s) {', '.join(unknown) or '(none given)'}; choose from "
            + ", ".join(STAGE_ORDER)
        )
    stages = tuple(name for name in STAGE_ORDER if name in stages)  # dependencies first
    console = console or Console(width=None if sys.stdout.isatty() else 120)
    out_json = Path(out_json) if out_json else default_out(tier)
    root = tier.root(base).resolve()
    landing, work = root / "landing", root / "work"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    warehouse, e2e_warehouse = work / "bench.duckdb", work / "e2e" / "warehouse.duckdb"
    e2e_warehouse.parent.mkdir()

    result: dict = {
        "schema_version": SCHEMA_VERSION,
        "tier": {"name": tier.name, **{k: v for k, v in asdict(tier).items() if k != "name"}},
        "as_of": as_of,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_average_start": list(os.getloadavg()),
        "machine": machine(),
        "code": code_version(),
        "settings": {
            "max_rss_gb": max_rss_gb,
            "stage_timeout_s": stage_timeout,
            "timezone": TIMEZONE,
            "sql_peer_duckdb": {
                "threads": SQL_PEER_THREADS,
                "memory_limit": SQL_PEER_MEMORY_LIMIT,
                "temp_directory": str(work / "duckdb_tmp"),
                "preserve_insertion_order": False,
            },
        },
        "data": {"landing": str(landing)},
        "stages": {},
    }

    # extracts: reuse when complete, else generate in a child process with a progress bar
    if extracts_complete(landing, tier):
        result["data"]["generated"] = False
        result["data"]["generate"] = None
        console.print(f"reusing the {tier.name} extracts in {landing}", highlight=False)
    else:
        with Progress(
            TextColumn("generating {task.description}"),
            BarColumn(),
            TextColumn("{task.completed:,}/{task.total:,} enrollments"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as bar:
            task = bar.add_task(f"tier {tier.name}", total=tier.enrollments)
            generated = run_stage(
                "generate",
                [
                    "--landing",
                    str(landing),
                    "--enrollments",
                    str(tier.enrollments),
                    "--academies",
                    str(tier.academies),
                    "--seed",
                    str(tier.seed),
                ],
                work,
                max_rss_gb=max_rss_gb,
                timeout=stage_timeout,
                on_progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
        if generated["status"] != "ok":
            raise BenchError(f"generating the {tier.name} extracts failed: {generated['error']}")
        result["data"]["generated"] = True
        result["data"]["generate"] = {
            k: generated[k] for k in ("seconds", "process_seconds", "peak_rss_mb")
        }
    result["data"]["delivered_rows"] = _manifest_rows(landing)
    result["data"]["extract_bytes"] = _folder_bytes(landing)

    common = {"--tz": TIMEZONE, "--as-of": as_of}
    args = {
        "lower_bound": {"--landing": landing, "--tz": TIMEZONE},
        "ingest": {"--landing": landing, "--warehouse": warehouse, "--tz": TIMEZONE},
        "marts": {"--warehouse": warehouse, **common},
        "sql_peer": {
            "--warehouse": warehouse,
            "--as-of": as_of,
            "--threads": SQL_PEER_THREADS,
            "--memory-limit": SQL_PEER_MEMORY_LIMIT,
            "--temp-directory": work / "duckdb_tmp",
        },
        "e2e": {"--landing": landing, "--warehouse": e2e_warehouse, **common},
        "exports": {"--warehouse": e2e_warehouse, "--out": work / "exports"},
        "per_event": {
            "--warehouse": warehouse,
            "--sqlite": work / "per_event.sqlite",
            **common,
            **(
                {"--max-events": tier.per_event_events} if tier.per_event_events is not None else {}
            ),
        },
    }
    for name in stages:
        if name == cmds.LAKE_STAGE:
            if backend != "lake":
                result["stages"][name] = _skipped("needs --backend lake")
                continue
            console.print(
                f"stage [bold]{name}[/] (workers {', '.join(map(str, workers))}) ...",
                highlight=False,
            )
            result["lake"] = run_lake_stages(
                result, workers, landing=landing, work=work, as_of=as_of, console=console,
                max_rss_gb=max_rss_gb, timeout=stage_timeout,
            )  # fmt: skip
            continue
        if name == "per_event" and not tier.per_event:
            result["stages"][name] = _skipped("per-event style runs at tier S only")
            continue
        missing = [
            n for n in NEEDS.get(name, ()) if result["stages"].get(n, {}).get("status") != "ok"
        ]
        if missing:
            result["stages"][name] = _skipped(f"needs {', '.join(missing)}")
            continue
        console.print(f"stage [bold]{name}[/] ...", highlight=False)
        if name in cmds.COMMAND_STAGES:
            try:
                result["stages"][name] = command_stage(
                    name,
                    landing=landing,
                    work=work,
                    as_of=as_of,
                    timezone=TIMEZONE,
                    max_rss_gb=max_rss_gb,
                    timeout=stage_timeout,
                )
            except (BenchError, OSError, ValueError, subprocess.SubprocessError) as exc:
                # its set-up failed (e.g. an as-of that is not a date), not the command
                result["stages"][name] = _skipped(None) | {"status": "failed", "error": str(exc)}
        else:
            flat = [str(x) for k, v in args[name].items() for x in (k, v)]
            result["stages"][name] = run_stage(
                name, flat, work, max_rss_gb=max_rss_gb, timeout=stage_timeout
            )
        stage = result["stages"][name]
        console.print(
            f"  {stage['status']}: {_fmt(stage['seconds'])} s work, "
            f"{_fmt(stage['process_seconds'])} s process, "
            f"{_fmt(stage['peak_rss_mb'], 0)} MB peak RSS"
            + (f" [red]{stage['error']}[/]" if stage["error"] else ""),
            highlight=False,
        )

    marts_rows = (result["stages"].get("marts", {}).get("details") or {}).get("rows", {})
    result["data"]["session_progress_rows"] = marts_rows.get("session_progress")
    result["data"]["event_rows"] = (result["stages"].get("ingest", {}).get("details") or {}).get(
        "event_rows"
    )

    siblings = {}
    for name in ("S", "M", "L"):
        path = out_json.parent / f"{name}.json"
        if name != tier.name and (found := _load(path)) is not None:
            siblings[name] = found | {"_path": str(path)}
    result["ratios"] = ratios(result, siblings)
    result["targets"] = targets(result)
    if "lake" in result:
        result["lake"] |= lake_ratios(result, workers)
        result["targets"] += lake_targets(result)
    result["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    result["load_average_end"] = list(os.getloadavg())
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(
        json.dumps(result, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8"
    )
    print_result(result, console)
    console.print(f"figures written to {out_json}", highlight=False)
    failed = [f"{n}: {s['error']}" for n, s in result["stages"].items() if s["status"] == "failed"]
    if failed:
        raise BenchError("stage " + "; stage ".join(failed))
    return result
