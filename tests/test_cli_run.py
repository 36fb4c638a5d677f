"""`progress run`, `check`, `status` and `alerts` as an operator uses them (issue 12).

Real Dagster runs of the definitions' job through the CLI, on tiny landing folders.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import polars as pl
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.exit_codes import ExitCode
from tests.conftest import landing_with

runner = CliRunner()
PROJECT = Path(__file__).resolve().parents[1]
# Three weekly sessions held, none completed: the enrollment is in DANGER after the third.
EVENTS = {
    "attendance": ["1000,101,online,2026-03-02 10:00"],
    "video_progress": ["1000,101,10,2026-03-02 10:00"],
}


def query(path: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(sql).fetchall()


def progress(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *args],
        capture_output=True,
        text=True,
        cwd=PROJECT,
        check=False,
        **kwargs,
    )


def test_run_has_one_as_of_and_a_blocked_run_changes_nothing(tmp_path):
    landing = landing_with(tmp_path, **EVENTS)
    warehouse = tmp_path / "wh.duckdb"
    result = runner.invoke(
        app, ["run", "--landing", str(landing), "--warehouse", str(warehouse), "--json"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    # no --as-of, no _landing.json: "now", fixed once: printed = publication = calculated_at
    (as_of,) = query(warehouse, "SELECT as_of FROM marts.publication")[0]
    assert summary["as_of"] == as_of.isoformat(sep=" ")
    assert query(warehouse, "SELECT DISTINCT calculated_at FROM marts.lecture_progress") == [
        (as_of,)
    ]
    assert summary["risk_levels"] == {"NORMAL": 0, "WARNING": 0, "DANGER": 1}
    assert summary["alerts"] == []  # DANGER since March: nothing rose today
    # every table, and every column, carries its description (raw.ingest_audit too)
    assert query(warehouse, "SELECT table_name FROM duckdb_tables() WHERE comment IS NULL") == []
    assert (
        query(
            warehouse,
            "SELECT table_name, column_name FROM duckdb_columns() WHERE "
            "comment IS NULL AND schema_name IN ('raw', 'quarantine', 'marts')",
        )
        == []
    )

    status = runner.invoke(app, ["status", "--warehouse", str(warehouse), "--json"])
    assert status.exit_code == 0, status.output
    found = json.loads(status.stdout)
    assert found["as_of"] == summary["as_of"] and found["freshness"] == "OK"
    assert found["run_id"] == summary["run_id"]
    assert found["table_rows"]["marts.lecture_progress"] == 1

    # a header with a near-miss name blocks: exit 3, the diagnosis, the publication unchanged
    (landing / "lectures.csv").write_text(
        "LECTURE_ID,academy_id,title\n" + "".join(f"{i},10,t{i}\n" for i in range(1, 7))
    )
    result = runner.invoke(
        app,
        ["run", "--landing", str(landing), "--warehouse", str(warehouse), "--as-of", "2026-03-16"],
    )
    assert result.exit_code == ExitCode.BLOCKED, result.output
    assert "'LECTURE_ID' looks like 'lecture_id'" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")
    status = runner.invoke(app, ["status", "--warehouse", str(warehouse), "--json"])
    found = json.loads(status.stdout)
    assert found["as_of"] == summary["as_of"] and found["rejected_build"] is not None
    # the rejected build is there to inspect, through the same sandbox
    result = runner.invoke(
        app,
        [
            "sql",
            "--rejected",
            "--warehouse",
            str(warehouse),
            "--format",
            "csv",
            "SELECT count(*) AS n FROM quarantine.lectures",
        ],
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == "n\n6\n"


def test_alerts_of_a_run_name_the_lecture(tmp_path):
    from pipelines.backfill import alerts_summary
    from pipelines.core.ingest import ingest_all
    from pipelines.core.parse import parse_instant

    landing = landing_with(tmp_path, **EVENTS)
    warehouse = tmp_path / "wh.duckdb"
    with duckdb.connect(str(warehouse)) as con:  # the raw tables a run publishes
        con.execute("CREATE SCHEMA raw")
        for table, result in ingest_all(landing).items():
            frame = result.raw.with_columns(pl.col("_source_file").cast(pl.String))  # noqa: F841
            con.execute(f"CREATE TABLE raw.{table} AS SELECT * FROM frame")
    alerts = alerts_summary(warehouse, parse_instant("2026-03-16 23:59:59", "Asia/Seoul"))
    (alert,) = alerts.alerts.to_dicts()  # rose to DANGER with the third held session
    assert alert["risk_level"] == "DANGER" and alert["lecture_title"] == "고2 수학"


def test_landing_folder_records_its_own_as_of(tmp_path):
    from pipelines.runner import RunFailed, resolve_as_of

    landing = landing_with(tmp_path, **EVENTS)
    (landing / "_landing.json").write_text(json.dumps({"as_of": "2026-03-16 23:59:59"}))
    instant, source = resolve_as_of(None, landing, "Asia/Seoul")
    assert str(instant) == "2026-03-16 23:59:59" and source.endswith("_landing.json")
    assert str(resolve_as_of("2026-03-01", landing, "Asia/Seoul")[0]) == "2026-03-01 00:00:00"
    (landing / "_landing.json").write_text("[")
    try:
        resolve_as_of(None, landing, "Asia/Seoul")
        raise AssertionError("a broken _landing.json must be refused")
    except RunFailed as exc:
        assert exc.code == ExitCode.USAGE and "_landing.json" in str(exc)
    # the committed sample pins its own as-of, so its output does not drift with the calendar
    instant, _ = resolve_as_of(None, PROJECT / "data" / "sample", "Asia/Seoul")
    assert str(instant) == "2026-11-25 23:59:59"


def test_check_names_files_headers_and_verdict(tmp_path):
    landing = landing_with(tmp_path, **EVENTS)
    assert runner.invoke(app, ["check", "--landing", str(landing)]).exit_code == 0
    (landing / "lectures.csv").write_text(
        "lecture id,academy_id,title\n" + "".join(f"{i},10,t{i}\n" for i in range(1, 7))
    )
    (landing / "sessions.csv").write_bytes(
        "session_id,lecture_id,session_order,title\n101,1,1,수학\n".encode("cp949")
    )
    result = runner.invoke(app, ["check", "--landing", str(landing), "--json"])
    assert result.exit_code == ExitCode.BLOCKED, result.output
    found = json.loads(result.stdout)
    assert found["verdict"] == "blocked"
    files = {f["file"]: f for f in found["files"]}
    assert files["lectures.csv"]["near_misses"] == {"lecture id": "lecture_id"}
    assert files["lectures.csv"]["missing_required"] == ["lecture_id"]
    assert files["sessions.csv"]["encoding"] == "CP949"
    assert files["sessions.csv"]["missing_optional"] == ["session_date"]
    assert files["lectures.csv"]["rows"] == 6
    lectures = found["tables"]["lectures"]
    assert lectures["quarantined"] == 6 and lectures["blocks"]
    assert lectures["examples"]["missing_value"][0] == {
        "file": "lectures.csv",
        "record": 1,
        "column": "lecture_id",
        "value": None,
    }
    assert found["blocking"][0].startswith("lectures: 6 of 6 rows (100.0%) quarantined")
    assert (
        "lectures.csv lacks required column 'lecture_id' (found 'lecture id')"
        in (found["blocking"][0])
    )
    # nothing was written anywhere
    assert not list(tmp_path.glob("**/*.duckdb*"))


def test_bad_input_is_refused_before_anything_starts(tmp_path):
    landing = landing_with(tmp_path, **EVENTS)
    args = [
        "run",
        "--landing",
        str(landing),
        "--warehouse",
        str(tmp_path / "w.db"),
        "--as-of",
        "garbage",
    ]
    result = progress(*args)
    assert result.returncode == ExitCode.USAGE
    assert result.stderr.strip().splitlines() == [
        "error: --as-of: as-of 'garbage' is not a contract timestamp "
        "(YYYY-MM-DD[ HH:MM[:SS[.f]]][offset])"
    ]
    assert not (tmp_path / "w.db").exists()
    # refused before Dagster (5 s or more to import) is even imported
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys\nfrom pipelines.cli import main\nsys.argv = "
            f"['progress', *{args!r}]\ntry:\n    main()\nexcept SystemExit:\n    pass\n"
            "print('dagster' in sys.modules)",
        ],
        capture_output=True,
        text=True,
        cwd=PROJECT,
        check=True,
    )
    assert probe.stdout.strip() == "False"
    result = progress("status", "--warehouse", str(tmp_path / "none.duckdb"))
    assert result.returncode == ExitCode.USAGE and "Traceback" not in result.stderr
    assert progress("run", "--bogus").returncode == ExitCode.USAGE
    # the lake run's options are refused on the file backend rather than ignored
    lake_only = runner.invoke(app, [*args[:-1], "2026-03-16", "--workers", "2"])
    assert lake_only.exit_code == ExitCode.USAGE
    assert "--workers, --steps and --history-date need --backend lake" in lake_only.output


def test_interrupt_stops_the_run_and_publishes_nothing(tmp_path):
    landing = landing_with(tmp_path, **EVENTS)
    warehouse = tmp_path / "wh.duckdb"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipelines.cli",
            "run",
            "--landing",
            str(landing),
            "--warehouse",
            str(warehouse),
            "--as-of",
            "2026-03-16",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=PROJECT,
        env=os.environ | {"DAGSTER_HOME": ""},
    )
    for line in process.stderr:  # plain progress lines: wait until the run is under way
        if " 1/" in line:
            break
    sent = time.monotonic()
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == ExitCode.INTERRUPTED, stderr
    assert time.monotonic() - sent < 10
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert not warehouse.exists()  # nothing published
    assert not list(tmp_path.glob("wh.duckdb.*building*"))  # no staging file left behind


def test_sigterm_stops_a_backfill(tmp_path):
    landing = landing_with(tmp_path, **EVENTS)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipelines.cli",
            "backfill",
            "--start",
            "2026-03-02",
            "--end",
            "2026-03-16",
            "--landing",
            str(landing),
            "--warehouse",
            str(tmp_path / "wh.duckdb"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=PROJECT,
        env=os.environ | {"DAGSTER_HOME": ""},
    )
    for line in process.stderr:  # plain progress lines: the ingest run is starting
        if line.startswith("ingest "):
            break
    sent = time.monotonic()
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == ExitCode.INTERRUPTED, stderr
    assert time.monotonic() - sent < 10
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert not list(tmp_path.glob("wh.duckdb.*building*"))


def test_run_prints_the_highest_alerts_up_to_its_limit_and_says_how_many_are_left():
    from datetime import datetime

    from rich.console import Console

    from pipelines.backfill import AlertsSummary
    from pipelines.cli_history import alerts_table

    rows = [  # (level, streak, enrollment)
        ("WARNING", 2, 11),
        ("DANGER", 3, 12),
        ("DANGER", 5, 13),
        ("WARNING", 2, 14),
    ]
    alerts = pl.DataFrame(
        {
            "academy_id": [1] * 4,
            "lecture_id": [7] * 4,
            "lecture_title": ["수학"] * 4,
            "student_id": [100 + e for _, _, e in rows],
            "enrollment_id": [e for _, _, e in rows],
            "previous_level": ["NORMAL"] * 4,
            "risk_level": [level for level, _, _ in rows],
            "reason": ["연속 미완료"] * 4,
            "last_session_id": [None] * 4,
            "streak": [streak for _, streak, _ in rows],
        }
    )
    summary = AlertsSummary(
        as_of=datetime(2026, 3, 16, 23, 59, 59),
        previous=datetime(2026, 3, 15, 23, 59, 59),
        alerts=alerts,
    )
    table = alerts_table(summary, 2, "--alerts N; all: --json")
    assert table.row_count == 2
    assert table.caption == "showing 2 of 4 (--alerts N; all: --json)"
    console = Console(width=200, record=True)
    console.print(table)
    shown = console.export_text()
    assert "113" in shown and "112" in shown  # the two DANGER, longest streak first
    assert shown.index("113") < shown.index("112") and "111" not in shown
    assert alerts_table(summary).row_count == 4 and alerts_table(summary).caption is None
