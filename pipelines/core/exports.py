"""Per-academy exports of the marts and analyst views, published atomically (issue 6).

Layout under `<out>` (every path in the manifest is relative to it, with `/`):

    <name>/academy_id=<id>/part-0.parquet   Parquet, hive-partitioned: the academy_id column is
                                            in the folder name, not in the file (the usual hive
                                            convention, so DuckDB, Polars, pyarrow and pandas
                                            all read the folder back with academy_id)
    <name>/academy_id=<id>/<name>.csv       CSV in UTF-8 with a BOM (Excel opens Korean text
                                            correctly), header row, academy_id column included,
                                            timestamps as `YYYY-MM-DD HH:MM:SS[.fff]`, booleans
                                            true/false, null as an empty field
    dim_labels/dim_labels.parquet|csv       the label dimension, which has no academy: once
    manifest.json                           as_of, run_id, schema_version, academies, files

Every academy found in the marts gets every file, header-only when it has no row for a table,
so a dashboard can rely on the paths. Rows are sorted by a fixed key, so the same warehouse
gives byte-identical files (and the same sha256).

Publishing: `<out>` is a symbolic link to one whole export, `.<out name>.versions/<id>/`
beside it. Each export is written into a hidden folder there, renamed to its version id once
complete, and the link is switched to it with one atomic rename; so whoever opens
`<out>/...` finds a whole export, the previous one or the new one, never half of one, and never
no folder at all. The previous version is kept until the next export (a reader in the middle
of it is not cut off); older ones are removed, each by deleting only the files its manifest
lists. Exports run one at a time per folder (a lock file in the versions folder).

What is replaced: only what an export wrote itself, recognized by its own manifest.json
(`written_by`, or the layout of an older export: `schema_version` and `files` with path and
sha256). A file, a foreign folder (no manifest, or someone else's manifest.json), a folder
holding files its manifest does not list, or a link to somewhere else is refused with one line,
and left as it is. An export folder of the older layout (a plain folder) is migrated once: its
listed files deleted, the link put in its place.

`export_warehouse` opens a warehouse file read-only; the Dagster asset opens the published file
(or its run's staging file) itself and calls `read_snapshot` and `write_export` while it is open.
Tables are streamed one at a time: DuckDB sorts each by academy (spilling to a scratch folder
past its memory limit) and hands it over in Arrow batches; the rows of one academy are gathered
and written (on a second thread, while the next academy is read), then dropped, so memory holds
a few academies' rows of one table, not a whole mart (at 1M enrollments the whole
session_progress took 8.6 GB). The views are exported from their
SQL (`View.select` and `View.order_by`), so the export works whether or not `create_views` has
run on that warehouse.

No orchestration dependency: DuckDB, Polars, pyarrow and the standard library.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
from filelock import FileLock

from .paths import UnsafePath, check_output, refuse_lake_folder, refuse_landing
from .views import VIEWS
from .warehouse import literal
from .write_behind import WriteBehind

# Bump when a column of an exported table or view is added, removed, renamed or retyped.
SCHEMA_VERSION = 1

# Exported marts with their row order; dim_labels has no academy_id and is exported once.
MART_ORDER: dict[str, str] = {
    "session_progress": "enrollment_id, session_order, session_id",
    "lecture_progress": "enrollment_id",
    "risk_log": "enrollment_id, session_order, session_id",
    "clinic_links": "enrollment_id, session_order, session_id, reason",
}
LABELS = "dim_labels"
EXPORTED = [*MART_ORDER, *VIEWS]  # every per-academy name, marts then views

CSV_DATETIME = "%Y-%m-%d %H:%M:%S%.f"
WRITTEN_BY = "progress export"  # the manifest's mark: a folder this code may replace
MANIFEST = "manifest.json"


class ExportError(Exception):
    """The export could not be made; the message is one line for the user."""


def sha256_file(path: Path) -> str:
    """Streaming sha256 of a file (hex)."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


LABELS_QUERY = "SELECT * FROM marts.dim_labels ORDER BY domain, code"


