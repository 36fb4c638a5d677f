"""The schema and invariant checks the ingest and marts assets report themselves.

They validate frames in memory before writing and compare the stored column types after, so
each check is shown failing on a real fault: a core function made to produce a row the contract
forbids (the asset is the real one, run by Dagster into a real DuckDB file), and a stored
column of the wrong type.
"""

from __future__ import annotations

import dagster as dg
import duckdb
import polars as pl

import assets.extracts
from assets import core_assets
from checks import all_checks
from checks.extract_checks import ingest_check_results
from pipelines.core import engine
from pipelines.core.ingest import ingest_table
from pipelines.core.paths import rejected_path
from pipelines.resources import ProgressSettings, WarehouseResource
from tests.conftest import landing_with
from tests.test_dagster import AS_OF, EVENTS


def run(landing, warehouse) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [*core_assets, *all_checks],
        resources={
            "settings": ProgressSettings(landing_dir=str(landing), as_of=AS_OF),
            "warehouse": WarehouseResource(path=str(warehouse)),
        },
        raise_on_error=False,
    )


def failed(result: dg.ExecuteInProcessResult) -> dict[tuple[str, str], object]:
    return {
        (e.asset_key.to_user_string(), e.check_name): e
        for e in result.get_asset_check_evaluations()
        if not e.passed
    }


def test_every_reported_check_passes_and_counts_rows(tmp_path):
    result = run(landing_with(tmp_path, **EVENTS), tmp_path / "wh.duckdb")
    assert result.success
    evaluations = {
        (e.asset_key.to_user_string(), e.check_name): e
        for e in result.get_asset_check_evaluations()
    }
    assert all(e.passed for e in evaluations.values())
    assert evaluations[("raw/submissions", "raw_schema")].metadata["rows"].value == 3
    assert evaluations[("marts/session_progress", "schema")].metadata["rows"].value == 4
    assert evaluations[("marts/clinic_links", "invariants")].metadata["violations"].value == [
        "none"
    ]


def test_raw_row_breaking_the_contract_fails_raw_schema_and_blocks_the_marts(tmp_path, monkeypatch):
    def broken(table, *args, emit, **kwargs):
        def slipped(bucket, frame):
            if table == "video_progress":  # a progress rate above 100 slips through
                frame = frame.with_columns(pl.lit(250.0).alias("progress_rate"))
            emit(bucket, frame)

        return ingest_table(table, *args, emit=slipped, **kwargs)

    monkeypatch.setattr(assets.extracts, "ingest_table", broken)
    warehouse = tmp_path / "wh.duckdb"
    result = run(landing_with(tmp_path, **EVENTS), warehouse)
    bad = failed(result)
    assert set(bad) == {("raw/video_progress", "raw_schema")}
    assert (
        "progress_rate" in bad[("raw/video_progress", "raw_schema")].metadata["failure_cases"].value
    )
    materialized = {m.asset_key.to_user_string() for m in result.get_asset_materialization_events()}
    assert "raw/attendance" in materialized
    assert "marts/session_progress" not in materialized  # blocking: the marts did not run
    assert not warehouse.exists()  # nothing published; the build is kept for inspection
    with duckdb.connect(str(rejected_path(warehouse)), read_only=True) as con:
        assert con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'marts' "
            "AND table_name = 'session_progress'"
        ).fetchone() == (0,)


def test_stored_column_of_another_type_fails_the_schema_check(tmp_path):
    # the in-memory rows are valid; only the stored type differs
    landing = landing_with(tmp_path, **EVENTS)
    refs = {}
    for table in ("lectures", "sessions", "enrollments"):
        refs[table] = ingest_table(table, landing, "Asia/Seoul", refs).raw
    result = ingest_table("attendance", landing, "Asia/Seoul", refs)
    stored = {
        "raw": result.raw.cast({"_source_row": pl.Int32}).schema,
        "quarantine": result.quarantine.schema,
    }
    raw_check, quarantine_check = ingest_check_results(result, stored)
    assert not raw_check.passed and "_source_row is Int32, expected Int64" in (
        raw_check.description
    )
    assert quarantine_check.passed


def test_mart_breaking_its_schema_is_not_published(tmp_path, monkeypatch):
    warehouse = tmp_path / "wh.duckdb"
    landing = landing_with(tmp_path, **EVENTS)
    assert run(landing, warehouse).success
    with duckdb.connect(str(warehouse), read_only=True) as con:
        before = con.execute("SELECT * FROM marts.lecture_progress ORDER BY ALL").fetchall()

    real = engine.build_marts_and_streaks

    def broken(*args, **kwargs):
        marts, streaks = real(*args, **kwargs)
        marts["lecture_progress"] = marts["lecture_progress"].with_columns(
            pl.lit("BROKEN").alias("risk_level")
        )
        return marts, streaks

    monkeypatch.setattr(engine, "build_marts_and_streaks", broken)
    result = run(landing, warehouse)
    assert not result.success
    bad = failed(result)
    assert set(bad) == {("marts/lecture_progress", "schema")}
    assert "risk_level" in bad[("marts/lecture_progress", "schema")].metadata["failure_cases"].value
    with duckdb.connect(str(warehouse), read_only=True) as con:  # the previous marts stay
        assert con.execute("SELECT * FROM marts.lecture_progress ORDER BY ALL").fetchall() == before
        assert con.execute(
            "SELECT marts_refreshed FROM marts.publication ORDER BY published_at"
        ).fetchall() == [(True,)]  # not published


def test_invariant_violation_is_reported_per_mart(tmp_path, monkeypatch):
    real = engine.build_marts_and_streaks

    def broken(*args, **kwargs):  # a completed session lecture_progress does not count
        marts, streaks = real(*args, **kwargs)
        marts["lecture_progress"] = marts["lecture_progress"].with_columns(
            pl.lit(0, pl.Int64).alias("completed_sessions"), pl.lit(0.0).alias("completion_rate")
        )
        return marts, streaks

    monkeypatch.setattr(engine, "build_marts_and_streaks", broken)
    result = run(landing_with(tmp_path, **EVENTS), tmp_path / "wh.duckdb")
    bad = failed(result)
    assert set(bad) == {("marts/session_progress", "invariants")}
    assert "completed rows disagree" in bad[("marts/session_progress", "invariants")].description
