"""Tests of the pandera models in pipelines.core.schemas against the contract and the code."""

from __future__ import annotations

from datetime import date, datetime

import pandera.polars as pa
import polars as pl
import pytest

from pipelines.core import marts
from pipelines.core.contract import QUARANTINE_REASONS, SPECS, TABLES
from pipelines.core.ingest import quarantine_schema, raw_schema
from pipelines.core.schemas import (
    MART_MODELS,
    RAW_MODELS,
    column_descriptions,
    quarantine_model,
    quarantine_models,
    table_description,
    validate,
)

US = pl.Datetime("us")
T1, T2, T3 = (
    datetime(2024, 3, 4, 19, 0),
    datetime(2024, 3, 5, 8, 30, 15, 123456),
    datetime(2024, 3, 9, 23, 59),
)
AS_OF = datetime(2024, 3, 10, 12, 0)
D1 = date(2024, 3, 4)

N, F, B, S, D = pl.Int64(), pl.Float64(), pl.Boolean(), pl.String(), pl.Date()

# Expected mart dtypes, written down independently of the models (ids, counts, orders, streak,
# video_progress_rate Int64; scores and rates Float64; flags Boolean; dates Date; timestamps
# Datetime(us); text String).
MART_DTYPES: dict[str, dict[str, pl.DataType]] = {
    "session_progress": {
        "enrollment_id": N,
        "session_id": N,
        "lecture_id": N,
        "academy_id": N,
        "student_id": N,
        "session_order": N,
        "session_date": D,
        "held": B,
        "attendance_type": S,
        "video_progress_rate": N,
        "video_completed": B,
        "exam_applicable": B,
        "exam_score": F,
        "exam_passed": B,
        "homework_applicable": B,
        "homework_submitted": B,
        "homework_passed": B,
        "completed": B,
        "completed_at": US,
        "calculated_at": US,
    },
    "lecture_progress": {
        "enrollment_id": N,
        "lecture_id": N,
        "academy_id": N,
        "student_id": N,
        "status": S,
        "total_sessions": N,
        "held_sessions": N,
        "completed_sessions": N,
        "failed_sessions": N,
        "completion_rate": F,
        "consecutive_failed_sessions": N,
        "consecutive_low_scores": N,
        "avg_exam_score": F,
        "risk_level": S,
        "risk_rule": S,
        "last_session_id": N,
        "last_activity_at": US,
        "calculated_at": US,
    },
    "risk_log": {
        "enrollment_id": N,
        "lecture_id": N,
        "academy_id": N,
        "student_id": N,
        "session_id": N,
        "session_order": N,
        "session_date": D,
        "risk_level": S,
        "rule": S,
        "streak": N,
        "reason": S,
    },
    "clinic_links": {
        "enrollment_id": N,
        "session_id": N,
        "lecture_id": N,
        "academy_id": N,
        "student_id": N,
        "session_order": N,
        "reason": S,
        "is_auto": B,
        "approved": B,
        "memo": S,
        "requested_at": US,
    },
    "dim_labels": {"domain": S, "code": S, "label_ko": S, "label_en": S},
}
MART_NULLABLE = {
    "session_progress": {"session_date", "exam_score", "completed_at"},
    "lecture_progress": {"avg_exam_score", "risk_rule", "last_session_id", "last_activity_at"},
    "risk_log": {"session_date"},
    "clinic_links": {"memo", "requested_at"},
    "dim_labels": set(),
}
MART_KEYS = {
    "session_progress": ["enrollment_id", "session_id"],
    "lecture_progress": ["enrollment_id"],
    "risk_log": ["enrollment_id", "session_id"],
    "clinic_links": ["enrollment_id", "session_id", "reason"],
    "dim_labels": ["domain", "code"],
}


def _raw(table: str, rows: list[tuple]) -> pl.DataFrame:
    schema = raw_schema(SPECS[table])
    return pl.DataFrame(rows, schema=schema, orient="row")


def _mart(name: str, rows: list[tuple]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=MART_DTYPES[name], orient="row")