def _missing_tables(con: duckdb.DuckDBPyConnection) -> list[str]:
    needed = [*MART_ORDER, LABELS]
    found = {
        r[0]
        for r in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'marts'"
        ).fetchall()
    }
    return [f"marts.{t}" for t in needed if t not in found]


def _as_of(con: duckdb.DuckDBPyConnection) -> str | None:
    (value,) = con.execute(
        "SELECT max(calculated_at) FROM (SELECT calculated_at FROM marts.lecture_progress "
        "UNION ALL SELECT calculated_at FROM marts.session_progress)"
    ).fetchone()
    return value.isoformat(sep=" ") if value is not None else None


def _published_run_id(con: duckdb.DuckDBPyConnection) -> str | None:
    """The run that published the warehouse file, when it records one (marts.publication)."""
    (exists,) = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'marts' "
        "AND table_name = 'publication'"
    ).fetchone()
    if not exists:
        return None
    try:
        found = con.execute(
            "SELECT run_id FROM marts.publication ORDER BY published_at DESC LIMIT 1"
        ).fetchone()
    except duckdb.Error:
        return None
    return found[0] if found and found[0] else None


def _by_academy(name: str) -> str:
    """The export query of a per-academy mart or view: academy first, then the table's own
    order, so each academy's rows are one contiguous slice in the same order as before."""
    if name in VIEWS:
        view = VIEWS[name]
        return f"SELECT * FROM ({view.select.rstrip()}) ORDER BY academy_id, {view.order_by}"
    return f"SELECT * FROM marts.{name} ORDER BY academy_id, {MART_ORDER[name]}"


# DuckDB's share of an export: it sorts each table by academy, and spills past this limit
# into a scratch folder (`.tmp-<token>-spill` in the versions folder, removed afterwards, or by
# the next export when killed). Measured at M (2.9M session_progress rows): 300 MB, 1 GB and no
# limit stream the tables in the same time, all under 510 MB RSS. The least memory a table
# needs (with 2 threads) is v_clinic_queue's joins: 30-60 MB at S, 100-110 MB at M (it grows
# far slower than the rows; below it DuckDB fails with Out of Memory), so 1 GB keeps a wide
# margin at L (10x M) and stays under the 2 GB the whole export may take.
DUCKDB_MEMORY = "1GB"
# Two threads: the machines we run on have two cores, and the Python side (Polars writing
# the files) runs meanwhile; more threads only add sort memory (one sort run per thread).
DUCKDB_THREADS = 2
BATCH_ROWS = 65_536  # rows per Arrow batch handed over by DuckDB
IN_FLIGHT = 2  # academies read but not yet written (see `_write_all`)


@dataclass
class Snapshot:
    """What an export writes, read one table at a time from an open connection."""

    con: duckdb.DuckDBPyConnection
    as_of: str | None
    published_run_id: str | None = None

    def read(self, name: str) -> pl.DataFrame:
        """A whole per-academy table ordered by academy (see `_by_academy`), or dim_labels;
        the export itself streams them (`stream`), this is for tests and small tables."""
        return self.con.sql(_by_academy(name) if name in EXPORTED else LABELS_QUERY).pl()

    def stream(self, name: str) -> tuple[pl.DataFrame, Iterator[tuple[int, pl.DataFrame]]]:
        """A per-academy table as (its empty frame, (academy, its rows) in academy order).

        Each academy's rows come whole, in the table's order, as one frame; rows without an
        academy are left out (as the slices of a whole table did)."""
        reader = self.con.execute(_by_academy(name)).to_arrow_reader(BATCH_ROWS)
        empty = pl.from_arrow(reader.schema.empty_table())
        return empty, _academy_runs(empty, reader)


def _academy_runs(
    empty: pl.DataFrame, batches: Iterable[pa.RecordBatch]
) -> Iterator[tuple[int, pl.DataFrame]]:
    """(academy, all its rows) from batches ordered by academy_id."""
    current: int | None = None
    parts: list[pl.DataFrame] = []
    for batch in batches:
        frame = pl.from_arrow(batch)
        for academy, part in _academy_slices(frame):
            if academy != current and parts:
                yield current, pl.concat(parts, rechunk=True)
                parts = []
            current = academy
            parts.append(part)
    if parts:
        yield current, pl.concat(parts, rechunk=True)


