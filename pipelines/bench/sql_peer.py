"""Run the DuckDB-SQL peer (`sql_peer.sql`) and prove its tables equal the pipeline's marts."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import duckdb

SQL_FILE = Path(__file__).with_name("sql_peer.sql")
PEER_SCHEMA = "sql_peer"
MARTS = ("session_progress", "lecture_progress", "risk_log", "clinic_links")
FLOAT_TYPES = ("FLOAT", "DOUBLE", "REAL")
FLOAT_DECIMALS = 6  # float columns are compared rounded (summation order may differ)


class PeerMismatch(AssertionError):
    """The SQL peer's tables differ from the pipeline's marts: its timing does not count."""


@dataclass(frozen=True)
class DuckDBSettings:
    """What the peer's connection is allowed: set deliberately, recorded in the results."""

    threads: int = 2
    memory_limit: str = "12GB"
    temp_directory: str = ""
    preserve_insertion_order: bool = False

    def apply(self, con: duckdb.DuckDBPyConnection) -> None:
        con.execute(f"SET threads = {int(self.threads)}")
        con.execute(f"SET memory_limit = '{self.memory_limit}'")
        if self.temp_directory:
            Path(self.temp_directory).mkdir(parents=True, exist_ok=True)
            con.execute(f"SET temp_directory = '{self.temp_directory}'")
        con.execute(f"SET preserve_insertion_order = {str(self.preserve_insertion_order).lower()}")

    def as_dict(self) -> dict[str, object]:
        return {
            "threads": self.threads,
            "memory_limit": self.memory_limit,
            "temp_directory": self.temp_directory,
            "preserve_insertion_order": self.preserve_insertion_order,
        }


def statements(sql: str | None = None) -> list[str]:
    """The script's statements: split on ';' at the end of a line, comments dropped."""
    text = sql if sql is not None else SQL_FILE.read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("--")]
    parts, current = [], []
    for line in lines:
        current.append(line)
        if line.rstrip().endswith(";"):
            parts.append("\n".join(current).strip())
            current = []
    tail = "\n".join(current).strip()
    return [p for p in [*parts, tail] if p]


def _label(statement: str) -> str:
    words = statement.replace("\n", " ").split()
    for i, word in enumerate(words):
        if word.upper() == "TABLE" and i + 1 < len(words):
            return words[i + 1]
    return " ".join(words[:3])


def run_peer(
    con: duckdb.DuckDBPyConnection, as_of: str, warning: int = 2, danger: int = 3
) -> dict[str, float]:
    """Run every statement of the peer; return seconds per statement (by target table)."""
    con.execute(f"SET VARIABLE as_of = TIMESTAMP '{as_of}'")
    con.execute(f"SET VARIABLE warning_streak = {int(warning)}")
    con.execute(f"SET VARIABLE danger_streak = {int(danger)}")
    timings: dict[str, float] = {}
    for statement in statements():
        start = time.perf_counter()
        con.execute(statement)
        timings[_label(statement)] = round(time.perf_counter() - start, 4)
    return timings


def _columns(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> list[tuple[str, str]]:
    return [
        (name, dtype)
        for name, dtype in con.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
            [schema, table],
        ).fetchall()
    ]


def _select(columns: list[str], floats: set[str], table: str) -> str:
    exprs = [
        f'round(CAST("{c}" AS DOUBLE), {FLOAT_DECIMALS}) AS "{c}"' if c in floats else f'"{c}"'
        for c in columns
    ]
    return f"SELECT {', '.join(exprs)} FROM {table}"


def compare_tables(con: duckdb.DuckDBPyConnection, expected: str, actual: str) -> str | None:
    """None when `actual` has exactly the rows of `expected` (a multiset), else why not.

    Same column names in the same order; every value equal (EXCEPT ALL both ways), floats
    rounded to FLOAT_DECIMALS places. Types may differ in width (e.g. INTEGER vs BIGINT).
    """
    exp_schema, exp_table = expected.split(".")
    act_schema, act_table = actual.split(".")
    exp_cols, act_cols = _columns(con, exp_schema, exp_table), _columns(con, act_schema, act_table)
    if not exp_cols:
        return f"{expected} does not exist"
    if [c for c, _ in exp_cols] != [c for c, _ in act_cols]:
        return (
            f"columns differ: {expected} {[c for c, _ in exp_cols]} vs "
            f"{actual} {[c for c, _ in act_cols]}"
        )
    names = [c for c, _ in exp_cols]
    floats = {c for c, t in [*exp_cols, *act_cols] if t.upper() in FLOAT_TYPES}
    left, right = _select(names, floats, expected), _select(names, floats, actual)
    counts = con.execute(
        f"SELECT (SELECT count(*) FROM {expected}), (SELECT count(*) FROM {actual})"
    ).fetchone()
    missing = con.execute(f"SELECT count(*) FROM ({left} EXCEPT ALL {right})").fetchone()[0]
    extra = con.execute(f"SELECT count(*) FROM ({right} EXCEPT ALL {left})").fetchone()[0]
    if counts[0] == counts[1] and missing == 0 and extra == 0:
        return None
    sample = con.execute(f"SELECT * FROM ({left} EXCEPT ALL {right}) LIMIT 2").fetchall()
    return (
        f"{expected} has {counts[0]:,} rows, {actual} {counts[1]:,}; {missing:,} rows only "
        f"in {expected}, {extra:,} only in {actual}; e.g. {sample}"
    )


def verify_peer(
    con: duckdb.DuckDBPyConnection, marts_schema: str = "marts", peer_schema: str = PEER_SCHEMA
) -> dict[str, int]:
    """Raise PeerMismatch unless every peer table equals the pipeline's; return row counts."""
    problems, rows = [], {}
    for mart in MARTS:
        problem = compare_tables(con, f"{marts_schema}.{mart}", f"{peer_schema}.{mart}")
        if problem:
            problems.append(f"{mart}: {problem}")
        else:
            rows[mart] = con.execute(f"SELECT count(*) FROM {peer_schema}.{mart}").fetchone()[0]
    if problems:
        raise PeerMismatch("SQL peer differs from the pipeline's marts: " + " | ".join(problems))
    return rows
