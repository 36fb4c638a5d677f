"""One benchmark stage, run in its own process: `python -m pipelines.bench.stage NAME ...`.

A fresh process per stage makes its wall time and peak RSS its own (the parent reads them from
`os.wait4`). The stage writes its result as JSON to `--result`: `seconds` (the measured work,
after imports and set-up), `details` (stage-specific figures) and `rss_self_peak_mb`; on
failure `error` (one line) and a non-zero exit.

Stages:
  generate     write the tier's Parquet extracts (progress lines `@progress DONE TOTAL`)
  lower_bound  read every used input column once and group by key (Polars), the floor
  ingest       the pipeline's ingest: every table typed/quarantined, raw.* + quarantine.*
               replaced in DuckDB, table by table with references read back (as the assets do)
  marts        the pipeline's marts step as the asset runs it (compute_marts: buckets of
               enrollments, in-memory validation and invariants, side tables swapped in)
  sql_peer     the DuckDB-SQL peer over raw.*, then verified equal to marts.*
  e2e          `run_pipeline`, the real `progress run` path (one Dagster run, all checks)
  exports      what exports_job does after a publication: `export_warehouse` of e2e's file
  per_event    the old per-event service replayed on SQLite (`per_event.py`)
"""

from __future__ import annotations

import argparse
import cProfile
import json
import resource
import sys
import time
import traceback
from pathlib import Path

PROCESS_START = time.perf_counter()
_CPU: dict[str, float] = {}


def begin() -> float:
    """Start of the measured work: wall clock returned, CPU clock (all threads) kept."""
    _CPU["begin"] = time.process_time()
    return time.perf_counter()


def end(start: float) -> float:
    """End of the measured work: wall seconds since `start` (CPU seconds kept)."""
    _CPU["end"] = time.process_time()
    return time.perf_counter() - start


def _rss_self_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _peak_mb() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError):
        pass
    return None


def note(text: str) -> None:
    """A progress line for the parent (the last one is quoted if the stage is killed)."""
    print(f"@note {round(time.perf_counter() - PROCESS_START, 1)} s: {text}", flush=True)


def _as_of(text: str, tz: str):
    from pipelines.core.parse import parse_instant

    return parse_instant(text, tz)


def stage_generate(a: argparse.Namespace) -> dict:
    from pipelines.generate import generate_extracts

    def progress(done: int, total: int) -> None:
        print(f"@progress {done} {total}", flush=True)

    start = begin()
    # the eight tables BENCHMARKS.md measures; outcomes would add the rule evaluation's pass
    rows = generate_extracts(
        Path(a.landing),
        academies=a.academies,
        enrollments=a.enrollments,
        seed=a.seed,
        fmt="parquet",
        bad_rows=True,
        outcomes=False,
        progress=progress,
    )
    return {"seconds": end(start), "details": {"rows": rows}}


def stage_lower_bound(a: argparse.Namespace) -> dict:
    from pipelines.bench.lower_bound import lower_bound

    start = begin()
    result = lower_bound(Path(a.landing), a.tz)
    end(start)
    return {"seconds": result.pop("seconds"), "details": result}


def stage_ingest(a: argparse.Namespace) -> dict:
    import duckdb

    from assets.extracts import ingest_into, spill_folder
    from pipelines.core.contract import SPECS, TABLES
    from pipelines.resources import ProgressSettings, WarehouseResource

    warehouse = Path(a.warehouse)
    for path in (warehouse, Path(f"{warehouse}.wal")):
        path.unlink(missing_ok=True)
    target = ProgressSettings().bucket_enrollments
    resource = WarehouseResource(path=str(warehouse))
    tables: dict[str, dict] = {}
    start = begin()
    # the warehouse resource's DuckDB settings, as the asset runs (unbounded, DuckDB kept the
    # appended event rows in memory: the stage passed 20 GB at L)
    with duckdb.connect(
        str(warehouse),
        config={"memory_limit": resource.duckdb_memory_limit, "threads": resource.duckdb_threads},
    ) as con:
        for table in TABLES:
            note(f"ingesting {table}")
            t0 = time.perf_counter()
            # what the asset does: read the references, ingest (events bucket by bucket, each
            # appended as it is done), write quarantine.*, the audit row and the bucket ranges,
            # in one transaction
            spent: dict[str, float] = {}
            result = ingest_into(
                con,
                table,
                Path(a.landing),
                a.tz,
                target,
                spill_folder(warehouse),
                validate=False,
                timings=spent,
            )
            t1 = time.perf_counter()
            if not result.files and not SPECS[table].is_optional:
                raise RuntimeError(f"no readable extract for {table}")
            tables[table] = {
                "read_refs_seconds": round(spent["read_refs"], 4),
                "ingest_seconds": round(t1 - t0 - spent["read_refs"] - spent["write"], 4),
                "write_seconds": round(spent["write"], 4),
                "delivered": result.delivered,
                "raw_rows": result.used,
                "quarantined": result.quarantine.height,
                "collapsed": result.collapsed,
                "files": len(result.files),
                "rss_peak_so_far_mb": _peak_mb(),
            }
            del result
    seconds = end(start)
    event_rows = sum(tables[t]["raw_rows"] for t in TABLES if SPECS[t].is_event)
    return {
        "seconds": seconds,
        "details": {
            "tables": tables,
            "event_rows": event_rows,
            "delivered_rows": sum(t["delivered"] for t in tables.values()),
            "ingest_seconds": round(sum(t["ingest_seconds"] for t in tables.values()), 4),
            "write_seconds": round(sum(t["write_seconds"] for t in tables.values()), 4),
        },
    }


