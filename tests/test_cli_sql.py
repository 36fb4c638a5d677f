"""`progress sql`: a sandbox (issue 11.3) and a scriptable query tool (issue 12.5).

Each escape is tried for real against a DuckDB file; the warehouse must stay byte-identical.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.exit_codes import ExitCode

runner = CliRunner()


@pytest.fixture
def warehouse(tmp_path: Path) -> Path:
    path = tmp_path / "wh.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE SCHEMA marts")
        con.execute(
            "CREATE TABLE marts.t AS SELECT i AS id, 'name ' || i AS name, "
            + ", ".join(f"'a fairly long value {i}' AS column_{i}" for i in range(12))
            + " FROM range(1, 4) r(i)"
        )
    return path


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sql(warehouse: Path, *args: str, input: str | None = None):
    return runner.invoke(app, ["sql", *args, "--warehouse", str(warehouse)], input=input)


def test_selects_work_in_the_sandbox(warehouse):
    result = sql(warehouse, "SELECT count(*) AS n FROM marts.t", "--format", "csv")
    assert result.exit_code == 0, result.output
    assert result.stdout == "n\n3\n"


@pytest.mark.parametrize(
    "query",
    [
        "COPY marts.t TO '{warehouse}'",
        "COPY marts.t TO '{other}.csv'",
        "ATTACH '{other}' AS o (READ_WRITE)",
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM glob('/etc/*')",
        "EXPORT DATABASE '{other}_dir'",
        "INSTALL httpfs",
        "LOAD httpfs",
        "SET enable_external_access = true",
        "PRAGMA enable_external_access = true",
        "SET memory_limit = '1GB'",
        "RESET lock_configuration",
        "DROP TABLE marts.t",
        "INSERT INTO marts.t (id) VALUES (9)",
    ],
)
def test_every_escape_is_refused_and_changes_nothing(warehouse, tmp_path, query):
    other = tmp_path / "other.duckdb"
    with duckdb.connect(str(other)) as con:
        con.execute("CREATE TABLE x AS SELECT 1 AS v")
    before, other_before = _digest(warehouse), _digest(other)
    result = sql(warehouse, query.format(warehouse=warehouse, other=other))
    assert result.exit_code == ExitCode.USAGE, result.output
    assert "error:" in result.stderr and "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1
    assert _digest(warehouse) == before and _digest(other) == other_before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.duckdb", "wh.duckdb"]


def test_formats(warehouse):
    query = "SELECT id, name FROM marts.t ORDER BY id"
    as_csv = sql(warehouse, query, "--format", "csv").stdout
    assert list(csv.reader(io.StringIO(as_csv)))[:2] == [["id", "name"], ["1", "name 1"]]
    as_json = json.loads(sql(warehouse, query, "--format", "json").stdout)
    assert as_json[0] == {"id": 1, "name": "name 1"} and len(as_json) == 3
    markdown = sql(warehouse, query, "--format", "markdown").stdout.splitlines()
    assert markdown[0].replace(" ", "") == "|id|name|" and "| 1" in markdown[2]
    assert sql(warehouse, query, "--format", "xml").exit_code == ExitCode.USAGE


def test_select_star_shows_values_not_ellipses(warehouse):
    result = sql(warehouse, "SELECT * FROM marts.t ORDER BY id")
    assert result.exit_code == 0
    assert "…" not in result.stdout
    assert "a fairly long value 11" in result.stdout and "column_11" in result.stdout


def test_query_from_comment_file_and_stdin(warehouse, tmp_path):
    commented = "-- how many?\nSELECT count(*) AS n FROM marts.t"
    assert sql(warehouse, commented, "--format", "csv").stdout == "n\n3\n"
    query_file = tmp_path / "q.sql"
    query_file.write_text(commented)
    assert sql(warehouse, "--file", str(query_file), "--format", "csv").stdout == "n\n3\n"
    assert sql(warehouse, "-", "--format", "csv", input=commented).stdout == "n\n3\n"


@pytest.mark.parametrize("query", ["", "   \n"])
def test_empty_query_is_one_line(warehouse, query):
    result = sql(warehouse, query)
    assert result.exit_code == ExitCode.USAGE
    assert result.stderr.strip() == "error: the query is empty"


def test_limit_applies_to_the_screen(warehouse):
    result = sql(warehouse, "SELECT * FROM range(500)", "--format", "csv")
    assert len(result.stdout.splitlines()) == 501  # csv: every row by default
    result = sql(warehouse, "SELECT * FROM range(500)", "--limit", "7", "--format", "csv")
    assert len(result.stdout.splitlines()) == 8 and "--limit" in result.stderr


def test_timeout_stops_a_long_query(warehouse):
    started = time.monotonic()
    result = sql(warehouse, "SELECT count(*) FROM range(100000000000) a", "--timeout", "0.5")
    assert result.exit_code == ExitCode.TIMEOUT, result.output
    assert time.monotonic() - started < 10 and "--timeout" in result.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_stops_the_query_at_once(warehouse, sig):
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipelines.cli",
            "sql",
            "--warehouse",
            str(warehouse),
            "SELECT count(*) FROM range(100000000000) a",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ | {"COLUMNS": "120"},
    )
    time.sleep(5)  # the interpreter, DuckDB and the query have started (1-3 s under load)
    sent = time.monotonic()
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == ExitCode.INTERRUPTED, stderr
    assert time.monotonic() - sent < 5
    assert "Traceback" not in stderr and "interrupted" in stderr
