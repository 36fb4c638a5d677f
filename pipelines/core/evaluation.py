"""How well the risk rules foresee real outcomes (contract §5), for every threshold pair at once.

Pure Polars, no Dagster. The risk of an enrollment as of T is the one `marts.lecture_progress`
would give as of T: this module reuses the marts engine (`pipelines.core.marts`) for the
enrollment x session grid and its running streaks, and never restates a completion or streak rule.

**One pass for the whole sweep.** The two streaks after each held session do not depend on the
thresholds; only the level does. With m_k = max(incomplete streak, low-score streak) after held
session k (the level of the larger streak is the larger level, since a level only grows with its
streak), an ACTIVE enrollment is, for thresholds (w, d):

- WARNING or higher as of T exactly when m at its last held session >= w, DANGER when >= d;
- first at level L or higher (the first `marts.risk_log` row whose level is L or higher: the
  level only changes from below L to L or higher at that session, so a row is always written
  there) at its first held session with m_k >= w (L = WARNING) or >= d (L = DANGER).

So per enrollment the grid gives one number (the final m) and, for each t = 1..6, the
session_date of the first held session where m_k >= t. Every figure of a threshold pair at level
L is then a figure of one threshold t (t = w for WARNING, t = d for DANGER): the counts are
aggregated once per (scope, t) and joined to the 21 pairs x 2 levels, instead of one pipeline
run per pair.

Decisions where the contract is silent (also in docs/analyst-guide.md):
- outcomes are used whatever their decided_at (the outcome is the ground truth the risk as of T
  is measured against); only the risk is computed as of T;
- WITHDRAWN are counted among ACTIVE enrollments (like the population): a DROPPED enrollment is
  never flagged, so counting it would only dilute "how many withdrawn were flagged";
- a scope row (academy, lecture) exists when at least one ACTIVE enrollment of it has an
  outcome; the `all` rows exist whenever any outcome was delivered;
- F1 is null when precision or recall is null, and when both are 0 (its denominator is 0);
- the median lead time is over flagged FAILs whose lead time is not null; it may be negative
  when the outcome was decided before the enrollment was first flagged.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

import duckdb
import polars as pl

from .marts import (
    PairKey,
    RiskThresholds,
    event_facts,
    lecture_policies,
    running_streaks,
    session_calendar,
    session_progress,
)
from .vocabulary import EVALUATED_LEVELS, SCOPES
from .warehouse import TableDoc, document_table, registered, transaction

E = "enrollment_id"
PRECISION_FLOOR = 0.9  # "the best recall at precision >= 0.9" that evaluate and the report name
SWEEP_MAX = 6  # the sweep: every pair 1 <= warning_streak <= danger_streak <= SWEEP_MAX
POSITIVE, NEGATIVE, WITHDRAWN = "FAIL", "PASS", "WITHDRAWN"
COUNTS = ["population", "tp", "fp", "fn", "tn"]

RULE_EVALUATION_COLUMNS = [
    "as_of",
    "scope",
    "scope_id",
    "warning_streak",
    "danger_streak",
    "level",
    "population",
    "tp",
    "fp",
    "fn",
    "tn",
    "precision",
    "recall",
    "f1",
    "accuracy",
    "base_rate",
    "withdrawn",
    "withdrawn_flagged",
    "median_lead_days",
]
RULE_EVALUATION_SCHEMA: dict[str, pl.DataType] = {
    "as_of": pl.Datetime("us"),
    "scope": pl.String(),
    "scope_id": pl.Int64(),
    "warning_streak": pl.Int64(),
    "danger_streak": pl.Int64(),
    "level": pl.String(),
    **{c: pl.Int64() for c in COUNTS},
    **{c: pl.Float64() for c in ("precision", "recall", "f1", "accuracy", "base_rate")},
    "withdrawn": pl.Int64(),
    "withdrawn_flagged": pl.Int64(),
    "median_lead_days": pl.Float64(),
}


def sweep_pairs(configured: RiskThresholds | None = None) -> list[tuple[int, int]]:
    """Every (warning, danger) with 1 <= warning <= danger <= 6, plus the configured pair when
    it lies outside that range (so the configured thresholds are always evaluated)."""
    pairs = [(w, d) for w in range(1, SWEEP_MAX + 1) for d in range(w, SWEEP_MAX + 1)]
    if configured is not None and (configured.warning, configured.danger) not in pairs:
        pairs.append((configured.warning, configured.danger))
    return pairs


def _reached(t: int) -> str:
    return f"_reached_{t}"


def enrollment_streaks(
    raw: Mapping[str, pl.DataFrame], as_of: datetime, max_streak: int = SWEEP_MAX
) -> pl.DataFrame:
    """Per enrollment as of `as_of`: lecture_id, academy_id, status, `streak` (the larger of the
    two streaks at its last held session: 0 with no held session) and, for t = 1..max_streak,
    `_reached_<t>`: the session_date of its first held session whose larger streak is >= t
    (null when never reached, or when that session has no date).

    `raw` needs the tables and columns of `marts.MART_INPUT_COLUMNS`; the result depends on the
    enrollments only, so it can be computed a bucket of enrollments at a time and stacked.
    """
    key = PairKey.fitting(dict(raw))
    policy = lecture_policies(raw["lectures"], raw["policies"])
    calendar = session_calendar(raw["sessions"], policy, as_of)
    facts = event_facts(dict(raw), calendar, key, as_of)
    grid = session_progress(dict(raw), calendar, facts, key, as_of)
    del facts
    # the levels running_streaks adds for these thresholds are not used: only the streaks
    return streak_summary(running_streaks(grid, RiskThresholds()), raw, max_streak)


def streak_summary(
    streaks: pl.DataFrame, raw: Mapping[str, pl.DataFrame], max_streak: int = SWEEP_MAX
) -> pl.DataFrame:
    """`enrollment_streaks` from the grid's running streaks (`marts.running_streaks`, any
    thresholds: the streak columns do not depend on them) of the enrollments of `raw`. The
    marts step has those streaks for every enrollment already: it hands them over instead of
    building the grid a second time (at L that second grid cost as much as a third of the
    marts)."""
    walk = streaks.select(
        E, "session_date", pl.max_horizontal("_fail_streak", "_low_streak").alias("_m")
    )
    per_enrollment = walk.group_by(E).agg(
        pl.col("_m").last().alias("streak"),
        *(
            pl.col("session_date").filter(pl.col("_m") >= t).first().alias(_reached(t))
            for t in range(1, max_streak + 1)
        ),
    )
    enrollments = (
        raw["enrollments"]
        .select(E, "lecture_id", pl.col("status").fill_null("ACTIVE"))
        .join(raw["lectures"].select("lecture_id", "academy_id"), on="lecture_id")
    )
    return (
        enrollments.join(per_enrollment, on=E, how="left")
        .with_columns(pl.col("streak").fill_null(0).cast(pl.Int64))
        .select(
            E,
            "lecture_id",
            "academy_id",
            "status",
            "streak",
            *(_reached(t) for t in range(1, max_streak + 1)),
        )
        .sort(E)
    )


def _ratio(numerator: pl.Expr, denominator: pl.Expr) -> pl.Expr:
    """numerator / denominator, null when the denominator is 0 (contract §5)."""
    return pl.when(denominator != 0).then(numerator / denominator).otherwise(None)


def _scoped(frame: pl.DataFrame) -> pl.DataFrame:
    """Each row once per scope: all (scope_id null), its academy and its lecture."""
    return pl.concat(
        [
            frame.with_columns(
                pl.lit(scope).alias("scope"), scope_id.cast(pl.Int64).alias("scope_id")
            )
            for scope, scope_id in (
                ("all", pl.lit(None, pl.Int64)),
                ("academy", pl.col("academy_id")),
                ("lecture", pl.col("lecture_id")),
            )
        ]
    )


def evaluate_streaks(
    streaks: pl.DataFrame,
    outcomes: pl.DataFrame,
    as_of: datetime,
    pairs: Iterable[tuple[int, int]] | None = None,
) -> pl.DataFrame:
    """`marts.rule_evaluation` rows as of `as_of` from `enrollment_streaks` and the outcomes.

    Empty when no outcome was delivered (nothing is evaluated). `pairs` defaults to the sweep.
    """
    pairs = sorted(set(pairs if pairs is not None else sweep_pairs()))
    if outcomes.is_empty():
        return pl.DataFrame(schema=RULE_EVALUATION_SCHEMA)
    ts = sorted({t for w, d in pairs for t in (min(w, d), d)})
    reached_columns = [c for c in streaks.columns if c.startswith("_reached_")]
    if max(ts) > len(reached_columns):
        raise ValueError(f"streaks hold thresholds up to {len(reached_columns)}, not {max(ts)}")
    evaluated = streaks.filter(pl.col("status") == "ACTIVE").join(
        outcomes.select(E, "result", pl.col("decided_at").dt.date().alias("_decided")),
        on=E,
        how="inner",
    )
    # one row per (enrollment, threshold t): flagged at t, and its lead time when a flagged FAIL
    per_t = pl.concat(
        [
            evaluated.select(
                E,
                "academy_id",
                "lecture_id",
                "result",
                pl.lit(t, pl.Int64).alias("_t"),
                (pl.col("streak") >= t).alias("_flagged"),
                (pl.col("_decided") - pl.col(_reached(t))).dt.total_days().alias("_lead"),
            )
            for t in ts
        ]
    )
    flagged, result = pl.col("_flagged"), pl.col("result")
    count = lambda condition: condition.sum().cast(pl.Int64)  # noqa: E731
    metrics = (
        _scoped(per_t)
        .group_by("scope", "scope_id", "_t")
        .agg(
            count(result.is_in([POSITIVE, NEGATIVE])).alias("population"),
            count(flagged & (result == POSITIVE)).alias("tp"),
            count(flagged & (result == NEGATIVE)).alias("fp"),
            count(~flagged & (result == POSITIVE)).alias("fn"),
            count(~flagged & (result == NEGATIVE)).alias("tn"),
            count(result == WITHDRAWN).alias("withdrawn"),
            count(flagged & (result == WITHDRAWN)).alias("withdrawn_flagged"),
            pl.col("_lead")
            .filter(flagged & (result == POSITIVE))
            .median()
            .cast(pl.Float64)
            .alias("median_lead_days"),
        )
    )
    # `all` exists whenever outcomes were delivered, even if none is of an ACTIVE enrollment
    everyone = pl.DataFrame(
        {"scope": "all", "scope_id": None, "_t": ts},
        schema={"scope": pl.String, "scope_id": pl.Int64, "_t": pl.Int64},
    )
    metrics = pl.concat(
        [
            everyone.join(
                metrics, on=["scope", "scope_id", "_t"], how="left", nulls_equal=True
            ).with_columns(pl.col(*COUNTS, "withdrawn", "withdrawn_flagged").fill_null(0)),
            metrics.filter(pl.col("scope") != "all"),
        ]
    )
    # WARNING or higher starts at min(w, d): with a configured warning > danger, DANGER is tested
    # first (a streak of d is already DANGER), so the warning threshold is never the one reached
    grid = pl.DataFrame(
        [
            (w, d, level, min(w, d) if level == "WARNING" else d)
            for w, d in pairs
            for level in EVALUATED_LEVELS
        ],
        schema={
            "warning_streak": pl.Int64,
            "danger_streak": pl.Int64,
            "level": pl.String,
            "_t": pl.Int64,
        },
        orient="row",
    )
    tp, fp, fn, tn = (pl.col(c) for c in ("tp", "fp", "fn", "tn"))
    population = pl.col("population")
    precision, recall = pl.col("precision"), pl.col("recall")
    return (
        grid.join(metrics, on="_t", how="inner")
        .with_columns(
            pl.lit(as_of, pl.Datetime("us")).alias("as_of"),
            _ratio(tp, tp + fp).alias("precision"),
            _ratio(tp, tp + fn).alias("recall"),
            _ratio(tp + tn, population).alias("accuracy"),
            _ratio(tp + fn, population).alias("base_rate"),
        )
        .with_columns(_ratio(2 * precision * recall, precision + recall).alias("f1"))
        .select(RULE_EVALUATION_COLUMNS)
        .cast(RULE_EVALUATION_SCHEMA)  # type: ignore[arg-type]
        .pipe(in_key_order)
    )


def in_key_order(frame: pl.DataFrame) -> pl.DataFrame:
    """Rows in key order: as_of, scope (all, academy, lecture), scope_id, the pair, level
    (WARNING, DANGER)."""

    def rank(column: str, values: tuple[str, ...]) -> pl.Expr:
        return pl.col(column).replace_strict(list(values), list(range(len(values))))

    return frame.sort(
        "as_of",
        rank("scope", SCOPES),
        "scope_id",
        "warning_streak",
        "danger_streak",
        rank("level", EVALUATED_LEVELS),
    )


def evaluate(
    raw: Mapping[str, pl.DataFrame],
    as_of: datetime,
    pairs: Iterable[tuple[int, int]] | None = None,
) -> pl.DataFrame:
    """`marts.rule_evaluation` rows as of `as_of` from the raw tables (incl. `outcomes`)."""
    pairs = sorted(set(pairs if pairs is not None else sweep_pairs()))
    outcomes = raw["outcomes"]
    if outcomes.is_empty():
        return pl.DataFrame(schema=RULE_EVALUATION_SCHEMA)
    highest = max(t for pair in pairs for t in pair)
    return evaluate_streaks(enrollment_streaks(raw, as_of, highest), outcomes, as_of, pairs)


# --------------------------------------------------------------------------------------------
# Reading the sweep: the figures `progress evaluate` prints
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Choice:
    """A threshold pair's all-academies row at one level, and why it was chosen."""

    level: str
    row: dict | None  # a rule_evaluation row (scope all); None when no pair qualifies


