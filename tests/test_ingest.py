"""Contract §1-§2 on tiny hand-written extracts: parsing, quarantine reasons and their order."""

from __future__ import annotations

from datetime import date, datetime

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.core.extracts import find_files
from pipelines.core.ingest import ingest_all
from tests.conftest import BASE, HEADERS, write_landing


def reasons(result, table: str) -> list[tuple[int, str]]:
    q = result[table].quarantine
    return list(zip(q["_source_row"].to_list(), q["_reason"].to_list(), strict=True))


def test_each_reason_and_first_reason_wins(ingest):
    result = ingest(
        {
            **BASE,
            "submissions": [
                "1,1000,101,exam,70,,2026-03-02 10:00",  # ok
                ",1000,101,exam,abc,,2026-03-02 10:00",  # missing id beats invalid score
                "3,1000,101,EXAM,abc,,2026-03-02 10:00",  # invalid score beats bad enum
                "4,1000,101,EXAM,-5,,2026-03-02 10:00",  # bad enum beats out of range
                "5,1000,101,exam,-5,,2026-03-02 10:00",  # out of range
                "6,1000,101,exam,NaN,,2026-03-02 10:00",  # NaN is invalid_type
                "7,1000,101,exam,70,yes,2026-03-02 10:00",  # bool must be true/false/1/0
                "8,1000,101,exam,70,,2026/03/02",  # timestamp form
                "9,9999,101,exam,70,,2026-03-02 10:00",  # unknown enrollment
            ],
        }
    )
    assert reasons(result, "submissions") == [
        (2, "missing_value"),
        (3, "invalid_type"),
        (4, "invalid_enum"),
        (5, "out_of_range"),
        (6, "invalid_type"),
        (7, "invalid_type"),
        (8, "invalid_type"),
        (9, "unknown_reference"),
    ]
    assert result["submissions"].raw["submission_id"].to_list() == [1]


def test_values_are_trimmed_and_empty_is_null(ingest):
    result = ingest(
        {**BASE, "submissions": [' 1 ,\t1000,101, exam ,  ,TRUE ,"2026-03-02 10:00\r"']}
    )
    raw = result["submissions"].raw.row(0, named=True)
    assert raw["submission_id"] == 1 and raw["kind"] == "exam"
    assert raw["score"] is None and raw["teacher_approved"] is True
    assert raw["submitted_at"] == datetime(2026, 3, 2, 10, 0)
    # quarantine keeps the value as delivered (untrimmed)
    bad = ingest({**BASE, "submissions": [" 1 ,1000,101, Exam ,,,2026-03-02"]})
    q = bad["submissions"].quarantine.row(0, named=True)
    assert q["kind"] == " Exam " and q["_reason"] == "invalid_enum"


def test_enum_is_case_sensitive(ingest):
    result = ingest(
        {
            **BASE,
            "attendance": ["1000,101,Online,2026-03-02 10:00", "1000,101,online,2026-03-02 11:00"],
        }
    )
    assert reasons(result, "attendance") == [(1, "invalid_enum")]


def test_timestamps_offsets_and_zone(ingest):
    result = ingest(
        {
            **BASE,
            "video_progress": [
                "1000,101,10,2026-03-02T01:00:00Z",  # 10:00 Seoul
                "1000,101,20,2026-03-02T10:30:00+09:00",
                "1000,101,30,2026-03-02 02:00+0000",  # 11:00
                "1000,101,40,2026-03-02T12:00:00.5-00",  # 21:00:00.5
                "1000,101,50,2026-03-02",  # midnight
                "1000,101,60,2026-03-02Z",  # a bare date takes no offset
                "1000,101,70,2026-03-02 24:00",  # hour out of range
                "1000,101,80,9999-12-31T20:00:00-05:00",  # leaves year 9999 after conversion
                "1000,101,90,2026-03-02T10:00:00.1234567",  # 7 fraction digits
            ],
        }
    )
    times = result["video_progress"].raw.sort("progress_rate")["recorded_at"].to_list()
    assert times == [
        datetime(2026, 3, 2, 10),
        datetime(2026, 3, 2, 10, 30),
        datetime(2026, 3, 2, 11),
        datetime(2026, 3, 2, 21, 0, 0, 500000),
        datetime(2026, 3, 2),
    ]
    assert [r for _, r in reasons(result, "video_progress")] == ["invalid_type"] * 4


def test_other_zone(tmp_path):
    landing = write_landing(tmp_path, {**BASE, "attendance": ["1000,101,online,2026-03-02T00:00Z"]})
    result = ingest_all(landing, tz="America/New_York")
    assert result["attendance"].raw["recorded_at"].to_list() == [datetime(2026, 3, 1, 19)]


