"""Pandera schemas of every table the pipeline writes: raw, quarantine and marts (contract §1-§4).

One `pandera.polars.DataFrameModel` per table. Each model is the executable form of the data
contract for that table: exact column order and Polars dtypes, nullability, enum sets, ranges,
natural keys and a few row-level invariants the contract states outright. Every column and every
table carries a description written for analysts; the warehouse and the orchestrator publish them
(`column_descriptions`, `table_description`), so they must say exactly what the contract says.

Conventions:
- Timestamps are `Datetime("us")` without a time zone: naive local time in the pipeline's
  configured zone (default Asia/Seoul), as the contract stores them.
- Columns whose names start with `_` (lineage, quarantine reason) are declared under a plain
  attribute name with `pa.Field(alias="_name")`; the alias is the real column name.
- Models never coerce (`coerce = False`): a wrong dtype is a bug upstream, not something to fix
  silently. They are strict (no extra columns) and ordered (column order is part of the table).
- Pandera-polars treats NaN in a non-nullable float column as null; nullable float columns also
  get an explicit `finite` check (the contract makes NaN and Infinity `invalid_type`).

This module has no orchestration dependency; it only needs Polars and Pandera.
"""

import copy
from functools import cache
from typing import Annotated

import pandera.polars as pa
import polars as pl
from pandera.api.polars.model import DataFrameModel

from .contract import (
    ATTENDANCE_TYPES,
    CLINIC_REASONS,
    LOCAL,
    QUARANTINE_REASONS,
    SPECS,
    STATUSES,
    TABLES,
)
from .keys import duplicated_rows
from .vocabulary import (
    EVALUATED_LEVELS,
    FLAGGED_LEVELS,
    RISK_LEVELS,
    RISK_RULES,
    RULE_EVALUATION_KEY,
    SCOPES,
    risk_reason,
)

__all__ = [
    "MART_MODELS",
    "RAW_MODELS",
    "ClinicLinks",
    "DimLabels",
    "LectureProgress",
    "RiskLog",
    "RuleEvaluation",
    "SessionProgress",
    "Timestamp",
    "column_descriptions",
    "dataframe_check",
    "quarantine_model",
    "quarantine_models",
    "raw_model",
    "table_description",
    "validate",
]

# Naive local timestamp with microsecond precision (the contract's stored timestamp).
# Pandera maps the Annotated metadata onto pl.Datetime(time_unit, time_zone).
Timestamp = Annotated[pl.Datetime, "us", None]


SOURCE_FILE = (
    "Extract file the row came from, as a path relative to the landing folder "
    "(e.g. attendance/2024-03-01.csv)."
)
SOURCE_ROW = (
    "1-based record number of the row among the data records of its source file "
    "(the CSV header is not counted)."
)
RAW_NOTE = (
    " Values are parsed to their contract types and kept before defaults (a null optional value "
    "stays null here; the marts apply the defaults). Rows that broke the contract are in the "
    "quarantine table of the same name; exact re-deliveries are collapsed to their first copy."
)
EVENT_NOTE = (
    " Rows of every timestamp are kept; the marts ignore rows timestamped after the run's as_of."
)


def dataframe_check(*, name: str, **kwargs):
    """`pa.dataframe_check` whose check keeps its name in every model that inherits it.

    Pandera 0.35's CheckInfo.to_check pops `name` from the shared check info when the first
    model using it builds its schema; a model built later (a subclass such as
    LectureProgressDaily, or the parent when the subclass came first) falls back to the
    function's __name__ (measured: `_rule_rule` instead of `risk_rule_null_iff_normal` after
    importing the history models first). Naming the function after the check gives both the same.
    """

    def decorate(method):
        function = method.__func__ if isinstance(method, classmethod) else method
        function.__name__ = name
        return pa.dataframe_check(name=name, **kwargs)(classmethod(function))

    return decorate


def _finite(*columns: str):
    """A column check: float values are finite (NaN and Infinity break the contract)."""

    def finite(cls, data) -> pl.LazyFrame:  # named as the check (see dataframe_check)
        return data.lazyframe.select(pl.col(data.key).is_finite())

    return pa.check(*columns, name="finite", error="must be a finite number (not NaN or infinite)")(
        classmethod(finite)
    )


class _ContractModel(DataFrameModel):
    """Shared configuration: exact columns, exact order, exact dtypes."""

    class Config:
        strict = True
        coerce = False
        ordered = True


def _source_file() -> str:
    return pa.Field(alias="_source_file", description=SOURCE_FILE)


