"""`progress export` and `progress report`: the consumer-facing commands (issue 6).

Plain typer command functions; `pipelines/cli.py` registers them (`app.command()(export)`).
Both open the warehouse read-only and fail with one line on stderr, never a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from pipelines.cli_lake import BackendOption, CatalogOption, DataPathOption, lake_config

console = Console()
err = Console(stderr=True)

DEFAULT_WAREHOUSE = Path("data/warehouse.duckdb")
DEFAULT_EXPORTS = Path("data/exports")
DEFAULT_REPORT = Path("data/report.html")
LANDING_HELP = (
    "Landing folder the output must stay out of; default $PROGRESS_LANDING, else data/landing."
)


def _fail(message: str) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


def export(
    warehouse: Annotated[
        Path, typer.Option(help="DuckDB warehouse file to export (opened read-only).")
    ] = DEFAULT_WAREHOUSE,
    out: Annotated[
        Path,
        typer.Option(
            help="Export folder: a link switched atomically to each new whole export (a folder or "
            "file that is not an export of this command is refused)."
        ),
    ] = DEFAULT_EXPORTS,
    landing: Annotated[Path | None, typer.Option(help=LANDING_HELP)] = None,
    backend: BackendOption = "file",
    catalog: CatalogOption = None,
    data_path: DataPathOption = None,
    snapshot: Annotated[
        int | None,
        typer.Option(min=0, help="With --backend lake: export this publication (snapshot)."),
    ] = None,
) -> None:
    """Export every mart and analyst view per academy (Parquet + CSV with BOM) with a manifest:
    the warehouse file, or with --backend lake the lake's latest (or --snapshot) publication."""
    from pipelines.core.exports import ExportError, export_lake, export_warehouse
    from pipelines.exit_codes import CommandFailed

    try:
        lake = lake_config(backend, catalog, data_path)
        if snapshot is not None and lake is None:
            raise CommandFailed("--snapshot needs --backend lake")
        if lake is None:
            manifest = export_warehouse(warehouse, out, landing=landing)
        else:
            manifest = export_lake(lake, out, snapshot, landing)
    except CommandFailed as exc:
        _fail(str(exc))
    except ExportError as exc:
        _fail(str(exc))
    except Exception as exc:  # never a traceback to the user
        _fail(_one_line(exc))
    rows: dict[str, int] = {}
    for entry in manifest["files"]:
        if entry["format"] == "parquet":
            rows[entry["table"]] = rows.get(entry["table"], 0) + entry["rows"]
    table = Table("table / view", "rows", title=f"exported to {out}")
    for name, count in rows.items():
        table.add_row(name, f"{count:,}")
    console.print(table)
    academies = ", ".join(map(str, manifest["academies"])) or "none"
    console.print(
        f"as of {manifest['as_of'] or '-'} · academies {academies} · "
        f"{len(manifest['files'])} files · {out / 'manifest.json'}",
        highlight=False,
        soft_wrap=True,
    )


def report(
    academy: Annotated[
        int | None, typer.Option(help="Academy id to report on; default every academy.")
    ] = None,
    out: Annotated[
        Path, typer.Option(help="HTML file to write (one self-contained page that opens offline).")
    ] = DEFAULT_REPORT,
    warehouse: Annotated[
        Path, typer.Option(help="DuckDB warehouse file (opened read-only).")
    ] = DEFAULT_WAREHOUSE,
    landing: Annotated[Path | None, typer.Option(help=LANDING_HELP)] = None,
    max_rows: Annotated[
        int,
        typer.Option(
            help="Rows per list table, the most urgent first (>= 1); the complete lists are in "
            "`progress export` and `progress sql`."
        ),
    ] = 1_000,  # pipelines.report.DEFAULT_MAX_ROWS (the report module loads plotly: lazily)
) -> None:
    """Write the report for directors: students at risk, clinic queue, completion, risk trend,
    rule evaluation (one offline HTML page; docs/directors.md says what each part means)."""
    from pipelines.core.paths import UnsafePath, check_output

    if max_rows < 1:  # a usage error: exit code 2, like typer's own, but one line
        err.print(
            f"[bold red]error:[/] --max-rows must be at least 1 (got {max_rows})", highlight=False
        )
        raise typer.Exit(2)

    try:
        check_output(out, warehouse, landing)
    except UnsafePath as exc:
        _fail(str(exc))
    if out.is_dir():
        _fail(f"--out {out} is a folder; give the HTML file to write")
    try:
        from pipelines.report import ReportError, write_report
    except ImportError as exc:
        _fail(f"the report needs the plotly package ({exc.name} is missing); run `uv sync`")
    try:
        result = write_report(warehouse, out, academy, max_rows=max_rows)
    except ReportError as exc:
        _fail(str(exc))
    except Exception as exc:  # never a traceback to the user
        _fail(_one_line(exc))
    scope = f"academy {academy}" if academy is not None else "every academy"
    console.print(
        f"report for {scope} as of {result.as_of or '-'} -> {result.path} "
        f"({len(result.charts)} charts)",
        highlight=False,
        soft_wrap=True,
    )
    for title in result.notes:
        console.print(f"  no data for: {title}", highlight=False)