def test_int_float_date_forms(ingest):
    result = ingest(
        {
            "lectures": ["+1,10,a", "2,99999999999999999999,b", "3,1.0,c"],
            "sessions": ["101,1,1,,2026-02-30", "102,1,2,,2026-3-09", "103,1,3,,2026-03-16"],
            "policies": ["1,,,,1e1,,,,.5"],
        }
    )
    assert result["lectures"].raw["lecture_id"].to_list() == [1]
    assert reasons(result, "lectures") == [(2, "invalid_type"), (3, "invalid_type")]
    assert reasons(result, "sessions") == [(1, "invalid_type"), (2, "invalid_type")]
    policy = result["policies"].raw.row(0, named=True)
    assert policy["exam_pass_score"] == 10.0 and policy["homework_pass_score"] == 0.5


def test_ranges(ingest):
    result = ingest(
        {
            **BASE,
            "sessions": ["101,1,0,,", "102,1,1,,"],
            "policies": ["1,101,0,0,0,0,0,SUBMIT,0"],
            "video_progress": ["1000,102,100,2026-03-02", "1000,102,101,2026-03-03"],
        }
    )
    assert reasons(result, "sessions") == [(1, "out_of_range")]
    assert reasons(result, "policies") == [(1, "out_of_range")]
    assert reasons(result, "video_progress") == [(2, "out_of_range")]


def test_exact_duplicates_collapse_and_conflicts_quarantine_every_copy(tmp_path):
    landing = write_landing(
        tmp_path,
        {
            **BASE,
            "submissions": [
                "1,1000,101,exam,70,,2026-03-02 10:00",
                "1,1000,101,exam,70.0,,2026-03-02T01:00Z",  # same parsed values: collapses
                "2,1000,101,exam,50,,2026-03-02 10:00",
                "2,1000,101,exam,55,,2026-03-02 10:00",  # conflicts with the row above
            ],
        },
    )
    (landing / "submissions").mkdir()
    (landing / "submissions" / "day2.csv").write_text(
        HEADERS["submissions"] + "\n2,1000,101,exam,50,,2026-03-02 10:00\n"
        "1,1000,101,exam,70,,2026-03-02 10:00\n",
        encoding="utf-8",
    )
    result = ingest_all(landing)["submissions"]
    assert result.raw.select("submission_id", "_source_file", "_source_row").rows() == [
        (1, "submissions.csv", 1)
    ]
    q = result.quarantine
    assert q.select("_source_file", "_source_row", "_reason").rows() == [
        ("submissions.csv", 3, "duplicate_conflict"),
        ("submissions.csv", 4, "duplicate_conflict"),
        ("submissions/day2.csv", 1, "duplicate_conflict"),
    ]
    assert result.collapsed == 2
    assert result.delivered == result.used + result.collapsed + result.quarantined == 6


def test_collapsed_rows_failing_later_are_quarantined_once(ingest):
    result = ingest(
        {**BASE, "attendance": ["1000,999,online,2026-03-02", "1000,999,online,2026-03-02"]}
    )
    assert reasons(result, "attendance") == [(1, "unknown_reference")]
    assert result["attendance"].collapsed == 1


def test_reference_cascade_and_lecture_mismatch(ingest):
    result = ingest(
        {
            "lectures": ["1,10,a", "2,10,b", "3,10,x", "3,10,y"],  # lecture 3 conflicts
            "sessions": ["101,1,1,,", "201,2,1,,", "301,3,1,,"],
            "policies": ["3,80,,,,,,,"],
            "enrollments": ["1000,1,7,,", "3000,3,7,,"],
            "attendance": [
                "1000,101,online,2026-03-02",
                "1000,201,online,2026-03-02",
                "3000,301,online,2026-03-02",
            ],
        }
    )
    assert [r for _, r in reasons(result, "lectures")] == ["duplicate_conflict"] * 2
    assert reasons(result, "sessions") == [(3, "unknown_reference")]
    assert reasons(result, "policies") == [(1, "unknown_reference")]
    assert reasons(result, "enrollments") == [(2, "unknown_reference")]
    assert reasons(result, "attendance") == [(2, "lecture_mismatch"), (3, "unknown_reference")]


def test_missing_required_column_makes_every_row_missing_value(ingest):
    result = ingest(
        {**BASE, "attendance": ["1000,101,2026-03-02"]},
        headers={"attendance": "enrollment_id,session_id,recorded_at"},
    )
    assert reasons(result, "attendance") == [(1, "missing_value")]


def test_header_trimmed_columns_any_order_extra_ignored_optional_missing(ingest):
    result = ingest(
        {**BASE, "enrollments": ["ACTIVE,x,1,1000,7"]},
        headers={"enrollments": " status ,note,lecture_id,enrollment_id ,student_id"},
    )
    raw = result["enrollments"].raw.row(0, named=True)
    assert (raw["enrollment_id"], raw["status"], raw["enrolled_at"]) == (1000, "ACTIVE", None)


