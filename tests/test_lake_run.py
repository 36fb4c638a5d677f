"""The lake backend end to end on one machine (issue 14): `progress run --backend lake`,
`progress sql --backend lake [--snapshot N]` and `progress expire`, through the CLI app the
other CLI tests use, against a real Postgres catalog (tests/lake_fixtures.py) and a local
folder or moto's S3 server. No mocks.

- the lake's tables have the same content hashes as the file backend's, for every table the
  file backend publishes (raw, quarantine, marts), on the shipped sample and a generated extract;
- a run blocked by the quarantine gate publishes nothing to the lake;
- readers see the latest publication or a pinned one; retention keeps the current one.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import polars as pl
from typer.testing import CliRunner

from pipelines.bench.lake_trials import table_hashes as hashes_of
from pipelines.cli import app
from pipelines.core import lake
from pipelines.core.publish import content_hash
from pipelines.core.views import VIEWS
from pipelines.core.warehouse import read_table
from pipelines.exit_codes import ExitCode
from pipelines.generate import generate_extracts
from tests.conftest import landing_with, sensor_request

runner = CliRunner()
SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample"
AS_OF = "2026-11-25 23:59:59"


def lake_args(config: lake.LakeConfig) -> list[str]:
    return ["--backend", "lake", "--catalog", config.catalog, "--data-path", config.data_path]


def run(landing: Path, warehouse: Path, *extra: str):
    return runner.invoke(
        app,
        ["run", "--landing", str(landing), "--warehouse", str(warehouse), "--as-of", AS_OF,
         "--json", *extra],
    )  # fmt: skip


def file_hashes(warehouse: Path, comparable: bool = True) -> dict[str, str]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return hashes_of(con, comparable)


def lake_hashes(
    config: lake.LakeConfig, snapshot: int | None = None, comparable: bool = True
) -> dict[str, str]:
    with lake.connect(config, snapshot=snapshot) as con:
        return hashes_of(con, comparable)


def sql(config: lake.LakeConfig, query: str, *extra: str) -> str:
    result = runner.invoke(app, ["sql", *lake_args(config), "--format", "csv", *extra, query])
    assert result.exit_code == 0, result.output
    return result.stdout.strip().splitlines()[-1]


def publications(config: lake.LakeConfig) -> pl.DataFrame:
    with lake.connect(config, read_only=True) as con:
        return lake.snapshots(con)


def test_lake_run_equals_the_file_run_and_readers_see_each_publication(local_lake, tmp_path):
    generated = tmp_path / "generated"
    generate_extracts(generated, academies=3, enrollments=400, seed=14, fmt="parquet")
    runs = []
    for landing in (SAMPLE, generated):
        work = tmp_path / landing.name
        on_file = run(landing, work / "file.duckdb")
        assert on_file.exit_code == 0, on_file.output
        on_lake = run(landing, work / "build.duckdb", *lake_args(local_lake))
        assert on_lake.exit_code == 0, on_lake.output
        summary = json.loads(on_lake.stdout)
        assert summary["snapshot"] is not None
        # the alerts the lake's bucket steps computed are the file run's
        assert summary["alerts"] == json.loads(on_file.stdout)["alerts"]
        counted = json.loads(on_file.stdout)["tables"]
        assert {k: v for k, v in summary["tables"].items() if k != "marts.publication"} == {
            k: v
            for k, v in counted.items()
            if not k.startswith("engine.") and k != "marts.publication"
        }
        expected = file_hashes(work / "file.duckdb")
        assert len(expected) >= 25, sorted(expected)  # 10 raw, 9 quarantine, 6 marts
        assert lake_hashes(local_lake) == expected
        with lake.connect(local_lake, read_only=True) as con:
            row = con.execute(
                "SELECT run_id, as_of, content_hashes FROM marts.publication "
                "ORDER BY published_at DESC LIMIT 1"
            ).fetchone()
        assert row[0] == summary["run_id"] and str(row[1]) == AS_OF
        # the hashes recorded, summed bucket by bucket as staged, are those of the lake
        assert json.loads(row[2]) == lake_hashes(local_lake, comparable=False)
        # the analyst views are in the lake too, with the file's rows
        views = [f"marts.{name}" for name in VIEWS]
        with duckdb.connect(str(work / "file.duckdb"), read_only=True) as con:
            expected_views = {v: content_hash(read_table(con, v)) for v in views}
        with lake.connect(local_lake, read_only=True) as con:
            assert {v: content_hash(read_table(con, v)) for v in views} == expected_views
        assert not (work / "build.duckdb").exists()  # the lake, not a file, was published
        assert not list(work.glob("build.duckdb.building*"))  # the build was discarded
        runs.append((summary["run_id"], summary["snapshot"], expected))

    (first, first_snapshot, first_hashes), (second, _, second_hashes) = runs
    assert first_hashes != second_hashes
    assert publications(local_lake)["run_id"].to_list() == [first, second]
    # readers: the latest publication, and a pinned past one, through `progress sql`
    assert sql(local_lake, "SELECT run_id FROM marts.publication ORDER BY published_at "
               "DESC LIMIT 1") == second  # fmt: skip
    pinned = ("--snapshot", str(first_snapshot))
    assert sql(local_lake, "SELECT max(run_id) FROM marts.publication", *pinned) == first
    rows = sql(local_lake, "SELECT count(*) FROM marts.lecture_progress", *pinned)
    assert rows == "300"  # the sample's enrollments
    assert lake_hashes(local_lake, first_snapshot) == first_hashes
    # the sandbox holds on the lake too: no host file, no setting change, no write
    for escape in (
        "SELECT * FROM read_csv('/etc/passwd')",
        "SET enable_external_access = true",
        "DELETE FROM marts.risk_log",
    ):
        refused = runner.invoke(app, ["sql", *lake_args(local_lake), escape])
        assert refused.exit_code != 0, escape

    # exports: a pinned lake publication exports byte-identical files to the file backend's
    exported = {}
    for name, source in (
        ("file", ["--warehouse", str(tmp_path / SAMPLE.name / "file.duckdb")]),
        ("lake", [*lake_args(local_lake), *pinned]),
    ):
        out = tmp_path / f"export-{name}"
        done = runner.invoke(app, ["export", *source, "--out", str(out), "--landing", str(SAMPLE)])
        assert done.exit_code == 0, done.output
        manifest = json.loads((out / "manifest.json").read_text())
        exported[name] = {f["path"]: f["sha256"] for f in manifest["files"]}
    assert len(exported["file"]) > 20 and exported["lake"] == exported["file"]
    inside = runner.invoke(app, ["export", *lake_args(local_lake), "--out",
                                 str(Path(local_lake.data_path) / "x")])  # fmt: skip
    assert inside.exit_code != 0 and "lake's data folder" in inside.output

    # retention: expire everything but the current publication, which stays readable
    expired = runner.invoke(
        app,
        ["expire", "--keep-days", "0", "--catalog", local_lake.catalog,
         "--data-path", local_lake.data_path],
    )  # fmt: skip
    assert expired.exit_code == 0, expired.output
    assert "1 publications kept" in expired.stdout, expired.stdout
    assert publications(local_lake)["run_id"].to_list() == [second]
    assert lake_hashes(local_lake) == second_hashes
    assert not list((tmp_path / "lake" / "_stage" / first).rglob("*.parquet"))
    gone = runner.invoke(
        app, ["sql", *lake_args(local_lake), *pinned, "SELECT count(*) FROM marts.risk_log"]
    )
    assert gone.exit_code != 0  # an expired publication can no longer be pinned


def test_a_blocked_lake_run_publishes_nothing(local_lake, tmp_path):
    landing = landing_with(
        tmp_path,
        attendance=["1000,101,online,2026-03-02 10:00"],
        video_progress=["1000,101,10,2026-03-02 10:00"],
    )
    good = run(landing, tmp_path / "build.duckdb", *lake_args(local_lake))
    assert good.exit_code == 0, good.output
    published = json.loads(good.stdout)["run_id"]
    before = publications(local_lake)
    hashes = lake_hashes(local_lake)
    files = sorted((tmp_path / "lake").rglob("*.parquet"))

    # a header with a near-miss name refuses the file: the gate blocks the run
    (landing / "lectures.csv").write_text(
        "LECTURE_ID,academy_id,title\n" + "".join(f"{i},10,t{i}\n" for i in range(1, 7))
    )
    blocked = run(landing, tmp_path / "build.duckdb", *lake_args(local_lake))
    assert blocked.exit_code == ExitCode.BLOCKED, blocked.output
    assert publications(local_lake).equals(before)  # no new snapshot
    assert lake_hashes(local_lake) == hashes  # the previous publication intact
    assert sql(local_lake, "SELECT max(run_id) FROM marts.publication") == published
    assert sorted((tmp_path / "lake").rglob("*.parquet")) == files  # nothing staged either
    assert (tmp_path / "build.rejected.duckdb").exists()  # kept for inspection, as on file


def test_staged_files_are_one_per_bucket_sorted_by_academy(local_lake, tmp_path):
    """lake_job with several buckets in several steps: one file per bucket per split table,
    each sorted by academy and holding only its bucket's academies; the content equal to the
    file backend's."""
    from datetime import datetime

    from pipelines.runner import run_lake

    on_file = run(SAMPLE, tmp_path / "file.duckdb")
    assert on_file.exit_code == 0, on_file.output
    as_of = datetime.fromisoformat(AS_OF)
    report = run_lake(
        SAMPLE, tmp_path / "build.duckdb", as_of, "Asia/Seoul", local_lake, steps=3,
        bucket_enrollments=60,
    )  # fmt: skip
    assert lake_hashes(local_lake) == file_hashes(tmp_path / "file.duckdb")
    staged = Path(local_lake.root) / "_stage" / report.run_id
    progress = sorted((staged / "marts.lecture_progress").glob("*.parquet"))
    assert len(progress) >= 5  # 300 enrollments, 60 a bucket
    assert len(list((staged / "raw.attendance").glob("*.parquet"))) == len(progress)
    ranges = []
    for path in progress:
        academies = pl.read_parquet(path)["academy_id"]
        assert academies.is_sorted()
        ranges.append((academies.min(), academies.max()))
    assert all(a[1] <= b[0] for a, b in zip(ranges, ranges[1:], strict=False))
    assert len(list((staged / "quarantine.attendance").glob("*.parquet"))) == 1  # text ids
    with lake.connect(local_lake, read_only=True) as con:
        registered = con.execute(
            "SELECT count(*) FROM ducklake_list_files('lake', 'lecture_progress', "
            "schema => 'marts')"
        ).fetchone()[0]
    assert registered == len(progress)