def read_snapshot(con: duckdb.DuckDBPyConnection, source: str = "the warehouse") -> Snapshot:
    """The export of the warehouse behind `con`, which must stay open while it is written."""
    missing = _missing_tables(con)
    if missing:
        raise ExportError(f"{source} has no {', '.join(missing)}; run `progress run` first")
    return Snapshot(con, _as_of(con), _published_run_id(con))


def _open_warehouse(warehouse: Path) -> duckdb.DuckDBPyConnection:
    if not warehouse.is_file():
        raise ExportError(f"warehouse {warehouse} does not exist; run `progress run` first")
    try:
        return duckdb.connect(str(warehouse), read_only=True)
    except duckdb.Error as exc:
        raise ExportError(
            f"cannot read warehouse {warehouse}: {str(exc).strip().splitlines()[0]}"
        ) from exc


def _write_csv(frame: pl.DataFrame, path: Path) -> None:
    frame.write_csv(path, include_bom=True, datetime_format=CSV_DATETIME)


def _write_parquet(frame: pl.DataFrame, path: Path) -> None:
    frame.write_parquet(path, compression="zstd", statistics=True)


def versions_folder(out: Path) -> Path:
    """Where the versions behind the `out` link live: `.<name>.versions` beside it."""
    return out.with_name(f".{out.name}.versions")


def _own_manifest(folder: Path) -> dict | None:
    """The folder's manifest when an export wrote it (see the module doc), else None."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict):
        return None
    if manifest.get("written_by") == WRITTEN_BY:
        return manifest
    files = manifest.get("files")
    legacy = (
        isinstance(manifest.get("schema_version"), int)
        and isinstance(files, list)
        and all(isinstance(f, dict) and {"path", "sha256"} <= f.keys() for f in files)
    )
    return manifest if legacy else None


def _listed(folder: Path, manifest: dict) -> list[Path]:
    """The files a manifest lists, only those inside `folder`, and the manifest itself."""
    root = folder.resolve()
    paths = []
    for entry in manifest.get("files", []):
        path = (folder / str(entry["path"])).resolve()
        if root in path.parents:
            paths.append(path)
    return [*paths, root / MANIFEST]


def _unlisted(folder: Path, manifest: dict) -> list[str]:
    listed = set(_listed(folder, manifest))
    root = folder.resolve()
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if not p.is_dir() and p not in listed
    )


def _remove_export(folder: Path) -> None:
    """Delete the files the folder's own manifest lists, then its empty folders; anything
    else stays (with the folder holding it)."""
    manifest = _own_manifest(folder)
    if manifest is None:
        return
    for path in _listed(folder, manifest):
        path.unlink(missing_ok=True)
    for sub in sorted((p for p in folder.rglob("*") if p.is_dir()), reverse=True):
        with contextlib.suppress(OSError):
            sub.rmdir()
    with contextlib.suppress(OSError):
        folder.rmdir()


def _check_target(out: Path) -> None:
    """Refuse to replace anything but an export this code wrote (see the module doc)."""
    versions = versions_folder(out)
    if out.is_symlink():
        target = Path(os.path.realpath(out))
        if target.parent != versions.resolve():
            raise ExportError(
                f"{out} is a link to {os.readlink(out)}, not an export folder "
                "written by `progress export`; refusing to replace it"
            )
        return
    if not out.exists():
        return
    if not out.is_dir():
        raise ExportError(f"{out} exists and is not a folder")
    if not any(out.iterdir()):
        return
    manifest = _own_manifest(out)
    if manifest is None:
        what = (
            "a manifest.json it did not write" if (out / MANIFEST).exists() else "no manifest.json"
        )
        raise ExportError(
            f"{out} is a non-empty folder with {what} (not an export written by "
            "`progress export`); refusing to replace it"
        )
    unlisted = _unlisted(out, manifest)
    if unlisted:
        raise ExportError(
            f"{out} holds {len(unlisted)} file(s) its export manifest does not "
            f"list (e.g. {unlisted[0]}); move them away, then export again"
        )


def _publish(version: Path, out: Path, token: str) -> None:
    """Point the `out` link at `version` with one atomic rename; migrate an older plain
    export folder; keep the previous version (readers may still be in it), remove older ones
    by their manifests."""
    versions = version.parent
    previous = Path(os.path.realpath(out)) if out.is_symlink() else None
    link = versions.parent / f".{out.name}.link-{token}"
    link.symlink_to(os.path.relpath(version, out.parent))
    try:
        if out.is_dir() and not out.is_symlink():  # an empty folder, or an older export
            legacy = versions / f"legacy-{token}"
            os.rename(out, legacy)
            os.replace(link, out)
            _remove_export(legacy)
            with contextlib.suppress(OSError):
                legacy.rmdir()
        else:
            os.replace(link, out)
    finally:
        link.unlink(missing_ok=True)
    keep = {version.name} | ({previous.name} if previous else set())
    for old in sorted(versions.iterdir()):
        if old.name.startswith(".tmp-"):  # left by a killed export (the lock says none runs)
            shutil.rmtree(old, ignore_errors=True)
        elif old.is_dir() and old.name not in keep:
            _remove_export(old)


def _bound(con: duckdb.DuckDBPyConnection, spill: Path) -> None:
    """DuckDB's memory, threads and scratch folder for this export (see DUCKDB_MEMORY)."""
    con.execute(f"SET memory_limit = {literal(DUCKDB_MEMORY)}")
    con.execute(f"SET threads = {DUCKDB_THREADS}")
    con.execute(f"SET temp_directory = {literal(str(spill))}")


