"""`progress sql`: a read-only sandbox over the warehouse, for people and scripts.

The connection is opened read-only with DuckDB's own guards, set before the query runs and
locked so no query can lift them: `enable_external_access=false` (no file is read or written
but the warehouse: COPY TO, EXPORT, read_csv of host files, glob, ATTACH and INSTALL are all
refused), no extension auto-install or auto-load, `lock_configuration=true` (SET and PRAGMA
cannot change any of it). Analysts read the warehouse; files are what `progress export` is for.

The query runs in a worker thread while the main thread waits, so Ctrl-C, SIGTERM and
`--timeout` stop it at once with `con.interrupt()` (a long DuckDB query does not return to
Python to see a signal by itself).
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from pipelines.cli_lake import BackendOption, CatalogOption, DataPathOption, lake_config
from pipelines.exit_codes import CommandFailed, ExitCode, Interrupted, fail, one_line

DEFAULT_WAREHOUSE = Path("data/warehouse.duckdb")
FORMATS = ("table", "csv", "json", "markdown")
SCREEN_ROWS = 100  # default --limit of the table and markdown formats

SANDBOX = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "lock_configuration": True,
}


def sandbox_connection(path: Path):
    """A read-only connection to `path` that can touch no other file and change no setting."""
    import duckdb

    return duckdb.connect(str(path), read_only=True, config=dict(SANDBOX))


def lake_sandbox(config, snapshot: int | None = None):
    """The lake attached read-only (at `snapshot`, else the latest publication), then the
    same guards as the file: no file outside the lake's data path, settings locked."""
    from pipelines.core import lake

    con = lake.connect(config, read_only=True, snapshot=snapshot)
    try:
        con.execute(f"SET allowed_directories = [{lake.literal(config.root)}]")
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
    except BaseException:
        con.close()
        raise
    return con


def read_query(query: str | None, file: Path | None) -> str:
    """The query from the argument, `--file`, or standard input (`-`, or no argument when
    stdin is not a terminal)."""
    if file is not None and query is not None:
        raise CommandFailed("give the query as an argument or with --file, not both")
    if file is not None:
        try:
            text = file.read_text(encoding="utf-8-sig")
        except OSError as exc:
            raise CommandFailed(f"cannot read --file {file}: {one_line(exc)}") from None
    elif query == "-" or (query is None and not sys.stdin.isatty()):
        text = sys.stdin.read()
    elif query is None:
        raise CommandFailed("no query: give one as an argument, with --file, or on stdin (-)")
    else:
        text = query
    if not text.strip():
        raise CommandFailed("the query is empty")
    return text


def run_query(path: Path | None, query: str, rows: int | None, timeout: float | None, con=None):
    """(column names, first `rows` + 1 records as a Polars frame) of `query`; interrupted by
    Ctrl-C / SIGTERM (Interrupted) or by `timeout` seconds (CommandFailed, TIMEOUT). `con`:
    an already opened sandbox (the lake) instead of the file at `path`."""
    import polars as pl

    con = con if con is not None else sandbox_connection(path)
    outcome: dict[str, object] = {}
    # the worker's end is told by an Event, not Thread.is_alive(): a signal handler raising
    # inside Thread.join() leaves is_alive() False on Python 3.11 while the thread still runs
    done = threading.Event()

    def work() -> None:
        try:
            cursor = con.execute(query)
            if cursor is None or cursor.description is None:  # only comments, or no result set
                outcome["frame"] = None
                return
            reader = cursor.to_arrow_reader(rows + 1 if rows is not None else 100_000)
            if rows is None:
                outcome["frame"] = pl.from_arrow(reader.read_all())
            else:
                batch = next(iter(reader), None)
                outcome["frame"] = (
                    pl.from_arrow(batch)
                    if batch is not None
                    else pl.from_arrow(reader.schema.empty_table())
                )
        except BaseException as exc:  # handed to the main thread
            outcome["error"] = exc
        finally:
            done.set()

    timed_out = threading.Event()

    def stop() -> None:
        timed_out.set()
        con.interrupt()

    worker = threading.Thread(target=work, name="progress-sql", daemon=True)
    timer = threading.Timer(timeout, stop) if timeout else None
    try:
        worker.start()
        if timer:
            timer.start()
        while not done.wait(0.05):  # short waits: the main thread handles signals between them
            pass
    except Interrupted:
        # interrupted again until the worker stops: an interrupt that lands before DuckDB has
        # begun the query is lost, and the query then ran on; closed here, not at interpreter
        # exit, where DuckDB torn down beside its own running threads aborted the process
        # ("terminate called without an active exception", exit -6 instead of 130; seen in CI)
        deadline = time.monotonic() + 4
        while not done.is_set() and time.monotonic() < deadline:
            con.interrupt()
            done.wait(0.1)
        if done.is_set():
            con.close()
        raise
    finally:
        if timer:
            timer.cancel()
    error = outcome.get("error")
    con.close()
    if error is not None and timed_out.is_set():
        raise CommandFailed(
            f"the query ran longer than --timeout {timeout:g} s and was stopped", ExitCode.TIMEOUT
        )
    if error is not None:
        raise CommandFailed(one_line(error)) from None  # type: ignore[arg-type]
    return outcome["frame"]