def test_the_code_location_publishes_to_s3_from_environment_variables(
    s3_lake, s3_bucket, tmp_path, monkeypatch
):
    """The definitions' lake_job, configured only by environment variables (as `dagster
    dev` or a deployment configures it), publishes to a lake whose data path is on S3."""
    import dagster as dg

    from pipelines.definitions import defs

    config = s3_lake
    landing = landing_with(
        tmp_path,
        attendance=["1000,101,online,2026-03-02 10:00"],
        video_progress=["1000,101,10,2026-03-02 10:00"],
    )
    for name, value in {
        "PROGRESS_LANDING": str(landing),
        "PROGRESS_WAREHOUSE": str(tmp_path / "build.duckdb"),
        "PROGRESS_TIMEZONE": "Asia/Seoul",
        "PROGRESS_LAKE_CATALOG": config.catalog,
        "PROGRESS_LAKE_DATA_PATH": config.data_path,
        "PROGRESS_LAKE_S3_ENDPOINT": config.s3_endpoint,
        "PROGRESS_LAKE_S3_KEY_ID": config.s3_key_id,
        "PROGRESS_LAKE_S3_SECRET": config.s3_secret,
        "PROGRESS_LAKE_S3_REGION": config.s3_region,
    }.items():
        monkeypatch.setenv(name, value)
    result = defs.resolve_job_def("lake_job").execute_in_process(
        instance=dg.DagsterInstance.ephemeral()
    )
    assert result.success
    assert not (tmp_path / "build.duckdb").exists()
    with lake.connect(config, read_only=True) as con:
        assert lake.snapshots(con)["run_id"].to_list() == [result.run_id]
        assert con.execute("SELECT risk_level FROM marts.lecture_progress").fetchall() == [
            ("DANGER",)
        ]
        files = con.execute(
            "SELECT data_file FROM ducklake_list_files('lake', 'lecture_progress', "
            "schema => 'marts')"
        ).fetchall()
    assert [f[0].startswith(f"s3://{s3_bucket.bucket}/academy/_stage/") for f in files] == [True]
    # progress sql reads it with the same variables (the S3 data path inside the sandbox)
    read = runner.invoke(
        app, ["sql", "--backend", "lake", "--format", "csv", "SELECT run_id FROM marts.publication"]
    )
    assert read.exit_code == 0, read.output
    assert read.stdout.split() == ["run_id", result.run_id]


