"""`progress`: generate extracts, run the pipeline, query the warehouse."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from pipelines.cli_bench import bench
from pipelines.cli_consume import export, report
from pipelines.cli_history import alerts, backfill, print_run_alerts
from pipelines.cli_sql import sql
from pipelines.exit_codes import ExitCode, Interrupted, install_interrupt_handlers

app = typer.Typer(
    help="Academy progress pipeline: extracts -> DuckDB -> progress marts.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command()(export)
app.command()(report)
app.command()(backfill)
app.command()(alerts)
app.command()(bench)
# a query that starts with a `--` comment is the query, not an unknown option
app.command(context_settings={"ignore_unknown_options": True})(sql)
console = Console()
err = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        console.print(f"progress {version('academy-progress')}", highlight=False)
        raise typer.Exit()


@app.callback()
def _options(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Academy progress pipeline: extracts -> DuckDB -> progress marts."""


DEFAULT_WAREHOUSE = Path("data/warehouse.duckdb")


def _fail(message: str) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


@app.command()
def generate(
    out: Annotated[Path, typer.Option(help="Folder to write the extracts into.")],
    academies: Annotated[int, typer.Option(min=1, help="Number of academies.")] = 2,
    enrollments: Annotated[int, typer.Option(min=1, help="Number of enrollments.")] = 300,
    seed: Annotated[int, typer.Option(help="Random seed; same seed, same files.")] = 0,
    format: Annotated[str, typer.Option("--format", help="csv or parquet.")] = "csv",
    tier: Annotated[
        str | None,
        typer.Option(
            help="Scale tier S (10k), M (100k) or L (1M enrollments), as Parquet; overrides "
            "--academies, --enrollments and --format."
        ),
    ] = None,
) -> None:
    """Write realistic synthetic extracts (with a few bad rows of every kind)."""
    from rich.progress import Progress

    from pipelines.bench import TIERS
    from pipelines.generate import generate_extracts

    if tier is not None:
        if tier.upper() not in TIERS:
            _fail(f"--tier must be one of {', '.join(TIERS)}, not {tier!r}")
        chosen = TIERS[tier.upper()]
        academies, enrollments, format = chosen.academies, chosen.enrollments, "parquet"
    if format not in ("csv", "parquet"):
        _fail(f"--format must be csv or parquet, not {format!r}")
    with Progress(console=err, transient=True) as progress:
        task = progress.add_task("generating enrollments", total=enrollments)
        counts = generate_extracts(
            out,
            academies=academies,
            enrollments=enrollments,
            seed=seed,
            fmt=format,  # type: ignore[arg-type]
            progress=lambda done, total: progress.update(task, completed=done, total=total),
        )
    table = Table("table", "rows", title=f"extracts written to {out}")
    for name, rows in counts.items():
        table.add_row(name, f"{rows:,}")
    console.print(table)


@app.command()
def run(
    landing: Annotated[Path, typer.Option(help="Landing folder with the extracts.")] = Path(
        "data/landing"
    ),
    warehouse: Annotated[Path, typer.Option(help="DuckDB warehouse file.")] = DEFAULT_WAREHOUSE,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help="Instant to compute as of (e.g. '2026-05-01 23:59:59' or with an "
            "offset); default now.",
        ),
    ] = None,
    timezone: Annotated[str, typer.Option(help="Local time zone of the academy.")] = "Asia/Seoul",
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show Dagster logs.")] = False,
    lock_timeout: Annotated[
        float, typer.Option(help="Seconds to wait for another run writing the same warehouse.")
    ] = 300.0,
) -> None:
    """Ingest the extracts and publish the marts in one Dagster run, then summarize."""
    try:
        from pipelines.runner import RunFailed, run_pipeline

        report = run_pipeline(landing, warehouse, as_of, timezone, verbose, lock_timeout)
    except typer.Exit:
        raise
    except RunFailed as exc:
        _fail(str(exc))
    except Exception as exc:  # never a traceback to the user
        _fail(f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc) else ''}")
    console.print(
        f"run [bold]{report.run_id}[/] as of {report.as_of:%Y-%m-%d %H:%M:%S} -> {warehouse}"
    )
    rows = Table("table", "rows", title="tables")
    for name, count in report.table_rows.items():
        rows.add_row(name, f"{count:,}")
    console.print(rows)
    ledger = Table(
        "table",
        "delivered",
        "used",
        "collapsed",
        "quarantined",
        title="rows delivered = used + collapsed duplicates + quarantined",
    )
    for entry in sorted(report.ledger, key=lambda e: e["table_name"]):
        ledger.add_row(
            entry["table_name"],
            *(
                f"{entry[k]:,}"
                for k in ("delivered_rows", "used_rows", "collapsed_duplicates", "quarantined_rows")
            ),
        )
    console.print(ledger)
    reasons = Table("table", "reason", "rows", title="quarantine by reason")
    for table, counts in report.quarantine_reasons.items():
        for reason, count in counts.items():
            reasons.add_row(table, reason, f"{count:,}")
    console.print(reasons)
    risk = Table("risk_level", "enrollments", title="risk levels (lecture_progress)")
    for level in ("NORMAL", "WARNING", "DANGER"):
        risk.add_row(level, f"{report.risk_levels.get(level, 0):,}")
    console.print(risk)
    try:
        print_run_alerts(console, warehouse, report.as_of)
    except Exception as exc:  # alerts are a convenience; the run itself has published
        err.print(f"[yellow]warning:[/] alerts not computed: {exc}", highlight=False)
    for refused in report.refused_files:
        err.print(f"[yellow]refused:[/] {refused}", highlight=False)
    for warning in report.warnings:
        err.print(f"[yellow]warning:[/] {warning}", highlight=False)


def main() -> None:
    """The `progress` entry point: the app, with Ctrl-C and SIGTERM ending any command with
    exit 130 and one line (a run or backfill interrupted publishes nothing)."""
    install_interrupt_handlers()
    try:
        app()
    except Interrupted:
        err.print("[bold red]interrupted:[/] stopped; nothing was published", highlight=False)
        sys.exit(int(ExitCode.INTERRUPTED))


if __name__ == "__main__":
    main()