def _cell(value: object) -> str:
    return "NULL" if value is None else str(value)


def print_frame(frame, fmt: str, limit: int | None, out: Console) -> None:
    """Write `frame` (at most `limit` rows) to stdout in `fmt`."""
    import polars as pl

    shown = frame if limit is None else frame.head(limit)
    if fmt == "csv":
        sys.stdout.write(shown.write_csv())
    elif fmt == "json":
        sys.stdout.write(shown.write_json() + "\n")
    elif fmt == "markdown":
        with pl.Config(
            tbl_formatting="MARKDOWN",
            tbl_hide_column_data_types=True,
            tbl_hide_dataframe_shape=True,
            tbl_rows=-1,
            tbl_cols=-1,
            fmt_str_lengths=10_000,
            tbl_width_chars=65_535,
        ):
            sys.stdout.write(f"{shown}\n")
    else:
        table = Table(*shown.columns)
        for record in shown.iter_rows():
            table.add_row(*(_cell(v) for v in record))
        # Wider than the terminal: let it overflow rather than squeeze every column to "…".
        width = max(
            out.width, out.measure(table, options=out.options.update_width(1 << 20)).maximum
        )
        Console(width=width, force_terminal=out.is_terminal).print(table)


def sql(
    query: Annotated[
        str | None,
        typer.Argument(
            help="SQL to run (read-only); '-' reads it from stdin. A query that starts with "
            "'--' (a comment) works as it is."
        ),
    ] = None,
    file: Annotated[
        Path | None, typer.Option("--file", "-f", help="Read the query from this file.")
    ] = None,
    warehouse: Annotated[Path, typer.Option(help="DuckDB warehouse file.")] = DEFAULT_WAREHOUSE,
    fmt: Annotated[
        str,
        typer.Option("--format", help="table (screen), csv, json (array of objects) or markdown."),
    ] = "table",
    limit: Annotated[
        int | None,
        typer.Option(
            min=1,
            help=f"Rows to print at most (default {SCREEN_ROWS} for table and markdown, "
            "all for csv and json).",
        ),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(min=0.001, help="Stop the query after this many seconds (exit 5)."),
    ] = None,
    rejected: Annotated[
        bool,
        typer.Option(
            "--rejected",
            help="Query the last rejected build (blocked or failed run) instead of "
            "the publication: its quarantine and ledger.",
        ),
    ] = False,
    backend: BackendOption = "file",
    catalog: CatalogOption = None,
    data_path: DataPathOption = None,
    snapshot: Annotated[
        int | None,
        typer.Option(
            min=0, help="With --backend lake: query this past publication (snapshot number)."
        ),
    ] = None,
) -> None:
    """Run a read-only query against the warehouse (no file access, no setting changes), or
    with --backend lake against the lake's latest (or --snapshot) publication."""
    out = Console()
    if fmt not in FORMATS:
        fail(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    try:
        text = read_query(query, file)
        lake = lake_config(backend, catalog, data_path)
        if lake is None and snapshot is not None:
            raise CommandFailed("--snapshot needs --backend lake", ExitCode.USAGE)
        if lake is not None and rejected:
            raise CommandFailed("--rejected reads a build file: use --backend file")
        if limit is None and fmt in ("table", "markdown"):
            limit = SCREEN_ROWS
        if lake is not None:
            try:
                con = lake_sandbox(lake, snapshot)
            except Exception as exc:  # e.g. the catalog unreachable, an expired snapshot
                raise CommandFailed(f"cannot open the lake: {one_line(exc)}") from None
            frame = run_query(None, text, limit, timeout, con=con)
        else:
            path = rejected_build(warehouse) if rejected else warehouse
            if not path.exists():
                fail(f"warehouse {path} does not exist; run `progress run` first")
            frame = run_query(path, text, limit, timeout)
    except CommandFailed as exc:
        fail(str(exc), exc.code)
    if frame is None:
        err_note("(the statement returned no rows)")
        return
    print_frame(frame, fmt, limit, out)
    if limit is not None and frame.height > limit:
        err_note(f"(showing the first {limit} rows; use --limit to see more)")


def rejected_build(warehouse: Path) -> Path:
    """The rejected build kept beside `warehouse` by the last blocked or failed run."""
    locate = rejected_locator()
    if locate is None:
        raise CommandFailed("this version keeps no rejected build")
    path = Path(locate(warehouse))
    if not path.exists():
        raise CommandFailed(f"no rejected build beside {warehouse}: the last runs published")
    return path


def rejected_locator():
    """`rejected_path(warehouse)`: where a blocked or failed run keeps its build."""
    from pipelines.core.paths import rejected_path

    return rejected_path


def err_note(text: str) -> None:
    Console(stderr=True).print(text, highlight=False)
