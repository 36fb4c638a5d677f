"""`progress bench` at a tiny size: every stage runs, the SQL peer and the per-event replay are
really compared with the pipeline's marts, and the JSON has exactly the documented keys."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
import typer
from typer.testing import CliRunner

from pipelines.bench import AS_OF, TIERS, Tier
from pipelines.bench.runner import BenchError, run_bench
from pipelines.bench.sql_peer import PeerMismatch, compare_tables, statements, verify_peer
from pipelines.cli_bench import bench

ROOT = Path(__file__).resolve().parents[1]
TINY = Tier("T", enrollments=300, academies=2, per_event=True, per_event_events=None)
STAGES = ("lower_bound", "ingest", "marts", "sql_peer", "e2e", "exports", "per_event")
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
