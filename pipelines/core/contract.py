"""The extract tables of the data contract (§1), as data the ingest code walks over.

Everything the contract says about an input column (type, required, enum set, range, meaning)
and a table (natural key, references, meaning) lives here once, so parsing, quarantine, the raw
and quarantine Pandera models (`pipelines.core.schemas.raw_model`, `quarantine_model`) and the
table docs read the same facts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

ColumnType = Literal["int", "float", "bool", "date", "timestamp", "text"]

EVENT_TABLES = ("attendance", "video_progress", "submissions", "clinic_requests")
REFERENCE_TABLES = ("lectures", "sessions", "policies", "enrollments")
# Optional extracts (§5): a landing folder without them is normal, not a missing extract.
OPTIONAL_TABLES = ("outcomes",)
# Dependency order: a table's references are always ingested before it.
TABLES = REFERENCE_TABLES + EVENT_TABLES + OPTIONAL_TABLES

QUARANTINE_REASONS = (
    "missing_value",
    "invalid_type",
    "invalid_enum",
    "out_of_range",
    "duplicate_conflict",
    "unknown_reference",
    "lecture_mismatch",
)


@dataclass(frozen=True)
class Column:
    name: str
    type: ColumnType
    required: bool = False
    enum: tuple[str, ...] | None = None
    min: float | None = None
    max: float | None = None
    description: str = ""


@dataclass(frozen=True)
class TableSpec:
    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    # column -> referenced table (whose natural key is that single column)
    references: dict[str, str] = field(default_factory=dict)
    description: str = ""

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def is_event(self) -> bool:
        return self.name in EVENT_TABLES

    @property
    def is_optional(self) -> bool:
        return self.name in OPTIONAL_TABLES

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)


def _c(name: str, type_: ColumnType, required: bool = False, **kw) -> Column:
    return Column(name, type_, required, **kw)


# Phrases the column descriptions share (they are the descriptions of the raw tables, published
# to DuckDB COMMENT ON and the Dagster UI, and quoted by the quarantine tables' descriptions).
LOCAL = "naive local time in the pipeline's configured zone (default Asia/Seoul)"
EVENT_ENROLLMENT = "(a valid enrollments.enrollment_id)"
EVENT_SESSION = "(a valid sessions.session_id of the enrollment's lecture)"


PASS_TYPES = ("SUBMIT", "SCORE", "TEACHER_APPROVAL")
STATUSES = ("ACTIVE", "DROPPED")
ATTENDANCE_TYPES = ("online", "offline")
SUBMISSION_KINDS = ("exam", "homework")
CLINIC_REASONS = ("AUTO_FAILED", "AUTO_RISK", "MANUAL_REQUEST", "TEACHER_RECOMMEND")
OUTCOME_RESULTS = ("PASS", "FAIL", "WITHDRAWN")

SPECS: dict[str, TableSpec] = {
    s.name: s
    for s in (
        TableSpec(
            "lectures",
            (
                _c(
                    "lecture_id",
                    "int",
                    True,
                    description="Lecture (course) id; natural key of the table.",
                ),
                _c(
                    "academy_id", "int", True, description="Academy (tenant) that runs the lecture."
                ),
                _c(
                    "title",
                    "text",
                    description="Lecture title as shown to staff; null when not delivered.",
                ),
            ),
            key=("lecture_id",),
            description="One row per lecture (course) of an academy, natural key lecture_id.",
        ),
        TableSpec(
            "sessions",
            (
                _c(
                    "session_id",
                    "int",
                    True,
                    description="Session (차시) id; natural key of the table.",
                ),
                _c(
                    "lecture_id",
                    "int",
                    True,
                    description="Lecture the session belongs to (a valid lectures.lecture_id).",
                ),
                _c(
                    "session_order",
                    "int",
                    True,
                    min=1,
                    description="Position of the session in its lecture (>= 1); sessions are ordered by (session_order, session_id).",
                ),
                _c("title", "text", description="Session title; null when not delivered."),
                _c(
                    "session_date",
                    "date",
                    description="Planned date of the session. A session is held as of a run when this is null or on or before the date of the run's as_of.",
                ),
            ),
            key=("session_id",),
            references={"lecture_id": "lectures"},
            description="One row per session (차시) of a lecture, natural key session_id; only sessions of a valid lecture.",
        ),
        TableSpec(
            "policies",
            (
                _c(
                    "lecture_id",
                    "int",
                    True,
                    description="Lecture the policy governs (a valid lectures.lecture_id); natural key of the table.",
                ),
                _c(
                    "video_required_rate",
                    "int",
                    min=0,
                    max=100,
                    description="Video progress rate (percent, 0..100) at or above which an online session's video counts as completed; null means the default 90.",
                ),
                _c(
                    "exam_start_session_order",
                    "int",
                    min=0,
                    description="First session_order (inclusive) whose session has an exam; null means the default 2.",
                ),
                _c(
                    "exam_end_session_order",
                    "int",
                    min=0,
                    description="Last session_order (inclusive) whose session has an exam; null means the default 9999.",
                ),
                _c(
                    "exam_pass_score",
                    "float",
                    min=0,
                    description="Exam score needed to pass (the counted score must be >= it); null means the default 60.0.",
                ),
                _c(
                    "homework_start_session_order",
                    "int",
                    min=0,
                    description="First session_order (inclusive) whose session has homework; null means the default 2.",
                ),
                _c(
                    "homework_end_session_order",
                    "int",
                    min=0,
                    description="Last session_order (inclusive) whose session has homework; null means the default 9999.",
                ),
                _c(
                    "homework_pass_type",
                    "text",
                    enum=PASS_TYPES,
                    description="How homework passes: SUBMIT (any homework submission), SCORE (a homework submission scoring >= homework_pass_score; by teacher approval when that is null) or TEACHER_APPROVAL (a teacher-approved homework submission); null means the default TEACHER_APPROVAL.",
                ),
                _c(
                    "homework_pass_score",
                    "float",
                    min=0,
                    description="Homework score needed to pass under homework_pass_type SCORE; null (the default) means SCORE homework passes by teacher approval instead.",
                ),
            ),
            key=("lecture_id",),
            references={"lecture_id": "lectures"},
            description="At most one progress policy per lecture, natural key lecture_id; only policies of a valid lecture. A lecture without a row uses the default policy, and a null column takes the default value (video_required_rate 90, exam window 2..9999, exam_pass_score 60.0, homework window 2..9999, homework_pass_type TEACHER_APPROVAL, homework_pass_score null).",
        ),
        TableSpec(
            "enrollments",
            (
                _c(
                    "enrollment_id",
                    "int",
                    True,
                    description="Enrollment id; natural key of the table.",
                ),
                _c(
                    "lecture_id",
                    "int",
                    True,
                    description="The one lecture the enrollment belongs to (a valid lectures.lecture_id).",
                ),
                _c("student_id", "int", True, description="Student enrolled."),
                _c(
                    "status",
                    "text",
                    enum=STATUSES,
                    description="ACTIVE or DROPPED as delivered; null is treated as ACTIVE. Only ACTIVE enrollments get risk levels and automatic clinic links.",
                ),
                _c(
                    "enrolled_at",
                    "timestamp",
                    description=f"When the student enrolled, {LOCAL}; null when not delivered.",
                ),
            ),
            key=("enrollment_id",),
            references={"lecture_id": "lectures"},
            description="One row per enrollment (a student in exactly one lecture), natural key enrollment_id; only enrollments of a valid lecture.",
        ),
        TableSpec(
            "attendance",
            (
                _c(
                    "enrollment_id",
                    "int",
                    True,
                    description=f"Enrollment attending {EVENT_ENROLLMENT}.",
                ),
                _c("session_id", "int", True, description=f"Session attended {EVENT_SESSION}."),
                _c(
                    "attendance_type",
                    "text",
                    True,
                    enum=ATTENDANCE_TYPES,
                    description="online or offline. The latest row (max recorded_at) per enrollment and session gives the session's attendance type; offline completes the session's video.",
                ),
                _c(
                    "recorded_at",
                    "timestamp",
                    True,
                    description=f"When the attendance was recorded, {LOCAL}.",
                ),
            ),
            key=("enrollment_id", "session_id", "recorded_at"),
            references={"enrollment_id": "enrollments", "session_id": "sessions"},
            description="One row per attendance record, natural key (enrollment_id, session_id, recorded_at); enrollment and session are valid and of the same lecture.",
        ),
        TableSpec(
            "video_progress",
            (
                _c(
                    "enrollment_id",
                    "int",
                    True,
                    description=f"Enrollment watching {EVENT_ENROLLMENT}.",
                ),
                _c(
                    "session_id",
                    "int",
                    True,
                    description=f"Session whose video was watched {EVENT_SESSION}.",
                ),
                _c(
                    "progress_rate",
                    "int",
                    True,
                    min=0,
                    max=100,
                    description="Share of the session's video watched, percent 0..100. The highest reported rate per enrollment and session counts.",
                ),
                _c(
                    "recorded_at",
                    "timestamp",
                    True,
                    description=f"When the progress was reported, {LOCAL}. The earliest report reaching the policy's video_required_rate is the video's completion time.",
                ),
            ),
            key=("enrollment_id", "session_id", "recorded_at"),
            references={"enrollment_id": "enrollments", "session_id": "sessions"},
            description="One row per video progress report, natural key (enrollment_id, session_id, recorded_at); enrollment and session are valid and of the same lecture.",
        ),
        TableSpec(
            "submissions",
            (
                _c(
                    "submission_id",
                    "int",
                    True,
                    description="Submission id; natural key of the table. Among exam attempts with the same submitted_at, the larger id is the later attempt.",
                ),
                _c(
                    "enrollment_id",
                    "int",
                    True,
                    description=f"Enrollment submitting {EVENT_ENROLLMENT}.",
                ),
                _c(
                    "session_id", "int", True, description=f"Session submitted for {EVENT_SESSION}."
                ),
                _c(
                    "kind",
                    "text",
                    True,
                    enum=SUBMISSION_KINDS,
                    description="exam (an exam attempt) or homework (a homework submission).",
                ),
                _c(
                    "score",
                    "float",
                    min=0,
                    description="Score given (>= 0); null when not graded. Exam attempts without a score are ignored by the exam rules.",
                ),
                _c(
                    "teacher_approved",
                    "bool",
                    description="Whether a teacher approved the submission (decides TEACHER_APPROVAL homework, and SCORE homework when the policy has no homework_pass_score); null is treated as false.",
                ),
                _c(
                    "submitted_at",
                    "timestamp",
                    True,
                    description=f"When it was submitted, {LOCAL}.",
                ),
            ),
            key=("submission_id",),
            references={"enrollment_id": "enrollments", "session_id": "sessions"},
            description="One row per submission (an exam attempt or a homework submission), natural key submission_id; enrollment and session are valid and of the same lecture.",
        ),
        TableSpec(
            "clinic_requests",
            (
                _c(
                    "enrollment_id",
                    "int",
                    True,
                    description=f"Enrollment concerned {EVENT_ENROLLMENT}.",
                ),
                _c("session_id", "int", True, description=f"Session concerned {EVENT_SESSION}."),
                _c(
                    "reason",
                    "text",
                    True,
                    enum=CLINIC_REASONS,
                    description="Why a clinic: AUTO_FAILED, AUTO_RISK, MANUAL_REQUEST or TEACHER_RECOMMEND. MANUAL_REQUEST and TEACHER_RECOMMEND rows create clinic links; AUTO_* rows only carry staff decisions for the links the pipeline derives.",
                ),
                _c(
                    "approved",
                    "bool",
                    description="Whether staff approved the clinic; null is treated as false.",
                ),
                _c("memo", "text", description="Free-text staff memo; null when none."),
                _c(
                    "requested_at",
                    "timestamp",
                    True,
                    description=f"When the request was entered, {LOCAL}. The latest request per (enrollment_id, session_id, reason) gives a clinic link's approved, memo and requested_at.",
                ),
            ),
            key=("enrollment_id", "session_id", "reason", "requested_at"),
            references={"enrollment_id": "enrollments", "session_id": "sessions"},
            description="One row per clinic request or approval entered by staff, natural key (enrollment_id, session_id, reason, requested_at); enrollment and session are valid and of the same lecture.",
        ),
        TableSpec(
            "outcomes",
            (
                _c(
                    "enrollment_id",
                    "int",
                    True,
                    description=f"Enrollment whose outcome it is {EVENT_ENROLLMENT}; natural key of the table.",
                ),
                _c(
                    "result",
                    "text",
                    True,
                    enum=OUTCOME_RESULTS,
                    description="How the enrollment ended: PASS, FAIL or WITHDRAWN. The rule evaluation counts FAIL as positive and PASS as negative among ACTIVE enrollments, and WITHDRAWN apart.",
                ),
                _c(
                    "decided_at",
                    "timestamp",
                    description=f"When the result was decided, {LOCAL}; null when not delivered (then the lead time of a flagged FAIL is null). Outcomes are used whatever their decided_at.",
                ),
            ),
            key=("enrollment_id",),
            references={"enrollment_id": "enrollments"},
            description="Optional extract: one row per enrollment with a known outcome, natural key enrollment_id; only outcomes of a valid enrollment. Empty when the landing folder has no outcomes extract; then nothing is evaluated.",
        ),
    )
}

# The policy used for a lecture with no valid policy row, and for each null policy column.
DEFAULT_POLICY = {
    "video_required_rate": 90,
    "exam_start_session_order": 2,
    "exam_end_session_order": 9999,
    "exam_pass_score": 60.0,
    "homework_start_session_order": 2,
    "homework_end_session_order": 9999,
    "homework_pass_type": "TEACHER_APPROVAL",
    "homework_pass_score": None,
}
