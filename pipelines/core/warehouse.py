"""The one DuckDB layer of the pipeline: quoting, transactions, table existence and columns,
COMMENT ON docs, and reading and writing whole frames.

Every module that writes or inspects the warehouse goes through these functions (the views,
the publication record, the evaluation table, the assets), so a name is quoted one way and a
write is atomic one way. Tables are replaced inside one explicit transaction, so a reader sees
either the previous tables or the new ones, never a half-written or empty table, and a failure
leaves the previous tables as they were.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

import duckdb
import polars as pl


@dataclass
class TableDoc:
    """What an analyst reads about a table: its grain and every column's meaning."""

    description: str = ""
    columns: dict[str, str] = field(default_factory=dict)


def literal(text: str) -> str:
    """A SQL string literal (for statements that take no parameters, e.g. COMMENT ON)."""
    return "'" + text.replace("'", "''") + "'"


def ident(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def target(qualified: str) -> str:
    """`schema.table` as a quoted SQL name."""
    schema, table = qualified.split(".")
    return f"{ident(schema)}.{ident(table)}"


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
    schema = qualified.split(".")[0]
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {ident(schema)}")
    with registered(con, frame) as incoming:
        if append:
            con.execute(f"INSERT INTO {target(qualified)} SELECT * FROM {incoming}")
        else:
            con.execute(f"CREATE OR REPLACE TABLE {target(qualified)} AS SELECT * FROM {incoming}")


@contextmanager
def registered(
    con: duckdb.DuckDBPyConnection, frame: pl.DataFrame, name: str = "_incoming"
) -> Iterator[str]:
    """The frame readable by SQL as `name` for the duration of the block."""
    con.register(name, frame.to_arrow())
    try:
        yield name
    finally:
        con.unregister(name)


# Tables written bucket by bucket are appended to a side table, each append committed on its
# own, and swapped in by one short transaction: one transaction around every append keeps all
# of them in DuckDB's transaction-local memory until the commit, outside its memory_limit
# (measured: +300 MB of RSS per 4M-row append inside a transaction, +45 MB committed).
BUILDING_PREFIX = "_building_"


def building(qualified: str) -> str:
    """The side table that a bucketed write of `qualified` appends to."""
    schema, table = qualified.split(".")
    return f"{schema}.{BUILDING_PREFIX}{table}"


def swap_in(con: duckdb.DuckDBPyConnection, qualified: str) -> None:
    """Replace `qualified` by its side table (call inside a transaction)."""
    con.execute(f"DROP TABLE IF EXISTS {target(qualified)}")
    con.execute(
        f"ALTER TABLE {target(building(qualified))} RENAME TO {ident(qualified.split('.')[1])}"
    )


def drop_building(con: duckdb.DuckDBPyConnection, qualified: str) -> None:
    """Remove what a failed or refused bucketed write left in the side table."""
    con.execute(f"DROP TABLE IF EXISTS {target(building(qualified))}")


def column_names(con: duckdb.DuckDBPyConnection, qualified: str) -> list[str]:
    """The columns of a stored table or view, in order (empty when it does not exist)."""
    schema, table = qualified.split(".")
    return [
        row[0]
        for row in con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE schema_name = ? AND table_name = ? "
            "ORDER BY column_index",
            [schema, table],
        ).fetchall()
    ]


def document_table(
    con: duckdb.DuckDBPyConnection, qualified: str, doc: TableDoc, kind: str = "TABLE"
) -> None:
    """COMMENT ON the table (or `kind="VIEW"`) and each of its documented columns."""
    name = target(qualified)
    columns = set(column_names(con, qualified))
    if doc.description:
        con.execute(f"COMMENT ON {kind} {name} IS {literal(doc.description)}")
    for column, text in doc.columns.items():
        if column in columns:
            con.execute(f"COMMENT ON COLUMN {name}.{ident(column)} IS {literal(text)}")


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
    selected = ", ".join(map(ident, columns)) if columns else "*"
    sql = f"SELECT {selected} FROM {target(qualified)}"
    return con.execute(sql + (f" WHERE {where}" if where else ""), params or []).pl()


def table_exists(con: duckdb.DuckDBPyConnection, qualified: str) -> bool:
    schema, table = qualified.split(".")
    found = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
        [schema, table],
    ).fetchone()
    return bool(found and found[0])


def table_rows(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """The row count of every table of the file, as `schema.table` -> rows, in name order."""
    return {
        f"{schema}.{table}": con.execute(
            f"SELECT count(*) FROM {target(f'{schema}.{table}')}"
        ).fetchone()[0]
        for schema, table in con.execute(
            "SELECT schema_name, table_name FROM duckdb_tables() "
            "WHERE database_name = current_database() ORDER BY 1, 2"
        ).fetchall()
    }


def stored_schema(con: duckdb.DuckDBPyConnection, qualified: str) -> pl.Schema:
    """The column names and types of a stored table as Polars reads them (no row is read)."""
    return con.sql(f"SELECT * FROM {target(qualified)} LIMIT 0").pl().schema
