"""Academy buckets: the unit of work of every path that computes over enrollments.

A bucket is a contiguous range of academy ids whose enrollments add up to about a target
count; an academy larger than the target is split by enrollment-id range inside it. Every
fact of the marts, the daily history and the alerts belongs to one enrollment, and every
enrollment to one academy (through its lecture), so each bucket is computed on its own and
the results are stacked. Memory is bounded by the bucket, not by the warehouse.

`plan_buckets` is a pure function of (academy_id, enrollment_id) pairs and the target, used by
the ingest (which writes raw event rows bucket after bucket), the marts, the history, the
alerts and the evaluation alike; it says nothing about where a bucket runs, so a fan-out over
machines can take a bucket as its unit of work.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

# Enrollments per bucket. Measured at L (1M enrollments): 100k keeps the marts step under
# ~2 GB of Polars frames while the per-bucket fixed costs (reads, the writer hand-off) stay
# under 5% of the step.
DEFAULT_BUCKET_ENROLLMENTS = 100_000

A, E = "academy_id", "enrollment_id"


@dataclass(frozen=True)
class Bucket:
    """Academies `academy_lo`..`academy_hi` (both included); when one academy is split,
    `academy_lo == academy_hi` and only its enrollments `enrollment_lo`..`enrollment_hi`."""

    index: int
    academy_lo: int
    academy_hi: int
    enrollments: int
    enrollment_lo: int | None = None
    enrollment_hi: int | None = None

    @property
    def split(self) -> bool:
        return self.enrollment_lo is not None

    def contains(self, academy_id: int, enrollment_id: int) -> bool:
        """Row-by-row membership (the reference's reading of the bucket)."""
        if not self.academy_lo <= academy_id <= self.academy_hi:
            return False
        if self.split:
            return self.enrollment_lo <= enrollment_id <= self.enrollment_hi
        return True

    def sql(self, academy: str = A, enrollment: str = E) -> tuple[str, list[int]]:
        """A WHERE condition selecting this bucket's rows, with its parameters."""
        condition, params = f"{academy} BETWEEN ? AND ?", [self.academy_lo, self.academy_hi]
        if self.split:
            condition += f" AND {enrollment} BETWEEN ? AND ?"
            params += [self.enrollment_lo, self.enrollment_hi]
        return condition, params

    def expr(self, academy: str = A, enrollment: str = E) -> pl.Expr:
        """The same condition as a Polars expression."""
        condition = pl.col(academy).is_between(self.academy_lo, self.academy_hi)
        if self.split:
            condition &= pl.col(enrollment).is_between(self.enrollment_lo, self.enrollment_hi)
        return condition


def plan_buckets(pairs: pl.DataFrame, target: int = DEFAULT_BUCKET_ENROLLMENTS) -> list[Bucket]:
    """Buckets covering every (academy_id, enrollment_id) of `pairs`, in academy order.

    Academies are taken in id order and added to the current bucket while it stays within
    `target` enrollments; an academy that does not fit closes the bucket. An academy with more
    than `target` enrollments gets buckets of its own, cut by enrollment id into ceil(n /
    target) ranges of nearly equal size. An empty `pairs` gives no bucket. Deterministic: the
    same pairs and target give the same plan.
    """
    if target < 1:
        raise ValueError(f"bucket size must be at least 1, not {target}")
    pairs = pairs.select(pl.col(A).cast(pl.Int64), pl.col(E).cast(pl.Int64)).drop_nulls()
    if pairs.is_empty():
        return []
    counts = pairs.group_by(A).len().sort(A)
    buckets: list[Bucket] = []
    open_lo: int | None = None
    open_hi, open_n = 0, 0

    def close() -> None:
        nonlocal open_lo, open_n
        if open_lo is not None:
            buckets.append(Bucket(len(buckets), open_lo, open_hi, open_n))
        open_lo, open_n = None, 0

    for academy, n in counts.iter_rows():
        if n > target:
            close()
            ids = pairs.filter(pl.col(A) == academy)[E].sort()
            pieces = -(-n // target)
            for k in range(pieces):
                chunk = ids.slice(k * n // pieces, (k + 1) * n // pieces - k * n // pieces)
                buckets.append(
                    Bucket(
                        len(buckets), academy, academy, chunk.len(), int(chunk[0]), int(chunk[-1])
                    )
                )
            continue
        if open_lo is not None and open_n + n > target:
            close()
        if open_lo is None:
            open_lo = academy
        open_hi, open_n = academy, open_n + n
    close()
    return buckets


def assign_buckets(pairs: pl.DataFrame, plan: Sequence[Bucket]) -> pl.Series:
    """The bucket index of each (academy_id, enrollment_id) row of `pairs` (null for an
    academy the plan does not cover), vectorized."""
    starts = pl.DataFrame(
        {
            A: [b.academy_lo for b in plan],
            E: [b.enrollment_lo if b.split else None for b in plan],
            "_bucket": [b.index for b in plan],
            "_hi": [b.academy_hi for b in plan],
        },
        schema={A: pl.Int64, E: pl.Int64, "_bucket": pl.Int64, "_hi": pl.Int64},
    )
    rows = pairs.select(pl.col(A).cast(pl.Int64), pl.col(E).cast(pl.Int64)).with_row_index("_row")
    # first bucket of each academy range: an as-of join on academy_id finds the last bucket
    # starting at or before the row's academy; split academies then step by enrollment id.
    whole = starts.filter(pl.col(E).is_null()).drop(E)
    found = (
        rows.sort(A)
        .join_asof(whole.sort(A), on=A, strategy="backward")
        .with_columns(pl.when(pl.col(A) <= pl.col("_hi")).then(pl.col("_bucket")).alias("_bucket"))
    )
    split = starts.filter(pl.col(E).is_not_null())
    if split.height:
        pieces = (
            rows.join(split.select(A).unique(), on=A, how="semi")
            .sort(E)
            .join_asof(split.sort(E), on=E, by=A, strategy="backward", check_sortedness=False)
            .select("_row", pl.col("_bucket").alias("_piece"))
        )
        # ids below an academy's first cut belong to its first piece
        first = split.group_by(A).agg(pl.col("_bucket").min().alias("_first"))
        found = (
            found.join(pieces, on="_row", how="left")
            .join(first, on=A, how="left")
            .with_columns(pl.coalesce("_piece", "_first", "_bucket").alias("_bucket"))
        )
    return found.sort("_row")["_bucket"].alias("bucket")
