"""`progress bench` at a tiny size: every stage runs, the SQL peer and the per-event replay are
really compared with the pipeline's marts, the command stages run the commands users run (the
daily job: the schedule's run), the process-tree measurement counts children, and the JSON has
exactly the documented keys."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb
import pytest
import typer
from typer.testing import CliRunner

from pipelines.bench import AS_OF, TIERS, Tier
from pipelines.bench.commands import COMMAND_STAGES, HISTORY_DAYS, daily_partition
from pipelines.bench.measure import measure
from pipelines.bench.runner import BenchError, run_bench, run_command
from pipelines.bench.sql_peer import PeerMismatch, compare_tables, statements, verify_peer
from pipelines.cli_bench import bench

ROOT = Path(__file__).resolve().parents[1]
TINY = Tier("T", enrollments=300, academies=2, per_event=True, per_event_events=None)
STAGES = (
    "lower_bound",
    "ingest",
    "marts",
    "sql_peer",
    "e2e",
    "exports",
    "per_event",
    *COMMAND_STAGES,
)
# objects whose keys are data (tables, steps, statements), documented as one key each
LEAVES = {
    "machine.packages",
    "settings.sql_peer_duckdb",
    "data.generate",
    "data.delivered_rows",
    "ratios.linearity_L_over_M",
    "stages.*.details.tables",
    "stages.*.details.rows",
    "stages.*.details.statements",
    "stages.*.details.duckdb_settings",
    "stages.*.details.steps",
    "stages.*.details.table_rows",
    "stages.*.details.sqlite_pragmas",
    "stages.*.details.compared_rows",
    "stages.*.details.tags",
    "stages.*.details.history_rows",
}


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("bench")
    out = base / "results" / "T.json"
    result = run_bench(TINY, out, base=base)
    return result, out, base / "T" / "work"


def _paths(value, prefix: str = "") -> set[str]:
    generic = re.sub(r"^stages\.[a-z0-9_]+\.", "stages.*.", prefix)
    if isinstance(value, dict) and generic not in LEAVES:
        out: set[str] = set()
        for key, item in value.items():
            out |= _paths(item, f"{prefix}.{key}" if prefix else key)
        return out
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return {p for item in value for p in _paths(item, prefix + "[]")}
    return {prefix}


def _documented() -> set[str]:
    text = (ROOT / "BENCHMARKS.md").read_text(encoding="utf-8")
    section = text.split("## JSON keys", 1)[1].split("\n## ", 1)[0]
    return {m.group(1) for m in re.finditer(r"^\| `([^`]+)` \|", section, re.MULTILINE)}


def test_every_stage_runs_and_agrees(bench_run):
    result, out, _ = bench_run
    for stage in STAGES:
        assert result["stages"][stage]["status"] == "ok", result["stages"][stage]
        assert result["stages"][stage]["peak_rss_mb"] > 0
        assert result["stages"][stage]["seconds"] > 0
    assert result["stages"]["sql_peer"]["details"]["verified"] is True
    per_event = result["stages"]["per_event"]["details"]
    assert (
        per_event["verified"] is True
        and per_event["events_replayed"] == per_event["events_total"] > 0
    )
    assert per_event["compared_rows"]["session_progress"] > 0
    assert result["data"]["session_progress_rows"] > 0 and result["data"]["event_rows"] > 0
    assert result["ratios"]["sql_peer_over_marts"] > 0
    assert json.loads(out.read_text(encoding="utf-8")) == json.loads(
        json.dumps(result, default=str)
    )


def test_json_has_exactly_the_documented_keys(bench_run):
    result, _, _ = bench_run
    expanded = set()
    for path in _documented():
        if path.startswith("stages.<stage>."):
            expanded |= {path.replace("<stage>", s) for s in STAGES}
        elif path.startswith("stages.<cmd>."):
            expanded |= {path.replace("<cmd>", s) for s in COMMAND_STAGES}
        else:
            expanded.add(path)
    actual = _paths(result)
    assert not actual - expanded, f"undocumented keys: {sorted(actual - expanded)}"
    assert not expanded - actual, f"documented but missing: {sorted(expanded - actual)}"


@pytest.fixture
def warehouse_copy(bench_run, tmp_path):
    _, _, work = bench_run
    copy = tmp_path / "bench.duckdb"
    shutil.copyfile(work / "bench.duckdb", copy)
    return copy


@pytest.mark.parametrize(
    "change",
    [
        "UPDATE sql_peer.lecture_progress SET risk_level = 'DANGER' WHERE enrollment_id = "
        "(SELECT min(enrollment_id) FROM sql_peer.lecture_progress WHERE risk_level = 'NORMAL')",
        "DELETE FROM sql_peer.clinic_links WHERE rowid = 0",
        "INSERT INTO sql_peer.risk_log SELECT * FROM sql_peer.risk_log LIMIT 1",
        "UPDATE sql_peer.lecture_progress SET avg_exam_score = avg_exam_score + 0.001 "
        "WHERE avg_exam_score IS NOT NULL AND enrollment_id = (SELECT min(enrollment_id) FROM "
        "sql_peer.lecture_progress WHERE avg_exam_score IS NOT NULL)",
        "UPDATE sql_peer.session_progress SET completed_at = NULL WHERE completed_at IS NOT NULL",
        "ALTER TABLE sql_peer.risk_log DROP COLUMN reason",
    ],
)
def test_peer_check_fails_on_an_altered_table(warehouse_copy, change):
    with duckdb.connect(str(warehouse_copy)) as con:
        assert verify_peer(con)["session_progress"] > 0  # equal before
        con.execute(change)
        with pytest.raises(PeerMismatch):
            verify_peer(con)


def test_float_tolerance_is_tight(warehouse_copy):
    with duckdb.connect(str(warehouse_copy)) as con:
        con.execute(
            "UPDATE sql_peer.lecture_progress SET completion_rate = completion_rate + 1e-12"
        )
        assert compare_tables(con, "marts.lecture_progress", "sql_peer.lecture_progress") is None
        con.execute("UPDATE sql_peer.lecture_progress SET completion_rate = completion_rate + 1e-5")
        assert compare_tables(con, "marts.lecture_progress", "sql_peer.lecture_progress")


def test_sql_peer_stage_refuses_to_count_a_wrong_answer(warehouse_copy, tmp_path):
    """The stage itself fails (non-zero, PeerMismatch) when the marts and the peer disagree."""
    with duckdb.connect(str(warehouse_copy)) as con:
        con.execute(
            "UPDATE marts.session_progress SET video_progress_rate = 101 "
            "WHERE session_id = (SELECT min(session_id) FROM marts.session_progress)"
        )
    result = tmp_path / "r.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelines.bench.stage",
            "sql_peer",
            "--result",
            str(result),
            "--warehouse",
            str(warehouse_copy),
            "--as-of",
            AS_OF,
            "--temp-directory",
            str(tmp_path / "tmp"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1
    outcome = json.loads(result.read_text(encoding="utf-8"))
    assert outcome["error"].startswith("PeerMismatch: SQL peer differs")
    assert "session_progress" in outcome["error"] and "seconds" not in outcome


def test_peer_script_statements():
    parts = statements()
    assert parts[0].startswith("CREATE SCHEMA") and len(parts) >= 10
    targets = [p for p in parts if "TABLE sql_peer." in p]
    assert len(targets) == 4


def test_tiers_for_generate():
    assert {k: (t.enrollments, t.academies) for k, t in TIERS.items()} == {
        "S": (10_000, 2),
        "M": (100_000, 20),
        "L": (1_000_000, 200),
    }
    assert TIERS["L"].generate_args()["fmt"] == "parquet"


def _app() -> typer.Typer:
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command()(bench)
    app.command("noop")(lambda: None)  # a second command keeps `bench` a subcommand
    return app


def test_cli_help_and_one_line_errors(monkeypatch):
    runner = CliRunner()
    result = runner.invoke(_app(), ["bench", "--help"])
    assert result.exit_code == 0 and "--tier" in result.output and "--out" in result.output

    def broken(tier, out):
        raise BenchError("stage sql_peer: PeerMismatch: SQL peer differs")

    monkeypatch.setattr("pipelines.bench.runner.run_bench", broken)
    result = runner.invoke(_app(), ["bench", "--tier", "M"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "PeerMismatch" in lines[0]

    def crashing(tier, out):
        raise OSError("disk full\nmore detail")

    monkeypatch.setattr("pipelines.bench.runner.run_bench", crashing)
    result = runner.invoke(_app(), ["bench", "--tier", "S"])
    assert result.exit_code == 1
    assert [line for line in result.output.splitlines() if line.strip()] == [
        "error: OSError: disk full"
    ]


def test_failed_stage_fails_the_bench_in_one_line(tmp_path):
    """A stage that fails (here: extracts with no valid lectures) makes run_bench raise."""
    tier = Tier("F", enrollments=20, academies=1)
    with pytest.raises(BenchError, match="stage"):
        run_bench(
            tier, tmp_path / "F.json", base=tmp_path, stages=("ingest", "marts"), as_of="not a time"
        )


# -- the commands users run ------------------------------------------------------------------
def test_command_stages_run_the_commands(bench_run):
    result, _, work = bench_run
    stages = result["stages"]
    for name in COMMAND_STAGES:
        d = stages[name]["details"]
        assert d["exit_code"] == 0, stages[name]
        # the whole process, started from the shell: the console script, not a python -m
        assert d["command"].split()[0].endswith(("/progress", "/dagster")), d["command"]
        assert stages[name]["peak_rss_mb"] == max(
            d["tree_peak_rss_mb"], d["top_maxrss_mb"], d["children_maxrss_mb"]
        )
        assert d["rss_samples"] >= 1 and d["max_processes"] >= 1
        assert stages[name]["seconds"] == stages[name]["process_seconds"] > 0
    assert " run --landing " in stages["cmd_run"]["details"]["command"]
    assert "--as-of '2026-11-25 06:00:00'" in stages["cmd_run"]["details"]["command"]
    backfill = stages["cmd_backfill_7d"]["details"]["command"]
    assert "--start 2026-11-19 --end 2026-11-25" in backfill
    assert stages["cmd_export"]["details"]["files"] > 0
    assert (work / "cmd" / "exports" / "manifest.json").is_file()
    assert stages["cmd_report"]["details"]["bytes"] == (work / "cmd" / "report.html").stat().st_size
    # the second run: on a warehouse holding 30 dates, as many rows per date as the real one
    second = stages["cmd_second_run"]
    assert "computed for real" in second["note"] and "copied" in second["note"]
    for table, counts in second["details"]["history_rows"].items():
        assert counts["dates"] == HISTORY_DAYS, table
        assert counts["rows"] == HISTORY_DAYS * counts["rows_per_date"], table
    assert second["details"]["history_rows"]["lecture_progress_daily"]["rows_per_date"] > 0
    assert second["details"]["warehouse_bytes_before"] > 0
    with duckdb.connect(str(work / "cmd" / "history" / "warehouse.duckdb"), read_only=True) as con:
        (dates,) = con.execute(
            "SELECT count(DISTINCT as_of_date) FROM marts.lecture_progress_daily"
        ).fetchone()
    assert dates == HISTORY_DAYS
    assert result["ratios"]["second_run_over_first"] == round(
        second["seconds"] / stages["cmd_run"]["seconds"], 4
    )
    assert result["ratios"]["second_run_over_first_cpu"] == round(
        second["cpu_seconds"] / stages["cmd_run"]["cpu_seconds"], 4
    )
    targets = {t["target"]: t for t in result["targets"]}
    for words in (
        "progress run: wall <= 60 s",
        "progress report: peak RSS (process tree) <= 2048 MB",
    ):
        assert targets[words]["value"] is not None and targets[words]["binding"] is False
    assert targets["second progress run (30 days of history) / first <= 1.10"]["value"] > 0


def test_daily_job_stage_runs_what_the_schedule_requests(bench_run, monkeypatch):
    """The schedule, evaluated at the bench's as-of, requests the run the stage executed:
    same job, partition and tags, and the same plan of steps (all of which succeeded)."""
    result, _, work = bench_run
    d = result["stages"]["cmd_daily_job"]["details"]
    for key in ("PROGRESS_LANDING", "PROGRESS_WAREHOUSE", "PROGRESS_TIMEZONE"):
        monkeypatch.setenv(key, str(work / "x"))  # the definitions need them to build a plan
    import dagster as dg
    from dagster._core.execution.api import create_execution_plan

    from pipelines.definitions import defs

    repo = defs.get_repository_def()
    schedule = repo.get_schedule_def("daily_schedule")
    when = datetime.fromisoformat(AS_OF).replace(tzinfo=ZoneInfo("Asia/Seoul"))
    context = dg.build_schedule_context(scheduled_execution_time=when, repository_def=repo)
    (request,) = schedule.evaluate_tick(context).run_requests
    assert schedule.job_name == "daily_job" and " -j daily_job " in d["command"]
    assert request.partition_key == d["partition"] == daily_partition(AS_OF) == "2026-11-24"
    assert not request.run_config and request.asset_selection is None
    assert {k: request.tags[k] for k in d["tags"] if k != "dagster/partition"} == {
        k: v for k, v in d["tags"].items() if k != "dagster/partition"
    }
    job = defs.resolve_job_def(schedule.job_name)
    expected = create_execution_plan(job, run_config={}, tags=request.tags).step_keys_to_execute
    assert d["planned_step_keys"] == sorted(expected)
    assert d["succeeded_step_keys"] == sorted(expected) and d["run_status"] == "SUCCESS"
    assert "history_marts" in expected and "progress_marts" in expected


CHILD = "import sys, time; a = bytearray({mb} * 2**20); a[::4096] = b'x' * len(a[::4096]); "


def test_tree_rss_counts_children(tmp_path):
    """A parent of two children holding 150 MB each at the same time: the tree-sum peak is
    >= 300 MB, where ru_maxrss (the largest single process) sees ~150 MB; one child of 200 MB
    is counted whole."""
    one = CHILD.format(mb=200) + "time.sleep(0.5)"
    parent = (
        f"import subprocess, sys; p = subprocess.Popen([sys.executable, '-c', {one!r}]); p.wait()"
    )
    got = measure([sys.executable, "-c", parent])
    assert got["status"] == "ok" and got["tree_peak_rss_mb"] >= 200, got
    assert got["max_processes"] == 2
    two = CHILD.format(mb=150) + "time.sleep(1.0)"
    parent = (
        "import subprocess, sys; "
        f"ps = [subprocess.Popen([sys.executable, '-c', {two!r}]) for _ in range(2)]; "
        "[p.wait() for p in ps]"
    )
    # through the wrapper, as the bench runs commands: RUSAGE_CHILDREN is this command's alone
    stage = run_command("cmd_two", [sys.executable, "-c", parent], tmp_path)
    d = stage["details"]
    assert stage["status"] == "ok" and d["tree_peak_rss_mb"] >= 300, stage
    # the kernel's figures: the largest single process, not the tree
    assert d["top_maxrss_mb"] < 250 and d["children_maxrss_mb"] < 250
    assert stage["peak_rss_mb"] == d["tree_peak_rss_mb"] and d["max_processes"] == 3


def test_failing_command_reports_its_last_stderr_line(tmp_path):
    code = (
        "import sys; print('starting', file=sys.stderr); "
        "print('error: the landing folder has no extracts', file=sys.stderr); sys.exit(2)"
    )
    stage = run_command("cmd_fails", [sys.executable, "-c", code], tmp_path)
    assert stage["status"] == "failed" and stage["seconds"] is None
    assert stage["details"]["exit_code"] == 2
    assert stage["error"] == "exit code 2: error: the landing folder has no extracts"


def test_watchdog_kills_the_whole_tree(tmp_path):
    """Over the limit, the grandchild holding the memory is killed with its parents."""
    pid_file = tmp_path / "grandchild.pid"
    grandchild = (
        f"import os, pathlib; pathlib.Path({str(pid_file)!r}).write_text(str(os.getpid())); "
        + CHILD.format(mb=400)
        + "time.sleep(60)"
    )
    parent = (
        f"import subprocess, sys; subprocess.Popen([sys.executable, '-c', {grandchild!r}]).wait()"
    )
    start = time.perf_counter()
    stage = run_command("cmd_big", [sys.executable, "-c", parent], tmp_path, max_rss_gb=0.25)
    assert time.perf_counter() - start < 30
    assert stage["status"] == "failed" and "over the 0.25 GB limit" in stage["error"]
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + 10  # freeing 400 MB after SIGKILL takes a moment
    while not _gone_or_zombie(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _gone_or_zombie(pid)


def _gone_or_zombie(pid: int) -> bool:
    """Dead: no such process, or a zombie waiting for a reaper (an orphan whose reaper, PID 1
    of a container, may be slow)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True
    return any(line.startswith("State:") and "Z" in line.split()[1] for line in status.splitlines())