def stage_marts(a: argparse.Namespace) -> dict:
    """The marts step exactly as the asset runs it (`assets.marts.compute_marts`): buckets of
    enrollments read from raw.*, built, validated and checked in memory, appended to side
    tables and swapped in, with the warehouse resource's DuckDB settings."""
    from assets.marts import check_bucket
    from pipelines.core.engine import MartsOutcome, compute_marts
    from pipelines.resources import ProgressSettings, WarehouseResource

    settings = ProgressSettings(timezone=a.tz, as_of=a.as_of)
    resource = WarehouseResource(path=a.warehouse)
    import duckdb

    as_of = _as_of(a.as_of, a.tz)
    out = MartsOutcome()
    start = begin()
    with duckdb.connect(
        a.warehouse,
        config={"memory_limit": resource.duckdb_memory_limit, "threads": resource.duckdb_threads},
    ) as con:
        compute_marts(
            con, as_of, settings.thresholds, check_bucket, out, target=settings.bucket_enrollments
        )
    seconds = end(start)
    if out.failures:
        raise RuntimeError(f"marts break their schema: {sorted(out.failures)}")
    return {
        "seconds": seconds,
        "details": {
            "buckets": out.buckets,
            "bucket_enrollments": settings.bucket_enrollments,
            **{f"{phase}_seconds": round(value, 4) for phase, value in out.seconds.items()},
            "rows": out.rows,
        },
    }


def stage_sql_peer(a: argparse.Namespace) -> dict:
    import duckdb

    from pipelines.bench.sql_peer import DuckDBSettings, run_peer, verify_peer

    settings = DuckDBSettings(
        threads=a.threads, memory_limit=a.memory_limit, temp_directory=a.temp_directory
    )
    with duckdb.connect(a.warehouse) as con:
        settings.apply(con)
        con.execute("DROP SCHEMA IF EXISTS sql_peer CASCADE")
        start = begin()
        timings = run_peer(con, a.as_of)
        seconds = end(start)
        t0 = time.perf_counter()
        rows = verify_peer(con)  # raises PeerMismatch: the timing does not count
        verify = time.perf_counter() - t0
    return {
        "seconds": seconds,
        "details": {
            "statements": timings,
            "verified": True,
            "verify_seconds": round(verify, 4),
            "rows": rows,
            "duckdb_settings": settings.as_dict(),
        },
    }


def _step_seconds(instance, run_id: str) -> dict[str, float]:
    """Per-step wall seconds of the Dagster run (empty when the instance cannot say)."""
    try:
        stats = instance.get_run_step_stats(run_id)
    except Exception:  # the breakdown is a nicety; never fail the stage for it
        return {}
    return {
        s.step_key: round((s.end_time or 0) - (s.start_time or 0), 4)
        for s in stats
        if s.start_time and s.end_time
    }


def stage_e2e(a: argparse.Namespace) -> dict:
    t_import = time.perf_counter()
    import dagster as dg

    from pipelines import runner

    imported = time.perf_counter()
    warehouse = Path(a.warehouse)
    for path in warehouse.parent.glob(warehouse.name + "*"):
        if path.is_file():
            path.unlink()
    instance = dg.DagsterInstance.ephemeral()
    for name in ("dagster_instance", "_instance"):  # keep the run's events for step timings
        if hasattr(runner, name):
            setattr(runner, name, lambda: instance)
    start = begin()
    report = runner.run_pipeline(
        landing=Path(a.landing), warehouse=warehouse, as_of=a.as_of, timezone=a.tz
    )
    seconds = end(start)
    steps = _step_seconds(instance, report.run_id)
    try:
        from checks import all_checks

        check_ops = {c.node_def.name for c in all_checks}
    except Exception:  # names only sort the breakdown
        check_ops = set()
    ingest = sum(v for k, v in steps.items() if k.startswith("ingest_"))
    checks = sum(v for k, v in steps.items() if k in check_ops)
    other = sum(steps.values()) - ingest - checks - steps.get("progress_marts", 0)
    return {
        "seconds": seconds,
        "details": {
            "import_seconds": round(imported - t_import, 4),
            "since_process_start_seconds": round(time.perf_counter() - PROCESS_START, 4),
            "run_id": report.run_id,
            "steps": steps,
            "ingest_steps_seconds": round(ingest, 4),
            "marts_step_seconds": steps.get("progress_marts"),
            "check_steps_seconds": round(checks, 4),
            "other_steps_seconds": round(other, 4),
            "table_rows": report.table_rows,
            "warnings": report.warnings,
        },
    }


