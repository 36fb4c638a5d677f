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

Publishing: everything is written into a hidden sibling folder, then swapped in with renames
(the previous export is renamed aside, the new one renamed into place, the old one removed), so
a reader never sees a half-written export: it sees the old files or the new ones. An existing
`<out>` that is not an export (a non-empty folder without manifest.json) is never replaced.

`export_warehouse` opens a warehouse file read-only; the Dagster asset opens the published file
(or its run's staging file) itself and calls `read_snapshot` and `write_export` while it is open.
Tables are read one at a time, each ordered by academy so that an academy's rows are a slice. The views are exported from
their SQL (`View.select` and `View.order_by`), so the export works whether or not `create_views` has run on
that warehouse.

No orchestration dependency: DuckDB, Polars and the standard library.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import polars as pl

from .views import VIEWS

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
        r[0] for r in con.execute(
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


@dataclass
class Snapshot:
    """What an export writes, read one table at a time from an open connection (at 1M
    enrollments all marts and views at once would take 14 GB; one at a time, the largest)."""

    con: duckdb.DuckDBPyConnection
    as_of: str | None
    published_run_id: str | None = None

    def read(self, name: str) -> pl.DataFrame:
        """A per-academy table ordered by academy (see `_by_academy`), or dim_labels."""
        return self.con.sql(_by_academy(name) if name in EXPORTED else LABELS_QUERY).pl()


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
        raise ExportError(f"cannot read warehouse {warehouse}: "
                          f"{str(exc).strip().splitlines()[0]}") from exc


def _write_csv(frame: pl.DataFrame, path: Path) -> None:
    frame.write_csv(path, include_bom=True, datetime_format=CSV_DATETIME)


def _write_parquet(frame: pl.DataFrame, path: Path) -> None:
    frame.write_parquet(path, compression="zstd", statistics=True)


def _check_target(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / "manifest.json").is_file():
        raise ExportError(
            f"{out} is a non-empty folder without manifest.json (not an export); "
            "refusing to replace it"
        )


def _publish(staging: Path, out: Path, token: str) -> None:
    """Swap `staging` into `out` with renames; the previous export is removed afterwards."""
    aside = out.with_name(f".{out.name}.old-{token}")
    had_old = out.exists()
    if had_old:
        os.rename(out, aside)
    try:
        os.rename(staging, out)
    except BaseException:
        if had_old:
            os.rename(aside, out)
        raise
    if had_old:
        shutil.rmtree(aside, ignore_errors=True)


def _academy_slices(frame: pl.DataFrame) -> list[tuple[int, pl.DataFrame]]:
    """(academy, its rows) of a frame ordered by academy_id: zero-copy slices."""
    bounds = (frame.select("academy_id").with_row_index("_start")
              .group_by("academy_id", maintain_order=True)
              .agg(pl.col("_start").first(), pl.len().alias("_rows"))
              .drop_nulls("academy_id"))
    return [(academy, frame.slice(start, rows)) for academy, start, rows in bounds.iter_rows()]


def _write_all(snapshot: Snapshot, root: Path
               ) -> tuple[list[int], list[dict], dict[str, list[str]]]:
    files: list[dict] = []
    columns: dict[str, list[str]] = {}

    def record(path: Path, name: str, academy: int | None, rows: int) -> None:
        files.append({
            "path": path.relative_to(root).as_posix(),
            "table": name,
            "academy_id": academy,
            "format": path.suffix.lstrip("."),
            "rows": rows,
            "bytes": path.stat().st_size,
            "sha256": sha256_file(path),
        })

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
    for name in EXPORTED:  # one table in memory at a time
        frame = snapshot.read(name)
        columns[name], empty[name], written[name] = frame.columns, frame.clear(), set()
        for academy, part in _academy_slices(frame):
            write_part(name, academy, part)
            written[name].add(academy)
        del frame
    academies = sorted(set().union(*written.values()))
    for name in EXPORTED:  # every academy gets every file, header-only when it has no row
        for academy in academies:
            if academy not in written[name]:
                write_part(name, academy, empty[name])
    labels = snapshot.read(LABELS)
    columns[LABELS] = labels.columns
    folder = root / LABELS
    folder.mkdir()
    for path, write in ((folder / f"{LABELS}.parquet", _write_parquet),
                        (folder / f"{LABELS}.csv", _write_csv)):
        write(labels, path)
        record(path, LABELS, None, labels.height)
    files.sort(key=lambda f: f["path"])
    return academies, files, columns


def write_export(snapshot: Snapshot, out: Path, run_id: str | None = None,
                 source: str | None = None) -> dict:
    """Write `snapshot` into `out` per academy, atomically; return the manifest."""
    out = Path(out)
    _check_target(out)
    token = uuid.uuid4().hex
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(f".{out.name}.tmp-{token}")
    staging.mkdir()
    try:
        academies, files, columns = _write_all(snapshot, staging)
        manifest = {
            "as_of": snapshot.as_of,
            "run_id": run_id or snapshot.published_run_id or f"export-{token}",
            "schema_version": SCHEMA_VERSION,
            "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "source": source,
            "academies": academies,
            "tables": columns,
            "files": files,
        }
        (staging / "manifest.json").write_text(
            json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
        )
        _check_target(out)  # again: something may have appeared while we wrote
        _publish(staging, out, token)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def export_warehouse(warehouse: Path, out: Path, run_id: str | None = None) -> dict:
    """Export every mart and view of the warehouse file per academy into `out`; the manifest.

    The warehouse is opened read-only for the export's length (a publication swapping the
    file meanwhile does not disturb it: the open file keeps the publication it was opened
    on). `run_id` goes into the manifest; when not given it is the run that published the
    warehouse (its newest `marts.publication` row, when the file records one), else a fresh
    id for this export. Raises ExportError with a one-line reason.
    """
    warehouse = Path(warehouse)
    _check_target(Path(out))
    with _open_warehouse(warehouse) as con:
        try:
            snapshot = read_snapshot(con, f"warehouse {warehouse}")
            return write_export(snapshot, out, run_id, source=str(warehouse))
        except duckdb.Error as exc:
            raise ExportError(f"cannot read warehouse {warehouse}: "
                              f"{str(exc).strip().splitlines()[0]}") from exc