def _source_row() -> int:
    return pa.Field(alias="_source_row", ge=1, description=SOURCE_ROW)


# --------------------------------------------------------------------------------------------
# Raw tables (contract §1): the valid rows of each extract, one per natural key
# --------------------------------------------------------------------------------------------


_DTYPES: dict[str, object] = {
    "int": pl.Int64,
    "float": pl.Float64,
    "bool": pl.Boolean,
    "date": pl.Date,
    "timestamp": Timestamp,
    "text": pl.String,
}


def _pascal(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


@cache
def raw_model(table: str) -> type[DataFrameModel]:
    """The model of `raw.<table>`, built from the contract spec (`contract.SPECS`): each column
    with its type, nullability (optional columns), enum set, range and description; the natural
    key unique (one column: that column's uniqueness, several: the model's); float columns
    finite; then the lineage columns. One class per table (cached), named `Raw<Table>`."""
    spec = SPECS[table]
    annotations: dict[str, object] = {}
    namespace: dict[str, object] = {"__module__": __name__, "__annotations__": annotations}
    single_key = spec.key[0] if len(spec.key) == 1 else None
    for column in spec.columns:
        annotations[column.name] = _DTYPES[column.type]
        namespace[column.name] = pa.Field(
            nullable=not column.required,
            unique=column.name == single_key,
            isin=list(column.enum) if column.enum else None,
            ge=column.min,
            le=column.max,
            description=column.description,
        )
    annotations["source_file"] = pl.String
    namespace["source_file"] = _source_file()
    annotations["source_row"] = pl.Int64
    namespace["source_row"] = _source_row()
    floats = [c.name for c in spec.columns if c.type == "float"]
    if floats:
        namespace["_finite"] = _finite(*floats)
    config: dict[str, object] = {
        "description": spec.description + (EVENT_NOTE if spec.is_event else "") + RAW_NOTE
    }
    if single_key is None:
        config["unique"] = list(spec.key)
    namespace["Config"] = type("Config", (), config)
    return type(f"Raw{_pascal(table)}", (_ContractModel,), namespace)


RAW_MODELS: dict[str, type[DataFrameModel]] = {table: raw_model(table) for table in TABLES}


# --------------------------------------------------------------------------------------------
# Quarantine tables (contract §2): rejected rows as delivered
# --------------------------------------------------------------------------------------------


@cache
def quarantine_model(table: str) -> type[DataFrameModel]:
    """The model of `quarantine.<table>`: every contract column as text, then reason and origin.

    Built from the contract spec (one class per table, cached, so the same class comes back).
    """
    spec = SPECS[table]
    raw_columns = column_descriptions(RAW_MODELS[table])
    annotations: dict[str, object] = {}
    namespace: dict[str, object] = {"__module__": __name__, "__annotations__": annotations}
    for column in spec.columns:
        facts = [column.type, "required" if column.required else "optional"]
        if column.enum:
            facts.append("one of " + "/".join(column.enum))
        if column.min is not None:
            facts.append(f">= {column.min:g}")
        if column.max is not None:
            facts.append(f"<= {column.max:g}")
        annotations[column.name] = pl.String
        namespace[column.name] = pa.Field(
            nullable=True,
            description=(
                f"{column.name} exactly as delivered, as text (not trimmed); null when the file "
                f"lacked the column or the field was empty. Contract: {', '.join(facts)}. "
                f"{raw_columns[column.name]}"
            ),
        )
    reason_attr = "quarantine_reason"  # `reason` is a contract column of clinic_requests
    annotations[reason_attr] = pl.String
    namespace[reason_attr] = pa.Field(
        alias="_reason",
        isin=list(QUARANTINE_REASONS),
        description=(
            "First contract check the row failed, checked in this order: missing_value (a "
            "required column is null or empty), invalid_type (a value does not parse as its "
            "type), invalid_enum (a value outside its listed set), out_of_range (a number "
            "outside its range), duplicate_conflict (rows sharing the natural key but differing "
            "elsewhere; every delivered copy is quarantined), unknown_reference (the referenced "
            "lecture, enrollment or session is not valid), lecture_mismatch (the session "
            "belongs to another lecture than the enrollment)."
        ),
    )
    annotations["source_file"] = pl.String
    namespace["source_file"] = _source_file()
    annotations["source_row"] = pl.Int64
    namespace["source_row"] = _source_row()
    namespace["Config"] = type(
        "Config",
        (),
        {
            "description": (
                f"Rows of the {table} extract that broke the contract, one row per rejected "
                "delivered row, kept as delivered (every contract column as text) with the "
                "first failing check (_reason) and where it came from (_source_file, "
                "_source_row). An exact re-delivery that fails a later check appears once. "
                "These rows are not used by the marts."
            ),
        },
    )
    return type(f"Quarantine{_pascal(table)}", (_ContractModel,), namespace)


def quarantine_models() -> dict[str, type[DataFrameModel]]:
    """The quarantine model of every contract table, keyed by table name."""
    return {table: quarantine_model(table) for table in TABLES}


# --------------------------------------------------------------------------------------------
# Marts (contract §4)
# --------------------------------------------------------------------------------------------

_ENROLLMENT = "Enrollment (a student in one lecture)."
_LECTURE = "Lecture of the enrollment."
_ACADEMY = "Academy (tenant) running the lecture."
_STUDENT = "Student of the enrollment."
_SESSION_ORDER = (
    "Position of the session in its lecture (>= 1); sessions are ordered by "
    "(session_order, session_id)."
)
_CALCULATED_AT = (
    f"The run's as_of instant, {LOCAL}: the marts are computed as of it and events timestamped "
    "after it are ignored."
)


class SessionProgress(_ContractModel):
    enrollment_id: pl.Int64 = pa.Field(description=_ENROLLMENT)
    session_id: pl.Int64 = pa.Field(description="A session of the enrollment's lecture.")
    lecture_id: pl.Int64 = pa.Field(description="Lecture of the enrollment and the session.")
    academy_id: pl.Int64 = pa.Field(description=_ACADEMY)
    student_id: pl.Int64 = pa.Field(description=_STUDENT)
    session_order: pl.Int64 = pa.Field(ge=1, description=_SESSION_ORDER)
    session_date: pl.Date = pa.Field(
        nullable=True,
        description="Planned date of the session; null means the session counts as held.",
    )
    held: pl.Boolean = pa.Field(
        description="True when session_date is null or on or before the date of as_of."
    )
    attendance_type: pl.String = pa.Field(
        isin=list(ATTENDANCE_TYPES),
        description=(
            "attendance_type of the latest attendance row (max recorded_at, up to as_of) of the "
            "enrollment for this session; online when there is none."
        ),
    )
    video_progress_rate: pl.Int64 = pa.Field(
        ge=0,
        le=100,
        description=(
            "Highest video progress_rate reported up to as_of, percent 0..100; 0 when none."
        ),
    )
    video_completed: pl.Boolean = pa.Field(
        description=(
            "True when attendance_type is offline, or video_progress_rate >= the lecture "
            "policy's video_required_rate."
        )
    )
    exam_applicable: pl.Boolean = pa.Field(
        description=(
            "True when exam_start_session_order <= session_order <= exam_end_session_order in "
            "the lecture's policy."
        )
    )
    exam_score: pl.Float64 = pa.Field(
        nullable=True,
        ge=0,
        description=(
            "Score of the latest exam attempt that has a score (max submitted_at, then max "
            "submission_id, up to as_of); null when none. Attempts without a score are ignored."
        ),
    )
    exam_passed: pl.Boolean = pa.Field(
        description=(
            "True when the exam is not applicable; otherwise exam_score is not null and >= the "
            "policy's exam_pass_score."
        )
    )
    homework_applicable: pl.Boolean = pa.Field(
        description=(
            "True when homework_start_session_order <= session_order <= "
            "homework_end_session_order in the lecture's policy."
        )
    )
    homework_submitted: pl.Boolean = pa.Field(
        description=(
            "True when the enrollment has at least one homework submission for this session "
            "(up to as_of)."
        )
    )
    homework_passed: pl.Boolean = pa.Field(
        description=(
            "True when homework is not applicable; otherwise by the policy's "
            "homework_pass_type: SUBMIT, homework_submitted; TEACHER_APPROVAL, some homework "
            "submission is teacher-approved; SCORE, some homework submission scores >= "
            "homework_pass_score, or, when that is null, some homework submission is "
            "teacher-approved."
        )
    )
    completed: pl.Boolean = pa.Field(
        description="video_completed and exam_passed and homework_passed."
    )
    completed_at: Timestamp = pa.Field(
        nullable=True,
        description=(
            "When completed, the latest of the evidence times that exist: video (offline: "
            "recorded_at of the latest attendance row; online: the earliest video report with "
            "progress_rate >= video_required_rate), exam if applicable (submitted_at of the "
            "counted attempt), homework if applicable (SUBMIT: the earliest homework "
            "submission; otherwise the earliest qualifying one). Null when not completed or "
            f"when no evidence time exists; {LOCAL}."
        ),
    )
    calculated_at: Timestamp = pa.Field(description=_CALCULATED_AT)

    _finite_score = _finite("exam_score")

    @dataframe_check(
        name="completed_is_all_three_passed",
        error="completed must equal video_completed and exam_passed and homework_passed",
    )
    @classmethod
    def _completed_rule(cls, data) -> pl.LazyFrame:
        all_passed = pl.col("video_completed") & pl.col("exam_passed") & pl.col("homework_passed")
        return data.lazyframe.select(pl.col("completed") == all_passed)

    @dataframe_check(
        name="completed_at_only_when_completed",
        error="completed_at must be null when completed is false",
    )
    @classmethod
    def _completed_at_rule(cls, data) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col("completed") | pl.col("completed_at").is_null())

    @dataframe_check(
        name="not_applicable_passes",
        error="exam_passed / homework_passed must be true when not applicable",
    )
    @classmethod
    def _not_applicable_rule(cls, data) -> pl.LazyFrame:
        return data.lazyframe.select(
            (pl.col("exam_applicable") | pl.col("exam_passed"))
            & (pl.col("homework_applicable") | pl.col("homework_passed"))
        )

    @dataframe_check(
        name="offline_completes_video", error="video_completed must be true when offline"
    )
    @classmethod
    def _offline_rule(cls, data) -> pl.LazyFrame:
        return data.lazyframe.select(
            (pl.col("attendance_type") != "offline") | pl.col("video_completed")
        )

    class Config:
        description = (
            "One row per enrollment x session of its lecture (all enrollment statuses, all "
            "sessions, held or not), unique on (enrollment_id, session_id): whether the "
            "student completed the session (video, exam, homework) as of the run's as_of."
        )
        unique = ["enrollment_id", "session_id"]