def _all_scope(evaluation: pl.DataFrame, as_of: datetime, level: str) -> pl.DataFrame:
    return evaluation.filter(
        (pl.col("as_of") == as_of) & (pl.col("scope") == "all") & (pl.col("level") == level)
    )


def configured_rows(
    evaluation: pl.DataFrame, as_of: datetime, thresholds: RiskThresholds
) -> list[Choice]:
    """The all-academies rows of the configured thresholds, per level."""
    out = []
    for level in EVALUATED_LEVELS:
        rows = (
            _all_scope(evaluation, as_of, level)
            .filter(
                (pl.col("warning_streak") == thresholds.warning)
                & (pl.col("danger_streak") == thresholds.danger)
            )
            .to_dicts()
        )
        out.append(Choice(level, rows[0] if rows else None))
    return out


def best_row(frame: pl.DataFrame, by: str) -> dict | None:
    """The row with the highest `by`; ties go to higher precision, then the smaller pair."""
    ranked = frame.filter(pl.col(by).is_not_null()).sort(
        [by, "precision", "warning_streak", "danger_streak"],
        descending=[True, True, False, False],
        nulls_last=True,
    )
    return ranked.row(0, named=True) if ranked.height else None


def best_f1(evaluation: pl.DataFrame, as_of: datetime) -> list[Choice]:
    """Per level, the threshold pair with the highest F1 over all academies."""
    return [
        Choice(level, best_row(_all_scope(evaluation, as_of, level), "f1"))
        for level in EVALUATED_LEVELS
    ]


