"""The `progress` command: help, generate, run, sql, and one-line failures."""

from __future__ import annotations

import subprocess
import sys

import duckdb
import pytest
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.exit_codes import ExitCode

runner = CliRunner()


@pytest.mark.parametrize("command", [[], ["generate"], ["run"], ["sql"], ["export"], ["report"]])
def test_help_on_every_command(command):
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output


def test_generate_run_and_query(tmp_path):
    landing, warehouse = tmp_path / "landing", tmp_path / "wh.duckdb"
    result = runner.invoke(
        app, ["generate", "--out", str(landing), "--enrollments", "60", "--seed", "5"]
    )
    assert result.exit_code == 0, result.output
    assert (landing / "lectures.csv").exists()
    result = runner.invoke(
        app,
        [
            "run",
            "--landing",
            str(landing),
            "--warehouse",
            str(warehouse),
            "--as-of",
            "2026-06-01 09:00",
            "--verbose",
        ],
    )
    assert result.exit_code == 0, result.output
    for text in ("marts.session_progress", "quarantine by reason", "DANGER", "2026-06-01 09:00"):
        assert text in result.output
    with duckdb.connect(str(warehouse), read_only=True) as con:
        (enrollments,) = con.execute("SELECT count(*) FROM raw.enrollments").fetchone()
    result = runner.invoke(
        app,
        ["sql", "SELECT count(*) AS n FROM marts.lecture_progress", "--warehouse", str(warehouse)],
    )
    assert result.exit_code == 0 and str(enrollments) in result.output


def test_sql_is_read_only(tmp_path):
    warehouse = tmp_path / "wh.duckdb"
    with duckdb.connect(str(warehouse)) as con:
        con.execute("CREATE TABLE t AS SELECT 1 AS x")
    result = runner.invoke(app, ["sql", "DROP TABLE t", "--warehouse", str(warehouse)])
    assert result.exit_code == ExitCode.USAGE and "read-only" in result.output.lower()
    with duckdb.connect(str(warehouse), read_only=True) as con:
        assert con.execute("SELECT x FROM t").fetchall() == [(1,)]


def test_run_without_extracts_fails_in_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelines.cli",
            "run",
            "--landing",
            str(tmp_path / "empty"),
            "--warehouse",
            str(tmp_path / "wh.duckdb"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == ExitCode.USAGE
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "no extracts in landing folder" in lines[0]


def test_bad_as_of_fails_in_one_line(tmp_path):
    (tmp_path / "l").mkdir()
    (tmp_path / "l" / "lectures.csv").write_text("lecture_id,academy_id\n")
    result = runner.invoke(
        app,
        [
            "run",
            "--landing",
            str(tmp_path / "l"),
            "--as-of",
            "yesterday",
            "--warehouse",
            str(tmp_path / "wh.duckdb"),
        ],
    )
    assert result.exit_code == ExitCode.USAGE and "as-of 'yesterday'" in result.output
    assert "Traceback" not in result.output
