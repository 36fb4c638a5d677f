"""Display labels for every enum of the contract (§4.5), for dashboards and reports."""

from __future__ import annotations

import polars as pl

from .vocabulary import DANGER, INCOMPLETE, LOW_SCORE, NORMAL, WARNING

# (domain, code, label_ko, label_en)
LABELS: list[tuple[str, str, str, str]] = [
    ("risk_level", NORMAL, "정상", "Normal"),
    ("risk_level", WARNING, "주의", "Warning"),
    ("risk_level", DANGER, "위험", "Danger"),
    ("risk_rule", INCOMPLETE, "연속 미완료", "Consecutive incomplete sessions"),
    ("risk_rule", LOW_SCORE, "연속 저점수", "Consecutive low exam scores"),
    ("clinic_reason", "AUTO_FAILED", "자동(차시 미통과)", "Automatic (session not passed)"),
    ("clinic_reason", "AUTO_RISK", "자동(위험 학생)", "Automatic (student at risk)"),
    ("clinic_reason", "MANUAL_REQUEST", "수동 요청", "Manual request"),
    ("clinic_reason", "TEACHER_RECOMMEND", "강사 추천", "Teacher recommendation"),
    ("homework_pass_type", "SUBMIT", "제출만", "Submission only"),
    ("homework_pass_type", "SCORE", "점수 기준", "Score threshold"),
    ("homework_pass_type", "TEACHER_APPROVAL", "강사승인", "Teacher approval"),
    ("attendance_type", "online", "온라인", "Online"),
    ("attendance_type", "offline", "오프라인(현장)", "Offline (in person)"),
    ("enrollment_status", "ACTIVE", "수강중", "Active"),
    ("enrollment_status", "DROPPED", "수강취소", "Dropped"),
    ("submission_kind", "exam", "시험", "Exam"),
    ("submission_kind", "homework", "과제", "Homework"),
    ("outcome_result", "PASS", "합격(수료)", "Pass"),
    ("outcome_result", "FAIL", "불합격(미수료)", "Fail"),
    ("outcome_result", "WITHDRAWN", "중도 포기", "Withdrawn"),
]


def dim_labels() -> pl.DataFrame:
    """One row per (domain, code) enum value with its Korean and English label."""
    return pl.DataFrame(
        LABELS, schema=["domain", "code", "label_ko", "label_en"], orient="row"
    ).sort("domain", "code")
