"""Publishing frames into the DuckDB warehouse: whole tables, replaced atomically.

Every call replaces its tables inside one explicit transaction, so a reader sees either the
previous tables or the new ones, never a half-written or empty table, and a failure leaves the
previous tables as they were.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
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


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Everything inside commits together, or not at all."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield
        con.execute("COMMIT")
    except BaseException:
        # A failed COMMIT (e.g. the disk is full) has already ended the transaction: the
        # ROLLBACK's own error must not hide the cause.
        with contextlib.suppress(duckdb.Error):
            con.execute("ROLLBACK")
        raise


def write_table(
    con: duckdb.DuckDBPyConnection, qualified: str, frame: pl.DataFrame, append: bool = False
) -> None:
    """Create (or replace) `schema.table` from a frame, or append the frame's rows to it."""
    schema, table = qualified.split(".")
    target = f"{_ident(schema)}.{_ident(table)}"
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {_ident(schema)}")
    con.register("_incoming", frame.to_arrow())
    try:
        if append:
            con.execute(f"INSERT INTO {target} SELECT * FROM _incoming")
        else:
            con.execute(f"CREATE OR REPLACE TABLE {target} AS SELECT * FROM _incoming")
    finally:
        con.unregister("_incoming")


def document_table(con: duckdb.DuckDBPyConnection, qualified: str, doc: TableDoc) -> None:
    """COMMENT ON the table and each of its documented columns."""
    schema, table = qualified.split(".")
    target = f"{_ident(schema)}.{_ident(table)}"
    columns = {
        row[0]
        for row in con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE schema_name = ? AND table_name = ?",
            [schema, table],
        ).fetchall()
    }
    if doc.description:
        con.execute(f"COMMENT ON TABLE {target} IS {_quote(doc.description)}")
    for column, text in doc.columns.items():
        if column in columns:
            con.execute(f"COMMENT ON COLUMN {target}.{_ident(column)} IS {_quote(text)}")


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
    with transaction(con):
        for qualified, frame in tables.items():
            write_table(con, qualified, frame)
            if qualified in docs:
                document_table(con, qualified, docs[qualified])
        for sql, params in statements or []:
            con.execute(sql, params)


def read_table(
    con: duckdb.DuckDBPyConnection,
    qualified: str,
    columns: list[str] | None = None,
    where: str | None = None,
    params: list | None = None,
) -> pl.DataFrame:
    """A whole table, or only `columns` of it and rows matching `where` (with `params`)."""
    schema, table = qualified.split(".")
    selected = ", ".join(map(_ident, columns)) if columns else "*"
    sql = f"SELECT {selected} FROM {_ident(schema)}.{_ident(table)}"
    return con.execute(sql + (f" WHERE {where}" if where else ""), params or []).pl()


def table_exists(con: duckdb.DuckDBPyConnection, qualified: str) -> bool:
    schema, table = qualified.split(".")
    found = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
        [schema, table],
    ).fetchone()
    return bool(found and found[0])


def stored_schema(con: duckdb.DuckDBPyConnection, qualified: str) -> pl.Schema:
    """The column names and types of a stored table as Polars reads them (no row is read)."""
    return con.sql(f"SELECT * FROM {qualified} LIMIT 0").pl().schema
