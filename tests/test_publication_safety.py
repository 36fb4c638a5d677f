"""Issue 11: publications nothing can corrupt.

A run that did not succeed (a gate blocked, a file refused, a step failed, the disk filled, it
was killed) publishes nothing: every table and view of the published file keeps its content
hash. A program holding the published file read-write can never leak its changes into a
publication. A symlinked warehouse publishes to the real file. Outputs never land on inputs.
Every test runs the real thing: `run_pipeline` / Dagster, `progress` subprocesses, real DuckDB
files, a real full file system (tmpfs, when root). The kills at random moments are in
test_publication_kills.py.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from typer.testing import CliRunner

from assets import core_assets
from checks import all_checks
from pipelines.cli import app
from pipelines.core.paths import rejected_path
from pipelines.core.publish import lock_path, rejection, staging_path, wal_path, writer_lock
from pipelines.resources import ProgressSettings, WarehouseResource
from pipelines.runner import RunFailed, run_pipeline
from tests.conftest import BASE, landing_with, write_landing

AS_OF = "2026-11-25 12:00:00"
LECTURES = [f"{i},10,강의 {i}" for i in range(1, 7)]  # 6 lectures: enough rows for the gate
EVENTS = {
    "lectures": ["1,10,고2 수학", *LECTURES[1:]],
    "video_progress": ["1000,101,95,2026-03-02 10:00", "1000,102,20,2026-03-09 10:00"],
    "submissions": ["1,1000,102,exam,80,,2026-03-09 11:00", "2,1000,102,homework,,1,2026-03-09"],
}
MORE_SESSIONS = [f"{100 + k},1,{k},,2026-03-{k:02d}" for k in range(1, 15)]
# Columns a run sets from the clock: not part of a publication's content.
VOLATILE = {("raw", "ingest_audit"): {"loaded_at"}}


def state(warehouse: Path, exact: bool = True) -> dict[str, tuple[int, int]]:
    """(rows, order-independent hash) of every table and view of a warehouse file.

    exact=False leaves out what differs between two runs of the same extracts (the clock
    columns and marts.publication), to compare with a publication made elsewhere."""
    found = {}
    with duckdb.connect(str(warehouse), read_only=True) as con:
        objects = con.execute(
            "SELECT schema_name, table_name FROM duckdb_tables() UNION ALL "
            "SELECT schema_name, view_name FROM duckdb_views() WHERE NOT internal ORDER BY 1, 2"
        ).fetchall()
        for schema, name in objects:
            if not exact and (schema, name) == ("marts", "publication"):
                continue
            skip = set() if exact else VOLATILE.get((schema, name), set())
            columns = [
                c
                for (c,) in con.execute(
                    "SELECT column_name FROM duckdb_columns() WHERE schema_name = ? AND "
                    "table_name = ? ORDER BY column_index",
                    [schema, name],
                ).fetchall()
                if c not in skip
            ]
            hashed = ", ".join(f'"{c}"' for c in columns)
            found[f"{schema}.{name}"] = con.execute(
                f"SELECT count(*), coalesce(sum(hash({hashed})::HUGEINT), 0)::VARCHAR "
                f'FROM "{schema}"."{name}"'
            ).fetchone()
    return found


def consistent(warehouse: Path) -> bool:
    """The newest publication row's row counts are those of the file's tables."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        recorded = json.loads(
            con.execute(
                "SELECT table_rows FROM marts.publication ORDER BY published_at DESC LIMIT 1"
            ).fetchone()[0]
        )
    counts = {name: rows for name, (rows, _) in state(warehouse).items()}
    return all(
        counts[name] == rows for name, rows in recorded.items() if name != "marts.publication"
    )


def publish(root: Path, **extra: list[str]) -> tuple[Path, Path]:
    """A landing folder of EVENTS (and `extra`) and the warehouse one run published from it."""
    landing = landing_with(root, **EVENTS, **extra)
    warehouse = root / "wh.duckdb"
    run_pipeline(landing, warehouse, AS_OF)
    return landing, warehouse


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> tuple[Path, Path]:
    """A landing folder and the warehouse one successful run published from it."""
    return publish(tmp_path_factory.mktemp("published"))


@pytest.fixture
def warehouse(published, tmp_path) -> Path:
    copy = tmp_path / "wh.duckdb"
    shutil.copyfile(published[1], copy)
    return copy


# --------------------------------------------------------------------------------------------
# Only a run that succeeded publishes
# --------------------------------------------------------------------------------------------