# A small, consistent set of valid raw tables (also fed to build_marts below).
RAW_ROWS: dict[str, list[tuple]] = {
    "lectures": [(1, 10, "수학 A", "lectures.csv", 1), (2, 10, None, "lectures.csv", 2)],
    "sessions": [
        (101, 1, 1, "1차시", D1, "sessions.csv", 1),
        (102, 1, 2, None, None, "sessions.csv", 2),
        (103, 1, 3, "3차시", date(2024, 4, 1), "sessions.csv", 3),
    ],
    "policies": [
        (1, 90, 2, 9999, 60.0, 2, 9999, "SUBMIT", None, "policies.csv", 1),
        (2, None, None, None, None, None, None, None, None, "policies.csv", 2),
    ],
    "enrollments": [
        (1001, 1, 5001, "ACTIVE", T1, "enrollments.csv", 1),
        (1002, 1, 5002, None, None, "enrollments.csv", 2),
        (1003, 2, 5003, "DROPPED", None, "enrollments/2024-03-01.csv", 1),
    ],
    "attendance": [
        (1001, 101, "online", T1, "attendance.csv", 1),
        (1001, 101, "offline", T2, "attendance.csv", 2),
    ],
    "video_progress": [
        (1001, 102, 50, T1, "video_progress.csv", 1),
        (1001, 102, 95, T2, "video_progress.csv", 2),
    ],
    "submissions": [
        (1, 1001, 102, "exam", 80.0, None, T2, "submissions.csv", 1),
        (2, 1001, 102, "homework", None, True, T3, "submissions.csv", 2),
        (3, 1001, 102, "exam", None, False, T3, "submissions.csv", 3),
    ],
    "clinic_requests": [
        (1002, 101, "TEACHER_RECOMMEND", True, "보충 필요, 주말 반", T1, "clinic_requests.csv", 1),
        (1002, 101, "TEACHER_RECOMMEND", None, None, T2, "clinic_requests.csv", 2),
    ],
    "outcomes": [
        (1001, "PASS", T2, "outcomes.csv", 1),
        (1002, "WITHDRAWN", None, "outcomes.csv", 2),
    ],
}

MART_ROWS: dict[str, list[tuple]] = {
    "session_progress": [
        (
            1001,
            101,
            1,
            10,
            5001,
            1,
            D1,
            True,
            "offline",
            0,
            True,
            False,
            None,
            True,
            False,
            False,
            True,
            True,
            T2,
            AS_OF,
        ),
        (
            1001,
            102,
            1,
            10,
            5001,
            2,
            None,
            True,
            "online",
            50,
            False,
            True,
            40.0,
            False,
            True,
            True,
            True,
            False,
            None,
            AS_OF,
        ),
    ],
    "lecture_progress": [
        (1001, 1, 10, 5001, "ACTIVE", 2, 2, 1, 1, 0.5, 1, 1, 40.0, "NORMAL", None, 102, T2, AS_OF),
        (
            1002,
            1,
            10,
            5002,
            "ACTIVE",
            2,
            2,
            0,
            2,
            0.0,
            2,
            0,
            None,
            "WARNING",
            "CONSECUTIVE_INCOMPLETE",
            102,
            None,
            AS_OF,
        ),
        (
            1003,
            2,
            10,
            5003,
            "DROPPED",
            0,
            0,
            0,
            0,
            0.0,
            0,
            0,
            None,
            "NORMAL",
            None,
            None,
            None,
            AS_OF,
        ),
    ],
    "risk_log": [
        (
            1002,
            1,
            10,
            5002,
            102,
            2,
            None,
            "WARNING",
            "CONSECUTIVE_INCOMPLETE",
            2,
            "연속 2차시 미완료",
        ),
        (1004, 1, 10, 5004, 103, 3, D1, "DANGER", "CONSECUTIVE_LOW_SCORE", 3, "연속 3회 저점수"),
    ],
    "clinic_links": [
        (1001, 102, 1, 10, 5001, 2, "AUTO_FAILED", True, False, None, None),
        (1001, 102, 1, 10, 5001, 2, "AUTO_RISK", True, False, None, None),
        (1001, 101, 1, 10, 5001, 1, "MANUAL_REQUEST", False, True, "메모", T1),
    ],
    "dim_labels": [
        ("clinic_reason", "AUTO_FAILED", "자동(차시 미통과)", "Automatic (session failed)"),
        ("risk_level", "NORMAL", "정상", "Normal"),
    ],
}


