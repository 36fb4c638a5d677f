"""The progress marts (contract §3-§4), computed for every enrollment at once as of one instant.

Pure Polars: raw frames in, mart frames out. No loop over rows, enrollments or sessions: the
enrollment x session grid is built once and every mart is derived from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import polars as pl

from .contract import DEFAULT_POLICY

E, S = "enrollment_id", "session_id"
LEVELS = ("NORMAL", "WARNING", "DANGER")
INCOMPLETE, LOW_SCORE = "CONSECUTIVE_INCOMPLETE", "CONSECUTIVE_LOW_SCORE"
REASON_TEMPLATES = {INCOMPLETE: "연속 {}차시 미완료", LOW_SCORE: "연속 {}회 저점수"}


def risk_reason(rule: pl.Expr, streak: pl.Expr) -> pl.Expr:
    """The Korean reason text of a risk rule and its streak (contract §4.3)."""
    return (
        pl.when(rule == LOW_SCORE)
        .then(pl.format(REASON_TEMPLATES[LOW_SCORE], streak))
        .otherwise(pl.format(REASON_TEMPLATES[INCOMPLETE], streak))
    )


@dataclass(frozen=True)
class RiskThresholds:
    """Streak lengths that raise an ACTIVE enrollment to WARNING and to DANGER."""

    warning: int = 2
    danger: int = 3


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
    """Per session: its lecture's policy, whether it is held, and its rank among held sessions."""
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
    )


def _upto(frame: pl.DataFrame, column: str, as_of: datetime) -> pl.DataFrame:
    return frame.filter(pl.col(column) <= as_of)


def _latest(value: str, *by: str) -> pl.Expr:
    """The value of the row with the greatest `by` (a tuple order) within the group."""
    return pl.col(value).sort_by(list(by)).last()


def _event_facts(raw: dict[str, pl.DataFrame], calendar: pl.DataFrame, as_of: datetime):
    """Per (enrollment, session) facts from each event table, events after as_of ignored."""
    policy_of_session = calendar.select(
        S, "video_required_rate", "exam_pass_score", "homework_pass_score"
    )
    attendance = (
        _upto(raw["attendance"], "recorded_at", as_of)
        .group_by(E, S)
        .agg(
            _latest("attendance_type", "recorded_at").alias("attendance_type"),
            pl.col("recorded_at").max().alias("attendance_at"),
        )
    )
    reached = pl.col("progress_rate") >= pl.col("video_required_rate")
    video = (
        _upto(raw["video_progress"], "recorded_at", as_of)
        .join(policy_of_session, on=S)
        .group_by(E, S)
        .agg(
            pl.col("progress_rate").max().alias("video_progress_rate"),
            pl.col("recorded_at").filter(reached).min().alias("video_at"),
        )
    )
    submissions = _upto(raw["submissions"], "submitted_at", as_of).join(policy_of_session, on=S)
    exams = (
        submissions.filter((pl.col("kind") == "exam") & pl.col("score").is_not_null())
        .group_by(E, S)
        .agg(
            _latest("score", "submitted_at", "submission_id").alias("exam_score"),
            pl.col("submitted_at").max().alias("exam_at"),
        )
    )
    approved = pl.col("teacher_approved").fill_null(False)
    scored = pl.col("score") >= pl.col("homework_pass_score")
    homework = (
        submissions.filter(pl.col("kind") == "homework")
        .group_by(E, S)
        .agg(
            pl.col("submitted_at").min().alias("hw_first_at"),
            pl.col("submitted_at").filter(approved).min().alias("hw_approved_at"),
            pl.col("submitted_at").filter(scored.fill_null(False)).min().alias("hw_scored_at"),
        )
    )
    return attendance, video, exams, homework


def _last_activity(raw: dict[str, pl.DataFrame], as_of: datetime) -> pl.DataFrame:
    stamps = pl.concat(
        [
            raw["attendance"].select(E, pl.col("recorded_at").alias("at")),
            raw["video_progress"].select(E, pl.col("recorded_at").alias("at")),
            raw["submissions"].select(E, pl.col("submitted_at").alias("at")),
        ]
    )
    return (
        _upto(stamps, "at", as_of).group_by(E).agg(pl.col("at").max().alias("last_activity_at"))
    )