_RISK_LEVEL = (
    "For ACTIVE enrollments, the higher of the levels of the two streaks "
    "(consecutive_failed_sessions, consecutive_low_scores): a streak at or above the danger "
    "threshold (default 3) is DANGER, at or above the warning threshold (default 2) is WARNING, "
    "else NORMAL."
)
_RISK_RULE = (
    "CONSECUTIVE_LOW_SCORE when the low-score streak alone reaches the level (the student shows "
    "up but fails exams), else CONSECUTIVE_INCOMPLETE."
)


class LectureProgress(_ContractModel):
    enrollment_id: pl.Int64 = pa.Field(unique=True, description=_ENROLLMENT + " One row each.")
    lecture_id: pl.Int64 = pa.Field(description=_LECTURE)
    academy_id: pl.Int64 = pa.Field(description=_ACADEMY)
    student_id: pl.Int64 = pa.Field(description=_STUDENT)
    status: pl.String = pa.Field(
        isin=list(STATUSES),
        description="ACTIVE or DROPPED; a null delivered status is ACTIVE.",
    )
    total_sessions: pl.Int64 = pa.Field(
        ge=0, description="Number of sessions of the lecture, held or not."
    )
    held_sessions: pl.Int64 = pa.Field(
        ge=0,
        description=(
            "Number of the lecture's sessions held as of as_of (session_date null or on or "
            "before the date of as_of)."
        ),
    )
    completed_sessions: pl.Int64 = pa.Field(
        ge=0, description="Number of the lecture's sessions completed, held or not."
    )
    failed_sessions: pl.Int64 = pa.Field(ge=0, description="Number of held sessions not completed.")
    completion_rate: pl.Float64 = pa.Field(
        ge=0,
        le=1,
        description=(
            "completed_sessions / total_sessions, between 0 and 1; 0 when the lecture has no "
            "sessions."
        ),
    )
    consecutive_failed_sessions: pl.Int64 = pa.Field(
        ge=0,
        description=(
            "Trailing run of not-completed sessions among held sessions, counted back from the "
            "last held one; 0 when that one is completed or no session is held."
        ),
    )
    consecutive_low_scores: pl.Int64 = pa.Field(
        ge=0,
        description=(
            "Trailing run of counted exam scores below exam_pass_score, over held sessions "
            "whose exam is applicable and has a counted score, counted back from the last such "
            "session; sessions without a counted score neither extend nor break it."
        ),
    )
    avg_exam_score: pl.Float64 = pa.Field(
        nullable=True,
        ge=0,
        description=(
            "Mean of the counted exam scores (exam_score) of held, exam-applicable sessions; "
            "null when there is none."
        ),
    )
    risk_level: pl.String = pa.Field(
        isin=list(RISK_LEVELS),
        description=(
            "NORMAL, WARNING or DANGER. "
            + _RISK_LEVEL
            + " Enrollments that are not ACTIVE are always NORMAL."
        ),
    )
    risk_rule: pl.String = pa.Field(
        nullable=True,
        isin=list(RISK_RULES),
        description="Cause of a WARNING or DANGER level: "
        + _RISK_RULE
        + " Null when risk_level is NORMAL.",
    )
    last_session_id: pl.Int64 = pa.Field(
        nullable=True,
        description=(
            "The last held session of the lecture (by session_order, session_id); null when no "
            "session is held."
        ),
    )
    last_activity_at: Timestamp = pa.Field(
        nullable=True,
        description=(
            "The enrollment's latest attendance recorded_at, video recorded_at or submission "
            f"submitted_at up to as_of, {LOCAL}; null when none."
        ),
    )
    calculated_at: Timestamp = pa.Field(description=_CALCULATED_AT)

    _finite_score = _finite("avg_exam_score")

    @dataframe_check(
        name="risk_rule_null_iff_normal", error="risk_rule must be null exactly when NORMAL"
    )
    @classmethod
    def _rule_rule(cls, data) -> pl.LazyFrame:
        return data.lazyframe.select(
            (pl.col("risk_level") == "NORMAL") == pl.col("risk_rule").is_null()
        )

    @dataframe_check(
        name="inactive_is_normal", error="an enrollment that is not ACTIVE must be NORMAL"
    )
    @classmethod
    def _inactive_rule(cls, data) -> pl.LazyFrame:
        return data.lazyframe.select(
            (pl.col("status") == "ACTIVE") | (pl.col("risk_level") == "NORMAL")
        )

    @dataframe_check(
        name="session_counts_consistent",
        error=(
            "need held_sessions <= total_sessions, completed_sessions <= total_sessions, "
            "failed_sessions <= held_sessions"
        ),
    )
    @classmethod
    def _counts_rule(cls, data) -> pl.LazyFrame:
        return data.lazyframe.select(
            (pl.col("held_sessions") <= pl.col("total_sessions"))
            & (pl.col("completed_sessions") <= pl.col("total_sessions"))
            & (pl.col("failed_sessions") <= pl.col("held_sessions"))
        )

    @dataframe_check(
        name="last_session_iff_held",
        error="last_session_id must be null exactly when no session is held",
    )
    @classmethod
    def _last_session_rule(cls, data) -> pl.LazyFrame:
        return data.lazyframe.select(
            (pl.col("held_sessions") == 0) == pl.col("last_session_id").is_null()
        )

    @dataframe_check(
        name="completion_rate_is_completed_share",
        error="completion_rate must be completed_sessions / total_sessions (0 without sessions)",
    )
    @classmethod
    def _rate_rule(cls, data) -> pl.LazyFrame:
        c = pl.col
        share = pl.when(c("total_sessions") > 0).then(c("completed_sessions") / c("total_sessions"))
        return data.lazyframe.select((c("completion_rate") - share.otherwise(0.0)).abs() < 1e-9)

    class Config:
        description = (
            "One row per enrollment (all statuses), unique on enrollment_id: session counts, "
            "completion rate, streaks, average exam score and risk as of the run's as_of."
        )