def _quarantine(table: str) -> pl.DataFrame:
    spec = SPECS[table]
    row = {c: (" 12 " if i % 2 == 0 else None) for i, c in enumerate(spec.column_names)}
    rows = [
        row | {"_reason": "invalid_type", "_source_file": f"{table}.csv", "_source_row": 3},
        row | {"_reason": "lecture_mismatch", "_source_file": f"{table}/b.csv", "_source_row": 1},
    ]
    return pl.DataFrame(rows, schema=quarantine_schema(spec))


def _set(frame: pl.DataFrame, column: str, value, row: int = 0) -> pl.DataFrame:
    rows = frame.to_dicts()
    rows[row][column] = value
    return pl.DataFrame(rows, schema=frame.schema)


def _duplicate(frame: pl.DataFrame, key: list[str]) -> pl.DataFrame:
    """Append a copy of row 0 with the same key but a different value elsewhere when possible."""
    copy = frame.head(1)
    others = [c for c, t in frame.schema.items() if c not in key and t == pl.Int64()]
    if others:
        copy = copy.with_columns(pl.col(others[-1]) + 1)
    return pl.concat([frame, copy])


def _errors(model, frame: pl.DataFrame) -> pa.errors.SchemaErrors:
    with pytest.raises(pa.errors.SchemaErrors) as info:
        validate(model, frame)
    return info.value


def _failures(model, frame: pl.DataFrame) -> pl.DataFrame:
    return _errors(model, frame).failure_cases


def _rejects(model, frame: pl.DataFrame, expected_check: str) -> None:
    errors = _errors(model, frame)
    # failure_cases shows a custom check by its error text; the SchemaError keeps the check
    checks = [str(c) for c in errors.failure_cases["check"].to_list()]
    checks += [getattr(e.check, "name", None) or str(e.check) for e in errors.schema_errors]
    assert any(expected_check in c for c in checks), checks


def _all_models():
    yield from (("raw." + t, m) for t, m in RAW_MODELS.items())
    yield from (("marts." + t, m) for t, m in MART_MODELS.items())
    yield from (("quarantine." + t, m) for t, m in quarantine_models().items())


ALL_MODELS = list(_all_models())


# --------------------------------------------------------------------------------------------
# Descriptions
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "model"), ALL_MODELS, ids=[n for n, _ in ALL_MODELS])
def test_every_column_and_table_is_described(name, model):
    descriptions = column_descriptions(model)
    assert list(descriptions) == list(model.to_schema().columns)
    for column, text in descriptions.items():
        assert len(text.strip()) >= 15, f"{name}.{column} has no real description"
        assert text.strip()[-1] in ".)", f"{name}.{column}: not a sentence: {text!r}"
    assert len(table_description(model)) >= 30


def test_descriptions_state_the_contract_rules():
    sp = column_descriptions(MART_MODELS["session_progress"])
    assert "max submitted_at, then max submission_id" in sp["exam_score"]
    assert "online when there is none" in sp["attendance_type"]
    lp = column_descriptions(MART_MODELS["lecture_progress"])
    assert "0 when the lecture has no sessions" in lp["completion_rate"]
    assert "neither extend nor break" in lp["consecutive_low_scores"]
    assert column_descriptions(RAW_MODELS["policies"])["video_required_rate"].endswith(
        "default 90."
    )
    assert table_description(MART_MODELS["session_progress"]).startswith(
        "One row per enrollment x session of its lecture"
    )
    assert table_description(MART_MODELS["lecture_progress"]).startswith("One row per enrollment")
    for table, model in RAW_MODELS.items():
        assert "_source_file" in column_descriptions(model), table
        assert "landing folder" in column_descriptions(model)["_source_file"]


def test_models_are_strict_ordered_and_never_coerce():
    for name, model in ALL_MODELS:
        schema = model.to_schema()
        assert schema.strict is True, name
        assert schema.ordered is True, name
        assert schema.coerce is False, name


# --------------------------------------------------------------------------------------------
# Structure against the code and the contract
# --------------------------------------------------------------------------------------------


def _dtypes(model) -> list[tuple[str, pl.DataType]]:
    return [(n, c.dtype.type) for n, c in model.to_schema().columns.items()]