def session_progress(
    raw: dict[str, pl.DataFrame], calendar: pl.DataFrame, as_of: datetime
) -> pl.DataFrame:
    """The enrollment x session grid with completion facts (contract §4.1), plus helpers.

    Helper columns (prefixed `_`) feed the other marts; `SESSION_PROGRESS_COLUMNS` is the mart.
    """
    enrollments = raw["enrollments"].select(
        E, "lecture_id", "student_id", pl.col("status").fill_null("ACTIVE")
    )
    attendance, video, exams, homework = _event_facts(raw, calendar, as_of)
    grid = (
        enrollments.join(calendar, on="lecture_id", how="inner")
        .join(attendance, on=[E, S], how="left")
        .join(video, on=[E, S], how="left")
        .join(exams, on=[E, S], how="left")
        .join(homework, on=[E, S], how="left")
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
    grid = grid.with_columns(
        pl.col("attendance_type").fill_null("online"),
        pl.col("video_progress_rate").fill_null(0),
        pl.col("hw_first_at").is_not_null().alias("homework_submitted"),
        hw_evidence.alias("_hw_at"),
    ).with_columns(
        (offline | (pl.col("video_progress_rate") >= pl.col("video_required_rate")))
        .alias("video_completed"),
        (~pl.col("exam_applicable") | (pl.col("exam_score") >= pl.col("exam_pass_score")))
        .fill_null(False)
        .alias("exam_passed"),
        (~pl.col("homework_applicable") | pl.col("_hw_at").is_not_null()).alias(
            "homework_passed"
        ),
        pl.when(offline).then(pl.col("attendance_at")).otherwise(pl.col("video_at"))
        .alias("_video_at"),
    ).with_columns(
        (pl.col("video_completed") & pl.col("exam_passed") & pl.col("homework_passed")).alias(
            "completed"
        )
    )
    completed_at = pl.max_horizontal(
        pl.col("_video_at"),
        pl.when("exam_applicable").then(pl.col("exam_at")),
        pl.when("homework_applicable").then(pl.col("_hw_at")),
    )
    return grid.with_columns(
        pl.when("completed").then(completed_at).alias("completed_at"),
        pl.lit(as_of, pl.Datetime("us")).alias("calculated_at"),
    )


SESSION_PROGRESS_COLUMNS = [
    E, S, "lecture_id", "academy_id", "student_id", "session_order", "session_date", "held",
    "attendance_type", "video_progress_rate", "video_completed", "exam_applicable", "exam_score",
    "exam_passed", "homework_applicable", "homework_submitted", "homework_passed", "completed",
    "completed_at", "calculated_at",
]


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


def running_streaks(grid: pl.DataFrame, t: RiskThresholds) -> pl.DataFrame:
    """Held sessions in order with both streaks and the risk after each one (§4.3's walk)."""
    order = "held_rank"
    over = {"partition_by": E, "order_by": order}
    counted = pl.col("exam_applicable") & pl.col("exam_score").is_not_null()
    passed = counted & (pl.col("exam_score") >= pl.col("exam_pass_score"))
    held = grid.filter("held").with_columns(
        pl.col(order).cast(pl.Int64),
        counted.cast(pl.Int64).cum_sum().over(**over).alias("_counted_n"),
    )
    last_complete = pl.when("completed").then(pl.col(order)).otherwise(0).cum_max().over(**over)
    last_pass = pl.when(passed).then(pl.col("_counted_n")).otherwise(0).cum_max().over(**over)
    held = held.with_columns(
        (pl.col(order) - last_complete).alias("_fail_streak"),
        (pl.col("_counted_n") - last_pass).alias("_low_streak"),
    )
    level, rule = _risk(
        pl.col("_fail_streak"), pl.col("_low_streak"), pl.col("status") == "ACTIVE", t
    )
    return held.with_columns(level.alias("_level"), rule.alias("_rule")).sort(E, order)


def lecture_progress(
    grid: pl.DataFrame,
    streaks: pl.DataFrame,
    raw: dict[str, pl.DataFrame],
    calendar: pl.DataFrame,
    as_of: datetime,
) -> pl.DataFrame:
    """One row per enrollment (contract §4.2)."""
    totals = calendar.group_by("lecture_id").agg(
        pl.len().alias("total_sessions"), pl.col("held").sum().alias("held_sessions")
    )
    held = pl.col("held")
    counted = held & pl.col("exam_applicable") & pl.col("exam_score").is_not_null()
    per_enrollment = grid.group_by(E).agg(
        pl.col("completed").sum().alias("completed_sessions"),
        (held & ~pl.col("completed")).sum().alias("failed_sessions"),
        pl.col("exam_score").filter(counted).mean().alias("avg_exam_score"),
    )
    last = streaks.group_by(E).agg(
        pl.col(c).sort_by("held_rank").last()
        for c in (S, "_fail_streak", "_low_streak", "_level", "_rule")
    )
    enrollments = raw["enrollments"].join(
        raw["lectures"].select("lecture_id", "academy_id"), on="lecture_id"
    )
    level_name = pl.col("_level").fill_null(0).replace_strict(
        list(range(3)), list(LEVELS), return_dtype=pl.String
    )
    frame = (
        enrollments.select(E, "lecture_id", "academy_id", "student_id",
                           pl.col("status").fill_null("ACTIVE"))
        .join(totals, on="lecture_id", how="left")
        .join(per_enrollment, on=E, how="left")
        .join(last, on=E, how="left")
        .join(_last_activity(raw, as_of), on=E, how="left")
    )
    counts = ["total_sessions", "held_sessions", "completed_sessions", "failed_sessions"]
    return frame.with_columns(
        *(pl.col(c).fill_null(0).cast(pl.Int64) for c in counts),
        pl.col("_fail_streak").fill_null(0).alias("consecutive_failed_sessions"),
        pl.col("_low_streak").fill_null(0).alias("consecutive_low_scores"),
        level_name.alias("risk_level"),
        pl.col("_rule").alias("risk_rule"),
        pl.col(S).alias("last_session_id"),
        pl.lit(as_of, pl.Datetime("us")).alias("calculated_at"),
    ).with_columns(
        pl.when(pl.col("total_sessions") > 0)
        .then(pl.col("completed_sessions") / pl.col("total_sessions"))
        .otherwise(0.0)
        .alias("completion_rate")
    ).select(LECTURE_PROGRESS_COLUMNS).sort(E)


LECTURE_PROGRESS_COLUMNS = [
    E, "lecture_id", "academy_id", "student_id", "status", "total_sessions", "held_sessions",
    "completed_sessions", "failed_sessions", "completion_rate", "consecutive_failed_sessions",
    "consecutive_low_scores", "avg_exam_score", "risk_level", "risk_rule", "last_session_id",
    "last_activity_at", "calculated_at",
]


def risk_log(streaks: pl.DataFrame) -> pl.DataFrame:
    """One row per change of an ACTIVE enrollment's (level, rule) to WARNING or DANGER (§4.3)."""
    over = {"partition_by": E, "order_by": "held_rank"}
    previous_level = pl.col("_level").shift(1).over(**over).fill_null(0)
    previous_rule = pl.col("_rule").shift(1).over(**over)
    changed = (pl.col("_level") != previous_level) | pl.col("_rule").ne_missing(previous_rule)
    streak = pl.when(pl.col("_rule") == LOW_SCORE).then("_low_streak").otherwise("_fail_streak")
    reason = risk_reason(pl.col("_rule"), streak)
    return (
        streaks.filter((pl.col("_level") > 0) & changed)
        .with_columns(
            pl.col("_level").replace_strict(list(range(3)), list(LEVELS), return_dtype=pl.String)
            .alias("risk_level"),
            pl.col("_rule").alias("rule"),
            streak.cast(pl.Int64).alias("streak"),
            reason.alias("reason"),
        )
        .select(RISK_LOG_COLUMNS)
        .sort(E, "session_order", S)
    )


RISK_LOG_COLUMNS = [
    E, "lecture_id", "academy_id", "student_id", S, "session_order", "session_date",
    "risk_level", "rule", "streak", "reason",
]

CLINIC_KEY = [E, S, "reason"]


def clinic_links(
    grid: pl.DataFrame, progress: pl.DataFrame, raw: dict[str, pl.DataFrame], as_of: datetime
) -> pl.DataFrame:
    """Clinic candidates, unique on (enrollment, session, reason), with staff decisions (§4.4)."""
    active = pl.col("status") == "ACTIVE"
    auto_failed = grid.filter(active & pl.col("held") & ~pl.col("completed")).select(
        E, S, pl.lit("AUTO_FAILED").alias("reason")
    )
    auto_risk = progress.filter(active & (pl.col("risk_level") != "NORMAL")).select(
        E, pl.col("last_session_id").alias(S), pl.lit("AUTO_RISK").alias("reason")
    )
    requests = _upto(raw["clinic_requests"], "requested_at", as_of)
    manual = requests.filter(
        pl.col("reason").is_in(["MANUAL_REQUEST", "TEACHER_RECOMMEND"])
    ).select(CLINIC_KEY).unique()
    decisions = requests.group_by(CLINIC_KEY).agg(
        _latest("approved", "requested_at").fill_null(False).alias("approved"),
        _latest("memo", "requested_at").alias("memo"),
        pl.col("requested_at").max().alias("requested_at"),
    )
    context = grid.select(E, S, "lecture_id", "academy_id", "student_id", "session_order")
    return (
        pl.concat([auto_failed, auto_risk, manual])
        .join(decisions, on=CLINIC_KEY, how="left")
        .join(context, on=[E, S], how="left")
        .with_columns(
            pl.col("reason").str.starts_with("AUTO_").alias("is_auto"),
            pl.col("approved").fill_null(False),
        )
        .select(CLINIC_LINK_COLUMNS)
        .sort(E, "session_order", S, "reason")
    )


CLINIC_LINK_COLUMNS = [
    E, S, "lecture_id", "academy_id", "student_id", "session_order", "reason", "is_auto",
    "approved", "memo", "requested_at",
]


def build_marts(
    raw: dict[str, pl.DataFrame], as_of: datetime, thresholds: RiskThresholds | None = None
) -> dict[str, pl.DataFrame]:
    """All progress marts as of `as_of` (naive local time) from the validated raw tables."""
    thresholds = thresholds or RiskThresholds()
    policy = lecture_policies(raw["lectures"], raw["policies"])
    calendar = session_calendar(raw["sessions"], policy, as_of)
    grid = session_progress(raw, calendar, as_of)
    streaks = running_streaks(grid, thresholds)
    progress = lecture_progress(grid, streaks, raw, calendar, as_of)
    return {
        "session_progress": grid.select(SESSION_PROGRESS_COLUMNS).sort(E, "session_order", S),
        "lecture_progress": progress,
        "risk_log": risk_log(streaks),
        "clinic_links": clinic_links(grid, progress, raw, as_of),
    }
