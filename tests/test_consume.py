"""Issue 6: analyst views, per-academy exports, the `export` / `report` commands and the
Dagster consumer assets (the report page itself: tests/test_report.py).

One hand-made landing with two academies is run through the real pipeline once (module
fixture); every test reads that warehouse.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import shutil
from datetime import date, datetime
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest
import typer
from typer.testing import CliRunner

from assets import all_assets
from assets.consume import EXPORTS_KEY, export_assets, view_assets
from checks import all_checks
from pipelines.cli_consume import export, report
from pipelines.core import exports as exports_module
from pipelines.core import publish
from pipelines.core.exports import EXPORTED, LABELS, ExportError, export_warehouse
from pipelines.core.views import VIEWS, create_views, view_query
from pipelines.resources import ProgressSettings, WarehouseReader, WarehouseResource
from pipelines.runner import run_pipeline
from tests.conftest import landing_with, sensor_request, write_landing
from tests.test_dagster import EVENTS

AS_OF = "2026-11-25 12:00:00"
AS_OF_DATE = date(2026, 11, 25)

# Academy 10: lecture 1 (고2 수학), 4 weekly sessions (104 in the future), policy: video 80%,
# exam from session 1 (pass 60), homework SUBMIT from session 1.
#   1000 completes 101, fails 102 (video 20%, exam 30) and 103 (online, no video): WARNING
#   1001 does nothing: DANGER;  1002 is DROPPED;  1003 (status null = ACTIVE) completes 101-103
#   1004 watches and hands in homework but scores 50, 40, 30: DANGER by CONSECUTIVE_LOW_SCORE
# Academy 20: lecture 2 (중3 영어), 2 sessions, default policy (exam/homework from session 2).
#   2000 (the same student_id 7 as 1000) offline both, exam 50 in 202: NORMAL
#   2001 does nothing: WARNING
ROWS = {
    "lectures": ["1,10,고2 수학", "2,20,중3 영어"],
    "sessions": [
        "101,1,1,1차시,2026-03-02",
        "102,1,2,2차시,2026-03-09",
        "103,1,3,3차시,2026-03-16",
        "104,1,4,4차시,2026-12-01",
        "201,2,1,문법,2026-04-01",
        "202,2,2,독해,2026-04-08",
    ],
    "policies": ["1,80,1,9999,60,1,9999,SUBMIT,"],
    "enrollments": [
        "1000,1,7,ACTIVE,2026-03-01 09:00",
        "1001,1,8,ACTIVE,2026-03-01 09:00",
        "1002,1,9,DROPPED,2026-03-01 09:00",
        "1003,1,10,,2026-03-01 09:00",
        "1004,1,12,ACTIVE,2026-03-01 09:00",
        "2000,2,7,ACTIVE,2026-03-25 09:00",
        "2001,2,11,ACTIVE,2026-03-25 09:00",
    ],
    "video_progress": [
        "1000,101,90,2026-03-02 10:00",
        "1000,102,20,2026-03-09 10:00",
        "1003,101,100,2026-03-02 10:00",
        "1003,102,100,2026-03-09 10:00",
        "1003,103,100,2026-03-16 10:00",
        "1004,101,100,2026-03-02 10:00",
        "1004,102,100,2026-03-09 10:00",
        "1004,103,100,2026-03-16 10:00",
    ],
    "submissions": [
        "1,1000,101,exam,80,,2026-03-02 11:00",
        "2,1000,101,homework,,,2026-03-02 12:00",
        "3,1000,102,exam,30,,2026-03-09 11:00",
        "4,1003,101,exam,90,,2026-03-02 11:00",
        "5,1003,101,homework,,,2026-03-02 12:00",
        "6,1003,102,exam,90,,2026-03-09 11:00",
        "7,1003,102,homework,,,2026-03-09 12:00",
        "8,1003,103,exam,90,,2026-03-16 11:00",
        "9,1003,103,homework,,,2026-03-16 12:00",
        "12,1004,101,exam,50,,2026-03-02 11:00",
        "13,1004,101,homework,,,2026-03-02 12:00",
        "14,1004,102,exam,40,,2026-03-09 11:00",
        "15,1004,102,homework,,,2026-03-09 12:00",
        "16,1004,103,exam,30,,2026-03-16 11:00",
        "17,1004,103,homework,,,2026-03-16 12:00",
        "10,2000,202,exam,50,,2026-04-08 11:00",
        "11,2000,202,homework,,false,2026-04-08 12:00",
    ],
    "attendance": [
        "1000,103,online,2026-03-16 10:00",
        "2000,201,offline,2026-04-01 10:00",
        "2000,202,offline,2026-04-08 10:00",
    ],
    "clinic_requests": [
        "1000,102,AUTO_FAILED,true,보충 확정,2026-03-10 09:00",
        "1002,101,MANUAL_REQUEST,,학부모 요청,2026-03-05 09:00",
        "2000,202,TEACHER_RECOMMEND,,다음 주 보충,2026-04-09 10:00",
    ],
}
ACADEMY_OF_LECTURE = {1: 10, 2: 20}


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("consume")
    landing = write_landing(root / "landing", ROWS)
    path = root / "wh.duckdb"
    run_pipeline(landing, path, AS_OF)
    with duckdb.connect(str(path)) as con:
        create_views(con)
    return path


@pytest.fixture(scope="module")
def exported(warehouse, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("exports") / "out"
    return out, export_warehouse(warehouse, out, run_id="run-1")


def sql(warehouse: Path, query: str) -> pl.DataFrame:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.sql(query).pl()


def view(warehouse: Path, name: str) -> pl.DataFrame:
    return sql(warehouse, f"SELECT * FROM marts.{name}")


def by(frame: pl.DataFrame, key: str) -> dict:
    return {r[key]: r for r in frame.iter_rows(named=True)}


# --------------------------------------------------------------------------------------------
# Views
# --------------------------------------------------------------------------------------------


def test_views_are_documented_view_and_every_column(warehouse):
    comments = sql(
        warehouse, "SELECT view_name, comment FROM duckdb_views() WHERE schema_name = 'marts'"
    )
    assert set(comments["view_name"]) == set(VIEWS)
    assert all(len(c) > 40 for c in comments["comment"])
    columns = sql(
        warehouse,
        "SELECT table_name, column_name, comment FROM duckdb_columns() "
        "WHERE schema_name = 'marts' AND table_name LIKE 'v\\_%' ESCAPE '\\' "
        "ORDER BY table_name, column_index",
    )
    for name, spec in VIEWS.items():
        mine = columns.filter(pl.col("table_name") == name)
        assert mine["column_name"].to_list() == list(spec.columns), name
        assert mine["comment"].null_count() == 0 and (mine["comment"].str.len_chars() > 5).all()
    days = columns.filter(pl.col("column_name") == "days_since_last_activity")["comment"][0]
    assert "calculated_at" in days and "not today" in days.lower()


def test_create_views_is_idempotent_and_one_transaction(warehouse, tmp_path):
    copy = tmp_path / "copy.duckdb"
    shutil.copyfile(warehouse, copy)
    with duckdb.connect(str(copy)) as con:
        first = create_views(con)
        assert create_views(con) == first
        con.execute("CREATE OR REPLACE VIEW marts.v_lecture_summary AS SELECT 1 AS sentinel")
        broken = VIEWS["v_clinic_queue"].columns.copy()
        broken.pop("memo")
        original = VIEWS["v_clinic_queue"]
        VIEWS["v_clinic_queue"] = dataclasses.replace(original, columns=broken)
        try:
            with pytest.raises(ValueError, match="differ from the documented"):
                create_views(con)
        finally:
            VIEWS["v_clinic_queue"] = original
        # rolled back: the earlier views are still there exactly as they were
        assert con.execute("SELECT * FROM marts.v_lecture_summary").fetchall() == [(1,)]


def test_at_risk_students_view(warehouse):
    frame = view(warehouse, "v_at_risk_students")
    # DANGER first, then the longest streak, then the longest silence (no activity at all first)
    assert frame["enrollment_id"].to_list() == [1001, 1004, 2001, 1000]
    rows = by(frame, "enrollment_id")
    assert {
        k: rows[1000][k]
        for k in (
            "academy_id",
            "lecture_title",
            "student_id",
            "risk_level",
            "risk_level_ko",
            "risk_rule",
            "risk_rule_ko",
            "streak",
            "reason",
            "risk_since_session_order",
            "last_session_order",
            "last_session_title",
            "last_session_date",
            "last_activity_at",
            "days_since_last_activity",
        )
    } == {
        "academy_id": 10,
        "lecture_title": "고2 수학",
        "student_id": 7,
        "risk_level": "WARNING",
        "risk_level_ko": "주의",
        "risk_rule": "CONSECUTIVE_INCOMPLETE",
        "risk_rule_ko": "연속 미완료",
        "streak": 2,
        "reason": "연속 2차시 미완료",
        "risk_since_session_order": 3,
        "last_session_order": 3,
        "last_session_title": "3차시",
        "last_session_date": date(2026, 3, 16),
        "last_activity_at": datetime(2026, 3, 16, 10),
        # relative to calculated_at (2026-11-25), not to the day the test runs
        "days_since_last_activity": (AS_OF_DATE - date(2026, 3, 16)).days,
    }
    assert (rows[1001]["risk_level_ko"], rows[1001]["streak"], rows[1001]["reason"]) == (
        "위험",
        3,
        "연속 3차시 미완료",
    )
    assert rows[1001]["last_activity_at"] is None
    assert rows[1001]["days_since_last_activity"] is None
    assert rows[1001]["risk_since_session_order"] == 3  # DANGER since session 3 (WARNING at 2)
    low = rows[1004]  # both streaks are 3: the low-score rule wins when it alone reaches DANGER
    assert (
        low["risk_level"],
        low["risk_rule"],
        low["risk_rule_ko"],
        low["streak"],
        low["reason"],
        low["consecutive_failed_sessions"],
    ) == ("DANGER", "CONSECUTIVE_LOW_SCORE", "연속 저점수", 3, "연속 3회 저점수", 3)
    assert low["avg_exam_score"] == pytest.approx(40.0)
    assert low["days_since_last_activity"] == (AS_OF_DATE - date(2026, 3, 16)).days
    assert (rows[2001]["academy_id"], rows[2001]["risk_level"], rows[2001]["streak"]) == (
        20,
        "WARNING",
        2,
    )
    # what the marts imply, in general
    progress = sql(warehouse, "SELECT * FROM marts.lecture_progress")
    at_risk = progress.filter(pl.col("risk_level") != "NORMAL")
    assert set(frame["enrollment_id"]) == set(at_risk["enrollment_id"])
    for row in at_risk.iter_rows(named=True):
        mine = rows[row["enrollment_id"]]
        expected = (
            row["consecutive_low_scores"]
            if row["risk_rule"] == "CONSECUTIVE_LOW_SCORE"
            else row["consecutive_failed_sessions"]
        )
        assert (mine["risk_level"], mine["risk_rule"], mine["streak"]) == (
            row["risk_level"],
            row["risk_rule"],
            expected,
        )
        assert mine["calculated_at"] == row["calculated_at"] == datetime(2026, 11, 25, 12)


def test_lecture_summary_view(warehouse):
    rows = by(view(warehouse, "v_lecture_summary"), "lecture_id")
    assert set(rows) == {1, 2}
    one = rows[1]
    assert {
        k: one[k]
        for k in (
            "academy_id",
            "lecture_title",
            "enrollments",
            "active_enrollments",
            "dropped_enrollments",
            "total_sessions",
            "held_sessions",
            "normal_enrollments",
            "warning_enrollments",
            "danger_enrollments",
            "clinic_links",
            "clinic_pending",
        )
    } == {
        "academy_id": 10,
        "lecture_title": "고2 수학",
        "enrollments": 5,
        "active_enrollments": 4,
        "dropped_enrollments": 1,
        "total_sessions": 4,
        "held_sessions": 3,
        "normal_enrollments": 1,
        "warning_enrollments": 1,
        "danger_enrollments": 2,
        "clinic_links": 12,
        "clinic_pending": 11,
    }
    assert one["avg_completion_rate"] == pytest.approx((1 / 4 + 0 + 3 / 4 + 0) / 4)
    assert one["held_completion_rate"] == pytest.approx(4 / 12)  # 1000: 1, 1003: 3 of 3 each
    assert one["at_risk_share"] == pytest.approx(3 / 4)
    assert one["avg_exam_score"] == pytest.approx(((80 + 30) / 2 + 90 + 40) / 3)
    two = rows[2]
    assert (
        two["academy_id"],
        two["enrollments"],
        two["warning_enrollments"],
        two["danger_enrollments"],
        two["clinic_links"],
        two["clinic_pending"],
    ) == (20, 2, 1, 0, 5, 5)
    # what the marts imply: counts add up to the lecture_progress and clinic_links rows
    progress = sql(warehouse, "SELECT * FROM marts.lecture_progress")
    links = sql(warehouse, "SELECT * FROM marts.clinic_links")
    for lecture, row in rows.items():
        mine = progress.filter(pl.col("lecture_id") == lecture)
        assert row["enrollments"] == mine.height
        assert (
            row["normal_enrollments"] + row["warning_enrollments"] + row["danger_enrollments"]
            == row["active_enrollments"]
        )
        pending = links.filter((pl.col("lecture_id") == lecture) & ~pl.col("approved"))
        assert row["clinic_pending"] == pending.height


def test_session_funnel_view(warehouse):
    frame = view(warehouse, "v_session_funnel")
    assert frame["session_id"].to_list() == [101, 102, 103, 104, 201, 202]
    rows = by(frame, "session_id")
    # session: video, exam, homework, completed counts out of the 4 ACTIVE enrollments; drop
    for session, counts, drop in (
        (101, (3, 2, 3, 2), None),
        (102, (2, 1, 2, 1), 0.25),
        (103, (2, 1, 2, 1), 0.0),
        (104, (0, 0, 0, 0), 0.25),
    ):
        row = rows[session]
        assert row["active_enrollments"] == 4  # the DROPPED enrollment is left out
        for stage, count in zip(
            ("video_completed", "exam_passed", "homework_passed", "completed"), counts, strict=True
        ):
            assert row[f"{stage}_count"] == count, (session, stage)
            assert row[f"{stage}_share"] == pytest.approx(count / 4), (session, stage)
        assert row["completed_share_drop"] == (None if drop is None else pytest.approx(drop))
    assert rows[104]["held"] is False and rows[103]["held"] is True
    # lecture 2, default policy: session 1 has no exam or homework, so they pass for everyone
    first, second = rows[201], rows[202]
    assert (first["exam_applicable"], first["homework_applicable"]) == (False, False)
    assert (
        first["video_completed_count"],
        first["exam_passed_count"],
        first["homework_passed_count"],
        first["completed_count"],
    ) == (1, 2, 2, 1)
    assert (
        second["video_completed_count"],
        second["exam_passed_count"],
        second["homework_passed_count"],
        second["completed_count"],
    ) == (1, 0, 0, 0)
    assert second["completed_share_drop"] == pytest.approx(0.5)
    assert (first["lecture_title"], first["session_title"]) == ("중3 영어", "문법")
    # what the marts imply: counts are session_progress rows of ACTIVE enrollments
    grid = sql(
        warehouse,
        "SELECT sp.* FROM marts.session_progress sp JOIN "
        "marts.lecture_progress lp USING (enrollment_id) "
        "WHERE lp.status = 'ACTIVE'",
    )
    counts = grid.group_by("session_id").agg(pl.col("completed").sum())
    for session, completed in counts.iter_rows():
        assert rows[session]["completed_count"] == completed


def test_clinic_queue_view(warehouse):
    frame = view(warehouse, "v_clinic_queue")
    links = sql(warehouse, "SELECT * FROM marts.clinic_links WHERE NOT approved")
    key = ["enrollment_id", "session_id", "reason"]
    assert sorted(frame.select(key).rows()) == sorted(links.select(key).rows())
    assert (1000, 102, "AUTO_FAILED") not in frame.select(key).rows()  # approved: not queued
    assert frame.select(key).rows()[:4] == [  # same day: by session, then enrollment
        (1001, 101, "AUTO_FAILED"),
        (1002, 101, "MANUAL_REQUEST"),
        (1004, 101, "AUTO_FAILED"),
        (1001, 102, "AUTO_FAILED"),
    ]
    queued = frame["queued_since"].to_list()
    assert queued == sorted(queued)  # oldest first
    first = frame.row(0, named=True)
    assert first["queued_since"] == datetime(2026, 3, 2)
    assert first["days_waiting"] == (AS_OF_DATE - date(2026, 3, 2)).days
    assert first["reason_ko"] == "자동(차시 미통과)" and first["status_ko"] == "수강중"
    manual = frame.row(1, named=True)
    assert (manual["status"], manual["status_ko"], manual["memo"], manual["reason_ko"]) == (
        "DROPPED",
        "수강취소",
        "학부모 요청",
        "수동 요청",
    )
    teacher = frame.filter(pl.col("reason") == "TEACHER_RECOMMEND").row(0, named=True)
    assert (teacher["memo"], teacher["reason_ko"], teacher["academy_id"]) == (
        "다음 주 보충",
        "강사 추천",
        20,
    )
    assert teacher["queued_since"] == datetime(2026, 4, 8)  # session date before the request
    assert teacher["requested_at"] == datetime(2026, 4, 9, 10)


# --------------------------------------------------------------------------------------------
# Exports
# --------------------------------------------------------------------------------------------


def expected_frame(warehouse: Path, name: str) -> pl.DataFrame:
    """The whole mart, view or label table straight from the warehouse (not the export's SQL)."""
    query = (
        view_query(name)
        if name in VIEWS
        else "SELECT * FROM marts.dim_labels ORDER BY domain, code"
        if name == LABELS
        else f"SELECT * FROM marts.{name}"
    )
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.sql(query).pl()


def test_export_round_trip_parquet_and_csv(warehouse, exported):
    out, manifest = exported
    assert manifest["academies"] == [10, 20]
    for name in EXPORTED:
        expected = expected_frame(warehouse, name)
        parquet = pl.read_parquet(out / name / "*" / "*.parquet", hive_partitioning=True)
        parquet = parquet.with_columns(pl.col("academy_id").cast(pl.Int64)).select(expected.columns)
        csv = pl.concat(
            [
                pl.read_csv(out / name / f"academy_id={a}" / f"{name}.csv", schema=expected.schema)
                for a in manifest["academies"]
            ]
        )
        order = expected.columns
        assert parquet.sort(order).equals(expected.sort(order)), name
        assert csv.sort(order).equals(expected.sort(order)), name
    labels = expected_frame(warehouse, LABELS)
    assert pl.read_parquet(out / LABELS / f"{LABELS}.parquet").equals(labels)
    assert pl.read_csv(out / LABELS / f"{LABELS}.csv", schema=labels.schema).equals(labels)


def test_export_csv_has_bom_and_korean_text(exported):
    out, manifest = exported
    for entry in manifest["files"]:
        if entry["format"] == "csv":
            assert (out / entry["path"]).read_bytes()[:3] == b"\xef\xbb\xbf", entry["path"]
    queue = (out / "v_clinic_queue" / "academy_id=20" / "v_clinic_queue.csv").read_bytes()
    text = queue.decode("utf-8-sig")
    assert "다음 주 보충" in text and "강사 추천" in text and "중3 영어" in text
    links = (out / "clinic_links" / "academy_id=10" / "clinic_links.csv").read_text("utf-8-sig")
    assert "학부모 요청" in links
    assert "위험" in (out / "dim_labels" / "dim_labels.csv").read_text("utf-8-sig")


def test_every_exported_file_holds_only_its_academy(warehouse, exported):
    out, manifest = exported
    per_academy = [f for f in manifest["files"] if f["academy_id"] is not None]
    assert len(per_academy) == len(EXPORTED) * 2 * 2  # every name, academy and format
    for entry in per_academy:
        path, academy = out / entry["path"], entry["academy_id"]
        assert path.parent.name == f"academy_id={academy}"
        frame = (
            pl.read_parquet(path, hive_partitioning=False)
            if entry["format"] == "parquet"
            else pl.read_csv(path)
        )
        if entry["format"] == "csv":
            assert set(frame["academy_id"]) <= {academy}, entry["path"]
        else:  # hive layout: academy_id only in the folder name
            assert "academy_id" not in frame.columns
        lectures = {ACADEMY_OF_LECTURE[lecture] for lecture in frame["lecture_id"]}
        assert lectures <= {academy}, entry["path"]
        if "enrollment_id" in frame.columns:
            expected = {10: {1000, 1001, 1002, 1003, 1004}, 20: {2000, 2001}}[academy]
            assert set(frame["enrollment_id"]) <= expected, entry["path"]
    # and nothing is lost: the academies' rows add up to the whole table
    for name in EXPORTED:
        total = sum(
            f["rows"] for f in per_academy if f["table"] == name and f["format"] == "parquet"
        )
        assert total == expected_frame(warehouse, name).height, name


def test_manifest_lists_every_file_with_rows_and_sha256(exported):
    out, manifest = exported
    assert manifest["as_of"] == AS_OF and manifest["run_id"] == "run-1"
    assert manifest["schema_version"] == exports_module.SCHEMA_VERSION
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert on_disk == {f["path"] for f in manifest["files"]} | {"manifest.json"}
    for entry in manifest["files"]:
        path = out / entry["path"]
        assert entry["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert entry["bytes"] == path.stat().st_size
        frame = pl.read_parquet(path) if entry["format"] == "parquet" else pl.read_csv(path)
        assert frame.height == entry["rows"], entry["path"]
    assert json.loads((out / "manifest.json").read_text(encoding="utf-8")) == manifest


def test_export_replaces_atomically_and_refuses_foreign_folders(warehouse, tmp_path, monkeypatch):
    out = tmp_path / "exports"
    first = export_warehouse(warehouse, out, run_id="a")
    second = export_warehouse(warehouse, out, run_id="b")
    assert json.loads((out / "manifest.json").read_text())["run_id"] == "b"
    assert [f["sha256"] for f in first["files"]] == [f["sha256"] for f in second["files"]]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".exports.versions", "exports"]
    assert not [
        p for p in (tmp_path / ".exports.versions").iterdir() if p.name.startswith(".tmp-")
    ]  # no temp folders left

    calls = {"n": 0}
    real = exports_module._write_csv

    def failing(frame, path):
        calls["n"] += 1
        if calls["n"] == 5:
            raise OSError("disk full")
        real(frame, path)

    monkeypatch.setattr(exports_module, "_write_csv", failing)
    with pytest.raises(OSError, match="disk full"):
        export_warehouse(warehouse, out, run_id="c")
    monkeypatch.undo()
    assert json.loads((out / "manifest.json").read_text())["run_id"] == "b"  # old one intact
    assert sorted(p.name for p in tmp_path.iterdir()) == [".exports.versions", "exports"]
    assert not [p for p in (tmp_path / ".exports.versions").iterdir() if p.name.startswith(".tmp-")]

    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(ExportError, match="not an export"):
        export_warehouse(warehouse, foreign)
    assert (foreign / "notes.txt").read_text() == "keep me"
    with pytest.raises(ExportError, match="does not exist"):
        export_warehouse(tmp_path / "missing.duckdb", tmp_path / "x")


# --------------------------------------------------------------------------------------------
# Commands and Dagster assets
# --------------------------------------------------------------------------------------------


def consume_app() -> typer.Typer:
    app = typer.Typer(pretty_exceptions_enable=False)
    app.command()(export)
    app.command()(report)
    return app


def test_export_and_report_commands(warehouse, tmp_path):
    runner, app = CliRunner(), consume_app()
    for command in ("export", "report"):
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0 and "--warehouse" in result.output
    result = runner.invoke(
        app, ["export", "--warehouse", str(warehouse), "--out", str(tmp_path / "ex")]
    )
    assert result.exit_code == 0, result.output
    assert "v_clinic_queue" in result.output and (tmp_path / "ex" / "manifest.json").exists()
    result = runner.invoke(
        app,
        [
            "report",
            "--warehouse",
            str(warehouse),
            "--academy",
            "10",
            "--out",
            str(tmp_path / "r.html"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "r.html").stat().st_size > 1_000_000  # plotly.js inlined
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    for args, message in (
        (
            ["report", "--warehouse", str(warehouse), "--academy", "99"],
            "academy 99 is not in the warehouse (academies: 10, 20)",
        ),
        (
            ["export", "--warehouse", str(tmp_path / "none.duckdb"), "--out", str(tmp_path / "e")],
            "does not exist; run `progress run` first",
        ),
        (["export", "--warehouse", str(warehouse), "--out", str(foreign)], "not an export"),
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 1, result.output
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.output


def test_dagster_assets_create_views_and_export(warehouse, tmp_path):
    copy = tmp_path / "wh.duckdb"
    shutil.copyfile(warehouse, copy)
    with duckdb.connect(str(copy)) as con:
        for name in VIEWS:
            con.execute(f"DROP VIEW marts.{name}")
    out = tmp_path / "dagster_exports"
    quiet = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
    views = dg.materialize(
        view_assets, resources={"warehouse": WarehouseResource(path=str(copy))}, run_config=quiet
    )
    assert views.success
    # as exports_job runs it: its own run, reading the published file without the writer lock
    with publish.writer_lock(copy, 1):
        result = dg.materialize(
            export_assets,
            resources={"warehouse_reader": WarehouseReader(path=str(copy))},
            run_config={
                "ops": {"exports__academy_exports": {"config": {"out_dir": str(out)}}},
                **quiet,
            },
        )
    assert result.success
    metadata = {
        e.materialization.asset_key: e.materialization.metadata
        for e in [
            *views.get_asset_materialization_events(),
            *result.get_asset_materialization_events(),
        ]
    }
    assert set(metadata) == {dg.AssetKey(["marts", n]) for n in VIEWS} | {EXPORTS_KEY}
    risk = metadata[dg.AssetKey(["marts", "v_at_risk_students"])]
    assert risk["dagster/row_count"].value == 4
    assert risk["risk_distribution"].value == {"WARNING": 2, "DANGER": 2}
    assert "preview" in risk
    queue = metadata[dg.AssetKey(["marts", "v_clinic_queue"])]
    assert sum(queue["pending_by_reason"].value.values()) == queue["dagster/row_count"].value
    exported = metadata[EXPORTS_KEY]
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["run_id"] == result.run_id and manifest["as_of"] == AS_OF
    assert exported["files"].value == len(manifest["files"])
    with duckdb.connect(str(copy), read_only=True) as con:
        views = {
            r[0]
            for r in con.execute(
                "SELECT view_name FROM duckdb_views() WHERE schema_name = 'marts'"
            ).fetchall()
        }
    assert views == set(VIEWS)


def test_exports_in_the_same_run_as_the_marts_read_that_run_not_the_published_file(tmp_path):
    landing, warehouse, out = (
        landing_with(tmp_path, **EVENTS),
        tmp_path / "wh.duckdb",
        tmp_path / "e",
    )
    result = dg.materialize(
        [*all_assets, *all_checks],
        resources={
            "settings": ProgressSettings(landing_dir=str(landing), as_of=AS_OF),
            "warehouse": WarehouseResource(path=str(warehouse)),
            "warehouse_reader": WarehouseReader(path=str(warehouse)),
        },
        run_config={"ops": {"exports__academy_exports": {"config": {"out_dir": str(out)}}}},
    )
    assert result.success
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["as_of"] == AS_OF and manifest["run_id"] == result.run_id
    assert {f["table"] for f in manifest["files"] if f["rows"]} >= {"session_progress"}


# --------------------------------------------------------------------------------------------
# Analyst guide
# --------------------------------------------------------------------------------------------

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "analyst-guide.md"


def test_analyst_guide_queries_run_and_every_column_is_documented(warehouse):
    text = GUIDE.read_text(encoding="utf-8")
    blocks = re.findall(r"```sql\n(.*?)```", text, re.DOTALL)
    queries = [b for b in blocks if "read_parquet" not in b]  # those read an export folder
    assert len(queries) >= 10
    with duckdb.connect(str(warehouse), read_only=True) as con:
        for query in queries:
            for statement in filter(str.strip, query.split(";")):
                con.sql(statement).fetchall()
        columns = con.execute(
            "SELECT table_name, column_name FROM duckdb_columns() WHERE schema_name = 'marts'"
        ).fetchall()
    for table, column in columns:
        if table != "publication":
            assert f"`{column}`" in text, (table, column)
    for name in [
        *VIEWS,
        "session_progress",
        "lecture_progress",
        "risk_log",
        "clinic_links",
        "dim_labels",
    ]:
        assert f"`marts.{name}`" in text, name


def test_exports_job_follows_each_successful_publication(tmp_path, monkeypatch):
    """progress_job publishes; the run-status sensor asks for one exports_job run keyed by it;
    exports_job (from the real code location) writes the export of that publication."""
    from pipelines.definitions import defs
    from pipelines.sensors import exports_after_publication

    landing, warehouse = landing_with(tmp_path, **EVENTS), tmp_path / "wh.duckdb"
    for name, value in {
        "PROGRESS_LANDING": landing,
        "PROGRESS_WAREHOUSE": warehouse,
        "PROGRESS_TIMEZONE": "Asia/Seoul",
        "PROGRESS_EXPORTS": "",
    }.items():
        monkeypatch.setenv(name, str(value))
    instance = dg.DagsterInstance.ephemeral()
    published = defs.resolve_job_def("progress_job").execute_in_process(instance=instance)
    assert published.success
    assert not (tmp_path / "exports").exists()  # the publication does not wait for exports
    request = sensor_request(exports_after_publication, instance, published)
    assert request.run_key == f"exports-after-{published.run_id}"
    exported = defs.resolve_job_def("exports_job").execute_in_process(
        instance=instance, tags=request.tags
    )
    assert exported.success
    manifest = json.loads((tmp_path / "exports" / "manifest.json").read_text(encoding="utf-8"))
    with duckdb.connect(str(warehouse), read_only=True) as con:
        (rows,) = con.execute("SELECT count(*) FROM marts.session_progress").fetchone()
    assert (
        sum(
            f["rows"]
            for f in manifest["files"]
            if f["table"] == "session_progress" and f["format"] == "csv"
        )
        == rows
        == 4
    )
