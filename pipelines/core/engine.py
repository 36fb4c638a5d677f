"""The bucketed engine: every path that computes over enrollments runs one academy bucket at a
time through `for_each_bucket`.

The current marts (`compute_marts`), the daily history (`history_in_buckets`: backfill and
`daily_job`), the alerts a `progress run` prints (`alerts_in_buckets`) and the rule evaluation
all read a bucket's inputs (`read_inputs`: the reference tables whole, the bucket's enrollments
and their events), compute with the pure functions of `marts` / `history`, and hand the result
to one writer thread that appends bucket i to DuckDB while bucket i+1 is computed (DuckDB and
Polars release the GIL, so writing overlaps computing). Memory is bounded by the bucket; the
plan (`buckets.plan_buckets`) does not depend on where a bucket runs.

No Dagster here: assets, the CLI and the benchmark call these functions and report.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import duckdb
import polars as pl

from . import bucket_store
from .buckets import DEFAULT_BUCKET_ENROLLMENTS, Bucket, assign_buckets, plan_buckets
from .evaluation import streak_summary
from .history import (
    AS_OF_DATE,
    HISTORY_TABLES,
    append_dates,
    lecture_progress_on,
    prepare_dates,
    risk_alerts,
    risk_daily_summary,
)
from .marts import (
    LEVELS,
    MART_INPUT_COLUMNS,
    PROGRESS_MARTS,
    RiskThresholds,
    build_marts_and_streaks,
    lecture_progress_at,
)
from .publish import add_hashes, content_hash
from .warehouse import (
    TableDoc,
    building,
    document_table,
    drop_building,
    read_table,
    stored_schema,
    swap_in,
    table_exists,
    transaction,
    write_table,
)
from .write_behind import WriteBehind

E = "enrollment_id"
REFERENCE_TABLES = tuple(t for t, cols in MART_INPUT_COLUMNS.items() if E not in cols)


def bucket_plan(
    con: duckdb.DuckDBPyConnection, target: int = DEFAULT_BUCKET_ENROLLMENTS
) -> list[Bucket]:
    """The academy buckets of the warehouse's valid enrollments (raw.enrollments joined to
    raw.lectures for the academy)."""
    pairs = con.execute(
        "SELECT l.academy_id, e.enrollment_id FROM raw.enrollments e "
        "JOIN raw.lectures l USING (lecture_id)"
    ).pl()
    return plan_buckets(pairs, target)


def read_inputs(
    con: duckdb.DuckDBPyConnection,
    bucket: Bucket | None,
    plan: Sequence[Bucket],
    references: dict[str, pl.DataFrame] | None = None,
    only: pl.Series | None = None,
    columns: dict[str, list[str]] = MART_INPUT_COLUMNS,
) -> dict[str, pl.DataFrame]:
    """A bucket's inputs with only the columns the marts use: the reference tables whole
    (`references` when the caller read them once), the bucket's enrollments and their events
    (`bucket` None: every row). `only`: keep just these enrollment ids."""
    frames = dict(references or {})
    for table, used in columns.items():
        if table in frames:
            continue
        if E not in used or bucket is None:
            frame = read_table(con, f"raw.{table}", used)
        else:
            frame = bucket_store.read_bucket(con, table, used, bucket, plan)
        if only is not None and E in used:
            frame = frame.filter(pl.col(E).is_in(only.implode()))
        frames[table] = frame
    return frames


def split_inputs(
    raw: dict[str, pl.DataFrame], plan: Sequence[Bucket]
) -> Iterator[dict[str, pl.DataFrame]]:
    """The in-memory twin of `read_inputs`: each bucket's inputs cut from whole frames (every
    frame once when the plan is empty). For tests and callers that hold the raw tables."""
    if not plan:
        yield raw
        return
    pairs = (
        raw["enrollments"]
        .select(E, "lecture_id")
        .join(raw["lectures"].select("lecture_id", "academy_id"), on="lecture_id")
        .select("academy_id", E)
    )
    owner = pairs.select(E, assign_buckets(pairs, plan))
    for bucket in plan:
        ids = owner.filter(pl.col("bucket") == bucket.index)[E].implode()
        yield {t: f.filter(pl.col(E).is_in(ids)) if E in f.columns else f for t, f in raw.items()}


def for_each_bucket(
    con: duckdb.DuckDBPyConnection,
    plan: Sequence[Bucket],
    compute: Callable[[dict[str, pl.DataFrame]], Any],
    write: Callable[[duckdb.DuckDBPyConnection, Any, bool], None] | None = None,
    only: pl.Series | None = None,
    timings: dict[str, float] | None = None,
) -> None:
    """For each bucket of `plan` (one pass over everything when the plan is empty): read its
    inputs, `compute(inputs)`, and `write(writer, result, first)` on a writer thread with its
    own connection, one bucket at a time, in order, overlapping the next bucket's compute.

    `timings` (optional) gets wall seconds added under read, compute and write (waiting for
    the writer). An error in any bucket stops the loop and is raised."""
    timings = timings if timings is not None else {}
    for phase in ("read", "compute", "write"):
        timings.setdefault(phase, 0.0)
    references = {t: read_table(con, f"raw.{t}", MART_INPUT_COLUMNS[t]) for t in REFERENCE_TABLES}
    writer = con.cursor() if write is not None else None
    buckets: list[Bucket | None] = list(plan) or [None]
    try:
        with WriteBehind("bucket-writer") as behind:
            for i, bucket in enumerate(buckets):
                started = time.perf_counter()
                inputs = read_inputs(con, bucket, plan, references, only)
                now = time.perf_counter()
                timings["read"] += now - started
                result = compute(inputs)
                del inputs
                started, now = now, time.perf_counter()
                timings["compute"] += now - started
                if write is not None:  # waits for bucket i-1's write (or raises its error)
                    behind.submit(write, writer, result, i == 0)
                    timings["write"] += time.perf_counter() - now
                del result
            started = time.perf_counter()
            behind.drain()
            timings["write"] += time.perf_counter() - started
    finally:
        if writer is not None:
            writer.close()


# --------------------------------------------------------------------------------------------
# The current marts
# --------------------------------------------------------------------------------------------


class MartsRefused(Exception):
    """A bucket of marts broke its schema: nothing of this computation is published."""


def risk_distribution(progress: pl.DataFrame) -> dict[str, int]:
    counts = progress.group_by("risk_level").len()
    found = dict(zip(counts["risk_level"], counts["len"], strict=True))
    return {level: int(found.get(level, 0)) for level in LEVELS}


@dataclass
class MartsOutcome:
    """What the bucketed computation produced, summed over the buckets."""

    buckets: int = 0
    rows: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PROGRESS_MARTS, 0))
    hashes: dict[str, str] = field(
        default_factory=lambda: dict.fromkeys(PROGRESS_MARTS, content_hash(pl.DataFrame()))
    )
    risk: dict[str, int] = field(default_factory=lambda: dict.fromkeys(LEVELS, 0))
    at_risk: list[pl.DataFrame] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)
    violations: dict[str, list[str]] = field(
        default_factory=lambda: {name: [] for name in PROGRESS_MARTS}
    )
    stored: dict[str, pl.Schema] = field(default_factory=dict)
    # wall seconds per phase, summed over the buckets: read, compute (the marts, their
    # validation, invariants and hashes) and write (waiting for the writer thread)
    seconds: dict[str, float] = field(default_factory=dict)
    evaluation_streaks: int = 0  # enrollments whose streak summary was kept for the evaluation


# The streak summary (`evaluation.streak_summary`) of the enrollments with an outcome, kept by
# the marts step for the rule evaluation of the same run and instant: the evaluation then
# builds no grid of its own (at L it cost a third of the marts step).
EVALUATION_STREAKS = "engine.evaluation_streaks"
EVALUATION_STREAKS_DOC = TableDoc(
    "Internal (the engine): the streak summary of the enrollments with an outcome, kept by "
    "the marts step of one run for the rule evaluation of the same run. Grain: enrollment.",
    {
        "enrollment_id": "Enrollment with an outcome.",
        "streak": "Its larger streak at its last held session as of _as_of.",
        "_run_id": "The run whose marts step kept it.",
        "_as_of": "The instant of those marts.",
    },
)


def cached_streaks(
    con: duckdb.DuckDBPyConnection, run_id: str, as_of: datetime, max_streak: int
) -> pl.DataFrame | None:
    """The streak summary the marts step of run `run_id` kept as of `as_of` (with at least
    `max_streak` reached-columns), or None."""
    if not run_id or not table_exists(con, EVALUATION_STREAKS):
        return None
    frame = con.execute(
        f"SELECT * FROM {EVALUATION_STREAKS} WHERE _run_id = ? AND _as_of = ?", [run_id, as_of]
    ).pl()
    reached = [f"_reached_{t}" for t in range(1, max_streak + 1)]
    if frame.is_empty() or not set(reached) <= set(frame.columns):
        return None
    keep = [c for c in frame.columns if not c.startswith("_reached_") and not c.startswith("_")]
    return frame.select(*keep, *reached).sort(E)


# A bucket's marts -> {mart: failure text} (schema) and {mart: [violations]} (invariants);
# given by the caller (the asset uses Pandera and the invariants) so core stays Dagster-free.
MartsCheck = Callable[[dict[str, pl.DataFrame], int], tuple[dict[str, str], dict[str, list[str]]]]


def compute_marts(
    con: duckdb.DuckDBPyConnection,
    as_of: datetime,
    thresholds: RiskThresholds,
    check: MartsCheck,
    out: MartsOutcome,
    docs: dict[str, Any] | None = None,
    target: int = DEFAULT_BUCKET_ENROLLMENTS,
    evaluation: tuple[str, int] | None = None,
) -> None:
    """Compute, check and write the four progress marts one academy bucket at a time, into
    `out`: all buckets are swapped in together, or (MartsRefused, any error) none.

    `evaluation` = (run id, max streak): also keep the streak summary of the enrollments with
    an outcome in `engine.evaluation_streaks` for the rule evaluation of the same run.

    Buckets are appended to side tables (`warehouse.building`), each append committed on its
    own, and one short transaction swaps them in (measured at L: one transaction around every
    append cost +450 MB per 100k-enrollment bucket).
    """
    writer_settings = "SET preserve_insertion_order = false"
    # Mart rows have no meaningful physical order (every reader sorts or groups): DuckDB may
    # append them in parallel (-20% write time at L).
    con.execute(writer_settings)
    try:
        for name in PROGRESS_MARTS:
            drop_building(con, f"marts.{name}")
        plan = bucket_plan(con, target)
        out.buckets = max(len(plan), 1)
        outcome_ids = None
        if evaluation is not None and table_exists(con, "raw.outcomes"):
            outcome_ids = con.execute("SELECT DISTINCT enrollment_id FROM raw.outcomes").pl()[E]
        summaries: list[pl.DataFrame] = []

        def compute(inputs: dict[str, pl.DataFrame]) -> dict[str, pl.DataFrame]:
            marts, streaks = build_marts_and_streaks(inputs, as_of, thresholds)
            if outcome_ids is not None and outcome_ids.len():
                ids = outcome_ids.implode()
                summaries.append(
                    streak_summary(
                        streaks.filter(pl.col(E).is_in(ids)),
                        _only(inputs, outcome_ids),
                        evaluation[1],
                    )
                )
            del streaks
            failures, violations = check(marts, inputs["enrollments"].height)
            out.failures |= failures
            if out.failures:
                raise MartsRefused
            for name, found in violations.items():
                out.violations[name] += found
            for name, frame in marts.items():
                out.rows[name] += frame.height
                out.hashes[name] = add_hashes(out.hashes[name], content_hash(frame))
            for level, count in risk_distribution(marts["lecture_progress"]).items():
                out.risk[level] += count
            out.at_risk.append(
                marts["lecture_progress"]
                .filter(pl.col("risk_level") != "NORMAL")
                .sort("consecutive_failed_sessions", descending=True)
                .head(10)
            )
            return marts

        def write(writer: duckdb.DuckDBPyConnection, marts: dict, first: bool) -> None:
            writer.execute(writer_settings)
            for name, frame in marts.items():
                write_table(writer, building(f"marts.{name}"), frame, append=not first)

        for_each_bucket(con, plan, compute, write, timings=out.seconds)
        if evaluation is not None:
            kept = (
                pl.concat(summaries) if summaries else pl.DataFrame({E: []}, schema={E: pl.Int64})
            )
            out.evaluation_streaks = kept.height
            kept = kept.with_columns(
                pl.lit(evaluation[0]).alias("_run_id"), pl.lit(as_of).alias("_as_of")
            )
            write_table(con, EVALUATION_STREAKS, kept)
            document_table(con, EVALUATION_STREAKS, EVALUATION_STREAKS_DOC)
        with transaction(con):
            for name in PROGRESS_MARTS:
                swap_in(con, f"marts.{name}")
                if docs and name in docs:
                    document_table(con, f"marts.{name}", docs[name])
                out.stored[name] = stored_schema(con, f"marts.{name}")
    finally:  # after a refusal or an error, nothing of this computation stays behind
        for name in PROGRESS_MARTS:
            drop_building(con, f"marts.{name}")


# --------------------------------------------------------------------------------------------
# The daily history and the alerts
# --------------------------------------------------------------------------------------------


def _at_risk(progress: pl.DataFrame) -> pl.Series:
    return progress.filter(pl.col("risk_level") != "NORMAL")[E]


def _only(inputs: dict[str, pl.DataFrame], ids: pl.Series) -> dict[str, pl.DataFrame]:
    kept = ids.implode()
    return {t: f.filter(pl.col(E).is_in(kept)) if E in f.columns else f for t, f in inputs.items()}


def bucket_history(
    inputs: dict[str, pl.DataFrame], days: Sequence[date], thresholds: RiskThresholds
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """One bucket's lecture_progress_daily rows for `days` and its alerts for them.

    An alert for D compares D with D-1, computed on the fly. Only enrollments at risk on D can
    rise, so a previous date that is not itself wanted is computed for those enrollments
    alone (enrollments are independent): n consecutive dates cost n full computations plus
    one on the at-risk few, not n + 1 full ones."""
    progress = {day: lecture_progress_on(inputs, day, thresholds) for day in days}
    previous: dict[date, pl.DataFrame] = {}
    for day in days:
        before = day - timedelta(days=1)
        if before not in progress:
            ids = _at_risk(progress[day])
            previous[before] = lecture_progress_on(_only(inputs, ids), before, thresholds)
    every = pl.concat([*progress.values(), *previous.values()])
    alerts = risk_alerts(every).filter(pl.col(AS_OF_DATE).is_in(pl.Series(days).implode()))
    return pl.concat(list(progress.values())), alerts


# The narrow columns risk_daily_summary needs, kept per bucket and summarized once at the end
# (a lecture of a split academy spans buckets): ~40 bytes per enrollment and date.
_SUMMARY_INPUT = [
    AS_OF_DATE,
    E,
    "academy_id",
    "lecture_id",
    "status",
    "risk_level",
    "completion_rate",
]


@dataclass
class HistoryOutcome:
    rows: dict[str, int] = field(default_factory=lambda: dict.fromkeys(HISTORY_TABLES, 0))
    risk_latest: dict[str, int] = field(default_factory=lambda: dict.fromkeys(LEVELS, 0))
    summary: pl.DataFrame | None = None
    alerts: pl.DataFrame | None = None
    buckets: int = 0
    seconds: dict[str, float] = field(default_factory=dict)


def history_in_buckets(
    con: duckdb.DuckDBPyConnection,
    days: Iterable[date],
    thresholds: RiskThresholds,
    validate: Callable[[str, pl.DataFrame], None],
    docs: dict[str, Any] | None = None,
    target: int = DEFAULT_BUCKET_ENROLLMENTS,
) -> HistoryOutcome:
    """Replace `days` of marts.lecture_progress_daily, marts.risk_daily_summary and
    marts.risk_alerts with their recomputation, one bucket at a time.

    `validate(table, frame)` raises when a frame breaks its schema (before anything of it is
    written). The rows of other dates are never touched. This runs on the run's staging file,
    which only a successful run publishes, so the appends need no enclosing transaction (one
    would hold every bucket in DuckDB's transaction-local memory)."""
    days = sorted(set(days))
    if not days:
        raise ValueError("no dates given")
    out = HistoryOutcome()
    plan = bucket_plan(con, target)
    out.buckets = max(len(plan), 1)
    narrow: list[pl.DataFrame] = []
    alerts: list[pl.DataFrame] = []
    targets = {name: f"marts.{name}" for name in HISTORY_TABLES}
    docs = docs or {}

    def compute(inputs: dict[str, pl.DataFrame]) -> pl.DataFrame:
        progress, bucket_alerts = bucket_history(inputs, days, thresholds)
        validate("lecture_progress_daily", progress)
        narrow.append(progress.select(_SUMMARY_INPUT))
        alerts.append(bucket_alerts)
        out.rows["lecture_progress_daily"] += progress.height
        latest = progress.filter(pl.col(AS_OF_DATE) == days[-1])
        for level, count in risk_distribution(latest).items():
            out.risk_latest[level] += count
        return progress

    def write(writer: duckdb.DuckDBPyConnection, progress: pl.DataFrame, first: bool) -> None:
        qualified = targets["lecture_progress_daily"]
        if first:
            prepare_dates(writer, qualified, progress, days, docs.get("lecture_progress_daily"))
        append_dates(writer, qualified, progress, days)

    for_each_bucket(con, plan, compute, write, timings=out.seconds)
    summary = risk_daily_summary(pl.concat(narrow).sort(AS_OF_DATE, E))
    narrow.clear()
    out.alerts = pl.concat(alerts).sort(AS_OF_DATE, E)
    out.summary = summary
    for name, frame in (("risk_daily_summary", summary), ("risk_alerts", out.alerts)):
        validate(name, frame)
        prepare_dates(con, targets[name], frame, days, docs.get(name))
        append_dates(con, targets[name], frame, days)
        out.rows[name] = frame.height
    return out


def bucket_alerts(
    inputs: dict[str, pl.DataFrame],
    current: pl.DataFrame,
    day: date,
    thresholds: RiskThresholds,
) -> pl.DataFrame:
    """A bucket's alerts of `day`: its lecture_progress now (`current`; only the rows at
    risk matter) against the end of the previous day, computed for those enrollments alone
    (only they can have risen)."""
    now = current.filter(pl.col("risk_level") != "NORMAL")
    before = lecture_progress_on(_only(inputs, now[E]), day - timedelta(days=1), thresholds)
    dated = now.with_columns(pl.lit(day, pl.Date).alias(AS_OF_DATE))
    every = pl.concat([before, dated.select(before.columns)], how="vertical_relaxed")
    return risk_alerts(every).filter(pl.col(AS_OF_DATE) == day)


def alerts_in_buckets(
    con: duckdb.DuckDBPyConnection,
    as_of: datetime,
    thresholds: RiskThresholds,
    current: pl.DataFrame | None = None,
    target: int = DEFAULT_BUCKET_ENROLLMENTS,
) -> pl.DataFrame:
    """Who rose between the end of the previous day and `as_of`: risk as of `as_of` against
    risk as of D-1 23:59:59, both from the warehouse's raw tables.

    `current`: lecture_progress as of `as_of` when the caller has it (the published marts of
    a run at that instant); else it is computed bucket by bucket. The previous day is computed
    only for enrollments at risk now (only they can have risen)."""
    plan = bucket_plan(con, target)
    frames: list[pl.DataFrame] = []
    at_risk = None if current is None else current.filter(pl.col("risk_level") != "NORMAL")

    def compute(inputs: dict[str, pl.DataFrame]) -> None:
        now = at_risk
        if now is None:
            now = lecture_progress_at(inputs, as_of, thresholds)
        else:
            now = now.filter(pl.col(E).is_in(inputs["enrollments"][E].implode()))
        frames.append(bucket_alerts(inputs, now, as_of.date(), thresholds))

    only = None if at_risk is None else at_risk[E]
    for_each_bucket(con, plan, compute, only=only)
    return pl.concat(frames).sort(AS_OF_DATE, E)


__all__ = [
    "MartsOutcome",
    "MartsRefused",
    "alerts_in_buckets",
    "bucket_plan",
    "compute_marts",
    "for_each_bucket",
    "history_in_buckets",
    "read_inputs",
]