class ReasonFromRule(DataFrameModel):
    """Mixin: `reason` is the Korean text of `rule` with its `streak` (risk_log, risk_alerts)."""

    @dataframe_check(
        name="reason_matches_rule_and_streak",
        error="reason must be the rule's text with the streak",
    )
    @classmethod
    def _reason_rule(cls, data) -> pl.LazyFrame:
        return data.lazyframe.select(
            pl.col("reason") == risk_reason(pl.col("rule"), pl.col("streak"))
        )


class RiskLog(_ContractModel, ReasonFromRule):
    enrollment_id: pl.Int64 = pa.Field(description=_ENROLLMENT + " Always ACTIVE.")
    lecture_id: pl.Int64 = pa.Field(description=_LECTURE)
    academy_id: pl.Int64 = pa.Field(description=_ACADEMY)
    student_id: pl.Int64 = pa.Field(description=_STUDENT)
    session_id: pl.Int64 = pa.Field(
        description=(
            "Held session k after which the change happened (both streaks are computed over "
            "held sessions 1..k only)."
        )
    )
    session_order: pl.Int64 = pa.Field(ge=1, description=_SESSION_ORDER)
    session_date: pl.Date = pa.Field(
        nullable=True,
        description="Planned date of the session; null means the session counts as held.",
    )
    risk_level: pl.String = pa.Field(
        isin=list(FLAGGED_LEVELS),
        description=(
            "WARNING or DANGER: the level after session k. "
            + _RISK_LEVEL.replace("For ACTIVE enrollments, the", "The")
        ),
    )
    rule: pl.String = pa.Field(
        isin=list(RISK_RULES),
        description="The rule after session k: " + _RISK_RULE,
    )
    streak: pl.Int64 = pa.Field(
        ge=1,
        description=(
            "Length after session k of the streak of the rule: consecutive not-completed held "
            "sessions (CONSECUTIVE_INCOMPLETE) or consecutive counted exam scores below "
            "exam_pass_score (CONSECUTIVE_LOW_SCORE)."
        ),
    )
    reason: pl.String = pa.Field(
        description=(
            "Display text: 연속 {streak}차시 미완료 for CONSECUTIVE_INCOMPLETE, "
            "연속 {streak}회 저점수 for CONSECUTIVE_LOW_SCORE."
        )
    )

    class Config:
        description = (
            "The risk trajectory of ACTIVE enrollments: one row per change of (risk_level, "
            "rule) to WARNING or DANGER, unique on (enrollment_id, session_id). Each "
            "enrollment's held sessions are walked in order; a row is emitted at session k when "
            "the level after k is WARNING or DANGER and (level, rule) differs from that after "
            "k-1 (NORMAL before the first). The last row of an enrollment agrees with its "
            "lecture_progress risk when that is not NORMAL."
        )
        unique = ["enrollment_id", "session_id"]