@pytest.mark.parametrize("table", TABLES)
def test_raw_model_columns_equal_raw_schema(table):
    assert list(RAW_MODELS) == list(TABLES)
    assert _dtypes(RAW_MODELS[table]) == list(raw_schema(SPECS[table]).items())


@pytest.mark.parametrize("table", TABLES)
def test_quarantine_model_columns_equal_quarantine_schema(table):
    assert _dtypes(quarantine_model(table)) == list(quarantine_schema(SPECS[table]).items())


def _check_stats(column) -> dict[str, object]:
    stats: dict[str, object] = {}
    for check in column.checks:
        stats.update(check.statistics or {})
    return stats


@pytest.mark.parametrize("table", TABLES)
def test_raw_model_follows_contract_column_rules(table):
    spec = SPECS[table]
    schema = RAW_MODELS[table].to_schema()
    for col in spec.columns:
        column = schema.columns[col.name]
        stats = _check_stats(column)
        assert column.nullable is (not col.required), col.name
        assert set(stats.get("allowed_values", [])) == set(col.enum or ()), col.name
        assert stats.get("min_value") == col.min, col.name
        assert stats.get("max_value") == col.max, col.name
    for lineage in ("_source_file", "_source_row"):
        assert schema.columns[lineage].nullable is False
    if len(spec.key) == 1:
        assert schema.columns[spec.key[0]].unique is True
        assert not schema.unique
    else:
        assert list(schema.unique) == list(spec.key)


@pytest.mark.parametrize("name", list(MART_MODELS))
def test_mart_model_dtypes_nullability_and_keys(name):
    schema = MART_MODELS[name].to_schema()
    assert _dtypes(MART_MODELS[name]) == list(MART_DTYPES[name].items())
    nullable = {n for n, c in schema.columns.items() if c.nullable}
    assert nullable == MART_NULLABLE[name]
    key = MART_KEYS[name]
    if len(key) == 1:
        assert schema.columns[key[0]].unique is True
    else:
        assert list(schema.unique) == key


def test_quarantine_model_factory():
    assert quarantine_model("submissions") is quarantine_model("submissions")
    assert set(quarantine_models()) == set(TABLES)
    schema = quarantine_model("clinic_requests").to_schema()
    # clinic_requests has its own `reason` column next to the quarantine `_reason`
    assert list(schema.columns)[-4:] == ["requested_at", "_reason", "_source_file", "_source_row"]
    assert "reason" in schema.columns
    assert set(_check_stats(schema.columns["_reason"])["allowed_values"]) == set(QUARANTINE_REASONS)
    with pytest.raises(KeyError):
        quarantine_model("no_such_table")


# --------------------------------------------------------------------------------------------
# Accepting valid frames
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("table", TABLES)
def test_raw_model_accepts_valid_frame(table):
    frame = _raw(table, RAW_ROWS[table])
    out = validate(RAW_MODELS[table], frame)
    assert isinstance(out, pl.DataFrame)
    assert out.equals(frame)


@pytest.mark.parametrize("name", list(MART_MODELS))
def test_mart_model_accepts_valid_frame(name):
    frame = _mart(name, MART_ROWS[name])
    assert validate(MART_MODELS[name], frame).equals(frame)


@pytest.mark.parametrize("table", TABLES)
def test_quarantine_model_accepts_valid_frame(table):
    frame = _quarantine(table)
    assert validate(quarantine_model(table), frame).equals(frame)


def test_empty_frames_with_the_right_schema_are_valid():
    for table in TABLES:
        validate(RAW_MODELS[table], pl.DataFrame(schema=raw_schema(SPECS[table])))
        validate(quarantine_model(table), pl.DataFrame(schema=quarantine_schema(SPECS[table])))
    for name, dtypes in MART_DTYPES.items():
        validate(MART_MODELS[name], pl.DataFrame(schema=dtypes))


def test_build_marts_output_is_valid():
    raw = {t: validate(RAW_MODELS[t], _raw(t, rows)) for t, rows in RAW_ROWS.items()}
    built = marts.build_marts(raw, AS_OF)
    assert set(built) >= {"session_progress", "lecture_progress", "risk_log", "clinic_links"}
    for name in ("session_progress", "lecture_progress", "risk_log", "clinic_links"):
        validate(MART_MODELS[name], built[name])
    # the fixture is not trivial: 3 sessions x 2 enrollments of lecture 1, and some risk
    assert built["session_progress"].height == 6
    assert built["lecture_progress"].height == 3
    assert built["risk_log"].height >= 1
    assert built["clinic_links"].height >= 1


