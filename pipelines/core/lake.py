"""The lake backend's storage layer: DuckLake with its catalog in Postgres and its data as
Parquet files in a local folder or on S3-compatible storage.

One publication is one DuckLake transaction (a snapshot): readers attached to the lake see
the previous publication or the new one, whole, and any past one by its snapshot number until
retention expires it. Writers never touch the catalog until the end: a step writes its table's
rows as Parquet files to deterministic staged paths (`stage_path`, `write_staged`: a retried
step overwrites its own file), and `publish` registers every staged file in one transaction.

Configuration (`LakeConfig.from_env`), environment variables:

- `PROGRESS_LAKE_CATALOG`: the Postgres catalog as a libpq string,
  e.g. `dbname=lake host=db.internal user=pipeline` (a password from `~/.pgpass` or
  `PGPASSWORD`, as libpq reads them).
- `PROGRESS_LAKE_DATA_PATH`: where the Parquet files live: a folder, or `s3://bucket/prefix/`.
- `PROGRESS_LAKE_S3_ENDPOINT`: an S3-compatible server, e.g. `http://127.0.0.1:9000`
  (empty: AWS itself); `http://` turns TLS off.
- `PROGRESS_LAKE_S3_KEY_ID`, `PROGRESS_LAKE_S3_SECRET`, `PROGRESS_LAKE_S3_REGION`
  (default `us-east-1`), `PROGRESS_LAKE_S3_URL_STYLE` (`path`, the default, or `vhost`).

Extensions load offline only: from the `duckdb-extension-*` wheels (DuckDB 1.5.5), installed
into a folder inside the project's environment, never from the network.

No Dagster here.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import duckdb
import polars as pl
from duckdb_extensions import import_extension

from .publish import PUBLICATION_DDL, PUBLICATION_DOC, PUBLICATION_TABLE
from .warehouse import TableDoc, document_table, ident, literal, registered, target, transaction

LAKE = "lake"  # the attached catalog's name in every connection made here
EXTENSIONS = ("ducklake", "postgres_scanner", "httpfs")
# Inside the project's environment, not ~/.duckdb: the wheels' binaries, installed once.
EXTENSION_DIR = Path(sys.prefix) / "duckdb_extensions"
# DuckLake retries a commit that lost a race for the next snapshot id; it recognises those
# errors by their English text (the tests' Postgres runs with lc_messages=C). The design
# notes set 100 defensively; a real conflict (two publishers) is not retried, whatever this is.
MAX_RETRY_COUNT = 100
AUTHOR = "progress"  # the snapshot author of every publication
STAGE = "_stage"
ENV = "PROGRESS_LAKE_"


class PublicationConflict(Exception):
    """Another publisher committed first, or is publishing now; nothing of ours was published."""


@dataclass(frozen=True)
class LakeConfig:
    catalog: str  # libpq connection string of the Postgres catalog
    data_path: str  # a folder, or s3://bucket/prefix/
    s3_endpoint: str = ""  # http(s)://host:port of an S3-compatible server; empty: AWS
    s3_key_id: str = ""
    s3_secret: str = ""
    s3_region: str = "us-east-1"
    s3_url_style: str = "path"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> LakeConfig:
        def get(name: str, default: str = "") -> str:
            return environ.get(ENV + name, default).strip()

        if not get("CATALOG") or not get("DATA_PATH"):
            raise ValueError(f"set {ENV}CATALOG and {ENV}DATA_PATH for the lake backend")
        return cls(
            catalog=get("CATALOG"),
            data_path=get("DATA_PATH"),
            s3_endpoint=get("S3_ENDPOINT"),
            s3_key_id=get("S3_KEY_ID"),
            s3_secret=get("S3_SECRET"),
            s3_region=get("S3_REGION", "us-east-1"),
            s3_url_style=get("S3_URL_STYLE", "path"),
        )

    @property
    def on_s3(self) -> bool:
        return self.data_path.startswith("s3://")

    @property
    def root(self) -> str:
        """The data path with one trailing slash (DuckLake joins file names onto it)."""
        if self.on_s3:
            return self.data_path.rstrip("/") + "/"
        return str(Path(self.data_path).resolve()) + "/"

    def storage_options(self) -> dict[str, str]:
        """Polars' object-store options for the S3 data path."""
        options = {"aws_region": self.s3_region}
        if self.s3_key_id:
            options |= {
                "aws_access_key_id": self.s3_key_id,
                "aws_secret_access_key": self.s3_secret,
            }
        if self.s3_endpoint:
            options["aws_endpoint_url"] = self.s3_endpoint
            options["aws_allow_http"] = str(self.s3_endpoint.startswith("http://")).lower()
        if self.s3_url_style == "vhost":
            options["aws_virtual_hosted_style_request"] = "true"
        return options