def best_recall(
    evaluation: pl.DataFrame, as_of: datetime, min_precision: float = PRECISION_FLOOR
) -> list[Choice]:
    """Per level, the pair with the highest recall among those with precision >= min_precision
    over all academies (None when no pair is that precise)."""
    return [
        Choice(
            level,
            best_row(
                _all_scope(evaluation, as_of, level).filter(pl.col("precision") >= min_precision),
                "recall",
            ),
        )
        for level in EVALUATED_LEVELS
    ]


# --------------------------------------------------------------------------------------------
# DuckDB: replace the rows of some as-of instants, atomically
# --------------------------------------------------------------------------------------------

TABLE = "marts.rule_evaluation"


def replace_as_of(
    con: duckdb.DuckDBPyConnection,
    frame: pl.DataFrame,
    instants: Iterable[datetime],
    doc: TableDoc | None = None,
) -> None:
    """In one transaction: create `marts.rule_evaluation` if needed (with its COMMENT ON docs),
    delete the rows of `instants`, insert `frame` (whose rows are all of those instants).

    Rows of other instants are never touched; with no instants only the table is ensured.
    """
    instants = sorted(set(instants))
    stray = frame.filter(
        ~pl.col("as_of").is_in(pl.Series(instants, dtype=pl.Datetime("us")).implode())
    )
    if stray.height:
        raise ValueError(f"{TABLE}: {stray.height} rows are of another as_of than {instants}")
    with transaction(con):
        con.execute("CREATE SCHEMA IF NOT EXISTS marts")
        with registered(con, frame.select(RULE_EVALUATION_COLUMNS)) as incoming:
            con.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} AS SELECT * FROM {incoming} LIMIT 0")
            if instants:
                con.execute(
                    f"DELETE FROM {TABLE} WHERE as_of IN (SELECT unnest(?::TIMESTAMP[]))",
                    [instants],
                )
                con.execute(f"INSERT INTO {TABLE} BY NAME SELECT * FROM {incoming}")
        if doc is not None:
            document_table(con, TABLE, doc)


def read_evaluation(
    con: duckdb.DuckDBPyConnection, instants: Iterable[datetime] | None = None
) -> pl.DataFrame:
    """Stored rows of `marts.rule_evaluation` (all, or those of `instants`), in key order."""
    sql, params = f"SELECT * FROM {TABLE}", []
    if instants is not None:
        sql += " WHERE as_of IN (SELECT unnest(?::TIMESTAMP[]))"
        params.append(sorted(set(instants)))
    return in_key_order(con.execute(sql, params).pl().cast(RULE_EVALUATION_SCHEMA))  # type: ignore[arg-type]
