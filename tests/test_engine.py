"""The bucketed engine equals the one-piece computation, whatever the bucket plan.

Every path (current marts, daily history, alerts) runs through `pipelines.core.engine` one
academy bucket at a time; here each is compared with the pure one-piece functions
(`build_marts`, `history_for_days`, `alerts_since_previous_day`) on generated extracts, for
plans of one bucket for everything, one academy per bucket, and every academy split.
"""

from __future__ import annotations

from datetime import date, datetime

import duckdb
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from pipelines.core import engine
from pipelines.core.buckets import Bucket, plan_buckets
from pipelines.core.evaluation import enrollment_streaks
from pipelines.core.history import (
    AS_OF_DATE,
    alerts_since_previous_day,
    history_for_days,
    read_dates,
)
from pipelines.core.ingest import ingest_all
from pipelines.core.marts import PROGRESS_MARTS, RiskThresholds, build_marts
from pipelines.core.publish import content_hash
from pipelines.core.warehouse import write_table
from pipelines.generate import generate_extracts

AS_OF = datetime(2026, 5, 20, 9, 30)
DAYS = [date(2026, 5, 12), date(2026, 5, 13), date(2026, 5, 15)]
T = RiskThresholds()


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    """A warehouse with raw.* of generated extracts over several academies, and the same raw
    frames in memory."""
    root = tmp_path_factory.mktemp("engine")
    generate_extracts(root / "landing", enrollments=400, seed=21, fmt="csv", academies=5)
    raw = {t: r.raw for t, r in ingest_all(root / "landing").items()}
    path = root / "wh.duckdb"
    with duckdb.connect(str(path)) as con:
        for table, frame in raw.items():
            write_table(con, f"raw.{table}", frame)
    return path, raw


def _per_academy(con: duckdb.DuckDBPyConnection) -> list[Bucket]:
    pairs = con.execute(
        "SELECT l.academy_id, count(*) FROM raw.enrollments e JOIN raw.lectures l "
        "USING (lecture_id) GROUP BY 1 ORDER BY 1"
    ).fetchall()
    return [Bucket(i, a, a, n) for i, (a, n) in enumerate(pairs)]


PLANS = {
    "one bucket": lambda con: plan_buckets(
        con.execute(
            "SELECT academy_id, enrollment_id FROM raw.enrollments JOIN raw.lectures "
            "USING (lecture_id)"
        ).pl(),
        10**9,
    ),
    "one academy per bucket": _per_academy,
    "every academy split": lambda con: engine.bucket_plan(con, 37),
}


@pytest.fixture(params=list(PLANS))
def plan(request, warehouse, monkeypatch):
    path, _ = warehouse
    with duckdb.connect(str(path), read_only=True) as con:
        chosen = PLANS[request.param](con)
    monkeypatch.setattr(engine, "bucket_plan", lambda con, target=0: chosen)
    return chosen


