"""`progress evaluate`: measure the risk rules against the delivered outcomes (contract §5).

Runs `evaluation_job` (the job the Dagster definitions define) in-process on the warehouse's raw
tables, one pass per --as-of for all threshold pairs, publishing `marts.rule_evaluation` through
the warehouse resource (writer lock, staging copy, atomic swap); then prints, per instant, the
all-academies figures of the configured thresholds, the pair with the best F1 and the best
recall at precision >= 0.9, per level. Only typer and rich at import; the rest when it runs.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from pipelines.exit_codes import CommandFailed, ExitCode, fail, one_line

console = Console()

DEFAULT_WAREHOUSE = Path("data/warehouse.duckdb")
MIN_PRECISION = 0.9


def _instants(texts: list[str], timezone: str) -> list[datetime]:
    from pipelines.core.parse import parse_instant
    from pipelines.runner import check_timezone

    check_timezone(timezone)
    instants = []
    for text in texts:
        try:
            instants.append(parse_instant(text, timezone))
        except ValueError:
            raise CommandFailed(
                f"--as-of {text!r} is not a timestamp (YYYY-MM-DD[ HH:MM[:SS]] with an optional "
                "offset)"
            ) from None
    return sorted(set(instants))


def _outcome_count(warehouse: Path) -> int:
    import duckdb

    from pipelines.core.warehouse import table_exists

    with duckdb.connect(str(warehouse), read_only=True) as con:
        if not table_exists(con, "raw.outcomes"):
            return 0
        return con.execute("SELECT count(*) FROM raw.outcomes").fetchone()[0]


def run_evaluation(
    warehouse: Path,
    instants: list[datetime],
    timezone: str,
    lock_timeout: float = 300.0,
    verbose: bool = False,
):
    """Run the definitions' evaluation_job for `instants`; return the stored rows of those
    instants. Raises CommandFailed (with its exit code) when nothing was evaluated."""
    import duckdb

    from pipelines.core.evaluation import read_evaluation
    from pipelines.core.landing import DEFAULT_LANDING
    from pipelines.runner import dagster_instance, job, run_config, run_failure

    if not warehouse.exists():
        raise CommandFailed(f"warehouse {warehouse} does not exist; run `progress run` first")
    if not _outcome_count(warehouse):
        raise CommandFailed(
            f"no outcomes in {warehouse}: deliver an outcomes extract (outcomes.csv, "
            "outcomes.parquet or outcomes/ in the landing folder) and run `progress run` first"
        )
    texts = [t.isoformat(sep=" ") for t in instants]
    config = run_config(DEFAULT_LANDING, warehouse, timezone, None, lock_timeout, verbose)
    config["ops"] = {"marts__rule_evaluation": {"config": {"as_of": texts}}}
    result = job("evaluation_job").execute_in_process(
        run_config=config,
        instance=dagster_instance(),
        raise_on_error=False,
        tags={"progress/as_of": ", ".join(texts), "progress/trigger": "cli"},
    )
    failure = run_failure(result)
    if failure:
        raise failure
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return read_evaluation(con, instants)


def _number(value, digits: int = 3) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else f"{value:,}"


# (header, column) of the printed figures; withdrawn is printed with how many were flagged
FIGURES = (
    ("pop.", "population"),
    ("tp", "tp"),
    ("fp", "fp"),
    ("fn", "fn"),
    ("tn", "tn"),
    ("precision", "precision"),
    ("recall", "recall"),
    ("F1", "f1"),
    ("accuracy", "accuracy"),
    ("base rate", "base_rate"),
)


def figures_table(title: str, choices, caption: str | None = None) -> Table:
    """One line per level: the thresholds and the figures of the chosen rows."""
    table = Table(
        "level",
        "warn.",
        "danger",
        *(h for h, _ in FIGURES),
        "withdrawn (flagged)",
        "median lead days",
        title=title,
        caption=caption,
    )
    for choice in choices:
        row = choice.row
        if row is None:
            table.add_row(choice.level, *("-" for _ in range(len(FIGURES) + 4)))
            continue
        table.add_row(
            choice.level,
            str(row["warning_streak"]),
            str(row["danger_streak"]),
            *(_number(row[c]) for _, c in FIGURES),
            f"{row['withdrawn']:,} ({row['withdrawn_flagged']:,})",
            _number(row["median_lead_days"], 1),
        )
    return table


def print_evaluation(out: Console, evaluation, instants: list[datetime], thresholds) -> None:
    from pipelines.core.evaluation import best_f1, best_recall, configured_rows

    for as_of in instants:
        stamp = f"{as_of:%Y-%m-%d %H:%M:%S}"
        out.print(
            f"[bold]evaluation as of {stamp}[/] (all academies; WARNING = WARNING or "
            "higher; population = ACTIVE enrollments with PASS or FAIL)",
            highlight=False,
        )
        out.print(
            figures_table(
                f"configured thresholds (warning {thresholds.warning}, danger {thresholds.danger})",
                configured_rows(evaluation, as_of, thresholds),
            )
        )
        out.print(figures_table("thresholds maximizing F1", best_f1(evaluation, as_of)))
        out.print(
            figures_table(
                f"best recall at precision >= {MIN_PRECISION}",
                best_recall(evaluation, as_of, MIN_PRECISION),
                caption="- : no threshold pair reaches that precision",
            )
        )
    out.print(
        f"stored {evaluation.height:,} rows in marts.rule_evaluation (per academy and "
        "lecture too); see docs/analyst-guide.md for queries",
        highlight=False,
    )


def evaluate(
    as_of: Annotated[
        list[str],
        typer.Option(
            "--as-of",
            help="Instant to evaluate the risk as of (repeatable), e.g. '2026-06-30 "
            "23:59:59'; rows of the same instant are replaced.",
        ),
    ],
    warehouse: Annotated[Path, typer.Option(help="DuckDB warehouse file.")] = DEFAULT_WAREHOUSE,
    timezone: Annotated[str, typer.Option(help="Local time zone of the academy.")] = "Asia/Seoul",
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show Dagster logs.")] = False,
    lock_timeout: Annotated[
        float, typer.Option(help="Seconds to wait for another run writing the same warehouse.")
    ] = 300.0,
) -> None:
    """Measure the risk rules against the delivered outcomes for every threshold pair
    (1 <= warning <= danger <= 6), store marts.rule_evaluation, print the key figures."""
    from pipelines.resources import ProgressSettings

    thresholds = ProgressSettings(timezone=timezone).thresholds
    try:
        instants = _instants(as_of, timezone)
        evaluation = run_evaluation(warehouse, instants, timezone, lock_timeout, verbose)
    except CommandFailed as exc:  # bad input (2), writer lock busy (4), a failed run (1)
        fail(str(exc), exc.code)
    except Exception as exc:  # never a traceback to the user
        fail(one_line(exc), ExitCode.INTERNAL)
    print_evaluation(console, evaluation, instants, thresholds)


__all__ = ["evaluate", "run_evaluation"]
