"""The extract tables of the data contract (§1), as data the ingest code walks over.

Everything the contract says about an input column (type, required, enum set, range) lives
here once, so parsing, quarantine, schemas and docs read the same facts.
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
                _c("lecture_id", "int", True, description="Lecture (course) id."),
                _c("academy_id", "int", True, description="Academy (tenant) running it."),
                _c("title", "text", description="Lecture title as shown to staff."),
            ),
            key=("lecture_id",),
            description="One row per lecture (course) of an academy.",
        ),
        TableSpec(
            "sessions",
            (
                _c("session_id", "int", True, description="Session (차시) id."),
                _c("lecture_id", "int", True, description="Lecture the session belongs to."),
                _c("session_order", "int", True, min=1, description="Position in the lecture."),
                _c("title", "text", description="Session title."),
                _c("session_date", "date", description="Planned date; null = always held."),
            ),
            key=("session_id",),
            references={"lecture_id": "lectures"},
            description="One row per session (차시) of a lecture.",
        ),
        TableSpec(
            "policies",
            (
                _c("lecture_id", "int", True, description="Lecture the policy governs."),
                _c(
                    "video_required_rate",
                    "int",
                    min=0,
                    max=100,
                    description="Video progress (%) needed to complete; null = default 90.",
                ),
                _c(
                    "exam_start_session_order",
                    "int",
                    min=0,
                    description="First session order with an exam; null = default 2.",
                ),
                _c(
                    "exam_end_session_order",
                    "int",
                    min=0,
                    description="Last session order with an exam; null = default 9999.",
                ),
                _c(
                    "exam_pass_score",
                    "float",
                    min=0,
                    description="Exam score needed to pass; null = default 60.",
                ),
                _c(
                    "homework_start_session_order",
                    "int",
                    min=0,
                    description="First session order with homework; null = default 2.",
                ),
                _c(
                    "homework_end_session_order",
                    "int",
                    min=0,
                    description="Last session order with homework; null = default 9999.",
                ),
                _c(
                    "homework_pass_type",
                    "text",
                    enum=PASS_TYPES,
                    description="How homework passes; null = default TEACHER_APPROVAL.",
                ),
                _c(
                    "homework_pass_score",
                    "float",
                    min=0,
                    description="Score a SCORE-type homework needs; null = use approval.",
                ),
            ),
            key=("lecture_id",),
            references={"lecture_id": "lectures"},
            description="At most one progress policy per lecture; null columns take defaults.",
        ),
        TableSpec(
            "enrollments",
            (
                _c("enrollment_id", "int", True, description="Enrollment id."),
                _c("lecture_id", "int", True, description="Lecture the student enrolled in."),
                _c("student_id", "int", True, description="Student id."),
                _c(
                    "status",
                    "text",
                    enum=STATUSES,
                    description="ACTIVE or DROPPED; null means ACTIVE.",
                ),
                _c("enrolled_at", "timestamp", description="When the student enrolled (local)."),
            ),
            key=("enrollment_id",),
            references={"lecture_id": "lectures"},
            description="One row per student enrollment in one lecture.",
        ),
        TableSpec(
            "attendance",
            (
                _c("enrollment_id", "int", True, description="Enrollment attending."),
                _c("session_id", "int", True, description="Session attended."),
                _c(
                    "attendance_type",
                    "text",
                    True,
                    enum=ATTENDANCE_TYPES,
                    description="online or offline (offline completes the video).",
                ),
                _c("recorded_at", "timestamp", True, description="When it was recorded (local)."),
            ),
            key=("enrollment_id", "session_id", "recorded_at"),
            references={"enrollment_id": "enrollments", "session_id": "sessions"},
            description="Attendance records; the latest per session counts.",
        ),
        TableSpec(
            "video_progress",
            (
                _c("enrollment_id", "int", True, description="Enrollment watching."),
                _c("session_id", "int", True, description="Session whose video it is."),
                _c(
                    "progress_rate",
                    "int",
                    True,
                    min=0,
                    max=100,
                    description="Watched share of the video, percent.",
                ),
                _c("recorded_at", "timestamp", True, description="When it was reported (local)."),
            ),
            key=("enrollment_id", "session_id", "recorded_at"),
            references={"enrollment_id": "enrollments", "session_id": "sessions"},
            description="Video progress reports; the highest rate counts.",
        ),
        TableSpec(
            "submissions",
            (
                _c("submission_id", "int", True, description="Submission id."),
                _c("enrollment_id", "int", True, description="Enrollment submitting."),
                _c("session_id", "int", True, description="Session submitted for."),
                _c("kind", "text", True, enum=SUBMISSION_KINDS, description="exam or homework."),
                _c("score", "float", min=0, description="Score; null when not graded."),
                _c(
                    "teacher_approved", "bool", description="Teacher approved it; null means false."
                ),
                _c("submitted_at", "timestamp", True, description="When it was submitted (local)."),
            ),
            key=("submission_id",),
            references={"enrollment_id": "enrollments", "session_id": "sessions"},
            description="Exam attempts and homework submissions.",
        ),
        TableSpec(
            "clinic_requests",
            (
                _c("enrollment_id", "int", True, description="Enrollment concerned."),
                _c("session_id", "int", True, description="Session concerned."),
                _c("reason", "text", True, enum=CLINIC_REASONS, description="Why a clinic."),
                _c("approved", "bool", description="Approved by staff; null means false."),
                _c("memo", "text", description="Staff memo."),
                _c("requested_at", "timestamp", True, description="When it was requested (local)."),
            ),
            key=("enrollment_id", "session_id", "reason", "requested_at"),
            references={"enrollment_id": "enrollments", "session_id": "sessions"},
            description="Clinic requests and approvals entered by staff.",
        ),
        TableSpec(
            "outcomes",
            (
                _c("enrollment_id", "int", True, description="Enrollment whose outcome it is."),
                _c(
                    "result",
                    "text",
                    True,
                    enum=OUTCOME_RESULTS,
                    description="PASS, FAIL or WITHDRAWN: how the enrollment ended.",
                ),
                _c("decided_at", "timestamp", description="When it was decided (local)."),
            ),
            key=("enrollment_id",),
            references={"enrollment_id": "enrollments"},
            description="Optional: the final result of enrollments, to evaluate the risk rules.",
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
