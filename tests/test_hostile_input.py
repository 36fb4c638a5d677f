"""Damaged and hostile input is refused by name, never crashes a run and never loses a record
(issue 11, point 4): unterminated quotes, fields of any length, files still being written,
symlinks leading out of the landing folder, odd file names, and Parquet files that make the
Parquet reader panic."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from polars.exceptions import PanicException

from pipelines.core.contract import SPECS
from pipelines.core.extracts import OUTSIDE, STILL_WRITTEN, RefusedFile, read_files
from pipelines.core.ingest import ingest_all
from tests.compare import compare_landing
from tests.conftest import AS_OF, HEADERS, landing_with
from tests.reference import reference_ingest

FIXTURES = Path(__file__).parent / "fixtures"
ATTENDANCE = [f"1000,{s},online,2026-03-{d:02d} 10:00" for s, d in [(101, 2), (102, 9), (103, 16)]]


def _refused(landing: Path) -> dict[str, str]:
    results = ingest_all(landing)
    return {r.file: r.reason for result in results.values() for r in result.refused}


def _ref_refused(landing: Path) -> list[str]:
    return sorted(f for f, _ in reference_ingest(landing)[2])


def test_unterminated_quote_refuses_the_file_naming_the_record(tmp_path):
    landing = landing_with(tmp_path)
    folder = landing / "attendance"
    folder.mkdir()
    # 20 records; the 3rd opens a quote that nothing closes: the csv module alone would return
    # 3 records, the last one holding the other 18 as one field
    records = [f"1000,{101 + i % 3},online,2026-03-{2 + i:02d} 10:00" for i in range(20)]
    records[2] = records[2].replace(",online", ',"online')
    (folder / "a.csv").write_text("\n".join([HEADERS["attendance"], *records]) + "\n")
    (folder / "b.csv").write_text("\n".join([HEADERS["attendance"], *ATTENDANCE]) + "\n")
    result = ingest_all(landing)["attendance"]
    assert [str(r) for r in result.refused] == [
        "attendance/a.csv: refused (unterminated quoted field starting at record 3 (line 4): "
        "the file ends inside quotes)"
    ]
    # the other files of the table are still read, and nothing of the refused one is used
    assert result.files == ["attendance.csv", "attendance/b.csv"]
    assert result.delivered == 3 == result.used + result.collapsed + result.quarantined
    assert _ref_refused(landing) == ["attendance/a.csv"]
    compare_landing(landing, [AS_OF])


@pytest.mark.parametrize(
    "text, record",
    [
        ('"lecture_id,academy_id,title\n1,10,x\n', "the header (line 1)"),
        ('lecture_id,academy_id,title\n1,10,x\n\n2,10,"y\n', "record 2 (line 4)"),
        ('lecture_id,academy_id,title\r\n1,10,"a ""quoted"" title\r\n', "record 1 (line 2)"),
    ],
)
def test_unterminated_quote_positions(tmp_path, text, record):
    landing = landing_with(tmp_path)
    (landing / "lectures.csv").write_text(text, newline="")
    reason = _refused(landing)["lectures.csv"]
    assert reason.startswith(f"unterminated quoted field starting at {record}")
    assert _ref_refused(landing) == ["lectures.csv"]


def test_closed_quotes_and_a_last_record_without_line_end_are_read(tmp_path):
    landing = landing_with(tmp_path)
    (landing / "lectures.csv").write_text(
        'lecture_id,academy_id,title\n1,10,"two\nlines, ""quoted"""\n2,10,"last"', newline=""
    )
    result = ingest_all(landing)["lectures"]
    assert not result.refused
    assert result.raw["title"].to_list() == ['two\nlines, "quoted"', "last"]


def test_a_one_mebibyte_field_is_read(tmp_path):
    landing = landing_with(tmp_path)
    title = "가" * (1 << 20)  # 3 MiB of UTF-8 in one field (the csv module's default: 128 KiB)
    (landing / "lectures.csv").write_text(f'lecture_id,academy_id,title\n1,10,"{title}"\n')
    result = ingest_all(landing)["lectures"]
    assert not result.refused and result.raw["title"].to_list() == [title]
    assert _ref_refused(landing) == []