class ClinicLinks(_ContractModel):
    enrollment_id: pl.Int64 = pa.Field(description=_ENROLLMENT)
    session_id: pl.Int64 = pa.Field(description="Session the clinic is for.")
    lecture_id: pl.Int64 = pa.Field(description=_LECTURE)
    academy_id: pl.Int64 = pa.Field(description=_ACADEMY)
    student_id: pl.Int64 = pa.Field(description=_STUDENT)
    session_order: pl.Int64 = pa.Field(ge=1, description=_SESSION_ORDER)
    reason: pl.String = pa.Field(
        isin=list(CLINIC_REASONS),
        description=(
            "AUTO_FAILED: a held, not-completed session of an ACTIVE enrollment. AUTO_RISK: an "
            "ACTIVE enrollment at WARNING or DANGER, at its last_session_id. MANUAL_REQUEST / "
            "TEACHER_RECOMMEND: a clinic_requests row with that reason up to as_of, whatever "
            "the enrollment's status."
        ),
    )
    is_auto: pl.Boolean = pa.Field(
        description="True when reason is AUTO_FAILED or AUTO_RISK (derived by the pipeline)."
    )
    approved: pl.Boolean = pa.Field(
        description=(
            "approved of the latest clinic_requests row (max requested_at, up to as_of) with "
            "the same enrollment_id, session_id and reason, null counted as false; false when "
            "there is no such row."
        )
    )
    memo: pl.String = pa.Field(
        nullable=True,
        description="memo of that latest matching clinic request; null when there is none.",
    )
    requested_at: Timestamp = pa.Field(
        nullable=True,
        description=(
            f"requested_at of that latest matching clinic request, {LOCAL}; null when there is "
            "none."
        ),
    )

    @dataframe_check(name="is_auto_matches_reason", error="is_auto must be reason AUTO_*")
    @classmethod
    def _is_auto_rule(cls, data) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col("is_auto") == pl.col("reason").str.starts_with("AUTO_"))

    class Config:
        description = (
            "Clinic (remedial class) candidates as of the run's as_of: one row per "
            "(enrollment_id, session_id, reason), with the staff decision from the latest "
            "matching clinic request."
        )
        unique = ["enrollment_id", "session_id", "reason"]