def _academy_slices(frame: pl.DataFrame) -> list[tuple[int, pl.DataFrame]]:
    """(academy, its rows) of a frame ordered by academy_id: zero-copy slices."""
    bounds = (
        frame.select("academy_id")
        .with_row_index("_start")
        .group_by("academy_id", maintain_order=True)
        .agg(pl.col("_start").first(), pl.len().alias("_rows"))
        .drop_nulls("academy_id")
    )
    return [(academy, frame.slice(start, rows)) for academy, start, rows in bounds.iter_rows()]


def _write_all(
    snapshot: Snapshot, root: Path
) -> tuple[list[int], list[dict], dict[str, list[str]]]:
    files: list[dict] = []
    columns: dict[str, list[str]] = {}

    def record(path: Path, name: str, academy: int | None, rows: int) -> None:
        files.append(
            {
                "path": path.relative_to(root).as_posix(),
                "table": name,
                "academy_id": academy,
                "format": path.suffix.lstrip("."),
                "rows": rows,
                "bytes": path.stat().st_size,
                "sha256": sha256_file(path),
            }
        )

    def write_part(name: str, academy: int, part: pl.DataFrame) -> None:
        part = part.rechunk()  # one chunk, so one row group: the same bytes for the same rows
        folder = root / name / f"academy_id={academy}"
        folder.mkdir(parents=True)
        parquet, csv = folder / "part-0.parquet", folder / f"{name}.csv"
        _write_parquet(part.drop("academy_id"), parquet)
        _write_csv(part, csv)
        record(parquet, name, academy, part.height)
        record(csv, name, academy, part.height)

    written: dict[str, set[int]] = {}
    empty: dict[str, pl.DataFrame] = {}
    # One thread writes an academy's files while this one reads the next academy from DuckDB
    # (both release the GIL): at M the two overlap to use the second core. At most
    # IN_FLIGHT academies wait to be written, so memory stays a few academies' rows.
    # On a failure no write continues into the folder about to be removed (WriteBehind cancels).
    with WriteBehind("export-writer", IN_FLIGHT) as behind:
        for name in EXPORTED:  # one table at a time, a few academies of it in memory
            empty[name], runs = snapshot.stream(name)
            columns[name], written[name] = empty[name].columns, set()
            for academy, part in runs:
                behind.submit(write_part, name, academy, part)
                written[name].add(academy)
                del part
    academies = sorted(set().union(*written.values()))
    for name in EXPORTED:  # every academy gets every file, header-only when it has no row
        for academy in academies:
            if academy not in written[name]:
                write_part(name, academy, empty[name])
    labels = snapshot.read(LABELS)
    columns[LABELS] = labels.columns
    folder = root / LABELS
    folder.mkdir()
    for path, write in (
        (folder / f"{LABELS}.parquet", _write_parquet),
        (folder / f"{LABELS}.csv", _write_csv),
    ):
        write(labels, path)
        record(path, LABELS, None, labels.height)
    files.sort(key=lambda f: f["path"])
    return academies, files, columns