def test_a_file_written_while_it_is_read_is_refused_whole(tmp_path):
    landing = landing_with(tmp_path)
    folder = landing / "attendance"
    folder.mkdir()
    for name in ("a.csv", "b.csv"):
        (folder / name).write_text("\n".join([HEADERS["attendance"], *ATTENDANCE]) + "\n")
    files = read_files(SPECS["attendance"], landing, "Asia/Seoul")
    assert next(files)[0] == "attendance.csv"
    # the table's files are known; another process now appends half a record to b.csv
    writer = "import sys; open(sys.argv[1], 'a').write('1000,104,onl')"
    subprocess.run([sys.executable, "-c", writer, folder / "b.csv"], check=True)
    rel, a = next(files)
    assert rel == "attendance/a.csv" and isinstance(a, pl.DataFrame) and a.height == 3
    rel, b = next(files)
    assert rel == "attendance/b.csv"
    assert b == RefusedFile("attendance", "attendance/b.csv", STILL_WRITTEN)
    # once complete and unchanged, the next run reads it whole
    with open(folder / "b.csv", "a") as f:
        f.write("ine,2026-12-01 10:00\n")
    result = ingest_all(landing)["attendance"]
    assert not result.refused and result.delivered == 7


def test_a_symlink_to_a_file_outside_is_refused(tmp_path):
    landing = landing_with(tmp_path)
    outside = tmp_path / "elsewhere.csv"
    outside.write_text(HEADERS["attendance"] + "\n" + ATTENDANCE[0] + "\n")
    (landing / "attendance.csv").unlink()
    (landing / "attendance.csv").symlink_to(outside)
    (landing / "video_progress").mkdir()
    (landing / "video_progress" / "x.csv").symlink_to("../../elsewhere.csv")
    results = ingest_all(landing)
    assert [str(r) for r in results["attendance"].refused] == [
        f"attendance.csv: refused ({OUTSIDE})"
    ]
    assert results["attendance"].delivered == 0
    assert [r.file for r in results["video_progress"].refused] == ["video_progress/x.csv"]
    assert _ref_refused(landing) == ["attendance.csv", "video_progress/x.csv"]


def test_a_table_folder_linked_to_a_system_folder_is_refused_unwalked(tmp_path):
    landing = landing_with(tmp_path)
    (landing / "submissions").symlink_to("/etc")
    outside = tmp_path / "drops"
    (outside / "deep").mkdir(parents=True)
    (outside / "deep" / "part.csv").write_text(HEADERS["attendance"] + "\n" + ATTENDANCE[0])
    os.mkfifo(outside / "deep" / "pipe.csv")  # walking it would report (or block on) this
    (landing / "attendance").symlink_to(outside)
    results = ingest_all(landing)
    assert [str(r) for r in results["submissions"].refused] == [f"submissions: refused ({OUTSIDE})"]
    assert [str(r) for r in results["attendance"].refused] == [f"attendance: refused ({OUTSIDE})"]
    assert results["attendance"].files == ["attendance.csv"]
    assert _ref_refused(landing) == ["attendance", "submissions"]


def test_symlinks_inside_the_landing_folder_are_followed_once(tmp_path):
    landing = landing_with(tmp_path)
    drops = landing / "_drops"  # not a table name: read only through the links below
    drops.mkdir()
    (drops / "day1.csv").write_text(HEADERS["attendance"] + "\n" + ATTENDANCE[0] + "\n")
    folder = landing / "attendance"
    folder.mkdir()
    (folder / "linked").symlink_to(drops)
    (folder / "loop").symlink_to("..")  # a cycle: landing/attendance/loop/attendance/...
    (folder / "day1-again.csv").symlink_to(drops / "day1.csv")
    (folder / "gone.csv").symlink_to(drops / "missing.csv")
    result = ingest_all(landing)["attendance"]
    assert result.files == [
        "attendance.csv",
        "attendance/day1-again.csv",
        "attendance/linked/day1.csv",
    ]
    assert [r.file for r in result.refused] == ["attendance/gone.csv"]
    assert "leads to nothing" in result.refused[0].reason
    assert result.delivered == 2 and result.collapsed == 1
    compare_landing(landing, [AS_OF])


