"""Publishing frames into the DuckDB warehouse: whole tables, replaced atomically.

Every call replaces its tables inside one explicit transaction, so a reader sees either the
previous tables or the new ones, never a half-written or empty table, and a failure leaves the
previous tables as they were.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import duckdb
import polars as pl

SCHEMAS = ("raw", "quarantine", "marts")


@dataclass
class TableDoc:
    """What an analyst reads about a table: its grain and every column's meaning."""

    description: str = ""
    columns: dict[str, str] = field(default_factory=dict)


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def replace_tables(
    con: duckdb.DuckDBPyConnection,
    tables: Mapping[str, pl.DataFrame],
    docs: Mapping[str, TableDoc] | None = None,
    statements: list[tuple[str, list]] | None = None,
) -> None:
    """Replace `schema.table` -> frame, all in one transaction, with COMMENT ON docs.

    `statements` (SQL, parameters) run in the same transaction after the tables, e.g. to
    record an audit row that must appear exactly when the tables do.
    """
    docs = docs or {}
    con.execute("BEGIN TRANSACTION")
    try:
        for qualified, frame in tables.items():
            schema, table = qualified.split(".")
            target = f"{_ident(schema)}.{_ident(table)}"
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {_ident(schema)}")
            con.register("_incoming", frame.to_arrow())
            con.execute(f"CREATE OR REPLACE TABLE {target} AS SELECT * FROM _incoming")
            con.unregister("_incoming")
            doc = docs.get(qualified)
            if doc and doc.description:
                con.execute(f"COMMENT ON TABLE {target} IS {_quote(doc.description)}")
            for column, text in (doc.columns if doc else {}).items():
                if column in frame.columns:
                    con.execute(
                        f"COMMENT ON COLUMN {target}.{_ident(column)} IS {_quote(text)}"
                    )
        for sql, params in statements or []:
            con.execute(sql, params)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def read_table(con: duckdb.DuckDBPyConnection, qualified: str,
               columns: list[str] | None = None) -> pl.DataFrame:
    """A whole table, or only `columns` of it (less to move when a caller needs few)."""
    schema, table = qualified.split(".")
    selected = ", ".join(map(_ident, columns)) if columns else "*"
    return con.sql(f"SELECT {selected} FROM {_ident(schema)}.{_ident(table)}").pl()


def table_exists(con: duckdb.DuckDBPyConnection, qualified: str) -> bool:
    schema, table = qualified.split(".")
    found = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
        [schema, table],
    ).fetchone()
    return bool(found and found[0])