def test_lake_history_replaces_only_its_dates_and_equals_the_file_backfill(local_lake, tmp_path):
    """`--history-date D` publishes D's lecture_progress_daily, risk summary and alerts with
    the current marts; publishing D again replaces D's rows only; the rows equal what the file
    backend's `progress backfill` stores for the same dates."""
    lake_run_ = [*lake_args(local_lake), "--workers", "1"]
    first, second = "2026-11-20", "2026-11-21"
    for days in ((first, second), (first,)):
        dates = [arg for day in days for arg in ("--history-date", day)]
        done = run(SAMPLE, tmp_path / "build.duckdb", *lake_run_, *dates)
        assert done.exit_code == 0, done.output
    warehouse = tmp_path / "file.duckdb"
    assert run(SAMPLE, warehouse).exit_code == 0
    backfill = runner.invoke(
        app,
        ["backfill", "--start", first, "--end", second, "--landing", str(SAMPLE),
         "--warehouse", str(warehouse)],
    )  # fmt: skip
    assert backfill.exit_code == 0, backfill.output
    history = ["marts.lecture_progress_daily", "marts.risk_daily_summary", "marts.risk_alerts"]
    with duckdb.connect(str(warehouse), read_only=True) as con:
        expected = {t: read_table(con, t) for t in history}
    with lake.connect(local_lake, read_only=True) as con:
        found = {t: read_table(con, t) for t in history}
        dates = con.execute(
            "SELECT as_of_date, count(*) FROM marts.lecture_progress_daily GROUP BY 1 ORDER BY 1"
        ).fetchall()
    assert [str(d) for d, _ in dates] == [first, second]  # the second `first` replaced it
    assert {n for _, n in dates} == {300}  # the sample's enrollments, once per date
    for table in history:
        assert found[table].schema == expected[table].schema, table
        assert content_hash(found[table]) == content_hash(expected[table]), table