class DimLabels(_ContractModel):
    domain: pl.String = pa.Field(
        str_length={"min_value": 1},
        description=(
            "Enum the code belongs to (risk levels, risk rules, clinic reasons, homework pass "
            "types, attendance types, enrollment statuses, submission kinds, outcome results)."
        ),
    )
    code: pl.String = pa.Field(
        str_length={"min_value": 1},
        description="The code exactly as stored in the extracts and marts (e.g. AUTO_FAILED).",
    )
    label_ko: pl.String = pa.Field(
        str_length={"min_value": 1},
        description="Korean display label (e.g. 자동(차시 미통과) for AUTO_FAILED).",
    )
    label_en: pl.String = pa.Field(
        str_length={"min_value": 1}, description="English display label."
    )

    class Config:
        description = (
            "Display labels: one row per code of every enum of the data contract, unique on "
            "(domain, code)."
        )
        unique = ["domain", "code"]


# --------------------------------------------------------------------------------------------
# Rule evaluation (contract §5): not a progress mart; kept per as_of, written by its own asset
# --------------------------------------------------------------------------------------------

_COUNT = "ACTIVE enrollments of the scope with a PASS or FAIL outcome that are "


def _ratio_field(text: str) -> float:
    return pa.Field(
        nullable=True, ge=0, le=1, description=text + " Null when its denominator is 0."
    )


