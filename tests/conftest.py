"""Shared helpers: tiny landing folders written from CSV text."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import polars as pl
import pytest
from hypothesis import settings

from pipelines.core.ingest import TableIngest, ingest_all
from pipelines.core.marts import RiskThresholds, build_marts

pytest_plugins = ["tests.lake_fixtures"]  # a real Postgres and moto's S3 server for test_lake.py

# CI runs the same Hypothesis examples every time (a red CI is then reproducible); local runs
# keep exploring new ones.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

HEADERS = {
    "lectures": "lecture_id,academy_id,title",
    "sessions": "session_id,lecture_id,session_order,title,session_date",
    "policies": "lecture_id,video_required_rate,exam_start_session_order,exam_end_session_order,"
    "exam_pass_score,homework_start_session_order,homework_end_session_order,"
    "homework_pass_type,homework_pass_score",
    "enrollments": "enrollment_id,lecture_id,student_id,status,enrolled_at",
    "attendance": "enrollment_id,session_id,attendance_type,recorded_at",
    "video_progress": "enrollment_id,session_id,progress_rate,recorded_at",
    "submissions": "submission_id,enrollment_id,session_id,kind,score,teacher_approved,"
    "submitted_at",
    "clinic_requests": "enrollment_id,session_id,reason,approved,memo,requested_at",
}


def write_landing(
    root: Path, rows: dict[str, list[str]], headers: dict[str, str] | None = None
) -> Path:
    """Write `<table>.csv` for every contract table (header-only when not given)."""
    root.mkdir(parents=True, exist_ok=True)
    headers = HEADERS | (headers or {})
    for table, header in headers.items():
        lines = [header, *rows.get(table, [])]
        (root / f"{table}.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


# A lecture (id 1, academy 10) with 4 weekly sessions; session 4 is in the future.
BASE = {
    "lectures": ["1,10,고2 수학"],
    "sessions": [
        "101,1,1,1차시,2026-03-02",
        "102,1,2,2차시,2026-03-09",
        "103,1,3,3차시,2026-03-16",
        "104,1,4,4차시,2026-12-01",
    ],
    "enrollments": ["1000,1,7,ACTIVE,2026-03-01 09:00"],
}
AS_OF = datetime(2026, 11, 25, 12, 0, 0)


def landing_with(tmp_path: Path, **extra: list[str]) -> Path:
    rows = {k: list(v) for k, v in BASE.items()}
    for table, lines in extra.items():
        rows[table] = lines
    return write_landing(tmp_path / "landing", rows)


def sensor_request(sensor, instance, published):
    """What run-status `sensor` asks for after the successful in-process run `published`."""
    import dagster as dg

    context = dg.build_run_status_sensor_context(
        sensor_name=sensor.name,
        dagster_instance=instance,
        dagster_run=published.dagster_run,
        dagster_event=published.get_run_success_event(),
    )
    return sensor(context)


def marts_for(
    landing: Path, as_of: datetime = AS_OF, thresholds: RiskThresholds | None = None
) -> dict[str, pl.DataFrame]:
    ingested = ingest_all(landing)
    return build_marts({t: r.raw for t, r in ingested.items()}, as_of, thresholds)


def row(frame: pl.DataFrame, **where) -> dict:
    found = frame.filter(*(pl.col(k) == v for k, v in where.items()))
    assert found.height == 1, f"expected one row for {where}, got {found.height}"
    return found.row(0, named=True)


@pytest.fixture
def ingest(tmp_path):
    def _ingest(
        rows: dict[str, list[str]], headers: dict[str, str] | None = None
    ) -> dict[str, TableIngest]:
        return ingest_all(write_landing(tmp_path / "landing", rows, headers))

    return _ingest


# The longest test files first. Seconds per file in two whole-suite runs on the shared 2-core
# machine (2026-12-02; serial at load 6-9 / on 2 workers at load 12-16): publication_safety
# 349 / 714, reliability 163 / 285, dagster 87 / 193, bench 46 / 133, evaluation 53 / 84,
# cli_run 26 / 89, asset_checks 32 / 88, reference_property 40 / 82, history 53 / 65, consume
# 13 / 54, report (Chromium) - / 39, generated_vs_reference 50 / 35, corruption 22 / 24; the
# rest under 25 each; lake (a real Postgres, 10 publisher kills) 80-88 / - serial at load
# 10-17 (2026-12-03). Whole suite on 2 workers, load 4-14 (2026-12-03, 807 s): bench ~215
# (its module fixture 176), bucketed_ingest ~360 (small batches 169, random extracts 84; now
# split, the equivalence half in bucketed_equivalence), lake_run ~190, publication_safety ~230
# (kills 124 + 12; now split, the kills in publication_kills), reliability ~77. With
# `--dist loadfile` a worker takes the next whole file when it is free, so starting with the
# longest keeps one long file from running alone at the end.
LONGEST_FIRST = [
    "test_bench.py",
    "test_lake_run.py",
    "test_lake_faults.py",
    "test_bucketed_equivalence.py",
    "test_publication_kills.py",
    "test_publication_safety.py",
    "test_bucketed_ingest.py",
    "test_reliability.py",
    "test_dagster.py",
    "test_lake.py",
    "test_bench_lake.py",
    "test_evaluation.py",
    "test_history.py",
    "test_cli_run.py",
    "test_asset_checks.py",
    "test_reference_property.py",
    "test_consume.py",
    "test_report.py",
    "test_generated_vs_reference.py",
    "test_corruption.py",
    "test_cli.py",
    "test_export_stream.py",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(LONGEST_FIRST)))  # stable