def write_export(
    snapshot: Snapshot, out: Path, run_id: str | None = None, source: str | None = None
) -> dict:
    """Write `snapshot` into `out` per academy, atomically; return the manifest."""
    out = Path(out)
    _check_target(out)
    token = uuid.uuid4().hex
    versions = versions_folder(out)
    versions.mkdir(parents=True, exist_ok=True)
    with FileLock(str(versions / ".lock")):
        _check_target(out)  # again: something may have changed while we waited
        staging = versions / f".tmp-{token}"
        staging.mkdir()
        spill = versions / f".tmp-{token}-spill"
        try:
            _bound(snapshot.con, spill)
            academies, files, columns = _write_all(snapshot, staging)
            shutil.rmtree(spill, ignore_errors=True)
            manifest = {
                "written_by": WRITTEN_BY,
                "as_of": snapshot.as_of,
                "run_id": run_id or snapshot.published_run_id or f"export-{token}",
                "schema_version": SCHEMA_VERSION,
                "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "source": source,
                "academies": academies,
                "tables": columns,
                "files": files,
            }
            (staging / MANIFEST).write_text(
                json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
            )
            version = versions / f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{token[:8]}"
            os.rename(staging, version)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            shutil.rmtree(spill, ignore_errors=True)
            raise
        _publish(version, out, token)
    return manifest


def export_warehouse(
    warehouse: Path, out: Path, run_id: str | None = None, landing: Path | None = None
) -> dict:
    """Export every mart and view of the warehouse file per academy into `out`; the manifest.

    The warehouse is opened read-only for the export's length (a publication swapping the
    file meanwhile does not disturb it: the open file keeps the publication it was opened
    on). `run_id` goes into the manifest; when not given it is the run that published the
    warehouse (its newest `marts.publication` row, when the file records one), else a fresh
    id for this export. `out` may not be (or hold) the warehouse nor lie in the landing folder
    (`landing`, default $PROGRESS_LANDING or data/landing). Raises ExportError with one line.
    """
    warehouse = Path(warehouse)
    try:
        check_output(out, warehouse, landing)
    except UnsafePath as exc:
        raise ExportError(str(exc)) from None
    _check_target(Path(out))
    with _open_warehouse(warehouse) as con:
        try:
            snapshot = read_snapshot(con, f"warehouse {warehouse}")
            return write_export(snapshot, out, run_id, source=str(warehouse))
        except duckdb.Error as exc:
            raise ExportError(
                f"cannot read warehouse {warehouse}: {str(exc).strip().splitlines()[0]}"
            ) from exc


def export_lake(
    config, out: Path, snapshot: int | None = None, landing: Path | None = None
) -> dict:
    """Export one lake publication per academy into `out`, exactly as `export_warehouse` does
    for the file: the latest publication, or snapshot `snapshot`, pinned for the whole export
    (a publication committing meanwhile does not reach it). `out` may not overlap a local
    lake folder nor the landing folder. Raises ExportError with one line."""
    from . import lake

    try:
        if not config.on_s3:
            refuse_lake_folder(out, config.data_path)
        refuse_landing(out, landing)
    except UnsafePath as exc:
        raise ExportError(str(exc)) from None
    _check_target(Path(out))
    try:
        with lake.connect(config, read_only=True) as con:
            kept = lake.snapshots(con)
        if snapshot is None:
            if kept.is_empty():
                raise ExportError("the lake has no publication; run `progress run --backend lake`")
            snapshot = int(kept["snapshot_id"][-1])
        with lake.connect(config, snapshot=snapshot) as con:
            source = f"lake {config.data_path} (snapshot {snapshot})"
            return write_export(read_snapshot(con, source), out, source=source)
    except duckdb.Error as exc:
        raise ExportError(f"cannot read the lake: {str(exc).strip().splitlines()[0]}") from exc