class RuleEvaluation(_ContractModel):
    as_of: Timestamp = pa.Field(
        description=f"Instant T the risk was computed as of, {LOCAL}: each enrollment's risk is "
        "the one marts.lecture_progress would give as of T with the row's thresholds."
    )
    scope: pl.String = pa.Field(
        isin=list(SCOPES),
        description="What the row counts: all (every academy together), academy or lecture.",
    )
    scope_id: pl.Int64 = pa.Field(
        nullable=True,
        description="academy_id (scope academy) or lecture_id (scope lecture); null for all. "
        "Only academies and lectures with at least one ACTIVE enrollment with an outcome.",
    )
    warning_streak: pl.Int64 = pa.Field(
        ge=1, description="Streak length that raises an enrollment to WARNING in this row."
    )
    danger_streak: pl.Int64 = pa.Field(
        ge=1, description="Streak length that raises an enrollment to DANGER (>= warning_streak)."
    )
    level: pl.String = pa.Field(
        isin=list(EVALUATED_LEVELS),
        description="Level L an enrollment must have as of T to count as flagged: WARNING means "
        "WARNING or DANGER (WARNING+), DANGER means DANGER.",
    )
    population: pl.Int64 = pa.Field(
        ge=0,
        description="ACTIVE enrollments of the scope whose outcome is PASS or FAIL "
        "(= tp + fp + fn + tn).",
    )
    tp: pl.Int64 = pa.Field(ge=0, description=_COUNT + "flagged (level L or higher) and FAIL.")
    fp: pl.Int64 = pa.Field(ge=0, description=_COUNT + "flagged and PASS.")
    fn: pl.Int64 = pa.Field(ge=0, description=_COUNT + "not flagged and FAIL.")
    tn: pl.Int64 = pa.Field(ge=0, description=_COUNT + "not flagged and PASS.")
    precision: pl.Float64 = _ratio_field(
        "tp / (tp + fp): share of flagged enrollments that failed."
    )
    recall: pl.Float64 = _ratio_field("tp / (tp + fn): share of failures that were flagged.")
    f1: pl.Float64 = _ratio_field(
        "2 * precision * recall / (precision + recall); also null when precision or recall is null."
    )
    accuracy: pl.Float64 = _ratio_field("(tp + tn) / population.")
    base_rate: pl.Float64 = _ratio_field(
        "(tp + fn) / population: share of the population that failed, whatever the thresholds."
    )
    withdrawn: pl.Int64 = pa.Field(
        ge=0,
        description="ACTIVE enrollments of the scope whose outcome is WITHDRAWN (counted "
        "apart, not in the population).",
    )
    withdrawn_flagged: pl.Int64 = pa.Field(
        ge=0, description="Of those WITHDRAWN, how many were flagged (level L or higher)."
    )
    median_lead_days: pl.Float64 = pa.Field(
        nullable=True,
        description="Median, over flagged FAILs, of the days from the session_date of the "
        "enrollment's first marts.risk_log row (as of T) at level L or higher to the date of "
        "decided_at; those with either date null are left out; null when none remains. "
        "Negative when the outcome was decided before the enrollment was first flagged.",
    )

    @dataframe_check(name="counts_add_up", error="tp + fp + fn + tn must equal population")
    @classmethod
    def _counts_rule(cls, data) -> pl.LazyFrame:
        total = pl.col("tp") + pl.col("fp") + pl.col("fn") + pl.col("tn")
        return data.lazyframe.select(total == pl.col("population"))

    @dataframe_check(name="ordered_thresholds", error="warning_streak must be <= danger_streak")
    @classmethod
    def _thresholds_rule(cls, data) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col("warning_streak") <= pl.col("danger_streak"))

    @dataframe_check(name="scope_id_iff_not_all", error="scope_id is null exactly for all")
    @classmethod
    def _scope_rule(cls, data) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col("scope_id").is_null() == (pl.col("scope") == "all"))

    class Config:
        description = (
            "How well the risk rules foresaw the delivered outcomes (contract §5): one row per "
            "(as_of, scope, scope_id, warning_streak, danger_streak, level), for every threshold "
            "pair 1 <= warning_streak <= danger_streak <= 6 (plus the configured pair). "
            "Evaluated: ACTIVE enrollments with an outcome; positive = FAIL, negative = PASS, "
            "WITHDRAWN counted apart. Rows of one as_of are replaced together; other as_of "
            "values are kept. Empty when no outcomes were ever delivered."
        )
        unique = RULE_EVALUATION_KEY