# --------------------------------------------------------------------------------------------
# Rejecting bad frames
# --------------------------------------------------------------------------------------------

RAW_BREAKS = [
    ("lectures", "lecture_id", None, "not_nullable"),
    ("lectures", "_source_row", 0, "greater_than_or_equal_to"),
    ("sessions", "session_order", 0, "greater_than_or_equal_to"),
    ("policies", "video_required_rate", 101, "less_than_or_equal_to"),
    ("policies", "homework_pass_type", "submit", "isin"),
    ("policies", "exam_pass_score", float("nan"), "finite"),
    ("policies", "homework_pass_score", -0.5, "greater_than_or_equal_to"),
    ("enrollments", "status", "active", "isin"),
    ("enrollments", "student_id", None, "not_nullable"),
    ("attendance", "attendance_type", "OFFLINE", "isin"),
    ("attendance", "recorded_at", None, "not_nullable"),
    ("video_progress", "progress_rate", -1, "greater_than_or_equal_to"),
    ("submissions", "kind", "quiz", "isin"),
    ("submissions", "score", float("inf"), "finite"),
    ("clinic_requests", "reason", "AUTO", "isin"),
    ("clinic_requests", "_source_file", None, "not_nullable"),
]


@pytest.mark.parametrize(("table", "column", "value", "check"), RAW_BREAKS)
def test_raw_model_rejects_bad_value(table, column, value, check):
    frame = _set(_raw(table, RAW_ROWS[table]), column, value)
    _rejects(RAW_MODELS[table], frame, check)


@pytest.mark.parametrize("table", TABLES)
def test_raw_model_rejects_duplicate_natural_key(table):
    frame = _raw(table, RAW_ROWS[table])
    key = list(SPECS[table].key)
    duplicated = _duplicate(frame, key)
    check = "field_uniqueness" if len(key) == 1 else "multiple_fields_uniqueness"
    _rejects(RAW_MODELS[table], duplicated, check)


@pytest.mark.parametrize("table", TABLES)
def test_raw_model_rejects_wrong_dtype_order_and_extra_columns(table):
    model, frame = RAW_MODELS[table], _raw(table, RAW_ROWS[table])
    first = frame.columns[0]
    _rejects(model, frame.with_columns(pl.col(first).cast(pl.Int32)), "dtype")
    _rejects(model, frame.select(reversed(frame.columns)), "column_ordered")
    _rejects(model, frame.with_columns(pl.lit(1).alias("extra")), "column_in_schema")
    _rejects(model, frame.drop("_source_row"), "column_in_dataframe")


def test_timestamps_must_be_microseconds():
    frame = _raw("attendance", RAW_ROWS["attendance"])
    for unit in ("ns", "ms"):
        _rejects(
            RAW_MODELS["attendance"],
            frame.with_columns(pl.col("recorded_at").cast(pl.Datetime(unit))),
            "dtype",
        )
    zoned = frame.with_columns(pl.col("recorded_at").dt.replace_time_zone("Asia/Seoul"))
    _rejects(RAW_MODELS["attendance"], zoned, "dtype")