def test_blocked_or_refused_run_publishes_nothing_and_keeps_its_build(warehouse, tmp_path):
    before = state(warehouse)
    rows = {t: list(v) for t, v in {**BASE, **EVENTS}.items()}
    # lectures.csv with the wrong header: every row loses its required columns
    wrong = write_landing(tmp_path / "wrong", rows, {"lectures": "lecture_no,academy,title"})
    with pytest.raises(RunFailed) as blocked:
        run_pipeline(wrong, warehouse, AS_OF)
    message = (
        "lectures: 6 of 6 rows (100.0%) quarantined, mostly missing_value in lectures.csv; "
        "likeliest cause: lectures.csv lacks required column 'lecture_id' (found 'lecture_no'), "
        "'academy_id' (found 'academy')"
    )
    assert str(blocked.value) == message
    assert state(warehouse) == before  # every table and view, marts.publication included
    kept = rejection(warehouse)
    assert (
        kept is not None and kept["cause"] == message and kept["path"] == rejected_path(warehouse)
    )
    with duckdb.connect(str(kept["path"]), read_only=True) as con:
        assert con.execute("SELECT count(*), min(_reason) FROM quarantine.lectures").fetchone() == (
            6,
            "missing_value",
        )
        assert con.execute(
            "SELECT delivered_rows, quarantined_rows FROM raw.ingest_audit "
            "WHERE table_name = 'lectures'"
        ).fetchone() == (6, 6)

    refused = landing_with(tmp_path / "refused", **EVENTS)
    (refused / "submissions.csv").unlink()
    (refused / "submissions.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(RunFailed, match=r"^submissions\.parquet: refused \(not a readable"):
        run_pipeline(refused, warehouse, AS_OF)
    assert state(warehouse) == before
    assert rejection(warehouse)["cause"].startswith("submissions.parquet: refused")

    run_pipeline(landing_with(tmp_path / "good", **EVENTS), warehouse, AS_OF)
    assert rejection(warehouse) is None  # a publication removes the older rejected build


def test_failed_step_publishes_nothing(warehouse, tmp_path):
    before = state(warehouse)
    landing = landing_with(tmp_path, **EVENTS, sessions=MORE_SESSIONS)
    # a real fault in a real step: the marts step cannot read its as-of, after every raw
    # table of the new extracts was written to the build
    result = dg.materialize(
        [*core_assets, *all_checks],
        resources={
            "settings": ProgressSettings(landing_dir=str(landing), as_of="yesterday"),
            "warehouse": WarehouseResource(path=str(warehouse)),
        },
        raise_on_error=False,
    )
    assert not result.success
    assert state(warehouse) == before
    with duckdb.connect(str(rejected_path(warehouse)), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM raw.sessions").fetchone() == (14,)
    assert "yesterday" in rejection(warehouse)["cause"]
    assert not staging_path(warehouse).exists()


def test_interrupted_run_publishes_nothing(warehouse, tmp_path):
    before = state(warehouse)
    landing = landing_with(tmp_path, **EVENTS, sessions=MORE_SESSIONS)
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    args = ["run", "--landing", str(landing), "--warehouse", str(warehouse), "--as-of", AS_OF]
    process = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    for line in process.stderr:  # the run's progress lines: its steps are under way
        if " 1/" in line:
            break
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=120)
    assert process.returncode == 130
    assert state(warehouse) == before
    assert "interrupted" in rejection(warehouse)["cause"]


def _mount_tmpfs(folder: Path, size: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("a full disk is simulated with a small tmpfs, which needs root")
    folder.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")


def _fill(folder: Path, leave: int) -> Path:
    """A file taking all free space of `folder`'s file system but `leave` bytes."""
    stats = os.statvfs(folder)
    filler = folder / "filler"
    filler.write_bytes(b"\0" * max(stats.f_bavail * stats.f_frsize - leave, 0))
    return filler


def test_full_disk_leaves_the_publication_and_names_the_disk(published, tmp_path):
    disk = tmp_path / "disk"
    _mount_tmpfs(disk, "48m")
    try:
        warehouse = disk / "wh.duckdb"
        shutil.copyfile(published[1], warehouse)
        before = state(warehouse)
        bigger = landing_with(tmp_path / "l", **EVENTS, sessions=MORE_SESSIONS)
        size = warehouse.stat().st_size
        # room for the staging copy and a little: the disk fills while the run writes; then
        # not even room for the copy
        for leave in (size + 64 * 1024, size // 2):
            filler = _fill(disk, leave)
            with pytest.raises(RunFailed) as failed:
                run_pipeline(bigger, warehouse, AS_OF)
            assert str(failed.value) == f"disk full while writing {disk}", leave
            assert state(warehouse) == before
            filler.unlink()
            rejected_path(warehouse).unlink(missing_ok=True)
        run_pipeline(bigger, warehouse, AS_OF)  # with room again, it publishes
        assert state(warehouse)["raw.sessions"][0] == 14
    finally:
        subprocess.run(["umount", str(disk)], check=False)


# --------------------------------------------------------------------------------------------
# The published file cannot change under readers
# --------------------------------------------------------------------------------------------

HOLDER = r"""
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])  # read-write, as the DuckDB CLI without -readonly
con.execute("DELETE FROM raw.sessions WHERE session_order % 2 = 0")
print("changed", flush=True)
time.sleep(120)
"""


def test_read_write_holder_never_leaks_into_a_publication(warehouse, tmp_path):
    landing = landing_with(tmp_path, **EVENTS)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(warehouse)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "changed"
        with pytest.raises(
            RunFailed,
            match=rf"is open read-write by process {holder.pid}; "
            "close it",
        ):
            run_pipeline(landing, warehouse, AS_OF)
    finally:
        holder.kill()  # killed before it saved: its change stays in a write-ahead log
        holder.wait()
    assert wal_path(warehouse).exists()
    report = run_pipeline(landing, warehouse, AS_OF)
    assert any("set aside as wh.duckdb.wal.stale-" in w for w in report.warnings), report.warnings
    assert not wal_path(warehouse).exists()
    assert state(warehouse)["raw.sessions"][0] == 4  # the run's sessions, not the holder's 2
    assert consistent(warehouse)


def test_symlinked_warehouse_publishes_to_the_real_file(published, tmp_path):
    real, links = tmp_path / "real", tmp_path / "links"
    real.mkdir()
    links.mkdir()
    link = links / "wh.duckdb"
    link.symlink_to(real / "wh.duckdb")
    run_pipeline(published[0], link, AS_OF)
    run_pipeline(published[0], link, AS_OF)
    assert link.is_symlink() and (real / "wh.duckdb").is_file()
    assert sorted(p.name for p in links.iterdir()) == ["wh.duckdb"]
    assert lock_path(link) == real / "wh.duckdb.lock"
    with duckdb.connect(str(real / "wh.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM marts.publication").fetchone() == (2,)
    lock = writer_lock(real / "wh.duckdb", 1)  # a writer of the real path blocks the link's
    lock.acquire()
    try:
        with pytest.raises(RunFailed, match="another run is writing"):
            run_pipeline(published[0], link, AS_OF, lock_timeout=0.5)
    finally:
        lock.release()


# --------------------------------------------------------------------------------------------
# Outputs never destroy inputs
# --------------------------------------------------------------------------------------------


def _invoke(*args: str):
    result = CliRunner().invoke(app, list(args))
    lines = [line for line in result.output.splitlines() if line.strip()]
    return result.exit_code, lines


def test_export_and_report_refuse_outputs_onto_inputs(published, warehouse, tmp_path):
    landing = published[0]
    before, files = state(warehouse), sorted(p.name for p in landing.iterdir())
    foreign = tmp_path / "site"
    foreign.mkdir()
    (foreign / "manifest.json").write_text('{"name": "my web app", "icons": []}')
    (foreign / "index.html").write_text("<html></html>")
    link = tmp_path / "report-link.html"
    link.symlink_to(warehouse)
    refused = {
        ("export", "--out", str(foreign)): "manifest.json it did not write",
        ("export", "--out", str(landing / "exports")): "inside the landing folder",
        ("export", "--out", str(warehouse)): "is the warehouse file",
        ("export", "--out", str(tmp_path)): "holds the warehouse file",
        ("report", "--out", str(warehouse)): "is the warehouse file",
        ("report", "--out", str(link)): "is the warehouse file",
        ("report", "--out", str(landing / "r.html")): "inside the landing folder",
    }
    for args, reason in refused.items():
        code, lines = _invoke(*args, "--warehouse", str(warehouse), "--landing", str(landing))
        assert code == 1 and len(lines) == 1 and reason in lines[0], (args, lines)
    assert state(warehouse) == before
    assert sorted(p.name for p in landing.iterdir()) == files
    assert sorted(p.name for p in foreign.iterdir()) == ["index.html", "manifest.json"]


def test_export_folder_is_a_link_switched_to_whole_versions(warehouse, tmp_path):
    out = tmp_path / "exports"
    ids = []
    for _ in range(3):
        code, lines = _invoke("export", "--warehouse", str(warehouse), "--out", str(out))
        assert code == 0, lines
        assert out.is_symlink()
        ids.append(os.readlink(out))
    versions = sorted(
        p.name for p in (tmp_path / ".exports.versions").iterdir() if not p.name.startswith(".")
    )
    # the current export and the previous one (a reader may still be in it); older removed
    assert len(set(ids)) == 3 and versions == sorted(Path(i).name for i in ids[1:])
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["written_by"] == "progress export"
    assert all((out / f["path"]).is_file() for f in manifest["files"])
    current = Path(os.path.realpath(out))
    (current / "notes.txt").write_text("mine")  # someone's file inside an export version
    for _ in range(2):  # that version becomes the previous one, then is removed
        assert _invoke("export", "--warehouse", str(warehouse), "--out", str(out))[0] == 0
    assert sorted(p.name for p in current.iterdir()) == ["notes.txt"]  # only listed files go
