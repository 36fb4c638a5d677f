"""`progress backfill` and `progress alerts`, and the alerts table `progress run` prints.

Only typer and rich at import (so `progress --help` stays fast); Dagster, DuckDB and Polars are
imported when a command runs. The machinery is in `pipelines.backfill`.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from pipelines.core.landing import DEFAULT_LANDING
from pipelines.exit_codes import CommandFailed, ExitCode, fail, one_line

if TYPE_CHECKING:
    from pipelines.backfill import AlertsSummary

console = Console()
err = Console(stderr=True)

DEFAULT_WAREHOUSE = Path("data/warehouse.duckdb")
DEFAULT_TIMEZONE = "Asia/Seoul"
DAYS_PER_RUN = 7  # = pipelines.backfill.DAYS_PER_RUN
SHOWN_DATES = 31
LEVEL_STYLE = {"DANGER": "bold red", "WARNING": "yellow"}


def alerts_table(
    summary: AlertsSummary, limit: int | None = None, option: str = "--limit"
) -> Table:
    """A rich table of the alerts (academy, lecture title, student), DANGER first, longest
    streak first; every alert unless `limit` (the caption names `option`, which sets it)."""
    counts = summary.counts
    table = Table(
        "academy",
        "lecture",
        "student",
        "enrollment",
        "was",
        "now",
        "reason",
        "last session",
        title=(
            f"risk alerts: risen between {summary.previous:%Y-%m-%d %H:%M:%S} and "
            f"{summary.as_of:%Y-%m-%d %H:%M:%S}: {summary.alerts.height} alerts "
            f"({counts['DANGER']} DANGER, {counts['WARNING']} WARNING)"
        ),
    )
    ordered = summary.alerts.sort(
        ["risk_level", "streak", "academy_id", "lecture_id", "enrollment_id"],
        descending=[False, True, False, False, False],
    )
    shown = ordered if limit is None else ordered.head(limit)
    for row in shown.iter_rows(named=True):
        style = LEVEL_STYLE.get(row["risk_level"], "")
        title = row.get("lecture_title")
        table.add_row(
            str(row["academy_id"]),
            f"{title} ({row['lecture_id']})" if title else str(row["lecture_id"]),
            str(row["student_id"]),
            str(row["enrollment_id"]),
            row["previous_level"],
            f"[{style}]{row['risk_level']}[/]" if style else row["risk_level"],
            row["reason"],
            "" if row["last_session_id"] is None else str(row["last_session_id"]),
        )
    if shown.height < summary.alerts.height:
        table.caption = f"showing {shown.height} of {summary.alerts.height} ({option})"
    elif summary.alerts.is_empty():
        table.caption = "0 alerts: no enrollment's risk rose"
    return table


# --------------------------------------------------------------------------------------------
# Typer commands (registered in pipelines/cli.py)
# --------------------------------------------------------------------------------------------


def backfill(
    start: Annotated[str, typer.Option("--start", help="First date to materialize (YYYY-MM-DD).")],
    end: Annotated[str, typer.Option("--end", help="Last date, included (YYYY-MM-DD).")],
    landing: Annotated[Path, typer.Option(help="Landing folder with the extracts.")] = (
        DEFAULT_LANDING
    ),
    warehouse: Annotated[Path, typer.Option(help="DuckDB warehouse file.")] = DEFAULT_WAREHOUSE,
    timezone: Annotated[str, typer.Option(help="Local time zone of the academy.")] = (
        DEFAULT_TIMEZONE
    ),
    days_per_run: Annotated[
        int, typer.Option(min=1, help="Dates per Dagster run (1: one run per date).")
    ] = DAYS_PER_RUN,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show Dagster logs.")] = False,
) -> None:
    """Materialize the daily history (lecture_progress_daily, risk summary, alerts) for every
    date from --start to --end, each as of that day 23:59:59, through Dagster's partitions."""
    from pipelines.backfill import (
        BACKFILL_TAG,
        check_range,
        parse_day,
        run_backfill,
    )

    try:
        first, last = parse_day(start, "--start"), parse_day(end, "--end")
        check_range(first, last)
        total = (last - first).days + 1
        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        # a live bar on a terminal; in a log, one plain line per Dagster run of dates
        with Progress(
            *columns, console=err, transient=False, disable=not err.is_terminal
        ) as progress:
            task = progress.add_task(f"ingest {landing}", total=total)
            if not err.is_terminal:
                err.print(f"ingest {landing}, then {total} dates", highlight=False)

            def advance(days: list[date], run_id: str) -> None:
                progress.update(task, advance=len(days), description=f"history {days[-1]}")
                if not err.is_terminal:
                    err.print(
                        f"history {days[0]} .. {days[-1]} done (run {run_id})", highlight=False
                    )

            report = run_backfill(
                first,
                last,
                landing,
                warehouse,
                timezone,
                advance,
                verbose,
                days_per_run=days_per_run,
            )
            progress.update(task, description=f"history {first} .. {last}")
    except typer.Exit:
        raise
    except CommandFailed as exc:  # BackfillFailed, or bad input found by the runner
        fail(str(exc), exc.code)
    except Exception as exc:  # never a traceback to the user
        fail(one_line(exc), ExitCode.INTERNAL)
    console.print(
        f"backfill [bold]{report.backfill_id}[/]: {len(report.runs)} dates "
        f"({first} .. {last}) -> {warehouse}  (runs tagged {BACKFILL_TAG}={report.backfill_id})"
    )
    if report.per_date is not None:
        table = Table("date", "enrollments", "WARNING", "DANGER", "alerts", title="history")
        for row in report.per_date.tail(SHOWN_DATES).iter_rows():
            table.add_row(*(str(v) for v in row))
        if report.per_date.height > SHOWN_DATES:
            table.caption = (
                f"last {SHOWN_DATES} of {report.per_date.height} dates; "
                f"{int(report.per_date['alerts'].sum())} alerts in all"
            )
        console.print(table)
        console.print("read them with `progress alerts --date YYYY-MM-DD`", highlight=False)


def alerts(
    day: Annotated[
        str | None,
        typer.Option("--date", help="History date (YYYY-MM-DD); default the latest stored."),
    ] = None,
    warehouse: Annotated[Path, typer.Option(help="DuckDB warehouse file.")] = DEFAULT_WAREHOUSE,
    limit: Annotated[
        int | None, typer.Option(min=1, help="Alerts to print at most; default every one.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the alerts as JSON.")] = False,
) -> None:
    """Print the stored risk alerts of one history date: who rose since the day before."""
    from pipelines.backfill import BackfillFailed, parse_day, stored_alerts

    if not warehouse.exists():
        fail(f"warehouse {warehouse} does not exist; run `progress run` first")
    try:
        summary = stored_alerts(warehouse, parse_day(day, "--date") if day else None)
    except BackfillFailed as exc:
        fail(str(exc), exc.code)
    except Exception as exc:
        fail(one_line(exc), ExitCode.INTERNAL)
    if as_json:
        import json

        rows = summary.alerts if limit is None else summary.alerts.head(limit)
        print(
            json.dumps(
                {
                    "date": str(summary.as_of.date()),
                    "as_of": str(summary.as_of),
                    "previous": str(summary.previous),
                    "counts": summary.counts,
                    "total": summary.alerts.height,
                    "alerts": rows.to_dicts(),
                },
                ensure_ascii=False,
                indent=2,
                default=str,
            )
        )
        return
    console.print(alerts_table(summary, limit))


__all__ = ["alerts", "alerts_table", "backfill"]
