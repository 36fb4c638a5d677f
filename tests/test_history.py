"""Scheduled operation: daily history partitions, backfill, risk alerts, schedule and sensor."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import duckdb
import polars as pl
import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

from assets.history import DAILY_KEY, HISTORY_KEYS, history_assets
from checks.history_checks import history_violations, run_dates
from pipelines.backfill import alerts_summary, run_backfill
from pipelines.cli_history import alerts, alerts_table, backfill
from pipelines.core.history import (
    HISTORY_TABLES,
    LECTURE_PROGRESS_DAILY_COLUMNS,
    daily_history,
    end_of_day,
    lecture_progress_on,
    replace_dates,
    risk_alerts,
    risk_daily_summary,
)
from pipelines.core.history_schemas import HISTORY_MODELS
from pipelines.core.ingest import ingest_all
from pipelines.core.marts import build_marts
from pipelines.core.schemas import validate
from pipelines.definitions import defs
from pipelines.exit_codes import ExitCode
from pipelines.operations import HISTORY_GROUP, MARTS_FRESHNESS
from pipelines.resources import WAREHOUSE_POOL, ProgressSettings
from pipelines.runner import run_pipeline
from pipelines.schedules import DEFAULT_CRON, build_daily_schedule, daily_schedule
from pipelines.sensors import landing_sensor
from tests.conftest import landing_with

SEOUL = ZoneInfo("Asia/Seoul")

# Three daily sessions; the student completes none until session 3 is fully done on 03-05:
# 03-02 streak 1 NORMAL, 03-03 streak 2 WARNING, 03-04 streak 3 DANGER, 03-05 streak 0 NORMAL.
SLIPPING = {
    "sessions": [
        "101,1,1,1차시,2026-03-02",
        "102,1,2,2차시,2026-03-03",
        "103,1,3,3차시,2026-03-04",
        "104,1,4,4차시,2026-12-01",
    ],
    "enrollments": ["1000,1,7,ACTIVE,2026-03-01 09:00", "1001,1,8,ACTIVE,2026-03-01 09:00"],
    "attendance": [
        "1000,103,offline,2026-03-05 10:00",
        "1001,101,offline,2026-03-02 10:00",
        "1001,102,offline,2026-03-03 10:00",
        "1001,103,offline,2026-03-04 10:00",
    ],
    "submissions": [
        "1,1000,103,exam,80,,2026-03-05 11:00",
        "2,1000,103,homework,,true,2026-03-05 12:00",
        "3,1001,102,exam,90,,2026-03-03 11:00",
        "4,1001,102,homework,,true,2026-03-03 12:00",
        "5,1001,103,exam,95,,2026-03-04 11:00",
        "6,1001,103,homework,,true,2026-03-04 12:00",
    ],
}


DEFS = defs  # the code location itself (pipelines/definitions.py)


def raw_of(landing: Path) -> dict[str, pl.DataFrame]:
    return {t: r.raw for t, r in ingest_all(landing).items()}


def query(warehouse: Path, sql: str, params: list | None = None) -> pl.DataFrame:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(sql, params or []).pl()


# --------------------------------------------------------------------------------------------
# Pure history functions
# --------------------------------------------------------------------------------------------


def _history_row(
    day: str,
    enrollment: int,
    level: str,
    rule: str | None = None,
    failed: int = 0,
    low: int = 0,
    status: str = "ACTIVE",
    rate: float = 0.5,
) -> dict:
    return {
        "as_of_date": date.fromisoformat(day),
        "enrollment_id": enrollment,
        "lecture_id": 1,
        "academy_id": 10,
        "student_id": enrollment + 1,
        "status": status,
        "completion_rate": rate,
        "consecutive_failed_sessions": failed,
        "consecutive_low_scores": low,
        "risk_level": level,
        "risk_rule": rule,
        "last_session_id": 100 + failed,
    }


INC, LOW = "CONSECUTIVE_INCOMPLETE", "CONSECUTIVE_LOW_SCORE"


def test_alerts_on_hand_made_history_normal_warning_danger_normal():
    history = pl.DataFrame(
        [
            # enrollment 1: NORMAL -> WARNING -> DANGER -> NORMAL
            _history_row("2026-03-02", 1, "NORMAL", failed=1),
            _history_row("2026-03-03", 1, "WARNING", INC, failed=2),
            _history_row("2026-03-04", 1, "DANGER", INC, failed=3),
            _history_row("2026-03-05", 1, "NORMAL", failed=0),
            # enrollment 2: DANGER by low scores from the start, then NORMAL -> DANGER directly
            _history_row("2026-03-02", 2, "DANGER", LOW, low=3),
            _history_row("2026-03-03", 2, "DANGER", LOW, low=4),
            _history_row("2026-03-04", 2, "NORMAL"),
            _history_row("2026-03-05", 2, "DANGER", LOW, failed=1, low=3),
            # enrollment 3: appears on 03-05 already at WARNING (absent the day before = NORMAL)
            _history_row("2026-03-05", 3, "WARNING", INC, failed=2),
            # enrollment 4: WARNING on the first date (no baseline, no alert); then a rule change at
            # the same level, which is not a rise
            _history_row("2026-03-02", 4, "WARNING", INC, failed=2),
            _history_row("2026-03-03", 4, "WARNING", INC, failed=2),
            _history_row("2026-03-04", 4, "WARNING", INC, failed=3),
            _history_row("2026-03-05", 4, "WARNING", LOW, low=2, failed=2),
            # 03-09 has no 03-08 in the history: nothing to compare with, no alerts
            _history_row("2026-03-09", 1, "DANGER", INC, failed=3),
        ]
    )
    alerts_frame = risk_alerts(history)
    validate(HISTORY_MODELS["risk_alerts"], alerts_frame)
    got = alerts_frame.select(
        pl.col("as_of_date").cast(pl.String),
        "enrollment_id",
        "previous_level",
        "risk_level",
        "rule",
        "streak",
        "reason",
    ).rows()
    assert got == [
        ("2026-03-03", 1, "NORMAL", "WARNING", INC, 2, "연속 2차시 미완료"),
        ("2026-03-04", 1, "WARNING", "DANGER", INC, 3, "연속 3차시 미완료"),
        ("2026-03-05", 2, "NORMAL", "DANGER", LOW, 3, "연속 3회 저점수"),
        ("2026-03-05", 3, "NORMAL", "WARNING", INC, 2, "연속 2차시 미완료"),
    ]


def test_daily_summary_counts_active_enrollments():
    history = pl.DataFrame(
        [
            _history_row("2026-03-02", 1, "NORMAL", rate=0.5),
            _history_row("2026-03-02", 2, "WARNING", INC, failed=2, rate=0.25),
            _history_row("2026-03-02", 3, "DANGER", INC, failed=3, rate=0.0),
            _history_row("2026-03-02", 4, "NORMAL", status="DROPPED", rate=0.0),
        ]
    )
    summary = risk_daily_summary(history)
    assert summary.drop("as_of_date").rows(named=True) == [
        {
            "academy_id": 10,
            "lecture_id": 1,
            "enrollments": 4,
            "active_enrollments": 3,
            "normal_count": 1,
            "warning_count": 1,
            "danger_count": 1,
            "completion_rate": 0.25,
        }
    ]


def test_history_of_a_date_is_lecture_progress_as_of_its_end(tmp_path):
    raw = raw_of(landing_with(tmp_path, **SLIPPING))
    levels = {}
    for day in ("2026-03-02", "2026-03-03", "2026-03-04", "2026-03-05"):
        d = date.fromisoformat(day)
        frames = daily_history(raw, d)
        for name, frame in frames.items():
            validate(HISTORY_MODELS[name], frame)
        progress = frames["lecture_progress_daily"]
        expected = build_marts(raw, datetime(d.year, d.month, d.day, 23, 59, 59))[
            "lecture_progress"
        ]
        assert progress.columns == LECTURE_PROGRESS_DAILY_COLUMNS
        assert progress.drop("as_of_date").equals(expected)
        levels[day] = dict(zip(progress["enrollment_id"], progress["risk_level"], strict=True))
    assert [levels[d][1000] for d in sorted(levels)] == ["NORMAL", "WARNING", "DANGER", "NORMAL"]
    assert {levels[d][1001] for d in levels} == {"NORMAL"}


def test_replace_dates_touches_only_its_dates(tmp_path):
    raw = raw_of(landing_with(tmp_path, **SLIPPING))
    warehouse = tmp_path / "wh.duckdb"
    days = [date(2026, 3, 2), date(2026, 3, 3)]
    with duckdb.connect(str(warehouse)) as con:
        for day in days:
            replace_dates(
                con, {"marts.lecture_progress_daily": lecture_progress_on(raw, day)}, [day]
            )
        again = lecture_progress_on(raw, days[0]).with_columns(pl.lit(9).alias("student_id"))
        replace_dates(con, {"marts.lecture_progress_daily": again}, [days[0]])
        with pytest.raises(ValueError, match="outside"):
            replace_dates(con, {"marts.lecture_progress_daily": again}, [days[1]])
    stored = query(
        warehouse, "SELECT as_of_date, student_id FROM marts.lecture_progress_daily ORDER BY 1, 2"
    ).rows()
    assert stored == [(days[0], 9), (days[0], 9), (days[1], 7), (days[1], 8)]


# --------------------------------------------------------------------------------------------
# Backfill through Dagster, compared with separate as-of computations and `progress run`
# --------------------------------------------------------------------------------------------


def cli() -> typer.Typer:
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command()(backfill)
    app.command()(alerts)
    return app


def test_three_day_backfill_equals_three_as_of_runs(tmp_path, monkeypatch):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    landing = landing_with(tmp_path, **SLIPPING)
    warehouse = tmp_path / "wh.duckdb"
    instance = dg.DagsterInstance.ephemeral()
    seen: list[list[date]] = []
    report = run_backfill(
        date(2026, 3, 3),
        date(2026, 3, 5),
        landing,
        warehouse,
        on_chunk=lambda days, run_id: seen.append(days),
        instance=instance,
    )
    days = [date(2026, 3, 3), date(2026, 3, 4), date(2026, 3, 5)]
    assert seen == [days] and list(report.runs) == days  # one single-run backfill of 3 dates

    # Dagster's partition machinery recorded every date; every run carries the backfill tag
    assert instance.get_materialized_partitions(DAILY_KEY) == {d.isoformat() for d in days}
    runs = instance.get_runs(dg.RunsFilter(tags={"progress/backfill": report.backfill_id}))
    assert len(runs) == 2  # ingest, then the range
    assert {
        (
            r.tags.get("dagster/asset_partition_range_start"),
            r.tags.get("dagster/asset_partition_range_end"),
        )
        for r in runs
    } == {(None, None), ("2026-03-03", "2026-03-05")}

    raw = raw_of(landing)
    stored = query(warehouse, "SELECT * FROM marts.lecture_progress_daily ORDER BY ALL")
    expected = pl.concat([lecture_progress_on(raw, d) for d in days])
    assert stored.equals(expected.sort(stored.columns))
    for name in ("risk_daily_summary", "risk_alerts"):
        got = query(warehouse, f"SELECT * FROM marts.{name} ORDER BY ALL")
        want = pl.concat([daily_history(raw, d)[name] for d in days])
        assert got.equals(want.sort(got.columns)), name
    alerts_rows = query(
        warehouse,
        "SELECT as_of_date, enrollment_id, previous_level, "
        "risk_level, reason FROM marts.risk_alerts ORDER BY 1",
    ).rows()
    assert alerts_rows == [  # 03-03 compared with 03-02, which was never materialized
        (date(2026, 3, 3), 1000, "NORMAL", "WARNING", "연속 2차시 미완료"),
        (date(2026, 3, 4), 1000, "WARNING", "DANGER", "연속 3차시 미완료"),
    ]
    assert report.per_date is not None and report.per_date["alerts"].to_list() == [1, 1, 0]

    # the same date through `progress run --as-of "D 23:59:59"`
    other = tmp_path / "run.duckdb"
    run_report = run_pipeline(landing, other, as_of="2026-03-04 23:59:59")
    run_progress = query(other, "SELECT * FROM marts.lecture_progress ORDER BY enrollment_id")
    history = query(
        warehouse,
        "SELECT * EXCLUDE (as_of_date) FROM marts.lecture_progress_daily "
        "WHERE as_of_date = DATE '2026-03-04' ORDER BY enrollment_id",
    )
    assert history.equals(run_progress)

    # the alerts summary of that run equals the stored alerts of the date
    summary = alerts_summary(other, run_report.as_of)
    stored_alerts = query(
        warehouse, "SELECT * FROM marts.risk_alerts WHERE as_of_date = DATE '2026-03-04'"
    )
    assert summary.alerts.drop("lecture_title").equals(stored_alerts)
    assert summary.counts == {"WARNING": 0, "DANGER": 1}
    out = Console(record=True, width=160)
    out.print(alerts_table(summary))
    printed = out.export_text()
    assert "1 DANGER" in printed and "연속 3차시 미완료" in printed

    # one run per date gives the same rows; re-materializing replaces those dates only
    before = query(warehouse, "SELECT * FROM marts.lecture_progress_daily ORDER BY ALL")
    again = run_backfill(
        date(2026, 3, 4), date(2026, 3, 5), landing, warehouse, instance=instance, days_per_run=1
    )
    assert len(set(again.runs.values())) == 2
    assert {
        r.tags.get("dagster/partition")
        for r in instance.get_runs(dg.RunsFilter(tags={"progress/backfill": again.backfill_id}))
    } == {None, "2026-03-04", "2026-03-05"}
    assert query(warehouse, "SELECT * FROM marts.lecture_progress_daily ORDER BY ALL").equals(
        before
    )

    # and the CLI reads the alerts back
    result = CliRunner().invoke(
        cli(), ["alerts", "--warehouse", str(warehouse), "--date", "2026-03-04"]
    )
    assert result.exit_code == 0, result.output
    assert "DANGER" in result.output and "1000" in result.output
    # a backfilled day without alerts is a day of the history: 0 alerts, and the latest one
    for args in (["--date", "2026-03-05"], []):
        zero = CliRunner().invoke(cli(), ["alerts", "--warehouse", str(warehouse), "--json", *args])
        assert zero.exit_code == 0, zero.output
        found = json.loads(zero.stdout)
        assert found["date"] == "2026-03-05" and found["total"] == 0 and found["alerts"] == []


def test_backfill_cli_progress_and_one_line_errors(tmp_path, monkeypatch):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    landing = landing_with(tmp_path, **SLIPPING)
    warehouse = tmp_path / "wh.duckdb"
    runner = CliRunner()
    ok = runner.invoke(
        cli(),
        [
            "backfill",
            "--start",
            "2026-03-04",
            "--end",
            "2026-03-05",
            "--landing",
            str(landing),
            "--warehouse",
            str(warehouse),
            "--days-per-run",
            "1",
        ],
    )
    assert ok.exit_code == 0, ok.output
    assert "2 dates" in ok.output and "history" in ok.output
    for args, message in [
        (["--start", "2026-03-05", "--end", "2026-03-04"], "is before --start"),
        (["--start", "2026-02-01", "--end", "2026-03-04"], "before the first history date"),
        (["--start", "2026-03-04", "--end", "2999-01-01"], "not a finished day yet"),
        (["--start", "March 4", "--end", "2026-03-04"], "is not a date"),
    ]:
        bad = runner.invoke(
            cli(), ["backfill", *args, "--landing", str(landing), "--warehouse", str(warehouse)]
        )
        assert bad.exit_code == ExitCode.USAGE and message in bad.output, bad.output
        assert "Traceback" not in bad.output
    missing = runner.invoke(
        cli(),
        [
            "backfill",
            "--start",
            "2026-03-04",
            "--end",
            "2026-03-04",
            "--landing",
            str(tmp_path / "nope"),
            "--warehouse",
            str(warehouse),
        ],
    )
    assert missing.exit_code == ExitCode.USAGE and "does not exist" in missing.output
    none = runner.invoke(cli(), ["alerts", "--warehouse", str(warehouse), "--date", "2026-03-09"])
    assert none.exit_code == ExitCode.USAGE and "no history for 2026-03-09" in none.output


def test_history_checks_flag_disagreement(tmp_path):
    raw = raw_of(landing_with(tmp_path, **SLIPPING))
    frames = daily_history(raw, date(2026, 3, 4))
    assert history_violations(*(frames[n] for n in HISTORY_TABLES)) == []
    tampered = frames["risk_alerts"].with_columns(pl.lit("WARNING").alias("risk_level"))
    summary = frames["risk_daily_summary"].with_columns(pl.lit(0).alias("danger_count"))
    problems = history_violations(frames["lecture_progress_daily"], summary, tampered)
    assert len(problems) == 2
    assert run_dates({"dagster/partition": "2026-03-04"}) == [date(2026, 3, 4)]
    assert run_dates(
        {
            "dagster/asset_partition_range_start": "2026-03-04",
            "dagster/asset_partition_range_end": "2026-03-06",
        }
    ) == [date(2026, 3, 4), date(2026, 3, 5), date(2026, 3, 6)]
    assert run_dates({}) is None


# --------------------------------------------------------------------------------------------
# Sensor and schedule
# --------------------------------------------------------------------------------------------


def tick(landing: Path, cursor: str | None) -> dg.SensorExecutionData:
    with dg.build_sensor_context(
        cursor=cursor,
        resources={"settings": ProgressSettings(landing_dir=str(landing))},
        definitions=DEFS,
    ) as context:
        return landing_sensor.evaluate_tick(context)


def schedule_tick(when: datetime, schedule: dg.ScheduleDefinition = daily_schedule):
    with dg.build_schedule_context(
        scheduled_execution_time=when, repository_def=DEFS.get_repository_def()
    ) as context:
        return schedule.evaluate_tick(context).run_requests


def test_sensor_runs_once_per_set_of_file_contents(tmp_path):
    landing = landing_with(tmp_path)
    first = tick(landing, None)
    assert len(first.run_requests) == 1
    request = first.run_requests[0]
    assert request.run_key.startswith("landing-") and request.partition_key
    cursor = json.loads(first.cursor)
    # the contract's files only (the optional outcomes extract is not there)
    assert set(cursor) == {f"{t}.csv" for t, r in ingest_all(landing).items() if r.files}

    same = tick(landing, first.cursor)  # same files: nothing
    assert same.run_requests == [] and same.skip_message

    (landing / "notes.txt").write_text("not an extract")
    (landing / ".attendance.csv").write_text("half-written")
    rewritten = (landing / "lectures.csv").read_bytes()
    (landing / "lectures.csv").write_bytes(rewritten)  # touched, same content
    assert tick(landing, first.cursor).run_requests == []

    (landing / "lectures.csv").write_bytes(rewritten + b"2,20,new lecture\n")  # changed
    changed = tick(landing, first.cursor)
    assert len(changed.run_requests) == 1
    assert changed.run_requests[0].run_key != request.run_key
    assert tick(landing, changed.cursor).run_requests == []

    (landing / "attendance").mkdir()  # a new daily drop in a table folder
    (landing / "attendance" / "2026-03-02.csv").write_text(
        "enrollment_id,session_id,attendance_type,recorded_at\n1000,101,offline,2026-03-02\n"
    )
    added = tick(landing, changed.cursor)
    assert len(added.run_requests) == 1
    assert "attendance/2026-03-02.csv" in json.loads(added.cursor)

    # outcomes delivered: a run, whose marts group re-evaluates the rules (rule_evaluation)
    (landing / "outcomes.csv").write_text("enrollment_id,result,decided_at\n1000,PASS,\n")
    evaluated = tick(landing, added.cursor)
    assert len(evaluated.run_requests) == 1 and "outcomes.csv" in json.loads(evaluated.cursor)

    assert tick(tmp_path / "empty", None).run_requests == []


def test_schedule_materializes_yesterday_and_current_marts(monkeypatch):
    assert daily_schedule.cron_schedule == DEFAULT_CRON == "0 6 * * *"
    assert daily_schedule.execution_timezone == "Asia/Seoul"
    when = datetime(2026, 3, 10, 6, 0, tzinfo=SEOUL)
    (request,) = schedule_tick(when)
    assert request.partition_key == "2026-03-09" and request.run_key == "daily-2026-03-10"
    assert request.asset_selection is None  # the whole daily_job: raw, marts and history
    # 06:00 in Seoul is 21:00 UTC the day before: the partition follows the Seoul day
    utc = datetime(2026, 3, 9, 21, 0, tzinfo=ZoneInfo("UTC"))
    (utc_request,) = schedule_tick(utc)
    assert utc_request.partition_key == "2026-03-09"
    # the first day has no yesterday partition: the current marts only
    first = datetime(2026, 3, 1, 6, 0, tzinfo=SEOUL)
    (only_marts,) = schedule_tick(first)
    assert only_marts.partition_key is None
    assert only_marts.asset_selection and not set(only_marts.asset_selection) & set(
        HISTORY_KEYS.values()
    )
    monkeypatch.setenv("PROGRESS_SCHEDULE_CRON", "30 5 * * *")
    assert build_daily_schedule().cron_schedule == "30 5 * * *"


# --------------------------------------------------------------------------------------------
# Wiring: the lines pipelines/definitions.py gets
# --------------------------------------------------------------------------------------------


def test_definitions_wire_history_schedule_sensor_and_operations():
    defs = DEFS
    dg.Definitions.validate_loadable(defs)
    assert defs.resolve_job_def("progress_job").partitions_def is None
    assert defs.resolve_job_def("daily_job").partitions_def is not None
    specs = {s.key: s for s in defs.resolve_all_asset_specs()}
    for key in HISTORY_KEYS.values():
        assert specs[key].group_name == HISTORY_GROUP and specs[key].description
        assert specs[key].freshness_policy == MARTS_FRESHNESS
        assert specs[key].partitions_def is not None
    assert history_assets[0].op.pool == WAREHOUSE_POOL
    assert end_of_day(date(2026, 3, 4)) == datetime(2026, 3, 4, 23, 59, 59)
