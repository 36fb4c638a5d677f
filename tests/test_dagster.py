"""Real Dagster runs (in-process) into a real DuckDB file: assets, checks, blocking, atomicity."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest

from assets import core_assets
from checks import all_checks
from pipelines.core.contract import TABLES
from pipelines.core.paths import rejected_path
from pipelines.core.warehouse import replace_tables
from pipelines.definitions import defs
from pipelines.resources import ProgressSettings, WarehouseResource
from pipelines.runner import RunFailed, run_pipeline
from tests.conftest import landing_with, marts_for

AS_OF = "2026-11-25 12:00:00"
EVENTS = {
    "policies": ["1,80,1,9999,60,1,9999,SUBMIT,"],
    "video_progress": ["1000,101,90,2026-03-02 10:00", "1000,102,20,2026-03-09 10:00"],
    "submissions": [
        "1,1000,101,exam,80,,2026-03-02 11:00",
        "2,1000,101,homework,,,2026-03-02",
        "3,1000,102,exam,30,,2026-03-09 11:00",
    ],
    "attendance": ["1000,103,online,2026-03-16 10:00"],
    "clinic_requests": ["1000,102,AUTO_FAILED,true,보충 확정,2026-03-10 09:00"],
}


def materialize(landing: Path, warehouse: Path) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [*core_assets, *all_checks],
        resources={
            "settings": ProgressSettings(landing_dir=str(landing), as_of=AS_OF),
            "warehouse": WarehouseResource(path=str(warehouse)),
        },
        raise_on_error=False,
    )


def query(warehouse: Path, sql: str):
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(sql).fetchall()


def test_definitions_load_with_layers_descriptions_and_checks():
    specs = {spec.key: spec for spec in defs.resolve_all_asset_specs()}
    groups = {key.path[0]: set() for key in specs}
    for key, spec in specs.items():
        groups[key.path[0]].add(spec.group_name)
        assert spec.description, key
        if key.path[0] in ("raw", "quarantine", "marts"):  # visible before any run
            schema = spec.metadata["dagster/column_schema"]
            assert schema.columns and all(c.description for c in schema.columns), key
    assert groups == {
        "raw": {"raw"},
        "quarantine": {"quarantine"},
        "marts": {"marts", "history"},
        "exports": {"exports"},
    }
    assert {k.path[1] for k in specs if k.path[0] == "raw"} == set(TABLES)
    assert {k.path[1] for k in specs if k.path[0] == "marts"} == {
        "session_progress",
        "lecture_progress",
        "risk_log",
        "clinic_links",
        "dim_labels",
        "v_at_risk_students",
        "v_lecture_summary",
        "v_session_funnel",
        "v_clinic_queue",
        "lecture_progress_daily",
        "risk_daily_summary",
        "risk_alerts",
        "rule_evaluation",
    }
    check_keys = defs.resolve_asset_graph().asset_check_keys
    assert len(check_keys) == 5 * len(TABLES) + 5 + 4 + 4 + 1
    assert defs.resolve_job_def("progress_job") is not None


def test_materialize_everything_into_duckdb(tmp_path):
    landing = landing_with(tmp_path, **EVENTS)
    warehouse = tmp_path / "wh.duckdb"
    result = materialize(landing, warehouse)
    assert result.success
    evaluations = result.get_asset_check_evaluations()
    assert evaluations and all(e.passed for e in evaluations), [
        (e.check_name, e.description) for e in evaluations if not e.passed
    ]
    expected = marts_for(landing, datetime(2026, 11, 25, 12))
    with duckdb.connect(str(warehouse), read_only=True) as con:
        for name, frame in expected.items():
            stored = con.sql(f"SELECT * FROM marts.{name}").pl()
            assert stored.sort(stored.columns).equals(frame.sort(frame.columns)), name
        comments = con.execute(
            "SELECT count(*), count(comment) FROM duckdb_columns() WHERE schema_name = 'marts'"
        ).fetchone()
    assert comments[0] == comments[1] > 50  # every mart column carries its description
    assert query(
        warehouse, "SELECT comment FROM duckdb_tables() WHERE table_name = 'session_progress'"
    )[0][0].startswith("One row per enrollment")
    assert query(
        warehouse,
        "SELECT approved, memo FROM marts.clinic_links "
        "WHERE session_id = 102 AND reason = 'AUTO_FAILED'",
    ) == [(True, "보충 확정")]


def test_broken_event_extract_publishes_nothing(tmp_path):
    warehouse = tmp_path / "wh.duckdb"
    good = landing_with(tmp_path / "good", **EVENTS)
    run_pipeline(good, warehouse, AS_OF)
    before = query(warehouse, "SELECT * FROM marts.session_progress ORDER BY ALL")
    # 5 of 6 attendance rows bad (> 5% and >= 5 rows): the run publishes nothing at all
    bad = landing_with(
        tmp_path / "bad",
        **{
            **EVENTS,
            "attendance": [
                "1000,101,online,2026-03-02",
                *(f"1000,101,ONLINE,2026-03-0{d}" for d in range(3, 8)),
            ],
        },
    )
    (bad / "video_progress.csv").write_text("enrollment_id,session_id,progress_rate,recorded_at\n")
    with pytest.raises(
        RunFailed,
        match=r"^attendance: 5 of 6 rows \(83\.3%\) quarantined, "
        r"mostly invalid_enum in attendance\.csv$",
    ):
        run_pipeline(bad, warehouse, AS_OF)
    assert query(warehouse, "SELECT * FROM marts.session_progress ORDER BY ALL") == before
    assert query(warehouse, "SELECT count(*) FROM quarantine.attendance") == [(0,)]
    assert query(warehouse, "SELECT marts_refreshed FROM marts.publication") == [(True,)]
    assert query(warehouse, "SELECT count(*) FROM raw.video_progress") == [(2,)]
    assert query(rejected_path(warehouse), "SELECT count(*) FROM quarantine.attendance") == [(5,)]


def test_small_share_or_few_rows_only_warn(tmp_path):
    landing = landing_with(tmp_path, **EVENTS)  # 4 of 7 attendance rows bad: < 5 rows
    (landing / "attendance.csv").write_text(
        "enrollment_id,session_id,attendance_type,"
        "recorded_at\n1000,103,online,2026-03-16 10:00\n" + "1000,101,ONLINE,2026-03-02\n" * 4
    )
    report = run_pipeline(landing, tmp_path / "wh.duckdb", AS_OF)
    assert any(
        w.startswith("attendance: 80.0% of delivered rows quarantined") for w in report.warnings
    ), report.warnings


def test_reference_table_share_only_warns(tmp_path):
    landing = landing_with(tmp_path, **EVENTS)
    (landing / "lectures.csv").write_text("lecture_id,academy_id,title\n1,10,a\nx,10,b\n")
    report = run_pipeline(landing, tmp_path / "wh.duckdb", AS_OF)
    assert any("lectures: 50.0%" in w for w in report.warnings)
    assert report.table_rows["marts.lecture_progress"] == 1


def test_absent_extract_is_reported_and_the_run_goes_on(tmp_path):
    landing = landing_with(tmp_path, **EVENTS)
    (landing / "clinic_requests.csv").unlink()
    report = run_pipeline(landing, tmp_path / "wh.duckdb", AS_OF)
    assert any("'clinic_requests', ingested as empty (expected" in w for w in report.warnings)
    assert query(tmp_path / "wh.duckdb", "SELECT count(*) FROM raw.clinic_requests") == [(0,)]


def test_refused_file_publishes_nothing_and_names_the_file(tmp_path):
    landing = landing_with(tmp_path, **EVENTS)
    (landing / "submissions.csv").unlink()
    (landing / "submissions.parquet").write_bytes(b"garbage")
    with pytest.raises(
        RunFailed,
        match=r"^submissions\.parquet: refused \(not a readable "
        "Parquet file",
    ):
        run_pipeline(landing, tmp_path / "wh.duckdb", AS_OF)
    assert not (tmp_path / "wh.duckdb").exists()
    assert query(
        rejected_path(tmp_path / "wh.duckdb"),
        "SELECT refused_files FROM raw.ingest_audit WHERE table_name = 'submissions'",
    )[0][0].startswith("submissions.parquet: refused")


def test_replace_tables_is_atomic(tmp_path):
    path = tmp_path / "wh.duckdb"
    with duckdb.connect(str(path)) as con:
        replace_tables(con, {"marts.a": pl.DataFrame({"x": [1, 2]})})
        with pytest.raises(duckdb.Error):
            replace_tables(
                con,
                {"marts.a": pl.DataFrame({"x": [3]}), "marts.b": pl.DataFrame({"y": [1]})},
                statements=[("SELECT * FROM no_such_table", [])],
            )
        assert con.execute("SELECT x FROM marts.a ORDER BY x").fetchall() == [(1,), (2,)]
        assert con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'b'"
        ).fetchone() == (0,)


def test_as_of_reproduces_the_past(tmp_path):
    landing = landing_with(tmp_path, **EVENTS)
    report = run_pipeline(landing, tmp_path / "wh.duckdb", "2026-03-09T00:00:00+09:00")
    assert report.as_of == datetime(2026, 3, 9)
    rows = query(
        tmp_path / "wh.duckdb", "SELECT held_sessions, last_activity_at FROM marts.lecture_progress"
    )
    assert rows == [(2, datetime(2026, 3, 2, 11))]


def test_marts_in_enrollment_buckets_equal_one_pass(tmp_path):
    from pipelines.generate import generate_extracts

    landing = tmp_path / "landing"
    generate_extracts(landing, enrollments=60, seed=9, fmt="csv")
    hashes = {}
    for size in (1_000_000, 7):  # one pass, then buckets of 7 enrollments
        warehouse = tmp_path / f"wh-{size}.duckdb"
        result = dg.materialize(
            [*core_assets, *all_checks],
            resources={
                "settings": ProgressSettings(
                    landing_dir=str(landing), as_of=AS_OF, bucket_enrollments=size
                ),
                "warehouse": WarehouseResource(path=str(warehouse)),
            },
            raise_on_error=False,
        )
        assert result.success
        buckets = {
            m.metadata["buckets"].value
            for m in result.asset_materializations_for_node("progress_marts")
        }
        assert buckets == {1} if size > 60 else min(buckets) > 1
        hashes[size] = query(warehouse, "SELECT content_hashes FROM marts.publication")[0][0]
    expected = marts_for(landing, datetime(2026, 11, 25, 12))
    with duckdb.connect(str(tmp_path / "wh-7.duckdb"), read_only=True) as con:
        for name, frame in expected.items():
            stored = con.sql(f"SELECT * FROM marts.{name}").pl()  # rows have no set order
            assert stored.sort(stored.columns).equals(frame.sort(frame.columns)), name
    assert hashes[1_000_000] == hashes[7]