def load_extensions(con: duckdb.DuckDBPyConnection) -> None:
    """Load DuckLake, the Postgres scanner and httpfs from the wheels, never the network."""
    for name in EXTENSIONS:
        try:
            con.execute(f"LOAD {name}")
        except duckdb.Error:  # not yet copied into EXTENSION_DIR
            import_extension(name, con=con)
            con.execute(f"LOAD {name}")


def _duckdb(extension_directory: Path = EXTENSION_DIR) -> duckdb.DuckDBPyConnection:
    extension_directory.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(
        config={
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
            "extension_directory": str(extension_directory),
        }
    )
    load_extensions(con)
    return con


def attach_statements(
    config: LakeConfig, read_only: bool = False, snapshot: int | None = None
) -> list[str]:
    """The SQL that attaches the lake as `lake` and uses it, once the extensions are loaded:
    `connect` runs it, and `reader_script` hands it to the DuckDB CLI."""
    statements = [f"SET ducklake_max_retry_count = {MAX_RETRY_COUNT}"]
    if config.on_s3:
        statements.append(_s3_secret(config))
    options = [f"DATA_PATH {literal(config.root)}"]
    if read_only or snapshot is not None:
        options.append("READ_ONLY")
    if snapshot is not None:
        options.append(f"SNAPSHOT_VERSION {int(snapshot)}")
    statements.append(
        f"ATTACH {literal('ducklake:postgres:' + config.catalog)} AS {LAKE} ({', '.join(options)})"
    )
    statements.append(f"USE {LAKE}")
    return statements


