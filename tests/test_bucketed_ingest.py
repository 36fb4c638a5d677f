"""The ingest writes raw tables with an enrollment_id in academy bucket order, records each
bucket's rowid range and the plan (`pipelines.core.bucket_store`), and a bucket read by rowid
range returns the same rows as the read by the bucket's enrollments."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest

from assets.extracts import extract_assets
from pipelines.core import bucket_store
from pipelines.core.buckets import Bucket, assign_buckets, plan_buckets
from pipelines.core.contract import SPECS
from pipelines.core.ingest import BUCKETED_TABLES
from pipelines.core.publish import content_hash
from pipelines.generate import generate_extracts
from pipelines.resources import ProgressSettings, WarehouseResource


def ingest(landing: Path, warehouse: Path, target: int) -> None:
    result = dg.materialize(
        extract_assets,
        resources={
            "settings": ProgressSettings(landing_dir=str(landing), bucket_enrollments=target),
            "warehouse": WarehouseResource(path=str(warehouse)),
        },
        raise_on_error=False,
    )
    assert result.success


@pytest.fixture(scope="module")
def landing(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("landing")
    generate_extracts(out, academies=4, enrollments=80, seed=3, fmt="csv")
    return out


def columns(table: str) -> list[str]:
    return [*SPECS[table].column_names, "_source_file", "_source_row"]


@pytest.mark.parametrize("target", [1, 7, 30, 1_000_000])
def test_raw_tables_are_in_bucket_order_and_a_rowid_read_equals_the_enrollment_read(
    landing, tmp_path, target
):
    warehouse = tmp_path / "wh.duckdb"
    ingest(landing, warehouse, target)
    with duckdb.connect(str(warehouse), read_only=True) as con:
        pairs = bucket_store.read_pairs(con)
        plan = plan_buckets(pairs, target)
        assert bucket_store.read_plan(con) == plan
        assert con.execute("SELECT DISTINCT target FROM engine.bucket_plan").fetchall() == [
            (target,)
        ]
        bucket_of = pairs.select("enrollment_id", assign_buckets(pairs, plan).alias("bucket"))
        for table in BUCKETED_TABLES:
            raw = con.execute(f"SELECT *, rowid AS _rowid FROM raw.{table}").pl()
            ranges = bucket_store.bucket_rows(con, table)
            assert ranges is not None and sorted(ranges) == [b.index for b in plan]
            # contiguous, in bucket order, covering every row
            starts = [ranges[b.index][0] for b in plan]
            assert starts == sorted(starts) and starts[0] == 0
            assert sum(n for _, n in ranges.values()) == raw.height
            ordered = raw.join(bucket_of, on="enrollment_id", how="left").sort("_rowid")
            assert ordered["bucket"].null_count() == 0
            assert (ordered["bucket"].diff().drop_nulls() >= 0).all()
            for bucket in plan:
                by_rowid = bucket_store.read_bucket(con, table, columns(table), bucket, plan)
                fallback = bucket_store.read_bucket_by_enrollment(
                    con, table, columns(table), bucket
                )
                first, count = ranges[bucket.index]
                assert by_rowid.height == count
                assert by_rowid.sort(by_rowid.columns).equals(fallback.sort(fallback.columns))
                # within a bucket: delivery order (file, then record number)
                assert by_rowid.equals(
                    by_rowid.sort(["_source_file", "_source_row"], maintain_order=True)
                )
                expected = ordered.filter(pl.col("bucket") == bucket.index)
                assert expected["_rowid"].to_list() == list(range(first, first + count))


def test_plan_change_drops_ranges_and_a_reference_ingest_drops_everything(landing, tmp_path):
    warehouse = tmp_path / "wh.duckdb"
    ingest(landing, warehouse, 30)
    with duckdb.connect(str(warehouse)) as con:
        plan = bucket_store.read_plan(con)
        assert plan and bucket_store.bucket_rows(con, "attendance")
        bucket_store.write_plan(con, plan, 31)  # same buckets: the ranges stay valid
        assert bucket_store.bucket_rows(con, "attendance")
        other = [Bucket(0, plan[0].academy_lo, plan[-1].academy_hi, 80)]
        bucket_store.write_plan(con, other, 1_000)
        assert bucket_store.read_plan(con) == other
        assert bucket_store.bucket_rows(con, "attendance") is None
        # a stale plan: the reader asks for `plan`, the stored one differs -> the fallback
        rows = bucket_store.read_bucket(con, "attendance", ["enrollment_id"], plan[0], plan)
        expected = bucket_store.read_bucket_by_enrollment(
            con, "attendance", ["enrollment_id"], plan[0]
        )
        assert rows.sort("enrollment_id").equals(expected.sort("enrollment_id"))
    # re-ingesting lectures alone (its enrollments' academies may change) drops plan and ranges
    result = dg.materialize(
        [a for a in extract_assets if a.node_def.name == "ingest_lectures"],
        resources={
            "settings": ProgressSettings(landing_dir=str(landing)),
            "warehouse": WarehouseResource(path=str(warehouse)),
        },
        raise_on_error=False,
    )
    assert result.success
    with duckdb.connect(str(warehouse), read_only=True) as con:
        assert bucket_store.read_plan(con) is None
        assert bucket_store.bucket_rows(con, "submissions") is None


def warehouse_content(warehouse: Path) -> dict[str, str]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        tables = con.execute(
            "SELECT schema_name, table_name FROM duckdb_tables() "
            "WHERE schema_name IN ('raw', 'quarantine', 'marts') AND table_name != 'publication'"
        ).fetchall()
        return {
            f"{s}.{t}": content_hash(
                con.execute(f'SELECT * FROM {s}."{t}"').pl().drop("loaded_at", strict=False)
            )
            for s, t in tables
        }


def test_bucketed_run_equals_one_piece_run(tmp_path):
    """A whole run (ingest, marts, views, evaluation) with buckets of 1, 2 and all enrollments
    stores the same raw.*, quarantine.* and marts.* content."""
    from assets import core_assets

    landing = tmp_path / "landing"
    generate_extracts(landing, academies=3, enrollments=24, seed=8, fmt="csv")
    contents = {}
    for target in (10**6, 2, 1):
        warehouse = tmp_path / f"wh-{target}.duckdb"
        result = dg.materialize(
            core_assets,
            resources={
                "settings": ProgressSettings(
                    landing_dir=str(landing),
                    as_of="2026-11-25 12:00:00",
                    bucket_enrollments=target,
                ),
                "warehouse": WarehouseResource(path=str(warehouse)),
            },
            raise_on_error=False,
        )
        assert result.success
        contents[target] = warehouse_content(warehouse)
    assert any(name.startswith("marts.") for name in contents[1])
    assert contents[1] == contents[10**6]
    assert contents[2] == contents[10**6]