def _sorted(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.sort(frame.columns)


def test_plans_cover_every_enrollment_once(warehouse, plan):
    path, raw = warehouse
    seen: list[pl.Series] = []
    with duckdb.connect(str(path), read_only=True) as con:
        engine.for_each_bucket(
            con, plan, lambda inputs: seen.append(inputs["enrollments"]["enrollment_id"])
        )
    ids = pl.concat(seen)
    assert len(seen) == max(len(plan), 1)
    assert ids.n_unique() == ids.len() == raw["enrollments"].height
    if "split" in str(plan) or len(plan) > 5:
        assert any(b.split for b in plan)


def test_marts_in_buckets_equal_one_piece(warehouse, plan, tmp_path):
    path, raw = warehouse
    copy = tmp_path / "wh.duckdb"
    copy.write_bytes(path.read_bytes())
    expected = build_marts(raw, AS_OF, T)
    out = engine.MartsOutcome()
    with duckdb.connect(str(copy)) as con:
        engine.compute_marts(con, AS_OF, T, lambda marts, n: ({}, {}), out)
        for name in PROGRESS_MARTS:
            stored = con.execute(f"SELECT * FROM marts.{name}").pl()
            assert content_hash(stored) == content_hash(expected[name]), name
            assert out.hashes[name] == content_hash(expected[name]), name
            assert out.rows[name] == expected[name].height
    assert out.buckets == max(len(plan), 1)


def test_a_refused_bucket_leaves_no_mart(warehouse, plan, tmp_path):
    path, _ = warehouse
    copy = tmp_path / "wh.duckdb"
    copy.write_bytes(path.read_bytes())
    calls = []

    def refuse_second(marts, n):
        calls.append(n)
        return ({"risk_log": "broken"} if len(calls) == 2 else {}), {}

    out = engine.MartsOutcome()
    with duckdb.connect(str(copy)) as con:
        if len(plan) < 2:
            pytest.skip("one bucket: nothing after the first to refuse")
        with pytest.raises(engine.MartsRefused):
            engine.compute_marts(con, AS_OF, T, refuse_second, out)
        tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    assert not any(t.startswith("_building") for t in tables)
    assert "session_progress" not in tables  # nothing was swapped in


def test_history_in_buckets_equals_one_piece(warehouse, plan, tmp_path):
    path, raw = warehouse
    copy = tmp_path / "wh.duckdb"
    copy.write_bytes(path.read_bytes())
    expected = history_for_days(raw, DAYS, T)
    validated = []
    with duckdb.connect(str(copy)) as con:
        out = engine.history_in_buckets(con, DAYS, T, lambda name, f: validated.append(name))
        for name, frame in expected.items():
            stored = read_dates(con, f"marts.{name}")
            assert stored.height == frame.height == out.rows[name], name
            assert_frame_equal(
                _sorted(stored),
                _sorted(frame.select(stored.columns)),
                check_dtypes=False,
                rel_tol=1e-9,
            )
    assert expected["risk_alerts"].height > 0  # the comparison covers real alerts
    assert validated.count("lecture_progress_daily") == max(len(plan), 1)
    assert {"risk_daily_summary", "risk_alerts"} <= set(validated)


def test_history_keeps_other_dates(warehouse, plan, tmp_path):
    path, raw = warehouse
    copy = tmp_path / "wh.duckdb"
    copy.write_bytes(path.read_bytes())
    noop = lambda name, f: None  # noqa: E731
    with duckdb.connect(str(copy)) as con:
        engine.history_in_buckets(con, [date(2026, 5, 1)], T, noop)
        before = read_dates(con, "marts.lecture_progress_daily", [date(2026, 5, 1)])
        engine.history_in_buckets(con, DAYS, T, noop)
        engine.history_in_buckets(con, DAYS, T, noop)  # a rerun replaces, never duplicates
        after = read_dates(con, "marts.lecture_progress_daily")
    assert_frame_equal(after.filter(pl.col(AS_OF_DATE) == date(2026, 5, 1)), before)
    assert after.height == before.height * 4


@pytest.mark.parametrize("as_of", [AS_OF, datetime(2026, 5, 13, 23, 59, 59)])
def test_alerts_in_buckets_equal_one_piece(warehouse, plan, as_of):
    path, raw = warehouse
    expected = alerts_since_previous_day(raw, as_of, T)
    current = build_marts(raw, as_of, T)["lecture_progress"]
    with duckdb.connect(str(path), read_only=True) as con:
        computed = engine.alerts_in_buckets(con, as_of, T)
        given = engine.alerts_in_buckets(con, as_of, T, current=current)
    for found in (computed, given):
        assert_frame_equal(_sorted(found), _sorted(expected), check_dtypes=False)
    assert expected.height > 0


def test_a_failing_write_stops_the_loop(warehouse):
    path, _ = warehouse
    computed = []

    def write(writer, result, first):
        raise OSError("disk full")

    with duckdb.connect(str(path), read_only=True) as con:
        plan = engine.bucket_plan(con, 50)
        with pytest.raises(OSError, match="disk full"):
            engine.for_each_bucket(con, plan, lambda inputs: computed.append(1), write)
    assert 1 <= len(computed) <= 2  # stopped at the first write's error, not after all buckets
    assert len(plan) > 2


def test_marts_keep_the_evaluation_streaks_of_the_same_run(warehouse, plan, tmp_path):
    path, raw = warehouse
    copy = tmp_path / "wh.duckdb"
    copy.write_bytes(path.read_bytes())
    ids = raw["outcomes"]["enrollment_id"].unique()
    assert ids.len() > 10
    kept = {
        t: f.filter(pl.col("enrollment_id").is_in(ids.implode()))
        if "enrollment_id" in f.columns
        else f
        for t, f in raw.items()
    }
    expected = enrollment_streaks(kept, AS_OF, 6)
    with duckdb.connect(str(copy)) as con:
        out = engine.MartsOutcome()
        engine.compute_marts(con, AS_OF, T, lambda marts, n: ({}, {}), out, evaluation=("run-1", 6))
        found = engine.cached_streaks(con, "run-1", AS_OF, 6)
        assert engine.cached_streaks(con, "run-2", AS_OF, 6) is None  # another run's
        assert engine.cached_streaks(con, "run-1", datetime(2026, 5, 21), 6) is None
        assert engine.cached_streaks(con, "run-1", AS_OF, 7) is None  # fewer columns kept
        fewer = engine.cached_streaks(con, "run-1", AS_OF, 4)
    assert out.evaluation_streaks == expected.height
    assert_frame_equal(found, expected, check_dtypes=False)
    assert fewer.columns == expected.columns[: len(expected.columns) - 2]
