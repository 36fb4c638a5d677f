"""Hand-computed cases that check the reference implementation itself (tests/reference.py)."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.reference import parse_timestamp, reference_ingest, reference_marts

# --------------------------------------------------------------------------------------------
# parse_timestamp
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-03-01", datetime(2024, 3, 1)),
        ("2024-03-01T10:05", datetime(2024, 3, 1, 10, 5)),
        ("2024-03-01 10:05:07", datetime(2024, 3, 1, 10, 5, 7)),
        ("2024-03-01 10:05:07.5", datetime(2024, 3, 1, 10, 5, 7, 500000)),
        ("2024-03-01T10:05:07.123456+09:00", datetime(2024, 3, 1, 10, 5, 7, 123456)),
        ("2024-03-01T10:00Z", datetime(2024, 3, 1, 19, 0)),
        ("2024-03-01T10:00-0130", datetime(2024, 3, 1, 20, 30)),
        ("2024-03-01T23:00+00", datetime(2024, 3, 2, 8, 0)),
        (" \t2024-03-01\r\n", datetime(2024, 3, 1)),
        # invalid forms
        ("2024-03-01Z", None),  # a bare date takes no offset
        ("2024-03-01T24:00", None),
        ("2024-03-01T10:60", None),
        ("2024-02-30", None),
        ("2024-3-1", None),
        ("2024-03-01t10:00", None),
        ("2024-03-01T10:00:00.1234567", None),
        ("2024-03-01T10", None),
        ("0000-01-01", None),
        ("9999-12-31T23:00-05:00", None),  # converts past year 9999
        ("", None),
        ("yesterday", None),
    ],
)
def test_parse_timestamp(text, expected):
    assert parse_timestamp(text) == expected


def test_parse_timestamp_other_zone():
    assert parse_timestamp("2024-07-01T00:00Z", tz="Europe/Paris") == datetime(2024, 7, 1, 2, 0)
    assert parse_timestamp("2024-07-01T00:00", tz="Europe/Paris") == datetime(2024, 7, 1, 0, 0)


# --------------------------------------------------------------------------------------------
# reference_ingest
# --------------------------------------------------------------------------------------------


def _write(path: Path, text: str, encoding: str = "utf-8") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))


@pytest.fixture
def landing(tmp_path: Path) -> Path:
    root = tmp_path / "landing"
    # lectures: CP949 file with padded header names; lecture 2 conflicts across files.
    _write(
        root / "lectures.csv",
        " lecture_id ,academy_id,title\r\n1,7,수학\r\n2,7,영어\r\n3,8,과학\r\n",
        encoding="cp949",
    )
    _write(
        root / "lectures" / "2024" / "re.CSV",
        "\ufefflecture_id,academy_id,title\n1,7,수학\n2,9,\n",
    )
    _write(root / "lectures" / ".hidden.csv", "lecture_id,academy_id\n50,1\n")
    _write(root / "lectures" / ".git" / "x.csv", "lecture_id,academy_id\n51,1\n")
    _write(root / "lectures" / "notes.txt", "lecture_id,academy_id\n52,1\n")
    (root / "lectures" / "nul.csv").write_bytes(b"lecture_id,academy_id\n53,\x001\n")
    _write(root / "lectures" / "twice.csv", "lecture_id,academy_id,lecture_id \n54,1,54\n")
    _write(root / "lectures" / "empty.csv", "")
    _write(root / "lectures" / "header_only.csv", "lecture_id,academy_id\n")
    # sessions: quoted newline, blank line, short record, every per-row reason.
    _write(
        root / "sessions.csv",
        "session_id,lecture_id,session_order,title,session_date,extra\n"
        '10,1,1,"intro, part\n1",2024-03-01,x\n'
        "\n"
        "11,1,2\n"
        "12,1,0,,,\n"
        "13,,3,,,\n"
        "14,x,3,,,\n"
        "20,2,1,,,\n"
        "30,3,1,,2024-02-30,\n"
        "31,3,1,,2024-03-05,\n",
    )
    _write(
        root / "enrollments.csv",
        "enrollment_id,lecture_id,student_id,status,enrolled_at\n"
        "100,1,500,,2024-02-01T00:00:00Z\n"
        "101,1,501,active,\n"
        "102,3,502,DROPPED,\n"
        "103,4,503,,\n",
    )
    _write(
        root / "attendance.csv",
        "enrollment_id,session_id,attendance_type,recorded_at\n"
        "100,10,online,2024-03-01 10:00\n"
        "100,10, online ,2024-03-01T01:00Z\n"  # identical after parsing: collapses
        "100,31,offline,2024-03-05 10:00\n"  # lecture_mismatch
        "999,10,online,2024-03-01 11:00\n"  # unknown_reference (collapsed pair -> one row)
        "999,10,online,2024-03-01 11:00\n"
        "100,11,offline,2024-03-02 10:00\n"  # conflict: both copies quarantined
        "100,11,online,2024-03-02 10:00\n",
    )
    # video_progress as parquet: native ints, text rates, zone-aware nanosecond timestamps.
    table = pa.table(
        {
            "recorded_at": pa.array(
                [
                    1709254800_123456789,  # 2024-03-01T01:00:00.123456789Z
                    1709254800_000000000,
                    None,
                ],
                type=pa.timestamp("ns", tz="UTC"),
            ),
            "enrollment_id": pa.array([100, 100, 100], type=pa.int32()),
            "session_id": pa.array([10, 10, 10], type=pa.int64()),
            "progress_rate": pa.array([" 95 ", "101", "50"], type=pa.string()),
        }
    )
    pq.write_table(table, root / "video_progress.parquet")
    (root / "submissions.parquet").write_bytes(b"not a parquet file")
    _write(
        root / "clinic_requests.csv",  # lacks the required requested_at column
        "enrollment_id,session_id,reason\n100,10,MANUAL_REQUEST\n",
    )
    return root


def test_ingest_refused_files(landing: Path):
    _, _, refused = reference_ingest(landing)
    assert sorted(path for path, _ in refused) == [
        "lectures/empty.csv",
        "lectures/nul.csv",
        "lectures/twice.csv",
        "submissions.parquet",
    ]


def test_ingest_lectures(landing: Path):
    raw, quarantine, _ = reference_ingest(landing)
    assert [(r["lecture_id"], r["academy_id"], r["title"]) for r in raw["lectures"]] == [
        (1, 7, "수학"),  # CP949 decoded; the identical re-delivery collapsed
        (3, 8, "과학"),
    ]
    assert raw["lectures"][0]["_source_file"] == "lectures.csv"
    assert raw["lectures"][0]["_source_row"] == 1
    assert [
        (q["_reason"], q["_source_file"], q["_source_row"]) for q in quarantine["lectures"]
    ] == [
        ("duplicate_conflict", "lectures.csv", 2),
        ("duplicate_conflict", "lectures/2024/re.CSV", 2),
    ]
    # An empty field is None in quarantine.
    assert quarantine["lectures"][1]["title"] is None
    assert quarantine["lectures"][1]["academy_id"] == "9"


def test_ingest_sessions(landing: Path):
    raw, quarantine, _ = reference_ingest(landing)
    assert [(r["session_id"], r["_source_row"]) for r in raw["sessions"]] == [
        (10, 1),
        (11, 2),  # blank line is not a record
        (31, 8),
    ]
    first = raw["sessions"][0]
    assert first["title"] == "intro, part\n1"
    assert first["session_date"] == date(2024, 3, 1)
    assert raw["sessions"][1]["title"] is None  # short record: missing fields are null
    reasons = {q["session_id"]: q["_reason"] for q in quarantine["sessions"]}
    assert reasons == {
        "12": "out_of_range",
        "13": "missing_value",
        "14": "invalid_type",
        "20": "unknown_reference",  # lecture 2 was quarantined as a conflict
        "30": "invalid_type",
    }
    assert set(first) == {
        "session_id",
        "lecture_id",
        "session_order",
        "title",
        "session_date",
        "_source_file",
        "_source_row",
    }


def test_ingest_enrollments_and_events(landing: Path):
    raw, quarantine, _ = reference_ingest(landing)
    enrollments = {r["enrollment_id"]: r for r in raw["enrollments"]}
    assert set(enrollments) == {100, 102}
    assert enrollments[100]["status"] is None  # no default applied at ingest
    assert enrollments[100]["enrolled_at"] == datetime(2024, 2, 1, 9, 0)
    assert {q["enrollment_id"]: q["_reason"] for q in quarantine["enrollments"]} == {
        "101": "invalid_enum",
        "103": "unknown_reference",
    }

    assert [(r["_source_row"], r["attendance_type"]) for r in raw["attendance"]] == [(1, "online")]
    assert [(q["_source_row"], q["_reason"]) for q in quarantine["attendance"]] == [
        (3, "lecture_mismatch"),
        (4, "unknown_reference"),
        (6, "duplicate_conflict"),
        (7, "duplicate_conflict"),
    ]

    assert len(raw["video_progress"]) == 1
    video = raw["video_progress"][0]
    assert video["progress_rate"] == 95
    assert video["recorded_at"] == datetime(2024, 3, 1, 10, 0, 0, 123456)  # truncated, in KST
    assert [(q["_source_row"], q["_reason"]) for q in quarantine["video_progress"]] == [
        (2, "out_of_range"),
        (3, "missing_value"),
    ]
    assert quarantine["video_progress"][0]["progress_rate"] == "101"

    assert raw["submissions"] == [] and quarantine["submissions"] == []
    assert [(q["_reason"], q["requested_at"]) for q in quarantine["clinic_requests"]] == [
        ("missing_value", None)
    ]


def test_ingest_raw_text_kept_untrimmed(tmp_path: Path):
    _write(tmp_path / "lectures.csv", "lecture_id,academy_id,title\n 1 ,x, t \n2,\t,\n")
    raw, quarantine, refused = reference_ingest(tmp_path)
    assert raw["lectures"] == [] and refused == []
    assert quarantine["lectures"][0] == {
        "lecture_id": " 1 ",
        "academy_id": "x",
        "title": " t ",
        "_reason": "invalid_type",
        "_source_file": "lectures.csv",
        "_source_row": 1,
    }
    assert quarantine["lectures"][1]["_reason"] == "missing_value"
    assert quarantine["lectures"][1]["academy_id"] == "\t"
    assert quarantine["lectures"][1]["title"] is None


# --------------------------------------------------------------------------------------------
# reference_marts
# --------------------------------------------------------------------------------------------

AS_OF = datetime(2024, 4, 1, 12, 0)


def dt(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _session(session_id, order, day):
    return {
        "session_id": session_id,
        "lecture_id": 1,
        "session_order": order,
        "title": None,
        "session_date": day,
    }


def _sub(submission_id, enrollment_id, session_id, kind, score, approved, when):
    return {
        "submission_id": submission_id,
        "enrollment_id": enrollment_id,
        "session_id": session_id,
        "kind": kind,
        "score": score,
        "teacher_approved": approved,
        "submitted_at": dt(when),
    }


def _att(enrollment_id, session_id, kind, when):
    return {
        "enrollment_id": enrollment_id,
        "session_id": session_id,
        "attendance_type": kind,
        "recorded_at": dt(when),
    }


def _vid(enrollment_id, session_id, rate, when):
    return {
        "enrollment_id": enrollment_id,
        "session_id": session_id,
        "progress_rate": rate,
        "recorded_at": dt(when),
    }


def _req(enrollment_id, session_id, reason, approved, memo, when):
    return {
        "enrollment_id": enrollment_id,
        "session_id": session_id,
        "reason": reason,
        "approved": approved,
        "memo": memo,
        "requested_at": dt(when),
    }


@pytest.fixture
def raw() -> dict[str, list[dict]]:
    return {
        "lectures": [
            {"lecture_id": 1, "academy_id": 7, "title": "수학"},
            {"lecture_id": 2, "academy_id": 7, "title": "no sessions"},
        ],
        "sessions": [
            _session(3, 3, date(2024, 3, 15)),
            _session(1, 1, date(2024, 3, 1)),
            _session(5, 5, date(2024, 12, 1)),  # not held at AS_OF
            _session(2, 2, date(2024, 3, 8)),
            _session(4, 4, None),  # null date: held
        ],
        "policies": [
            {
                "lecture_id": 1,
                "video_required_rate": 80,
                "exam_start_session_order": 1,
                "exam_end_session_order": None,  # -> 9999
                "exam_pass_score": None,  # -> 60.0
                "homework_start_session_order": None,  # -> 2
                "homework_end_session_order": 9999,
                "homework_pass_type": None,  # -> TEACHER_APPROVAL
                "homework_pass_score": None,
            }
        ],
        "enrollments": [
            {"enrollment_id": 100, "lecture_id": 1, "student_id": 500, "status": None},
            {"enrollment_id": 101, "lecture_id": 1, "student_id": 501, "status": "ACTIVE"},
            {"enrollment_id": 102, "lecture_id": 1, "student_id": 502, "status": "DROPPED"},
            {"enrollment_id": 200, "lecture_id": 2, "student_id": 500, "status": "ACTIVE"},
        ],
        "attendance": [
            _att(100, 1, "online", "2024-03-01T10:00"),
            _att(100, 3, "offline", "2024-03-15T09:00"),
            _att(101, 2, "online", "2024-03-08T12:00"),
            _att(101, 2, "offline", "2024-03-08T13:00"),  # latest: offline
        ],
        "video_progress": [
            _vid(100, 1, 50, "2024-03-01T10:00"),
            _vid(100, 2, 90, "2024-03-08T10:00"),
            _vid(100, 4, 85, "2024-03-22T10:00"),
            _vid(100, 4, 100, "2024-03-22T10:30"),
            _vid(100, 5, 100, "2024-12-01T10:00"),  # after AS_OF: ignored
            _vid(101, 1, 80, "2024-03-01T10:00"),
            _vid(101, 1, 95, "2024-03-01T09:00"),  # earliest reaching 80
        ],
        "submissions": [
            _sub(20, 100, 2, "exam", 30.0, None, "2024-03-08T11:00"),
            _sub(30, 100, 3, "exam", 20.0, None, "2024-03-15T10:00"),
            _sub(31, 100, 3, "exam", None, None, "2024-03-15T12:00"),  # no score: ignored
            _sub(32, 100, 3, "homework", None, True, "2024-03-15T11:00"),
            _sub(41, 100, 4, "exam", 90.0, None, "2024-03-22T09:00"),
            _sub(40, 100, 4, "exam", 10.0, None, "2024-03-22T11:00"),  # latest: counted
            _sub(42, 100, 4, "homework", 100.0, None, "2024-03-22T11:00"),  # not approved
            _sub(10, 101, 1, "exam", 75.0, None, "2024-03-01T12:00"),
            _sub(21, 101, 2, "exam", 60.0, False, "2024-03-08T10:00"),  # == pass score
            _sub(22, 101, 2, "homework", None, True, "2024-03-08T08:00"),
            _sub(23, 101, 2, "homework", None, True, "2024-03-08T07:00"),  # earliest approved
        ],
        "clinic_requests": [
            _req(100, 1, "AUTO_FAILED", None, "a", "2024-03-02T10:00"),
            _req(100, 1, "AUTO_FAILED", True, "b", "2024-03-03T10:00"),  # latest
            _req(100, 2, "AUTO_FAILED", True, "future", "2024-05-01T10:00"),  # after AS_OF
            _req(101, 1, "AUTO_RISK", True, "no such link", "2024-03-05T10:00"),
            _req(102, 1, "MANUAL_REQUEST", True, "m", "2024-03-05T10:00"),
            _req(100, 3, "TEACHER_RECOMMEND", None, None, "2024-03-20T10:00"),
        ],
    }


def _by_key(rows, *names):
    return {tuple(row[n] for n in names) if len(names) > 1 else row[names[0]]: row for row in rows}


def test_session_progress(raw):
    marts = reference_marts(raw, AS_OF)
    rows = marts["session_progress"]
    assert len(rows) == 3 * 5  # every enrollment of lecture 1 x its 5 sessions
    assert [r["session_id"] for r in rows if r["enrollment_id"] == 100] == [1, 2, 3, 4, 5]
    sp = _by_key(rows, "enrollment_id", "session_id")

    s = sp[(100, 1)]
    assert (s["attendance_type"], s["video_progress_rate"], s["video_completed"]) == (
        "online",
        50,
        False,
    )
    assert (s["exam_applicable"], s["exam_score"], s["exam_passed"]) == (True, None, False)
    assert (s["homework_applicable"], s["homework_passed"]) == (False, True)
    assert s["completed"] is False and s["completed_at"] is None
    assert (s["academy_id"], s["student_id"], s["held"]) == (7, 500, True)
    assert s["calculated_at"] == AS_OF

    s = sp[(100, 3)]
    assert s["video_completed"] is True  # offline
    assert s["exam_score"] == 20.0 and s["homework_passed"] is True and s["completed"] is False

    s = sp[(100, 4)]
    assert s["session_date"] is None and s["held"] is True
    assert s["exam_score"] == 10.0
    assert s["homework_submitted"] is True and s["homework_passed"] is False

    s = sp[(100, 5)]
    assert s["held"] is False and s["video_progress_rate"] == 0

    s = sp[(101, 1)]
    assert s["completed"] is True
    assert s["completed_at"] == dt("2024-03-01T12:00")  # max(video 09:00, exam 12:00)

    s = sp[(101, 2)]
    assert s["attendance_type"] == "offline" and s["exam_passed"] is True
    assert s["completed"] is True
    # max(offline attendance 13:00, exam 10:00, earliest approved homework 07:00)
    assert s["completed_at"] == dt("2024-03-08T13:00")


def test_lecture_progress(raw):
    marts = reference_marts(raw, AS_OF)
    lp = _by_key(marts["lecture_progress"], "enrollment_id")
    assert list(lp) == [100, 101, 102, 200]

    e = lp[100]
    assert e["status"] == "ACTIVE"
    assert (e["total_sessions"], e["held_sessions"], e["completed_sessions"]) == (5, 4, 0)
    assert (e["failed_sessions"], e["completion_rate"]) == (4, 0.0)
    assert (e["consecutive_failed_sessions"], e["consecutive_low_scores"]) == (4, 3)
    assert e["avg_exam_score"] == pytest.approx(20.0)
    assert (e["risk_level"], e["risk_rule"]) == ("DANGER", "CONSECUTIVE_LOW_SCORE")
    assert e["last_session_id"] == 4
    assert e["last_activity_at"] == dt("2024-03-22T11:00")

    e = lp[101]
    assert (e["completed_sessions"], e["failed_sessions"], e["completion_rate"]) == (2, 2, 0.4)
    assert (e["consecutive_failed_sessions"], e["consecutive_low_scores"]) == (2, 0)
    assert e["avg_exam_score"] == pytest.approx(67.5)
    assert (e["risk_level"], e["risk_rule"]) == ("WARNING", "CONSECUTIVE_INCOMPLETE")
    assert e["last_activity_at"] == dt("2024-03-08T13:00")

    e = lp[102]
    assert e["status"] == "DROPPED" and e["consecutive_failed_sessions"] == 4
    assert (e["risk_level"], e["risk_rule"]) == ("NORMAL", None)
    assert e["last_activity_at"] is None

    e = lp[200]
    assert (e["total_sessions"], e["held_sessions"], e["completed_sessions"]) == (0, 0, 0)
    assert (e["completion_rate"], e["avg_exam_score"], e["last_session_id"]) == (0.0, None, None)
    assert (e["risk_level"], e["risk_rule"]) == ("NORMAL", None)


def test_risk_log(raw):
    marts = reference_marts(raw, AS_OF)
    log = [
        (r["enrollment_id"], r["session_id"], r["risk_level"], r["rule"], r["streak"], r["reason"])
        for r in marts["risk_log"]
    ]
    assert log == [
        (100, 2, "WARNING", "CONSECUTIVE_INCOMPLETE", 2, "연속 2차시 미완료"),
        (100, 3, "DANGER", "CONSECUTIVE_INCOMPLETE", 3, "연속 3차시 미완료"),
        (100, 4, "DANGER", "CONSECUTIVE_LOW_SCORE", 3, "연속 3회 저점수"),
        (101, 4, "WARNING", "CONSECUTIVE_INCOMPLETE", 2, "연속 2차시 미완료"),
    ]
    assert marts["risk_log"][0]["session_order"] == 2
    assert marts["risk_log"][0]["session_date"] == date(2024, 3, 8)


def test_risk_thresholds_are_configuration(raw):
    marts = reference_marts(raw, AS_OF, warning_streak=3, danger_streak=4)
    log = [
        (r["enrollment_id"], r["session_id"], r["risk_level"], r["rule"], r["streak"])
        for r in marts["risk_log"]
    ]
    assert log == [
        (100, 3, "WARNING", "CONSECUTIVE_INCOMPLETE", 3),
        (100, 4, "DANGER", "CONSECUTIVE_INCOMPLETE", 4),
    ]
    lp = _by_key(marts["lecture_progress"], "enrollment_id")
    assert lp[101]["risk_level"] == "NORMAL" and lp[101]["risk_rule"] is None


def test_clinic_links(raw):
    marts = reference_marts(raw, AS_OF)
    links = {
        (r["enrollment_id"], r["session_id"], r["reason"]): (
            r["is_auto"],
            r["approved"],
            r["memo"],
            r["requested_at"],
        )
        for r in marts["clinic_links"]
    }
    assert len(links) == len(marts["clinic_links"])
    assert links == {
        (100, 1, "AUTO_FAILED"): (True, True, "b", dt("2024-03-03T10:00")),
        (100, 2, "AUTO_FAILED"): (True, False, None, None),
        (100, 3, "AUTO_FAILED"): (True, False, None, None),
        (100, 4, "AUTO_FAILED"): (True, False, None, None),
        (100, 4, "AUTO_RISK"): (True, False, None, None),
        (100, 3, "TEACHER_RECOMMEND"): (False, False, None, dt("2024-03-20T10:00")),
        (101, 3, "AUTO_FAILED"): (True, False, None, None),
        (101, 4, "AUTO_FAILED"): (True, False, None, None),
        (101, 4, "AUTO_RISK"): (True, False, None, None),
        (102, 1, "MANUAL_REQUEST"): (False, True, "m", dt("2024-03-05T10:00")),
    }
    first = marts["clinic_links"][0]
    assert set(first) == {
        "enrollment_id",
        "session_id",
        "lecture_id",
        "academy_id",
        "student_id",
        "session_order",
        "reason",
        "is_auto",
        "approved",
        "memo",
        "requested_at",
    }


def test_homework_score_policy_and_missing_evidence():
    raw = {
        "lectures": [{"lecture_id": 3, "academy_id": 1, "title": None}],
        "sessions": [
            {
                "session_id": 31,
                "lecture_id": 3,
                "session_order": 1,
                "title": None,
                "session_date": None,
            },
        ],
        "policies": [
            {
                "lecture_id": 3,
                "video_required_rate": 0,
                "exam_start_session_order": 0,
                "exam_end_session_order": 0,  # no exam for order 1
                "exam_pass_score": None,
                "homework_start_session_order": 1,
                "homework_end_session_order": 1,
                "homework_pass_type": "SCORE",
                "homework_pass_score": 70.0,
            }
        ],
        "enrollments": [{"enrollment_id": 300, "lecture_id": 3, "student_id": 9, "status": None}],
        "attendance": [],
        "video_progress": [],
        "submissions": [
            _sub(1, 300, 31, "homework", 60.0, True, "2024-03-01T10:00"),
            _sub(2, 300, 31, "homework", 80.0, False, "2024-03-02T10:00"),
            _sub(3, 300, 31, "homework", 90.0, False, "2024-03-03T10:00"),
        ],
        "clinic_requests": [],
    }
    (row,) = reference_marts(raw, AS_OF)["session_progress"]
    assert row["exam_applicable"] is False and row["exam_passed"] is True
    assert row["video_completed"] is True  # 0 >= 0, but no video row: no video evidence
    assert row["homework_passed"] is True
    assert row["completed_at"] == dt("2024-03-02T10:00")  # earliest score >= 70

    raw["policies"][0]["homework_pass_score"] = None  # SCORE without a score: approval
    (row,) = reference_marts(raw, AS_OF)["session_progress"]
    assert row["completed_at"] == dt("2024-03-01T10:00")

    raw["submissions"] = []
    (row,) = reference_marts(raw, AS_OF)["session_progress"]
    assert row["homework_submitted"] is False and row["completed"] is False
    assert row["completed_at"] is None


def test_redelivery_without_an_optional_column_is_a_conflict(tmp_path: Path):
    # A missing optional column is all-null, so the parsed rows differ in `title`.
    _write(tmp_path / "lectures.csv", "lecture_id,academy_id,title\n1,7,수학\n")
    _write(tmp_path / "lectures" / "d1.csv", "academy_id,lecture_id\n7,1\n")
    raw, quarantine, _ = reference_ingest(tmp_path)
    assert raw["lectures"] == []
    assert [(q["_source_file"], q["_reason"]) for q in quarantine["lectures"]] == [
        ("lectures.csv", "duplicate_conflict"),
        ("lectures/d1.csv", "duplicate_conflict"),
    ]
