"""The streamed export (issue 10): DuckDB hands each table over in Arrow batches, one academy at
a time, and a second thread writes the files. Its files must hold exactly what a plain
per-academy slice of the whole table gives (the export before streaming): the same Parquet
rows and schema, the same CSV text, header-only files for an academy without rows, whatever
the batch size.

The warehouse is the consumer tests' two academies (tests/test_consume.py) run through the
real pipeline, then edited: a third academy with enrollments but no session, risk or clinic
row; text with commas, quotes, newlines, Korean and nulls; a row without an academy.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import duckdb
import polars as pl
import pytest

from pipelines.core import exports as exports_module
from pipelines.core.exports import CSV_DATETIME, EXPORTED, LABELS, Snapshot, export_warehouse
from pipelines.runner import run_pipeline
from tests.conftest import write_landing
from tests.test_consume import AS_OF, ROWS

ODD_TITLE = '수학, "심화"\n2반\r\n끝'
ODD_MEMO = 'a,b "c" \n 보충'
ODD_ATTENDANCE = '"on,line"'


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("stream")
    path = root / "wh.duckdb"
    run_pipeline(write_landing(root / "landing", ROWS), path, AS_OF)
    with duckdb.connect(str(path)) as con:
        # academy 30: lecture 3 with academy 20's enrollments, but no session, risk or clinic
        # row (header-only files for those tables)
        con.execute(
            "INSERT INTO marts.lecture_progress SELECT * REPLACE (30 AS academy_id, "
            "3 AS lecture_id, enrollment_id + 1000 AS enrollment_id) "
            "FROM marts.lecture_progress WHERE academy_id = 20"
        )
        con.execute(
            "INSERT INTO raw.lectures SELECT * REPLACE (3 AS lecture_id, 30 AS academy_id) "
            "FROM raw.lectures WHERE lecture_id = 2"
        )
        con.execute("UPDATE raw.lectures SET title = ? WHERE lecture_id = 1", [ODD_TITLE])
        con.execute("UPDATE raw.lectures SET title = NULL WHERE lecture_id = 3")
        con.execute("UPDATE marts.clinic_links SET memo = ? WHERE enrollment_id = 1002", [ODD_MEMO])
        con.execute(
            "UPDATE marts.session_progress SET attendance_type = ? "
            "WHERE enrollment_id = 1000 AND session_order = 1",
            [ODD_ATTENDANCE],
        )
        con.execute(
            "UPDATE marts.session_progress SET attendance_type = '' "
            "WHERE enrollment_id = 1001 AND session_order = 2"
        )
        # a row without an academy: in no academy's files, as with the slices before
        con.execute(
            "INSERT INTO marts.risk_log SELECT * REPLACE (NULL AS academy_id) "
            "FROM marts.risk_log LIMIT 1"
        )
    return path


def sliced(warehouse: Path) -> dict[str, pl.DataFrame]:
    """Every exported table read whole (the export's query and order), the export before
    streaming; the expected files are its per-academy slices."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        snapshot = Snapshot(con, None)
        return {name: snapshot.read(name) for name in [*EXPORTED, LABELS]}


def csv_bytes(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_csv(buffer, include_bom=True, datetime_format=CSV_DATETIME)
    return buffer.getvalue()


def assert_files_are_slices(out: Path, manifest: dict, whole: dict[str, pl.DataFrame]) -> None:
    assert manifest["academies"] == [10, 20, 30]
    for name in EXPORTED:
        frame = whole[name]
        assert manifest["tables"][name] == frame.columns
        for academy in manifest["academies"]:
            part = frame.filter(pl.col("academy_id") == academy)
            folder = out / name / f"academy_id={academy}"
            parquet = pl.read_parquet(folder / "part-0.parquet", hive_partitioning=False)
            expected = part.drop("academy_id")
            assert parquet.schema == expected.schema, (name, academy)
            assert parquet.equals(expected), (name, academy)
            assert (folder / f"{name}.csv").read_bytes() == csv_bytes(part), (name, academy)
            rows = {f["format"]: f["rows"] for f in manifest["files"]
                    if f["table"] == name and f["academy_id"] == academy}  # fmt: skip
            assert rows == {"parquet": part.height, "csv": part.height}, (name, academy)
    labels = whole[LABELS]
    assert pl.read_parquet(out / LABELS / f"{LABELS}.parquet").equals(labels)
    assert (out / LABELS / f"{LABELS}.csv").read_bytes() == csv_bytes(labels)


def test_streamed_files_equal_the_per_academy_slices(warehouse, tmp_path, monkeypatch):
    whole = sliced(warehouse)
    # the edits are there: an academy without rows in three marts, a row without an academy
    for name in ("session_progress", "risk_log", "clinic_links"):
        assert whole[name].filter(pl.col("academy_id") == 30).is_empty(), name
    assert whole["lecture_progress"].filter(pl.col("academy_id") == 30).height == 2
    assert whole["risk_log"]["academy_id"].null_count() == 1

    default = export_warehouse(warehouse, tmp_path / "default")
    assert_files_are_slices(tmp_path / "default", default, whole)
    # batches of 3 rows: academies span batches and batches span academies; one academy in
    # flight at a time
    monkeypatch.setattr(exports_module, "BATCH_ROWS", 3)
    monkeypatch.setattr(exports_module, "IN_FLIGHT", 1)
    small = export_warehouse(warehouse, tmp_path / "small")
    assert_files_are_slices(tmp_path / "small", small, whole)
    assert [f["sha256"] for f in small["files"]] == [f["sha256"] for f in default["files"]]

    # header-only files for academy 30 where it has no row
    header = (tmp_path / "small/clinic_links/academy_id=30/clinic_links.csv").read_text("utf-8-sig")
    assert header == ",".join(whole["clinic_links"].columns) + "\n"

    # the odd texts come back whole from the CSV
    def cells(path: Path, column: str) -> list[str]:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            return [row[column] for row in csv.DictReader(handle)]

    summary = tmp_path / "small/v_lecture_summary/academy_id=10/v_lecture_summary.csv"
    assert cells(summary, "lecture_title") == [ODD_TITLE]
    links = tmp_path / "small/clinic_links/academy_id=10/clinic_links.csv"
    assert ODD_MEMO in cells(links, "memo")
    progress = tmp_path / "small/session_progress/academy_id=10/session_progress.csv"
    attendance = cells(progress, "attendance_type")
    assert ODD_ATTENDANCE in attendance and "" in attendance
    # the scratch folder DuckDB may spill into is gone
    versions = exports_module.versions_folder(tmp_path / "small")
    assert [p.name for p in versions.iterdir() if p.name.startswith(".tmp-")] == []


def test_a_failed_write_leaves_no_export_and_no_scratch(warehouse, tmp_path, monkeypatch):
    out = tmp_path / "out"
    first = export_warehouse(warehouse, out)
    calls = []

    def failing(frame, path):
        calls.append(path)
        if len(calls) == 5:
            raise OSError("disk full")
        frame.write_parquet(path, compression="zstd", statistics=True)

    monkeypatch.setattr(exports_module, "_write_parquet", failing)
    with pytest.raises(OSError, match="disk full"):
        export_warehouse(warehouse, out)
    # the previous export is still the one behind the link, whole; nothing half-written stays
    assert exports_module._own_manifest(out)["files"] == first["files"]
    versions = exports_module.versions_folder(out)
    assert sorted(p.name for p in versions.iterdir() if p.name != ".lock") == [out.resolve().name]
