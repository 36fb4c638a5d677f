"""`progress bench`: the pipeline measured against its peers on the same generated extracts.

Tiers are sizes of the synthetic extracts (`pipelines.generate`); every stage of a benchmark runs
in a fresh subprocess (`python -m pipelines.bench.stage`) so its wall time and peak RSS are its
own. See BENCHMARKS.md for the stages, the JSON keys and the figures.

Nothing here imports Dagster except the end-to-end stage, which runs the real `progress run`
path (`pipelines.runner.run_pipeline`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

AS_OF = "2026-11-25 06:00:00"  # the generator's extract time: every event counts
SEED = 2026
BENCH_ROOT = Path("data/bench")  # git-ignored; one folder per tier


@dataclass(frozen=True)
class Tier:
    """A benchmark size: enrollments (and academies) of the generated Parquet extracts."""

    name: str
    enrollments: int
    academies: int
    seed: int = SEED
    # per-event (SQLite) replay: run at this tier? at most how many events are timed
    per_event: bool = False
    per_event_events: int | None = 50_000

    def root(self, base: Path | None = None) -> Path:
        return (base or BENCH_ROOT) / self.name

    def generate_args(self) -> dict[str, object]:
        """Keyword arguments for `pipelines.generate.generate_extracts` (besides `out`)."""
        return {
            "academies": self.academies,
            "enrollments": self.enrollments,
            "seed": self.seed,
            "fmt": "parquet",
            "bad_rows": True,
        }


TIERS: dict[str, Tier] = {
    "S": Tier("S", enrollments=10_000, academies=2, per_event=True),
    "M": Tier("M", enrollments=100_000, academies=20),
    "L": Tier("L", enrollments=1_000_000, academies=200),
}

__all__ = ["AS_OF", "BENCH_ROOT", "SEED", "TIERS", "Tier"]
