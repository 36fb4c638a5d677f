"""The progress marts (contract §3-§4), computed for every enrollment at once as of one instant.

Pure Polars: raw frames in, mart frames out. No loop over rows, enrollments or sessions: the
enrollment x session grid is built once, in (enrollment, session_order, session) order, and every
mart is derived from it.

Why it is shaped this way (tier M: 100k enrollments, 2.9M grid rows, 11.5M events):
- each event table is reduced once, on the streaming engine, to one row of facts per
  (enrollment, session) pair, keyed by the pair packed into one integer (`PairKey`) whose
  order is the grid's: one hash instead of two per group_by, merge joins into the grid, no
  sort of the grid; the enrollment's last activity comes from those facts, not the raw stamps;
- the running streaks are cumulative ops over the ordered grid that restart at each
  enrollment's first row: no ordered windows, no second sort;
- only the columns a step uses travel with it (`MART_INPUT_COLUMNS` for the caller's read).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import polars as pl

from .contract import DEFAULT_POLICY, EVENT_TABLES
from .schemas import ClinicLinks, LectureProgress, RiskLog, SessionProgress
from .vocabulary import INCOMPLETE, LOW_SCORE, risk_reason
from .vocabulary import RISK_LEVELS as LEVELS

E, S = "enrollment_id", "session_id"
KEY = "_pair"  # the packed (enrollment, session) key, see PairKey

# The only raw columns build_marts reads: a caller may read just these (lineage columns and
# titles are never used, and `_source_file` alone is most of an event table's bytes).
MART_INPUT_COLUMNS: dict[str, list[str]] = {
    "lectures": ["lecture_id", "academy_id"],
    "sessions": [S, "lecture_id", "session_order", "session_date"],
    "policies": ["lecture_id", *DEFAULT_POLICY],
    "enrollments": [E, "lecture_id", "student_id", "status"],
    "attendance": [E, S, "attendance_type", "recorded_at"],
    "video_progress": [E, S, "progress_rate", "recorded_at"],
    "submissions": ["submission_id", E, S, "kind", "score", "teacher_approved", "submitted_at"],
    "clinic_requests": [E, S, "reason", "approved", "memo", "requested_at"],
}


@dataclass(frozen=True)
class RiskThresholds:
    """Streak lengths that raise an ACTIVE enrollment to WARNING and to DANGER."""

    warning: int = 2
    danger: int = 3


@dataclass(frozen=True)
class PairKey:
    """(enrollment_id, session's calendar position `_seq`) packed into one integer, `_pair`.

    One integer column hashes and compares much faster than two, and since `_seq` numbers the
    sessions in (session_order, session_id) order, sorting by `_pair` is sorting by
    (enrollment, session_order, session): the grid's order. The grid and every event table's
    per-pair facts are sorted by it, so their left joins are merge joins and the grid needs no
    other sort. Int64 `E * 2**32 + _seq` when 0 <= E < 2**31 (any real extract), otherwise
    Int128, exact for any Int64 id. Either way `E == _pair // 2**32`. Events of a session
    outside the calendar all take `_seq` OUTSIDE: the grid never meets them, but they still
    count for the enrollment's last activity.
    """

    dtype: pl.DataType

    SHIFT = 2**32
    OUTSIDE = 2**32 - 1  # greater than any calendar position

    @classmethod
    def fitting(cls, raw: dict[str, pl.DataFrame]) -> PairKey:
        """The narrowest packing that is exact for every enrollment id in the raw tables."""
        low, high = _bounds((raw[t] for t in ("enrollments", *EVENT_TABLES)), E)
        return cls(pl.Int64() if low >= 0 and high < 2**31 else pl.Int128())

    def pack(self) -> pl.Expr:
        """From E and `_seq` (null: a session outside the calendar)."""
        seq = pl.col("_seq").fill_null(self.OUTSIDE).cast(self.dtype)
        return (pl.col(E).cast(self.dtype) * pl.lit(self.SHIFT, self.dtype) + seq).alias(KEY)

    def enrollment(self) -> pl.Expr:
        return (pl.col(KEY) // pl.lit(self.SHIFT, self.dtype)).cast(pl.Int64).alias(E)


def _in_key_order(frame: pl.DataFrame) -> pl.DataFrame:
    """`frame` sorted by `_pair`, flagged so that joins on it merge instead of hashing.

    Frames built in that order (checked: a linear scan) are only flagged, not sorted again.
    """
    if frame[KEY].is_sorted():
        return frame.with_columns(pl.col(KEY).set_sorted())
    return frame.sort(KEY)


def _bounds(frames: Iterable[pl.DataFrame], column: str) -> tuple[int, int]:
    """(min, max) of one id column over several frames; (0, 0) when they are all empty."""
    stats = pl.concat(
        [
            f.select(pl.col(column).min().alias("low"), pl.col(column).max().alias("high")).cast(
                pl.Int64
            )
            for f in frames
        ]
    )
    low, high = stats["low"].min(), stats["high"].max()
    return (0 if low is None else low), (0 if high is None else high)


def lecture_policies(lectures: pl.DataFrame, policies: pl.DataFrame) -> pl.DataFrame:
    """One policy row per valid lecture; missing rows and null columns take the default."""
    joined = lectures.select("lecture_id", "academy_id").join(
        policies.select("lecture_id", *DEFAULT_POLICY), on="lecture_id", how="left"
    )
    return joined.with_columns(
        pl.col(name).fill_null(pl.lit(default)) if default is not None else pl.col(name)
        for name, default in DEFAULT_POLICY.items()
    )


def session_calendar(sessions: pl.DataFrame, policy: pl.DataFrame, as_of: datetime) -> pl.DataFrame:
    """Per session: its lecture's policy, whether it is held, its rank among held sessions, and
    `_seq`, its position in (session_order, session_id) order (the sessions' part of `_pair`)."""
    order = ["session_order", S]
    held = pl.col("session_date").is_null() | (pl.col("session_date") <= as_of.date())
    in_window = lambda kind: pl.col("session_order").is_between(  # noqa: E731
        pl.col(f"{kind}_start_session_order"), pl.col(f"{kind}_end_session_order")
    )
    return (
        sessions.select(S, "lecture_id", "session_order", "session_date")
        .join(policy, on="lecture_id", how="inner")
        .with_columns(
            held.alias("held"),
            in_window("exam").alias("exam_applicable"),
            in_window("homework").alias("homework_applicable"),
        )
        .with_columns(
            pl.when("held")
            .then(pl.col("held").cast(pl.Int64).cum_sum().over("lecture_id", order_by=order))
            .alias("held_rank")
        )
        .sort(order)
        .with_row_index("_seq")
    )


def _upto(frame: pl.DataFrame, column: str, as_of: datetime) -> pl.LazyFrame:
    return frame.lazy().filter(pl.col(column) <= as_of)


def _streamed(frame: pl.LazyFrame) -> pl.DataFrame:
    """Collect on the streaming engine: it runs these scans, joins and group_bys about twice as
    fast as the in-memory engine (tier M: 0.5 s instead of 1.0-1.1 s for submissions)."""
    return frame.collect(engine="streaming")


@dataclass(frozen=True)
class EventFacts:
    """Per (enrollment, session) pair, events after as_of ignored, keyed and sorted by `_pair`.

    Pairs outside the grid (a session of another lecture, or one outside the calendar: all of
    an enrollment's such sessions share one `_pair`, see PairKey) are kept: they still count
    for the enrollment's last activity, and the grid's left joins never meet them.
    """

    attendance: pl.DataFrame  # attendance_type (latest), attendance_at (last)
    video: pl.DataFrame  # video_progress_rate (best), video_at (rate first reached), video_last_at
    submissions: pl.DataFrame  # exam_score, exam_at, hw_*_at, last_submitted_at


def _attendance_facts(
    attendance: pl.DataFrame, calendar: pl.DataFrame, key: PairKey, as_of: datetime
) -> pl.DataFrame:
    """The type of the pair's latest attendance (recorded_at is part of the key) and its time."""
    return _streamed(
        _upto(attendance, "recorded_at", as_of)
        .join(calendar.lazy().select(S, "_seq"), on=S, how="left")
        .group_by(key.pack())
        .agg(
            pl.col("attendance_type").max_by("recorded_at"),
            pl.col("recorded_at").max().alias("attendance_at"),
        )
        .sort(KEY)
    )


def _video_facts(
    video: pl.DataFrame, calendar: pl.DataFrame, key: PairKey, as_of: datetime
) -> pl.DataFrame:
    """Best rate, first time the session's required rate was reached, and the last record.

    The conditional stamp is a column before the group_by, not a `filter` inside it: plain
    min/max aggregations stay on the fast path.
    """
    rates = calendar.lazy().select(S, "_seq", "video_required_rate")
    reached = pl.col("progress_rate") >= pl.col("video_required_rate")
    return _streamed(
        _upto(video, "recorded_at", as_of)
        .join(rates, on=S, how="left")
        .select(
            key.pack(),
            "progress_rate",
            pl.col("recorded_at").alias("video_last_at"),
            pl.when(reached).then(pl.col("recorded_at")).alias("video_at"),
        )
        .group_by(KEY)
        .agg(
            pl.col("progress_rate").max().alias("video_progress_rate"),
            pl.col("video_at").min(),
            pl.col("video_last_at").max(),
        )
        .sort(KEY)
    )


def _submission_facts(
    submissions: pl.DataFrame, calendar: pl.DataFrame, key: PairKey, as_of: datetime
) -> pl.DataFrame:
    """The latest scored exam attempt and its time, the homework evidence times, and the last
    submission of any kind (exam without score and homework included, for last activity).

    The latest attempt is the greatest (submitted_at, submission_id): both packed into one
    Int128 so that one `max_by` finds it, instead of a sort inside every group.
    """
    at = pl.col("submitted_at")
    exam = (pl.col("kind") == "exam") & pl.col("score").is_not_null()
    homework = pl.col("kind") == "homework"
    approved = homework & pl.col("teacher_approved").fill_null(False)
    scored = homework & (pl.col("score") >= pl.col("homework_pass_score")).fill_null(False)
    attempt = at.cast(pl.Int64).cast(pl.Int128) * pl.lit(2**64, pl.Int128) + pl.col(
        "submission_id"
    ).cast(pl.Int128)
    pass_scores = calendar.lazy().select(S, "_seq", "homework_pass_score")
    return _streamed(
        _upto(submissions, "submitted_at", as_of)
        .join(pass_scores, on=S, how="left")
        .select(
            key.pack(),
            "score",
            pl.when(exam).then(attempt).alias("_attempt"),
            pl.when(exam).then(at).alias("exam_at"),
            pl.when(homework).then(at).alias("hw_first_at"),
            pl.when(approved).then(at).alias("hw_approved_at"),
            pl.when(scored).then(at).alias("hw_scored_at"),
            at.alias("last_submitted_at"),
        )
        .group_by(KEY)
        .agg(
            pl.col("score").max_by("_attempt").alias("exam_score"),
            pl.col("exam_at").max(),
            pl.col("hw_first_at", "hw_approved_at", "hw_scored_at").min(),
            pl.col("last_submitted_at").max(),
        )
        .sort(KEY)
    )


def event_facts(
    raw: dict[str, pl.DataFrame], calendar: pl.DataFrame, key: PairKey, as_of: datetime
) -> EventFacts:
    """Every event table reduced to one row per pair (see EventFacts)."""
    return EventFacts(
        attendance=_attendance_facts(raw["attendance"], calendar, key, as_of),
        video=_video_facts(raw["video_progress"], calendar, key, as_of),
        submissions=_submission_facts(raw["submissions"], calendar, key, as_of),
    )


def _last_activity(facts: EventFacts, key: PairKey) -> pl.DataFrame:
    """Per enrollment, its last attendance, video record or submission, in any session.

    From the per-pair facts (~6.5M rows at tier M) rather than all 11M raw event stamps.
    """
    stamps = pl.concat(
        [
            facts.attendance.lazy().select(KEY, pl.col("attendance_at").alias("at")),
            facts.video.lazy().select(KEY, pl.col("video_last_at").alias("at")),
            facts.submissions.lazy().select(KEY, pl.col("last_submitted_at").alias("at")),
        ]
    )
    return _streamed(
        stamps.group_by(key.enrollment()).agg(pl.col("at").max().alias("last_activity_at"))
    )


def session_progress(
    raw: dict[str, pl.DataFrame],
    calendar: pl.DataFrame,
    facts: EventFacts,
    key: PairKey,
    as_of: datetime,
) -> pl.DataFrame:
    """The enrollment x session grid with completion facts (contract §4.1), plus helpers.

    In `_pair` order, i.e. (enrollment, session_order, session): the mart's order, and among
    held sessions the held_rank order the streak walk needs. Built in that order (enrollments
    by id, each with its lecture's sessions in calendar order), so the event facts join by
    merging and nothing sorts the grid. Helper columns (`_pair`, status, held_rank, `_exam_*`)
    feed the other marts; `SESSION_PROGRESS_COLUMNS` is the mart.
    """
    enrollments = (
        raw["enrollments"]
        .select(E, "lecture_id", "student_id", pl.col("status").fill_null("ACTIVE"))
        .sort(E)
    )
    windows = [
        f"{kind}_{end}_session_order" for kind in ("exam", "homework") for end in ("start", "end")
    ]
    sessions = calendar.drop(windows)  # folded into *_applicable: 4 columns x 2.9M rows less
    pairs = (
        enrollments.join(sessions, on="lecture_id", how="inner", maintain_order="left_right")
        .with_columns(key.pack())
        .drop("_seq")
    )
    grid = (
        _in_key_order(pairs)
        .join(facts.attendance, on=KEY, how="left")
        .join(facts.video.drop("video_last_at"), on=KEY, how="left")
        .join(facts.submissions.drop("last_submitted_at"), on=KEY, how="left")
        .lazy()
    )
    offline = pl.col("attendance_type") == "offline"
    pass_type = pl.col("homework_pass_type")
    by_score = (pass_type == "SCORE") & pl.col("homework_pass_score").is_not_null()
    hw_evidence = (
        pl.when(pass_type == "SUBMIT")
        .then(pl.col("hw_first_at"))
        .when(by_score)
        .then(pl.col("hw_scored_at"))
        .otherwise(pl.col("hw_approved_at"))
    )
    exam_counted = pl.col("exam_applicable") & pl.col("exam_score").is_not_null()
    grid = (
        grid.with_columns(
            pl.col("attendance_type").fill_null("online"),
            pl.col("video_progress_rate").fill_null(0),
            pl.col("hw_first_at").is_not_null().alias("homework_submitted"),
            hw_evidence.alias("_hw_at"),
            exam_counted.alias("_exam_counted"),
            (exam_counted & (pl.col("exam_score") >= pl.col("exam_pass_score")))
            .fill_null(False)
            .alias("_exam_pass"),
        )
        .with_columns(
            (offline | (pl.col("video_progress_rate") >= pl.col("video_required_rate"))).alias(
                "video_completed"
            ),
            (~pl.col("exam_applicable") | (pl.col("exam_score") >= pl.col("exam_pass_score")))
            .fill_null(False)
            .alias("exam_passed"),
            (~pl.col("homework_applicable") | pl.col("_hw_at").is_not_null()).alias(
                "homework_passed"
            ),
            pl.when(offline)
            .then(pl.col("attendance_at"))
            .otherwise(pl.col("video_at"))
            .alias("_video_at"),
        )
        .with_columns(
            (pl.col("video_completed") & pl.col("exam_passed") & pl.col("homework_passed")).alias(
                "completed"
            )
        )
    )
    completed_at = pl.max_horizontal(
        pl.col("_video_at"),
        pl.when("exam_applicable").then(pl.col("exam_at")),
        pl.when("homework_applicable").then(pl.col("_hw_at")),
    )
    grid = grid.with_columns(
        pl.when("completed").then(completed_at).alias("completed_at"),
        pl.lit(as_of, pl.Datetime("us")).alias("calculated_at"),
    ).select(*SESSION_PROGRESS_COLUMNS, KEY, "status", "held_rank", "_exam_counted", "_exam_pass")
    return _in_key_order(grid.collect())


SESSION_PROGRESS_COLUMNS = list(
    SessionProgress.to_schema().columns
)  # the contract's columns, in order


def _level(streak: pl.Expr, t: RiskThresholds) -> pl.Expr:
    return pl.when(streak >= t.danger).then(2).when(streak >= t.warning).then(1).otherwise(0)


def _risk(fail_streak: pl.Expr, low_streak: pl.Expr, active: pl.Expr, t: RiskThresholds):
    """(level 0/1/2, rule) from both streaks; the low-score rule wins when it alone reaches it."""
    fail_level, low_level = _level(fail_streak, t), _level(low_streak, t)
    level = pl.when(active).then(pl.max_horizontal(fail_level, low_level)).otherwise(0)
    rule = (
        pl.when(level == 0)
        .then(pl.lit(None, pl.String))
        .when(low_level == level)
        .then(pl.lit(LOW_SCORE))
        .otherwise(pl.lit(INCOMPLETE))
    )
    return level, rule


def _running_last(value: pl.Expr, when: pl.Expr, first: pl.Expr) -> pl.Expr:
    """Per enrollment, `value` at the last row up to here where `when` held (0 before any).

    On a frame ordered by enrollment, where `value` never decreases within an enrollment, this
    is the enrollment's running max of `when ? value : 0`: a forward fill that restarts at each
    enrollment's first row, instead of an ordered window per enrollment.
    """
    return pl.when(when).then(value).when(first).then(0).forward_fill()


def running_streaks(grid: pl.DataFrame, t: RiskThresholds) -> pl.DataFrame:
    """Held sessions in order with both streaks and the risk after each one (§4.3's walk).

    `grid` is in (enrollment, session_order, session) order, which among held sessions is
    held_rank order (1, 2, ... per enrollment): every running count is a cumulative op over the
    whole frame that restarts at each enrollment's first row (`_first`), no window, no sort.
    """
    order = "held_rank"
    first = pl.col("_first")
    counted = pl.col("_exam_counted").cast(pl.Int64)
    counted_so_far = counted.cum_sum()
    before_enrollment = pl.when(first).then(counted_so_far - counted).forward_fill()
    last_complete = _running_last(pl.col(order), pl.col("completed"), first)
    last_pass = _running_last(pl.col("_counted_n"), pl.col("_exam_pass"), first)
    level, rule = _risk(
        pl.col("_fail_streak"), pl.col("_low_streak"), pl.col("status") == "ACTIVE", t
    )
    return (
        grid.lazy()
        .filter("held")
        .select(  # what the walk, lecture_progress and risk_log use
            E,
            S,
            "lecture_id",
            "academy_id",
            "student_id",
            "session_order",
            "session_date",
            "status",
            "completed",
            "_exam_counted",
            "_exam_pass",
            pl.col(order).cast(pl.Int64),
        )
        .with_columns(pl.col(E).ne_missing(pl.col(E).shift(1)).alias("_first"))
        .with_columns((counted_so_far - before_enrollment).alias("_counted_n"))
        .with_columns(
            (pl.col(order) - last_complete).alias("_fail_streak"),
            (pl.col("_counted_n") - last_pass).alias("_low_streak"),
        )
        .with_columns(level.alias("_level"), rule.alias("_rule"))
        .collect()
    )


def lecture_progress(
    grid: pl.DataFrame,
    streaks: pl.DataFrame,
    raw: dict[str, pl.DataFrame],
    calendar: pl.DataFrame,
    last_activity: pl.DataFrame,
    as_of: datetime,
) -> pl.DataFrame:
    """One row per enrollment (contract §4.2)."""
    totals = calendar.group_by("lecture_id").agg(
        pl.len().alias("total_sessions"), pl.col("held").sum().alias("held_sessions")
    )
    held = pl.col("held")
    per_enrollment = _streamed(
        grid.lazy()
        .select(
            E,
            "completed",
            (held & ~pl.col("completed")).alias("_failed"),
            pl.when(held & pl.col("_exam_counted")).then(pl.col("exam_score")).alias("_score"),
        )
        .group_by(E)
        .agg(
            pl.col("completed").sum().alias("completed_sessions"),
            pl.col("_failed").sum().alias("failed_sessions"),
            pl.col("_score").mean().alias("avg_exam_score"),
        )
    )
    last = streaks.filter(pl.col(E).ne_missing(pl.col(E).shift(-1))).select(
        E, S, "_fail_streak", "_low_streak", "_level", "_rule"
    )
    enrollments = raw["enrollments"].join(
        raw["lectures"].select("lecture_id", "academy_id"), on="lecture_id"
    )
    level_name = (
        pl.col("_level")
        .fill_null(0)
        .replace_strict(list(range(3)), list(LEVELS), return_dtype=pl.String)
    )
    frame = (
        enrollments.select(
            E, "lecture_id", "academy_id", "student_id", pl.col("status").fill_null("ACTIVE")
        )
        .join(totals, on="lecture_id", how="left")
        .join(per_enrollment, on=E, how="left")
        .join(last, on=E, how="left")
        .join(last_activity, on=E, how="left")
    )
    counts = ["total_sessions", "held_sessions", "completed_sessions", "failed_sessions"]
    return (
        frame.with_columns(
            *(pl.col(c).fill_null(0).cast(pl.Int64) for c in counts),
            pl.col("_fail_streak").fill_null(0).alias("consecutive_failed_sessions"),
            pl.col("_low_streak").fill_null(0).alias("consecutive_low_scores"),
            level_name.alias("risk_level"),
            pl.col("_rule").alias("risk_rule"),
            pl.col(S).alias("last_session_id"),
            pl.lit(as_of, pl.Datetime("us")).alias("calculated_at"),
        )
        .with_columns(
            pl.when(pl.col("total_sessions") > 0)
            .then(pl.col("completed_sessions") / pl.col("total_sessions"))
            .otherwise(0.0)
            .alias("completion_rate")
        )
        .select(LECTURE_PROGRESS_COLUMNS)
        .sort(E)
    )


LECTURE_PROGRESS_COLUMNS = list(
    LectureProgress.to_schema().columns
)  # the contract's columns, in order


def risk_log(streaks: pl.DataFrame) -> pl.DataFrame:
    """One row per change of an ACTIVE enrollment's (level, rule) to WARNING or DANGER (§4.3).

    `streaks` is in (enrollment, held_rank) order, which is also (enrollment, session_order,
    session) order: the previous step is the previous row unless it starts an enrollment, and
    the filtered rows are already in the mart's order.
    """
    previous = lambda column: pl.when(~pl.col("_first")).then(pl.col(column).shift(1))  # noqa: E731
    previous_level = previous("_level").fill_null(0)
    changed = (pl.col("_level") != previous_level) | pl.col("_rule").ne_missing(previous("_rule"))
    streak = pl.when(pl.col("_rule") == LOW_SCORE).then("_low_streak").otherwise("_fail_streak")
    reason = risk_reason(pl.col("_rule"), streak)
    return (
        streaks.filter((pl.col("_level") > 0) & changed)
        .with_columns(
            pl.col("_level")
            .replace_strict(list(range(3)), list(LEVELS), return_dtype=pl.String)
            .alias("risk_level"),
            pl.col("_rule").alias("rule"),
            streak.cast(pl.Int64).alias("streak"),
            reason.alias("reason"),
        )
        .select(RISK_LOG_COLUMNS)
    )


RISK_LOG_COLUMNS = list(RiskLog.to_schema().columns)  # the contract's columns, in order

CLINIC_KEY = [E, S, "reason"]


def clinic_links(
    grid: pl.DataFrame,
    progress: pl.DataFrame,
    raw: dict[str, pl.DataFrame],
    calendar: pl.DataFrame,
    key: PairKey,
    as_of: datetime,
) -> pl.DataFrame:
    """Clinic candidates, unique on (enrollment, session, reason), with staff decisions (§4.4).

    A request's decision is its latest row's (requested_at is part of the request's key). The
    grid's context joins on `_pair`, both sides in that order: a merge, not a 2.9M-row hash
    table on two columns.
    """
    active = pl.col("status") == "ACTIVE"
    auto_failed = grid.filter(active & pl.col("held") & ~pl.col("completed")).select(
        E, S, pl.lit("AUTO_FAILED").alias("reason")
    )
    auto_risk = progress.filter(active & (pl.col("risk_level") != "NORMAL")).select(
        E, pl.col("last_session_id").alias(S), pl.lit("AUTO_RISK").alias("reason")
    )
    requests = _upto(raw["clinic_requests"], "requested_at", as_of).collect()
    manual = (
        requests.filter(pl.col("reason").is_in(["MANUAL_REQUEST", "TEACHER_RECOMMEND"]))
        .select(CLINIC_KEY)
        .unique()
    )
    decisions = requests.group_by(CLINIC_KEY).agg(
        pl.col("approved").max_by("requested_at").fill_null(False),
        pl.col("memo").max_by("requested_at"),
        pl.col("requested_at").max(),
    )
    candidates = (
        pl.concat([auto_failed, auto_risk, manual])
        .join(decisions, on=CLINIC_KEY, how="left")
        .join(calendar.select(S, "_seq"), on=S, how="left")
        .with_columns(key.pack())
    )
    context = grid.select(KEY, "lecture_id", "academy_id", "student_id", "session_order")
    return (
        _in_key_order(candidates)
        .join(context, on=KEY, how="left")
        .with_columns(
            pl.col("reason").str.starts_with("AUTO_").alias("is_auto"),
            pl.col("approved").fill_null(False),
        )
        .select(CLINIC_LINK_COLUMNS)
        .sort(E, "session_order", S, "reason")
    )


CLINIC_LINK_COLUMNS = list(ClinicLinks.to_schema().columns)  # the contract's columns, in order


# The marts computed from one grid, together (marts.dim_labels is a fixed dimension).
PROGRESS_MARTS = ("session_progress", "lecture_progress", "risk_log", "clinic_links")


def build_marts(
    raw: dict[str, pl.DataFrame], as_of: datetime, thresholds: RiskThresholds | None = None
) -> dict[str, pl.DataFrame]:
    """All progress marts as of `as_of` (naive local time) from the validated raw tables.

    `raw` needs only the columns in MART_INPUT_COLUMNS.
    """
    return build_marts_and_streaks(raw, as_of, thresholds)[0]


def build_marts_and_streaks(
    raw: dict[str, pl.DataFrame], as_of: datetime, thresholds: RiskThresholds | None = None
) -> tuple[dict[str, pl.DataFrame], pl.DataFrame]:
    """`build_marts` and the grid's running streaks it computed them from (for the rule
    evaluation at the same instant, `evaluation.streak_summary`)."""
    thresholds = thresholds or RiskThresholds()
    key, calendar, grid, streaks, progress = _progress(raw, as_of, thresholds)
    marts = {
        "session_progress": grid.select(SESSION_PROGRESS_COLUMNS),
        "lecture_progress": progress,
        "risk_log": risk_log(streaks),
        "clinic_links": clinic_links(grid, progress, raw, calendar, key, as_of),
    }
    return marts, streaks


def lecture_progress_at(
    raw: dict[str, pl.DataFrame], as_of: datetime, thresholds: RiskThresholds | None = None
) -> pl.DataFrame:
    """Only the lecture_progress mart of `build_marts` (the history and the alerts need no
    risk_log nor clinic_links)."""
    return _progress(raw, as_of, thresholds or RiskThresholds())[-1]


def _progress(raw: dict[str, pl.DataFrame], as_of: datetime, thresholds: RiskThresholds):
    """The grid, its streaks and lecture_progress (and what the other marts reuse)."""
    key = PairKey.fitting(raw)
    policy = lecture_policies(raw["lectures"], raw["policies"])
    calendar = session_calendar(raw["sessions"], policy, as_of)
    facts = event_facts(raw, calendar, key, as_of)
    grid = session_progress(raw, calendar, facts, key, as_of)
    last_activity = _last_activity(facts, key)
    del facts  # the grid holds what it needs; the rest is memory
    streaks = running_streaks(grid, thresholds)
    progress = lecture_progress(grid, streaks, raw, calendar, last_activity, as_of)
    return key, calendar, grid, streaks, progress
