"""Cross-table invariants the marts must satisfy (contract §4), as violation messages.

Only rules that relate rows of two tables (or count a table against another) live here; a rule
within one row or one table is a check of its Pandera model (`pipelines.core.schemas`), checked
once.

Each function returns human-readable violations (empty when the invariant holds), so the same
code serves the Dagster asset checks and the tests.
"""

from __future__ import annotations

import polars as pl

E = "enrollment_id"


def _violations(frame: pl.DataFrame, condition: pl.Expr, what: str) -> list[str]:
    bad = frame.filter(~condition.fill_null(False))
    if bad.is_empty():
        return []
    examples = bad.get_column(E).head(5).to_list() if E in bad.columns else []
    return [f"{what}: {bad.height} rows (e.g. enrollment_id {examples})"]


def lecture_progress_violations(progress: pl.DataFrame, enrollments: int) -> list[str]:
    """One row per valid enrollment. The rules within a row (session counts, completion_rate,
    risk_rule iff not NORMAL, non-ACTIVE is NORMAL) are the LectureProgress model's checks."""
    if progress.height != enrollments:
        return [f"{progress.height} rows for {enrollments} valid enrollments"]
    return []


def session_progress_violations(sessions: pl.DataFrame, progress: pl.DataFrame) -> list[str]:
    """One row per enrollment and session of its lecture, whose completed rows add up to
    lecture_progress. A row's own rules (completed = all three passed) are the
    SessionProgress model's checks."""
    out: list[str] = []
    expected = int(progress.get_column("total_sessions").sum())
    if sessions.height != expected:
        out.append(f"{sessions.height} rows, expected sum(total_sessions) = {expected}")
    per = sessions.group_by(E).agg(pl.col("completed").sum().alias("_done"))
    joined = progress.join(per, on=E, how="left").with_columns(pl.col("_done").fill_null(0))
    out += _violations(
        joined,
        pl.col("_done") == pl.col("completed_sessions"),
        "completed rows disagree with lecture_progress.completed_sessions",
    )
    return out


def risk_log_violations(log: pl.DataFrame, progress: pl.DataFrame) -> list[str]:
    last = log.group_by(E).agg(
        pl.col("risk_level").sort_by("session_order", "session_id").last().alias("_level"),
        pl.col("rule").sort_by("session_order", "session_id").last().alias("_rule"),
    )
    at_risk = progress.filter(pl.col("risk_level") != "NORMAL").join(last, on=E, how="left")
    out = _violations(
        at_risk,
        (pl.col("_level") == pl.col("risk_level")) & (pl.col("_rule") == pl.col("risk_rule")),
        "last risk_log row disagrees with lecture_progress risk",
    )
    statuses = log.join(progress.select(E, "status"), on=E, how="left")
    out += _violations(statuses, pl.col("status") == "ACTIVE", "risk_log row for non-ACTIVE")
    return out


def clinic_link_violations(links: pl.DataFrame, progress: pl.DataFrame) -> list[str]:
    active = progress.filter(pl.col("status") == "ACTIVE")
    failed = links.filter(pl.col("reason") == "AUTO_FAILED").group_by(E).len("_failed")
    joined = active.join(failed, on=E, how="left").with_columns(pl.col("_failed").fill_null(0))
    out = _violations(
        joined,
        pl.col("_failed") == pl.col("failed_sessions"),
        "AUTO_FAILED links != failed_sessions of an ACTIVE enrollment",
    )
    risky = active.filter(pl.col("risk_level") != "NORMAL").select(
        E, pl.col("last_session_id").alias("session_id")
    )
    risk_links = links.filter(pl.col("reason") == "AUTO_RISK").select(E, "session_id")
    if risky.sort(E).to_dicts() != risk_links.sort(E).to_dicts():
        out.append(
            f"AUTO_RISK links ({risk_links.height}) are not exactly the at-risk ACTIVE "
            f"enrollments at their last held session ({risky.height})"
        )
    return out  # is_auto = reason AUTO_* is the ClinicLinks model's check