def stage_exports(a: argparse.Namespace) -> dict:
    """What exports_job does after a publication: every mart and view per academy, Parquet +
    CSV, from the e2e stage's published warehouse (read-only)."""
    from pipelines.core.exports import export_warehouse

    out = Path(a.out)
    if out.exists():
        import shutil

        shutil.rmtree(out)
    start = begin()
    manifest = export_warehouse(Path(a.warehouse), out)
    seconds = end(start)
    return {
        "seconds": seconds,
        "details": {
            "files": len(manifest["files"]),
            "academies": len(manifest["academies"]),
            "bytes": sum(f["bytes"] for f in manifest["files"]),
            "rows": sum(f["rows"] for f in manifest["files"] if f["format"] == "parquet"),
        },
    }


def stage_per_event(a: argparse.Namespace) -> dict:
    from pipelines.bench.per_event import SQLITE_PRAGMAS, compare_with_marts, replay

    as_of = _as_of(a.as_of, a.tz)
    result = replay(Path(a.warehouse), Path(a.sqlite), as_of, a.max_events)
    details: dict[str, object] = {
        "events_total": result.events_total,
        "events_replayed": result.events_replayed,
        "events_per_second": result.events_per_second,
        "setup_seconds": round(result.setup_seconds, 4),
        "extrapolated_seconds_all_events": (
            result.events_total / result.events_per_second if result.events_per_second else None
        ),
        "sqlite_pragmas": SQLITE_PRAGMAS,
        "verified": False,
    }
    _CPU["begin"], _CPU["end"] = 0.0, result.cpu_seconds
    if result.events_replayed == result.events_total:
        t0 = time.perf_counter()
        details["compared_rows"] = compare_with_marts(Path(a.warehouse), Path(a.sqlite))
        details["verified"] = True
        details["verify_seconds"] = round(time.perf_counter() - t0, 4)
    return {"seconds": result.seconds, "details": details}


STAGES = {
    "generate": stage_generate,
    "lower_bound": stage_lower_bound,
    "ingest": stage_ingest,
    "marts": stage_marts,
    "sql_peer": stage_sql_peer,
    "e2e": stage_e2e,
    "exports": stage_exports,
    "per_event": stage_per_event,
}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pipelines.bench.stage",
        description="Run one benchmark stage in this process.",
    )
    p.add_argument("stage", choices=sorted(STAGES))
    p.add_argument("--result", required=True, help="JSON file to write the result to")
    p.add_argument("--landing")
    p.add_argument("--warehouse")
    p.add_argument("--sqlite")
    p.add_argument("--out", help="export folder (exports stage)")
    p.add_argument("--as-of", dest="as_of")
    p.add_argument("--tz", default="Asia/Seoul")
    p.add_argument("--enrollments", type=int)
    p.add_argument("--academies", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--max-events", dest="max_events", type=int, default=None)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--memory-limit", dest="memory_limit", default="12GB")
    p.add_argument("--temp-directory", dest="temp_directory", default="")
    p.add_argument("--profile", help="write a cProfile of the stage to this file")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    result_path = Path(args.result)
    try:
        if args.profile:
            profiler = cProfile.Profile()
            outcome = profiler.runcall(STAGES[args.stage], args)
            profiler.dump_stats(args.profile)
        else:
            outcome = STAGES[args.stage](args)
        outcome["rss_self_peak_mb"] = round(_rss_self_mb(), 1)
        if "begin" in _CPU and "end" in _CPU:
            outcome["cpu_seconds"] = round(_CPU["end"] - _CPU["begin"], 3)
        code = 0
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        outcome = {
            "error": f"{type(exc).__name__}: {first}".rstrip(": "),
            "rss_self_peak_mb": round(_rss_self_mb(), 1),
        }
        code = 1
    result_path.write_text(
        json.dumps({"stage": args.stage, **outcome}, indent=2, default=str) + "\n", encoding="utf-8"
    )
    return code


if __name__ == "__main__":
    sys.exit(main())
