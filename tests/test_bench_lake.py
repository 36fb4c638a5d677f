"""The lake stage of `progress bench --backend lake` at a tiny size: `progress run --backend
lake` measured as a process tree on the benchmark's own Postgres, with its phases read back
from the run's Dagster event log and a reader of the lake running beside it."""

from __future__ import annotations

import json

import pytest

from pipelines.bench import Tier
from pipelines.bench.postgres import postgres_bin
from pipelines.bench.runner import BenchError, _percentile, reader_figures, run_bench

TINY = Tier("LK", enrollments=200, academies=2)


@pytest.mark.skipif(postgres_bin() is None, reason="Postgres binaries not installed")
def test_lake_stage_records_its_phases(tmp_path):
    out = tmp_path / "results" / "LK.json"
    result = run_bench(
        TINY, out, base=tmp_path, stages=("cmd_run_lake",), backend="lake", workers=(1,)
    )
    stage = result["stages"]["cmd_run_lake_w1"]
    assert stage["status"] == "ok", stage
    assert stage["seconds"] > 0 and stage["peak_rss_mb"] > 0
    d = stage["details"]
    assert "--backend lake" in d["command"] and "--workers 1" in d["command"]
    assert d["run_status"] == "SUCCESS" and d["lake_before"] == "empty"
    assert d["plan"] == {"buckets": 1, "pieces": 1} and d["bucket_steps"] == 1
    for key in ("prepare_seconds", "bucket_steps_sum_seconds", "bucket_steps_span_seconds"):
        assert 0 < d[key] < stage["seconds"], key
    assert 0 < d["publish_seconds"] < stage["seconds"]
    assert set(d["steps"]) == {"lake_prepare", "lake_bucket[b0000]", "lake_publish"}
    assert set(d["bucket_phase_seconds"]) == {"read", "compute", "stage"}
    assert d["publication"]["files"] > 0 and d["publication"]["snapshot"] == d["snapshot"]
    assert d["serial_seconds"] == pytest.approx(stage["seconds"] - d["bucket_steps_sum_seconds"])
    assert "reader" not in d  # an empty lake cannot be attached read-only before the run
    lake = result["lake"]
    assert lake["workers"] == [1] and lake["speedup"] is None
    assert 0 < lake["serial_share"] < 1
    assert lake["publish_seconds"] == d["publish_seconds"]
    assert lake["files_per_publication"] == d["publication"]["files"]
    assert lake["lake_over_file_run"] is None  # cmd_run was not run
    assert {t["target"] for t in result["targets"]} >= {"lake publish step <= 10 s"}
    assert json.loads(out.read_text(encoding="utf-8"))["lake"]["serial_share"] == pytest.approx(
        lake["serial_share"]
    )


def test_lake_stage_needs_the_lake_backend(tmp_path):
    with pytest.raises(BenchError, match="backend"):
        run_bench(TINY, tmp_path / "x.json", base=tmp_path, backend="s3")
    with pytest.raises(BenchError, match="workers"):
        run_bench(TINY, tmp_path / "x.json", base=tmp_path, backend="lake", workers=(0,))


def test_percentile_nearest_rank():
    assert _percentile([], 50) is None
    assert _percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert _percentile([float(i) for i in range(1, 101)], 95) == 95.0
    assert _percentile([1.0], 95) == 1.0


def test_reader_figures_split_the_publish_window():
    rows = [{"t": float(t), "seconds": t / 1000, "count": 5} for t in range(1, 21)]
    rows.append({"t": 12.5, "seconds": 0.001, "error": "gone"})
    figures = reader_figures(rows, {"publish_start": 10.0, "publish_end": 15.0})
    assert figures["whole_run"]["queries"] == 21 and figures["whole_run"]["errors"] == 1
    during = figures["during_publish"]
    assert during["queries"] == 7 and during["errors"] == 1  # t = 10..15 and the error
    assert during["p50_ms"] == 12.0 and during["p95_ms"] == 15.0
    assert figures["counts_seen"] == [5]
