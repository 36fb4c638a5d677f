"""`progress bench`: the pipeline measured against its peers (registered in pipelines.cli)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

err = Console(stderr=True)


class TierName(StrEnum):
    S = "S"
    M = "M"
    L = "L"


def bench(
    tier: Annotated[
        TierName,
        typer.Option(
            "--tier",
            help="Size: S = 10k, M = 100k, L = 1M enrollments (Parquet extracts, generated once "
            "into data/bench/<tier>/landing and reused).",
        ),
    ] = TierName.S,
    out: Annotated[
        Path | None,
        typer.Option(help="JSON file for the figures (default bench-results/<tier>.json)."),
    ] = None,
    stages: Annotated[
        str | None,
        typer.Option(
            "--stages",
            help="Comma-separated stages to run (default all): lower_bound, ingest, marts, "
            "sql_peer, e2e, exports, per_event, cmd_run, cmd_daily_job, cmd_backfill_7d, "
            "cmd_export, cmd_report, cmd_second_run, cmd_run_lake (--backend lake). A stage whose input stage is not run is "
            "skipped (every cmd_* needs cmd_run).",
        ),
    ] = None,
    backend: Annotated[
        str,
        typer.Option(
            "--backend",
            help="file (default) or lake: lake adds the stage cmd_run_lake, `progress run "
            "--backend lake --workers N` once per --workers count, on a Postgres catalog the "
            "benchmark starts (Debian's postgresql packages) and a lake folder under the tier's "
            "work folder.",
        ),
    ] = "file",
    workers: Annotated[
        str,
        typer.Option("--workers", help="--backend lake: comma-separated worker counts to measure."),
    ] = "1,2",
) -> None:
    """Measure ingest, marts and end to end against a DuckDB-SQL peer, the old per-event
    style and the lower bound, and the commands users run (progress run, the daily job,
    backfill, export, report): wall time and peak RSS per stage, each in a fresh process."""
    try:
        from pipelines.bench.runner import BenchError, run_bench

        try:
            counts = tuple(int(x) for x in workers.split(",") if x.strip())
        except ValueError:
            raise BenchError(f"--workers takes counts like 1,2, not {workers!r}") from None
        options: dict[str, object] = {}  # only what was given (the defaults are run_bench's)
        if stages is not None:
            options["stages"] = tuple(x.strip() for x in stages.split(",") if x.strip())
        if backend != "file":
            options["backend"] = backend
        if counts != (1, 2):
            options["workers"] = counts
        run_bench(tier.value, out, **options)
    except typer.Exit:
        raise
    except BenchError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except Exception as exc:  # never a traceback to the user
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        err.print(
            f"[bold red]error:[/] {type(exc).__name__}: {first}".rstrip(": "),
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(1) from None