def connect(
    config: LakeConfig, read_only: bool = False, snapshot: int | None = None
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with the lake attached as `lake` and in use (so
    `schema.table` names reach the lake). `read_only`: writes are refused; `snapshot`: the
    lake as of that snapshot version (read-only)."""
    con = _duckdb()
    try:
        for statement in attach_statements(config, read_only, snapshot):
            con.execute(statement)
    except BaseException:
        con.close()
        raise
    return con


def reader_script(config: LakeConfig, snapshot: int | None = None) -> str:
    """A DuckDB CLI start-up script attaching the lake read-only (optionally at a snapshot),
    with the extensions loaded from the project's environment (installed there first)."""
    _duckdb().close()
    statements = [
        "SET autoinstall_known_extensions = false",
        f"SET extension_directory = {literal(str(EXTENSION_DIR))}",
        *(f"LOAD {name}" for name in EXTENSIONS),
        *attach_statements(config, read_only=True, snapshot=snapshot),
    ]
    return ";\n".join(statements) + ";\n"


def _s3_secret(config: LakeConfig) -> str:
    parts = ["TYPE s3", f"REGION {literal(config.s3_region)}"]
    parts.append(f"URL_STYLE {literal(config.s3_url_style)}")
    if config.s3_key_id:
        parts += [f"KEY_ID {literal(config.s3_key_id)}", f"SECRET {literal(config.s3_secret)}"]
    if config.s3_endpoint:
        endpoint = urlsplit(config.s3_endpoint)
        parts.append(f"ENDPOINT {literal(endpoint.netloc or endpoint.path)}")
        parts.append(f"USE_SSL {str(endpoint.scheme != 'http').lower()}")
    bucket = config.data_path.removeprefix("s3://").split("/")[0]
    parts.append(f"SCOPE {literal('s3://' + bucket)}")
    return f"CREATE OR REPLACE SECRET lake_s3 ({', '.join(parts)})"


def ensure_schema(
    con: duckdb.DuckDBPyConnection,
    tables: Mapping[str, pl.Schema | Mapping[str, pl.DataType]],
    docs: Mapping[str, TableDoc] | None = None,
) -> None:
    """Create the missing `schema.table`s of the lake from Polars schemas (DuckDB maps the
    types as it does for the file backend's frames: Categorical and Enum become VARCHAR in
    DuckLake) and document them, in one transaction. Existing tables are left as they are."""
    docs = docs or {}
    con.execute(f"CALL ducklake_set_option({literal(LAKE)}, 'data_inlining_row_limit', 0)")
    with transaction(con):
        con.execute("CREATE SCHEMA IF NOT EXISTS marts")
        con.execute(PUBLICATION_DDL)
        document_table(con, PUBLICATION_TABLE, PUBLICATION_DOC)
        for qualified, schema in tables.items():
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {ident(qualified.split('.')[0])}")
            create_table(con, qualified, schema, "CREATE TABLE IF NOT EXISTS")
        document_changed(con, {t: d for t, d in docs.items() if t in tables})


def create_table(
    con: duckdb.DuckDBPyConnection,
    qualified: str,
    schema: pl.Schema | Mapping[str, pl.DataType],
    statement: str = "CREATE TABLE",
) -> None:
    """`schema.table` with the columns of a Polars schema, typed as DuckDB types the frame."""
    with registered(con, pl.DataFrame(schema=schema)) as empty:
        con.execute(f"{statement} {target(qualified)} AS FROM {empty}")


def document_changed(con: duckdb.DuckDBPyConnection, docs: Mapping[str, TableDoc]) -> int:
    """COMMENT ON the tables and columns of `docs` whose comment in the lake differs (each
    comment is a catalog change: a publication re-stating ~400 unchanged comments spent
    seconds in its transaction). Returns the comments written."""
    tables = dict(
        ((s, t), c)
        for s, t, c in con.execute(
            "SELECT schema_name, table_name, comment FROM duckdb_tables() WHERE database_name = ?",
            [LAKE],
        ).fetchall()
    )
    columns = dict(
        ((s, t, n), c)
        for s, t, n, c in con.execute(
            "SELECT schema_name, table_name, column_name, comment FROM duckdb_columns() "
            "WHERE database_name = ?",
            [LAKE],
        ).fetchall()
    )
    written = 0
    for qualified, doc in docs.items():
        schema, table = qualified.split(".")
        if doc.description and tables.get((schema, table)) != doc.description:
            con.execute(f"COMMENT ON TABLE {target(qualified)} IS {literal(doc.description)}")
            written += 1
        for column, text in doc.columns.items():
            key = (schema, table, column)
            if key in columns and columns[key] != text:
                con.execute(
                    f"COMMENT ON COLUMN {target(qualified)}.{ident(column)} IS {literal(text)}"
                )
                written += 1
    return written


def stage_path(config: LakeConfig, run_id: str, table: str, bucket: int) -> str:
    """Where a run stages one bucket's rows of `schema.table`: the same path for the same run,
    table and bucket, so a retried step overwrites its own file."""
    return f"{config.root}{STAGE}/{run_id}/{table}/bucket={bucket:04d}.parquet"


def write_staged(frame: pl.DataFrame, path: str, config: LakeConfig) -> None:
    """Write a staged file whole or not at all: locally a temporary file renamed into place,
    on S3 one object (a PUT is visible only once complete)."""
    if config.on_s3:
        frame.write_parquet(path, storage_options=config.storage_options())
        return
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    partial = final.with_name(f".{final.name}.{uuid.uuid4().hex}.tmp")
    try:
        frame.write_parquet(partial)
        os.replace(partial, final)
    finally:
        partial.unlink(missing_ok=True)


def _is_conflict(error: duckdb.Error) -> bool:
    return "transaction conflict" in str(error).lower()


def publish(
    con: duckdb.DuckDBPyConnection,
    staged: Mapping[str, Sequence[str]],
    schemas: Mapping[str, pl.Schema],
    docs: Mapping[str, TableDoc] | None,
    publication_row: Mapping[str, Any],
    message: str,
    replace_where: Mapping[str, tuple[str, Sequence[Any]]] | None = None,
    stage_id: str | None = None,
) -> int:
    """Replace every table of `staged` (`schema.table` -> its staged files) by its files, in
    ONE DuckLake transaction with the docs, the `marts.publication` row and the snapshot's
    commit message: readers see the previous publication or this one, whole. A table replaced
    whole is dropped and created again from `schemas` (its staged frames' schema); a table in
    `replace_where` (-> SQL condition, parameters) loses only the rows matching it (a history
    date: its files, whole). Returns the new snapshot id. Raises PublicationConflict when
    another publisher committed first."""
    docs = docs or {}
    row = dict(publication_row)
    row.setdefault("published_at", datetime.now(UTC).replace(tzinfo=None))
    extra = {k: row.get(k) for k in ("run_id", "as_of", "content_hashes")}
    extra["stage_id"] = stage_id  # the staging folder's id: a re-executed publish finds it
    try:
        with transaction(con):
            for qualified, files in staged.items():
                schema, table = qualified.split(".")
                if qualified in (replace_where or {}):
                    # Whole files end: metadata only, no delete file written (design notes,
                    # row 5); the condition prunes on the files' min/max statistics.
                    where, params = replace_where[qualified]
                    con.execute(f"DELETE FROM {target(qualified)} WHERE {where}", list(params))
                else:
                    # Dropped and created again, not DELETEd: DuckLake's DELETE of every row
                    # still reads every row id (1.05 s for 4.2M rows at tier M, 22 s of a
                    # 26 s publish at L); a drop is one catalog row. Earlier snapshots keep the
                    # old table and its files until they expire.
                    con.execute(f"DROP TABLE IF EXISTS {target(qualified)}")
                    create_table(con, qualified, schemas[qualified])
                for path in files:
                    con.execute(
                        "CALL ducklake_add_data_files(?, ?, ?, schema => ?)",
                        [LAKE, table, path, schema],
                    )
            document_changed(con, {t: d for t, d in docs.items() if t in staged})
            columns = list(row)
            con.execute(
                f"INSERT INTO {PUBLICATION_TABLE} ({', '.join(map(ident, columns))}) "
                f"VALUES ({', '.join('?' for _ in columns)})",
                [row[c] for c in columns],
            )
            con.execute(
                "CALL ducklake_set_commit_message(?, ?, ?, extra_info => ?)",
                [LAKE, AUTHOR, message, json.dumps(extra, default=str, sort_keys=True)],
            )
    except duckdb.Error as exc:
        if _is_conflict(exc):
            raise PublicationConflict(
                f"another publication of the lake is in progress or committed first; run "
                f"{row.get('run_id', '?')} published nothing (run it again once the other "
                "finishes)"
            ) from exc
        raise
    # ours, even if another publication has committed since
    return con.execute(f"FROM ducklake_last_committed_snapshot({literal(LAKE)})").fetchone()[0]


def snapshots(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """The publications still in the lake, oldest first: snapshot id and time, the commit
    message and the run id, as-of, content hashes and staging id recorded with it."""
    frame = con.execute(
        "SELECT snapshot_id, snapshot_time, commit_message, commit_extra_info "
        f"FROM ducklake_snapshots({literal(LAKE)}) WHERE author = ? ORDER BY snapshot_id",
        [AUTHOR],
    ).pl()
    extra = [json.loads(text or "{}") for text in frame["commit_extra_info"]]
    return frame.drop("commit_extra_info").with_columns(
        pl.Series("run_id", [e.get("run_id") for e in extra], dtype=pl.String),
        pl.Series("as_of", [e.get("as_of") for e in extra], dtype=pl.String),
        pl.Series("content_hashes", [e.get("content_hashes") for e in extra], dtype=pl.String),
        pl.Series("stage_id", [e.get("stage_id") for e in extra], dtype=pl.String),
    )


# Staged files not (yet) registered are deleted only past this age: longer than the longest
# run, which stages its files at its start and registers them at its end.
STAGE_SAFETY_HOURS = 24.0


def expire(
    con: duckdb.DuckDBPyConnection, keep_days: float, stage_safety_hours: float = STAGE_SAFETY_HOURS
) -> dict[str, int]:
    """Retention: expire the snapshots older than `keep_days` (never the current one), delete
    the files only they used, and delete files in the data path that no snapshot knows (staged
    by a failed run) once older than `stage_safety_hours`. Returns the counts."""
    lake = literal(LAKE)
    started = time.time()
    expired = con.execute(
        f"CALL ducklake_expire_snapshots({lake}, older_than => now() - to_microseconds(?))",
        [int(keep_days * 86400e6)],
    ).fetchall()
    cleaned = con.execute(
        f"CALL ducklake_cleanup_old_files({lake}, cleanup_all => true)"
    ).fetchall()
    orphans = con.execute(
        f"CALL ducklake_delete_orphaned_files({lake}, older_than => to_timestamp(?))",
        [started - stage_safety_hours * 3600],
    ).fetchall()
    return {"snapshots": len(expired), "files": len(cleaned), "orphans": len(orphans)}


if __name__ == "__main__":  # `duckdb -cmd "$(python -m pipelines.core.lake [SNAPSHOT])"`
    version = int(sys.argv[1]) if len(sys.argv) > 1 else None
    sys.stdout.write(reader_script(LakeConfig.from_env(), version))