MART_MODELS: dict[str, type[DataFrameModel]] = {
    "session_progress": SessionProgress,
    "lecture_progress": LectureProgress,
    "risk_log": RiskLog,
    "clinic_links": ClinicLinks,
    "dim_labels": DimLabels,
}


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def column_descriptions(model: type[DataFrameModel]) -> dict[str, str]:
    """Column name (the real name, i.e. the alias when there is one) -> description, in order."""
    return {name: column.description or "" for name, column in model.to_schema().columns.items()}


def table_description(model: type[DataFrameModel]) -> str:
    """The table's description (its grain and meaning)."""
    return model.to_schema().description or ""


def validate(model: type[DataFrameModel], frame: pl.DataFrame) -> pl.DataFrame:
    """Validate `frame` eagerly against `model`, collecting every failure.

    Returns the frame unchanged when it is valid; raises `pandera.errors.SchemaErrors` (with
    `failure_cases`) otherwise. Nothing is coerced.
    """
    categorical = frame.schema.get("_source_file") == pl.Categorical()
    result = _validation_schema(model, categorical).validate(frame, lazy=True)
    if isinstance(result, pl.LazyFrame):  # pragma: no cover - only for a LazyFrame input
        return result.collect()
    return result


@cache
def _validation_schema(
    model: type[DataFrameModel], categorical_lineage: bool
) -> pa.DataFrameSchema:
    """The schema `validate` runs, built once per model (the marts validate every bucket)."""
    schema = fast_uniqueness(model.to_schema())
    if categorical_lineage:
        # lineage stays Categorical in memory (the ingest keeps one file name per row cheaply);
        # the warehouse stores VARCHAR, which `stored_type_mismatches` checks
        schema = schema.update_column("_source_file", dtype=pl.Categorical())
    return schema


def _unique_rows(columns: list[str]):
    def check(data) -> pl.LazyFrame:
        frame = data.lazyframe.select(columns).collect()
        return pl.LazyFrame({"unique": ~duplicated_rows(frame, columns)})

    return check


def fast_uniqueness(schema: pa.DataFrameSchema) -> pa.DataFrameSchema:
    """The schema with its uniqueness rules (the model's `unique` columns and `unique=True`
    fields) as checks that sort key hashes (`keys.duplicated_rows`) instead of Pandera's
    hash-table `is_duplicated` plus a copy of the frame: ~4x faster on 50M rows. Same rule,
    same check names (`multiple_fields_uniqueness`, `field_uniqueness`), and the failure cases
    are every row (or value) of a repeated key, as Pandera gives them."""
    for name, column in schema.columns.items():
        if column.unique:
            schema = schema.update_column(
                name,
                unique=False,
                checks=[
                    *column.checks,
                    pa.Check(
                        _unique_rows([name]),
                        name="field_uniqueness",
                        error=f"column '{name}' not unique",
                    ),
                ],
            )
    if schema.unique:
        columns = list(schema.unique)
        schema = copy.copy(schema)  # to_schema() is cached: never change the model's own
        schema.unique = None
        schema.checks = [
            *schema.checks,
            pa.Check(
                _unique_rows(columns),
                name="multiple_fields_uniqueness",
                error=f"columns {columns} not unique",
            ),
        ]
    return schema


def stored_type_mismatches(model: type[DataFrameModel], stored: pl.Schema) -> list[str]:
    """How a table's stored columns (read back from DuckDB) differ from the model's names,
    order and types: the cheap half of validating what analysts read, after the rows were
    validated in memory before writing."""
    expected = {name: column.dtype.type for name, column in model.to_schema().columns.items()}
    if list(stored) != list(expected):
        return [f"columns {list(stored)} differ from the contract's {list(expected)}"]
    return [
        f"{name} is {stored[name]}, expected {dtype}"
        for name, dtype in expected.items()
        if stored[name] != dtype
    ]