def test_unknown_stage_is_refused(tmp_path):
    with pytest.raises(BenchError, match="unknown stage"):
        run_bench(TINY, tmp_path / "T.json", base=tmp_path, stages=("cmd_nope",))


def test_failed_command_fails_the_bench_with_its_stderr_line(tmp_path):
    """`progress run` refusing its input (a bad --as-of) fails cmd_run with the command's own
    last stderr line; the commands that need its warehouse are skipped, and the set-up of the
    others (the partition of a date that is not one) does not crash the benchmark."""
    tier = Tier("F", enrollments=20, academies=1)
    out = tmp_path / "F.json"
    with pytest.raises(BenchError, match=r"stage cmd_run: exit code 2: .*not a time"):
        run_bench(tier, out, base=tmp_path, stages=("cmd_run", "cmd_export"), as_of="not a time")
    result = json.loads(out.read_text(encoding="utf-8"))
    run = result["stages"]["cmd_run"]
    assert run["status"] == "failed" and run["details"]["exit_code"] == 2
    assert run["seconds"] is None and run["peak_rss_mb"] > 0
    assert result["stages"]["cmd_export"] == result["stages"]["cmd_export"] | {
        "status": "skipped",
        "note": "needs cmd_run",
    }
    assert result["ratios"]["second_run_over_first"] is None


def test_commands_leave_the_default_zone_off():
    from pipelines.bench.commands import DEFAULT_TIMEZONE, command_line
    from pipelines.resources import DEFAULT_TIMEZONE as PIPELINE_DEFAULT

    assert DEFAULT_TIMEZONE == PIPELINE_DEFAULT
    paths = {"landing": Path("in"), "warehouse": Path("w.duckdb"), "as_of": AS_OF}
    assert command_line("cmd_run", timezone=PIPELINE_DEFAULT, **paths)[1:] == [
        "run",
        "--landing",
        "in",
        "--warehouse",
        "w.duckdb",
        "--as-of",
        AS_OF,
    ]
    assert command_line("cmd_backfill_7d", timezone="Europe/Paris", **paths)[-2:] == [
        "--timezone",
        "Europe/Paris",
    ]
