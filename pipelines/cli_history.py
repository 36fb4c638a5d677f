"""`progress backfill` and `progress alerts`, and the alerts table `progress run` prints.

Only typer and rich at import (so `progress --help` stays fast); Dagster, DuckDB and Polars are
imported when a command runs. The machinery is in `pipelines.backfill`.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

if TYPE_CHECKING:
    from pipelines.backfill import AlertsSummary

console = Console()
err = Console(stderr=True)

DEFAULT_LANDING = Path("data/landing")
DEFAULT_WAREHOUSE = Path("data/warehouse.duckdb")
DEFAULT_TIMEZONE = "Asia/Seoul"
DAYS_PER_RUN = 7  # = pipelines.backfill.DAYS_PER_RUN
SHOWN_DATES = 31
LEVEL_STYLE = {"DANGER": "bold red", "WARNING": "yellow"}


def alerts_table(summary: AlertsSummary, limit: int = 20) -> Table:
    """A rich table of the alerts, DANGER first, longest streak first."""
    counts = summary.counts
    table = Table(
        "academy", "lecture", "student", "enrollment", "was", "now", "reason", "last session",
        title=(f"risk alerts: risen between {summary.previous:%Y-%m-%d %H:%M:%S} and "
               f"{summary.as_of:%Y-%m-%d %H:%M:%S} "
               f"({counts['DANGER']} DANGER, {counts['WARNING']} WARNING)"),
    )
    ordered = summary.alerts.sort(
        ["risk_level", "streak", "academy_id", "lecture_id", "enrollment_id"],
        descending=[False, True, False, False, False],
    )
    for row in ordered.head(limit).iter_rows(named=True):
        style = LEVEL_STYLE.get(row["risk_level"], "")
        table.add_row(
            str(row["academy_id"]), str(row["lecture_id"]), str(row["student_id"]),
            str(row["enrollment_id"]), row["previous_level"],
            f"[{style}]{row['risk_level']}[/]" if style else row["risk_level"],
            row["reason"], "" if row["last_session_id"] is None else str(row["last_session_id"]),
        )
    if summary.alerts.height > limit:
        table.caption = f"showing {limit} of {summary.alerts.height}"
    elif summary.alerts.is_empty():
        table.caption = "no enrollment's risk rose"
    return table


def print_run_alerts(out: Console, warehouse: Path, as_of: datetime, limit: int = 20) -> None:
    """For `progress run`: print who rose between the end of the previous day and the run's
    as-of (computed from the warehouse's raw tables, read-only)."""
    from pipelines.backfill import alerts_summary

    out.print(alerts_table(alerts_summary(warehouse, as_of), limit))


# --------------------------------------------------------------------------------------------
# Typer commands (registered in pipelines/cli.py)
# --------------------------------------------------------------------------------------------


def _fail(message: str) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


def _error_line(exc: Exception) -> str:
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"


def backfill(
    start: Annotated[str, typer.Option("--start", help="First date to materialize (YYYY-MM-DD).")],
    end: Annotated[str, typer.Option("--end", help="Last date, included (YYYY-MM-DD).")],
    landing: Annotated[Path, typer.Option(help="Landing folder with the extracts.")] = (
        DEFAULT_LANDING),
    warehouse: Annotated[Path, typer.Option(help="DuckDB warehouse file.")] = DEFAULT_WAREHOUSE,
    timezone: Annotated[str, typer.Option(help="Local time zone of the academy.")] = (
        DEFAULT_TIMEZONE),
    days_per_run: Annotated[int, typer.Option(
        min=1, help="Dates per Dagster run (1: one run per date).")] = DAYS_PER_RUN,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show Dagster logs.")] = False,
) -> None:
    """Materialize the daily history (lecture_progress_daily, risk summary, alerts) for every
    date from --start to --end, each as of that day 23:59:59, through Dagster's partitions."""
    from pipelines.backfill import (
        BACKFILL_TAG,
        BackfillFailed,
        check_range,
        parse_day,
        run_backfill,
    )

    try:
        first, last = parse_day(start, "--start"), parse_day(end, "--end")
        check_range(first, last)
        total = (last - first).days + 1
        columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn())
        with Progress(*columns, console=err, transient=False) as progress:
            task = progress.add_task(f"ingest {landing}", total=total)

            def advance(days: list[date], run_id: str) -> None:
                progress.update(task, advance=len(days), description=f"history {days[-1]}")

            report = run_backfill(first, last, landing, warehouse, timezone, advance, verbose,
                                  days_per_run=days_per_run)
            progress.update(task, description=f"history {first} .. {last}")
    except typer.Exit:
        raise
    except BackfillFailed as exc:
        _fail(str(exc))
    except Exception as exc:  # never a traceback to the user
        _fail(_error_line(exc))
    console.print(
        f"backfill [bold]{report.backfill_id}[/]: {len(report.runs)} dates "
        f"({first} .. {last}) -> {warehouse}  (runs tagged {BACKFILL_TAG}={report.backfill_id})"
    )
    if report.per_date is not None:
        table = Table("date", "enrollments", "WARNING", "DANGER", "alerts", title="history")
        for row in report.per_date.tail(SHOWN_DATES).iter_rows():
            table.add_row(*(str(v) for v in row))
        if report.per_date.height > SHOWN_DATES:
            table.caption = (f"last {SHOWN_DATES} of {report.per_date.height} dates; "
                             f"{int(report.per_date['alerts'].sum())} alerts in all")
        console.print(table)
        console.print("read them with `progress alerts --date YYYY-MM-DD`", highlight=False)


def alerts(
    day: Annotated[str | None, typer.Option(
        "--date", help="History date (YYYY-MM-DD); default the latest stored.")] = None,
    warehouse: Annotated[Path, typer.Option(help="DuckDB warehouse file.")] = DEFAULT_WAREHOUSE,
    limit: Annotated[int, typer.Option(min=1, help="Rows to print at most.")] = 50,
) -> None:
    """Print the stored risk alerts of one history date: who rose since the day before."""
    from pipelines.backfill import BackfillFailed, parse_day, stored_alerts

    if not warehouse.exists():
        _fail(f"warehouse {warehouse} does not exist; run `progress run` first")
    try:
        summary = stored_alerts(warehouse, parse_day(day, "--date") if day else None)
    except BackfillFailed as exc:
        _fail(str(exc))
    except Exception as exc:
        _fail(_error_line(exc))
    console.print(alerts_table(summary, limit))


__all__ = ["alerts", "alerts_table", "backfill", "print_run_alerts"]