MART_BREAKS = [
    ("session_progress", "attendance_type", "hybrid", 0, "isin"),
    ("session_progress", "video_progress_rate", 101, 0, "less_than_or_equal_to"),
    ("session_progress", "held", None, 0, "not_nullable"),
    ("session_progress", "exam_score", -1.0, 1, "greater_than_or_equal_to"),
    ("session_progress", "exam_score", float("nan"), 1, "finite"),
    ("session_progress", "completed", True, 1, "completed_is_all_three_passed"),
    ("session_progress", "completed_at", T3, 1, "completed_at_only_when_completed"),
    ("session_progress", "exam_passed", False, 0, "not_applicable_passes"),
    ("session_progress", "video_completed", False, 0, "offline_completes_video"),
    ("session_progress", "calculated_at", None, 0, "not_nullable"),
    ("lecture_progress", "risk_level", "HIGH", 0, "isin"),
    ("lecture_progress", "risk_rule", "CONSECUTIVE_LATE", 1, "isin"),
    ("lecture_progress", "risk_rule", None, 1, "risk_rule_null_iff_normal"),
    ("lecture_progress", "risk_rule", "CONSECUTIVE_INCOMPLETE", 0, "risk_rule_null_iff_normal"),
    ("lecture_progress", "status", None, 0, "not_nullable"),
    ("lecture_progress", "completion_rate", 1.5, 0, "less_than_or_equal_to"),
    ("lecture_progress", "completion_rate", 0.25, 0, "completion_rate_is_completed_share"),
    ("lecture_progress", "failed_sessions", -1, 0, "greater_than_or_equal_to"),
    ("lecture_progress", "held_sessions", 3, 0, "session_counts_consistent"),
    ("lecture_progress", "last_session_id", None, 0, "last_session_iff_held"),
    ("lecture_progress", "avg_exam_score", float("inf"), 0, "finite"),
    ("risk_log", "risk_level", "NORMAL", 0, "isin"),
    ("risk_log", "rule", None, 0, "not_nullable"),
    ("risk_log", "streak", 0, 0, "greater_than_or_equal_to"),
    ("risk_log", "reason", "연속 3차시 미완료", 1, "reason_matches_rule_and_streak"),
    ("clinic_links", "reason", "MANUAL", 0, "isin"),
    ("clinic_links", "is_auto", True, 2, "is_auto_matches_reason"),
    ("clinic_links", "approved", None, 0, "not_nullable"),
    ("dim_labels", "label_en", None, 0, "not_nullable"),
    ("dim_labels", "code", "", 0, "str_length"),
]


@pytest.mark.parametrize(("name", "column", "value", "row", "check"), MART_BREAKS)
def test_mart_model_rejects_bad_value(name, column, value, row, check):
    frame = _set(_mart(name, MART_ROWS[name]), column, value, row)
    _rejects(MART_MODELS[name], frame, check)


def test_inactive_enrollment_with_risk_is_rejected():
    frame = _mart("lecture_progress", MART_ROWS["lecture_progress"])
    frame = _set(frame, "risk_level", "WARNING", 2)
    frame = _set(frame, "risk_rule", "CONSECUTIVE_INCOMPLETE", 2)
    _rejects(MART_MODELS["lecture_progress"], frame, "inactive_is_normal")


@pytest.mark.parametrize("name", list(MART_MODELS))
def test_mart_model_rejects_duplicate_key(name):
    frame = _mart(name, MART_ROWS[name])
    key = MART_KEYS[name]
    check = "field_uniqueness" if len(key) == 1 else "multiple_fields_uniqueness"
    _rejects(MART_MODELS[name], _duplicate(frame, key), check)


@pytest.mark.parametrize("name", list(MART_MODELS))
def test_mart_model_rejects_wrong_dtype_and_missing_column(name):
    frame = _mart(name, MART_ROWS[name])
    last = frame.columns[-1]
    wrong = pl.Categorical if frame.schema[last] == pl.String else pl.String
    _rejects(MART_MODELS[name], frame.with_columns(pl.col(last).cast(wrong)), "dtype")
    _rejects(MART_MODELS[name], frame.drop(last), "column_in_dataframe")


@pytest.mark.parametrize("table", TABLES)
def test_quarantine_model_rejects_bad_rows(table):
    model, frame = quarantine_model(table), _quarantine(table)
    _rejects(model, _set(frame, "_reason", "bad_row"), "isin")
    _rejects(model, _set(frame, "_reason", None), "not_nullable")
    _rejects(model, _set(frame, "_source_row", 0), "greater_than_or_equal_to")
    first = SPECS[table].column_names[0]
    _rejects(model, frame.with_columns(pl.lit(1).alias(first)), "dtype")


def test_validate_collects_every_failure():
    frame = _mart("lecture_progress", MART_ROWS["lecture_progress"])
    frame = _set(frame, "risk_level", "HIGH", 0)
    frame = _set(frame, "completion_rate", -0.1, 1)
    cases = _failures(MART_MODELS["lecture_progress"], frame)
    assert {"risk_level", "completion_rate"} <= set(cases["column"].drop_nulls().to_list())