def test_crlf_bom_quoted_newlines_and_cp949(tmp_path):
    landing = write_landing(tmp_path, BASE)
    text = (
        HEADERS["clinic_requests"]
        + '\r\n1000,101,MANUAL_REQUEST,,"메모, 첫 줄\r\n둘째 줄",2026-03-02\r\n'
    )
    (landing / "clinic_requests.csv").write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    lectures = "lecture_id,academy_id,title\r\n1,10,고2 수학 심화반\r\n"
    (landing / "lectures.csv").write_bytes(lectures.encode("cp949"))
    result = ingest_all(landing)
    assert result["lectures"].raw["title"].to_list() == ["고2 수학 심화반"]
    assert result["clinic_requests"].raw["memo"].to_list() == ["메모, 첫 줄\r\n둘째 줄"]


def test_unreadable_files_are_refused_whole_and_others_still_read(tmp_path):
    landing = write_landing(tmp_path, BASE)
    folder = landing / "attendance"
    folder.mkdir()
    (folder / "a.csv").write_text(HEADERS["attendance"] + "\n1000,101,online,2026-03-02\n")
    (folder / "b.csv").write_bytes(b"\x00\x01\x02binary")
    (folder / "c.csv").write_text(
        "enrollment_id,session_id,session_id,attendance_type,recorded_at\n"
    )
    (folder / "d.parquet").write_bytes(b"not parquet at all")
    (folder / "e.csv").write_bytes(b"")
    (folder / ".hidden.csv").write_bytes(b"\x00")
    (folder / "notes.txt").write_text("ignored")
    result = ingest_all(landing)["attendance"]
    assert [r.file for r in result.refused] == [
        "attendance/b.csv",
        "attendance/c.csv",
        "attendance/d.parquet",
        "attendance/e.csv",
    ]
    assert "twice" in result.refused[1].reason
    assert result.files == ["attendance.csv", "attendance/a.csv"]
    assert result.raw.height == 1


def test_files_read_in_relative_path_order(tmp_path):
    (tmp_path / "submissions" / "2026").mkdir(parents=True)
    for rel in (
        "submissions/b.csv",
        "submissions/2026/a.CSV",
        "submissions.csv",
        "submissions/A.parquet",
    ):
        (tmp_path / rel).write_text("x")
    assert [rel for rel, _ in find_files(tmp_path, "submissions")] == [
        "submissions.csv",
        "submissions/2026/a.CSV",
        "submissions/A.parquet",
        "submissions/b.csv",
    ]


def test_parquet_native_and_text_columns(tmp_path):
    landing = write_landing(tmp_path, BASE)
    (landing / "submissions.csv").unlink()
    table = pa.table(
        {
            "submission_id": pa.array([1, 2, 3], pa.int32()),
            "enrollment_id": pa.array([1000, 1000, 1000], pa.int16()),
            "session_id": pa.array(["101", " 102 ", "103"]),
            "kind": pa.array(["exam", "homework", "exam"]),
            "score": pa.array([70.5, None, float("nan")]),
            "teacher_approved": pa.array([None, True, None]),
            "submitted_at": pa.array(
                [datetime(2026, 3, 2, 1, 0, 0, 123456), datetime(2026, 3, 9, 1), None],
                pa.timestamp("ns", tz="UTC"),
            ),
        }
    )
    pq.write_table(table, landing / "submissions.parquet")
    result = ingest_all(landing)["submissions"]
    assert result.raw.select("submission_id", "session_id", "score", "submitted_at").rows() == [
        (1, 101, 70.5, datetime(2026, 3, 2, 10, 0, 0, 123456)),
        (2, 102, None, datetime(2026, 3, 9, 10)),
    ]
    assert reasons({"submissions": result}, "submissions") == [(3, "missing_value")]


def test_parquet_and_csv_give_the_same_raw_tables(tmp_path):
    csv_landing = write_landing(
        tmp_path / "csv",
        {
            **BASE,
            "attendance": [
                "1000,101,offline,2026-03-02 10:00:00",
                "1000,102,online,2026-03-09T01:00:00Z",
            ],
        },
    )
    pq_landing = tmp_path / "pq"
    pq_landing.mkdir()
    for table in HEADERS:
        frame = pl.read_csv(csv_landing / f"{table}.csv", infer_schema=False)
        frame.write_parquet(pq_landing / f"{table}.parquet")
    a, b = ingest_all(csv_landing), ingest_all(pq_landing)
    for table in HEADERS:
        cols = [c for c in a[table].raw.columns if not c.startswith("_")]
        assert a[table].raw.select(cols).equals(b[table].raw.select(cols)), table
    assert a["sessions"].raw["session_date"].to_list()[0] == date(2026, 3, 2)