def test_odd_file_names_are_read_and_shown_on_one_line(tmp_path):
    landing = landing_with(tmp_path)
    folder = os.fsencode(landing / "attendance")
    os.mkdir(folder)
    body = ("\n".join([HEADERS["attendance"], *ATTENDANCE]) + "\n").encode()
    for name in (b"new\nline.csv", b"\xb9\xe8\xc3\xe2.csv", b"bad\xff.csv"):  # CP949 name
        with open(os.path.join(folder, name), "wb") as f:
            f.write(body)
    with open(os.path.join(folder, b"x\xffy.csv"), "wb") as f:
        f.write(b"\x00binary")
    result = ingest_all(landing)["attendance"]
    # names in the order of their display form
    assert result.files == [
        "attendance.csv",
        "attendance/\\xb9\\xe8\\xc3\\xe2.csv",
        "attendance/bad\\xff.csv",
        "attendance/new\\nline.csv",
    ]
    assert [r.file for r in result.refused] == ["attendance/x\\xffy.csv"]
    assert result.delivered == 9 and result.collapsed == 6
    assert set(result.raw["_source_file"].cast(pl.String)) == {
        "attendance/\\xb9\\xe8\\xc3\\xe2.csv"
    }


def test_a_parquet_file_that_makes_polars_panic_is_refused_by_name(tmp_path, capfd):
    fixture = FIXTURES / "lectures_polars_panic.parquet"  # a bit-flipped generated extract
    with pytest.raises(PanicException):  # the fixture still does what it is kept for
        pl.read_parquet(fixture)
    capfd.readouterr()
    landing = landing_with(tmp_path)
    (landing / "lectures").mkdir()
    (landing / "lectures" / "damaged.parquet").write_bytes(fixture.read_bytes())
    result = ingest_all(landing)["lectures"]
    assert [r.file for r in result.refused] == ["lectures/damaged.parquet"]
    assert result.refused[0].reason.startswith("not a readable Parquet file (")
    assert result.files == ["lectures.csv"] and result.used == 1
    err = capfd.readouterr().err
    assert "panicked" not in err and "backtrace" not in err, err
    assert _ref_refused(landing) == ["lectures/damaged.parquet"]


def test_a_parquet_column_name_that_is_not_utf8_is_refused_by_name(tmp_path):
    fixture = FIXTURES / "policies_column_name_not_utf8.parquet"
    with pytest.raises(UnicodeDecodeError):
        pq.ParquetFile(fixture).schema_arrow  # noqa: B018
    landing = landing_with(tmp_path)
    (landing / "policies.parquet").write_bytes(fixture.read_bytes())
    reason = _refused(landing)["policies.parquet"]
    assert reason == "damaged Parquet file (a column name or text value is not UTF-8)"
    assert _ref_refused(landing) == ["policies.parquet"]


@pytest.mark.parametrize("unit", ["ms", "us"])
def test_timestamps_beyond_any_calendar_are_quarantined_not_a_crash(tmp_path, unit):
    landing = landing_with(tmp_path)
    ticks = [1_772_442_000 * {"ms": 1_000, "us": 1_000_000}[unit], 2**62, -(2**62)]
    pq.write_table(
        pa.table(
            {
                "enrollment_id": pa.array([1000] * 3, pa.int64()),
                "session_id": pa.array([101, 102, 103], pa.int64()),
                "attendance_type": ["online"] * 3,
                "recorded_at": pa.array(ticks, pa.timestamp(unit, "UTC")),
            }
        ),
        landing / "attendance.parquet",
    )
    (landing / "attendance.csv").unlink()
    result = ingest_all(landing)["attendance"]
    assert not result.refused and result.used == 1
    assert result.quarantine["recorded_at"].to_list() == [f"{t} {unit}" for t in ticks[1:]]
    assert set(result.quarantine["_reason"]) == {"invalid_type"}
    compare_landing(landing, [AS_OF])