def test_each_lake_publication_is_exported_from_its_own_snapshot(local_lake, tmp_path, monkeypatch):
    """The definitions' sensor asks for one lake_exports_job run per successful lake_job run;
    that run exports the publication of the run it names, pinned to its snapshot, even when a
    later run has published since: the same files, byte for byte, as `progress export
    --snapshot` of that publication, and not the latest one's."""
    import dagster as dg

    from pipelines.definitions import defs
    from pipelines.sensors import lake_exports_after_publication

    for name, value in {
        "PROGRESS_WAREHOUSE": str(tmp_path / "build.duckdb"),
        "PROGRESS_TIMEZONE": "Asia/Seoul",
        "PROGRESS_EXPORTS": str(tmp_path / "exports"),
        "PROGRESS_LAKE_CATALOG": local_lake.catalog,
        "PROGRESS_LAKE_DATA_PATH": local_lake.data_path,
    }.items():
        monkeypatch.setenv(name, value)
    instance = dg.DagsterInstance.ephemeral()
    runs = []
    for name, attendance in (("first", ["1000,101,online,2026-03-02 10:00"]), ("second", [])):
        landing = landing_with(tmp_path / name, attendance=attendance)
        monkeypatch.setenv("PROGRESS_LANDING", str(landing))
        result = defs.resolve_job_def("lake_job").execute_in_process(instance=instance)
        assert result.success
        runs.append(result)
    first = runs[0]
    request = sensor_request(lake_exports_after_publication, instance, first)
    assert request.run_key == f"exports-after-{first.run_id}"
    exported = defs.resolve_job_def("lake_exports_job").execute_in_process(
        instance=instance, tags=request.tags
    )
    assert exported.success
    manifest = json.loads((tmp_path / "exports" / "manifest.json").read_text(encoding="utf-8"))
    kept = publications(local_lake)
    snapshot = int(kept.filter(pl.col("run_id") == first.run_id)["snapshot_id"][0])
    assert manifest["run_id"] == first.run_id
    assert manifest["source"].endswith(f"(snapshot {snapshot})")
    files = {}
    for name, pin in (("pinned", ["--snapshot", str(snapshot)]), ("latest", [])):
        out = tmp_path / f"cli-{name}"
        done = runner.invoke(app, ["export", *lake_args(local_lake), *pin, "--out", str(out)])
        assert done.exit_code == 0, done.output
        listed = json.loads((out / "manifest.json").read_text(encoding="utf-8"))["files"]
        files[name] = {f["path"]: f["sha256"] for f in listed}
    assert {f["path"]: f["sha256"] for f in manifest["files"]} == files["pinned"]
    assert files["pinned"] != files["latest"]  # the second publication's marts differ

    # a run whose publication the lake no longer keeps: the exports run fails and says so,
    # and the last export stays as it was
    failed = defs.resolve_job_def("lake_exports_job").execute_in_process(
        instance=instance, tags={"progress/published_by": "no-such-run"}, raise_on_error=False
    )
    assert not failed.success
    failure = next(e for e in failed.all_events if e.event_type_value == "STEP_FAILURE")
    assert "publication is not in the lake" in failure.step_failure_data.error.message
    after = json.loads((tmp_path / "exports" / "manifest.json").read_text(encoding="utf-8"))
    assert after == manifest
