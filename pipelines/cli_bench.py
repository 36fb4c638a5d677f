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
) -> None:
    """Measure ingest, marts and end to end against a DuckDB-SQL peer, the old per-event
    style and the lower bound: wall time and peak RSS per stage, each in a fresh process."""
    try:
        from pipelines.bench.runner import BenchError, run_bench

        run_bench(tier.value, out)
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
