"""Finding and reading the extract files of one table (contract §1), as delivered text.

Every file becomes a frame with one column per contract column plus `_source_file` and
`_source_row`: String holding the value exactly as delivered (null when the file lacks the
column or the field is empty), or, for a Parquet column whose native type maps onto the
contract type, that value already typed.

A file that cannot be read at all is refused whole with a one-line reason naming it, and the
table's other files are still read: whatever its reader raises (a Polars panic included), a CSV
ending inside a quoted field, a file that changed while it was read (still being written), a
symlink leading outside the landing folder. Nothing of a refused file is half-used.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import stat
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
from polars.exceptions import PanicException

from .contract import TableSpec

_log = logging.getLogger(__name__)

EXTENSIONS = (".csv", ".parquet")
WHITESPACE = " \t\r\n"

# Fields of any length are valid (contract §1); the csv module refuses a field over 128 KiB
# unless told otherwise, which refused valid files.
csv.field_size_limit(sys.maxsize)

# What reading one file may raise and still be that file's failure: any error, and a panic of
# Polars' Rust code (a BaseException). Other BaseExceptions (Ctrl-C, exit, Dagster's run
# interruption) stop the run and are never turned into a refusal.
READ_FAILURES = (Exception, PanicException)


@dataclass(frozen=True)
class RefusedFile:
    table: str
    file: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}: refused ({self.reason})"


class FileRefused(Exception):
    """A file that cannot be read at all; carries the reason shown to the user."""


OUTSIDE = "symlink leads outside the landing folder"


def display_name(rel: str) -> str:
    """A relative path as shown to users and stored in `_source_file`: bytes that are not UTF-8
    appear as `\\xNN` and control characters (a newline in a name) as escapes, so every name is
    one printable line whatever the file system allows."""
    text = os.fsencode(rel).decode("utf-8", "backslashreplace")
    return "".join(
        c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text
    )


def _link_target(path: Path, landing_real: str) -> tuple[Path | None, str | None]:
    """(where a symlink leads, or None with the reason it cannot be followed)."""
    try:
        real = Path(os.path.realpath(path, strict=True))
    except (OSError, RuntimeError):  # dangling, a loop, or unreadable
        return None, "symlink leads to nothing (its target is missing, or a loop)"
    return (real, None) if real.is_relative_to(landing_real) else (None, OUTSIDE)


def scan(landing: Path, table: str) -> tuple[list[tuple[str, Path]], list[RefusedFile]]:
    """The table's files as (display path relative to landing, path), in relative-path order,
    and the entries refused before reading (symlinks leading outside the landing folder or
    nowhere, names of the table that are not regular files).

    `<table>.csv|.parquet` in the landing folder and every such file under `<table>/`;
    names (and folders) starting with '.' are skipped. A symlink is followed when its target
    stays inside the landing folder (and the file is then read at the checked target); a
    folder is walked at most once (no cycle), and a link leading outside is refused without
    being read or walked.
    """
    found: list[tuple[str, Path]] = []
    refused: list[RefusedFile] = []
    if not landing.is_dir():
        return found, refused
    landing_real = os.path.realpath(landing)
    seen_dirs = {landing_real}
    # (path, relative name, the table's file or folder by its name, a folder here is walked)
    pending: list[tuple[Path, str, bool, bool]] = []
    for entry in list(os.scandir(landing)):
        path = Path(entry.path)
        if entry.name == table:
            pending.append((path, entry.name, True, True))
        elif path.stem == table and path.suffix.lower() in EXTENSIONS:
            pending.append((path, entry.name, True, False))
    while pending:
        path, rel, named, walk = pending.pop()
        if path.is_symlink():
            target, problem = _link_target(path, landing_real)
            if target is None:
                # only links that could hold the table's rows are reported
                if named or os.path.isdir(path):
                    refused.append(RefusedFile(table, display_name(rel), problem or OUTSIDE))
                continue
            path = target
        try:
            mode = path.stat().st_mode
        except OSError as exc:
            if named:
                reason = f"cannot be read ({exc.strerror or exc})"
                refused.append(RefusedFile(table, display_name(rel), reason))
            continue
        if stat.S_ISDIR(mode) and walk:
            real = os.path.realpath(path)
            if real in seen_dirs:  # a cycle, or a folder already walked through another link
                continue
            seen_dirs.add(real)
            try:
                entries = list(os.scandir(path))
            except OSError as exc:
                reason = f"cannot be read ({exc.strerror or exc})"
                refused.append(RefusedFile(table, display_name(rel), reason))
                continue
            for entry in entries:
                if not entry.name.startswith("."):
                    child = Path(entry.path)
                    counts = child.suffix.lower() in EXTENSIONS
                    pending.append((child, f"{rel}/{entry.name}", counts, True))
        elif named and not stat.S_ISDIR(mode) and Path(rel).suffix.lower() in EXTENSIONS:
            if stat.S_ISREG(mode):
                found.append((display_name(rel), path))
            else:  # a pipe or a device would block or never end
                refused.append(RefusedFile(table, display_name(rel), "not a regular file"))
    found.sort(key=lambda item: item[0])
    refused.sort(key=lambda item: item.file)
    return found, refused


def find_files(landing: Path, table: str) -> list[tuple[str, Path]]:
    """The table's readable files as (path relative to landing, path), in relative-path order
    (see `scan`)."""
    return scan(landing, table)[0]


def _delivered_frame(
    spec: TableSpec, columns: dict[str, list | pl.Series], n: int, rel: str, start: int = 0
) -> pl.DataFrame:
    data = [
        columns[name]
        if isinstance(columns.get(name), pl.Series)
        else pl.Series(name, columns.get(name, [None] * n), pl.String)
        for name in spec.column_names
    ]
    frame = pl.DataFrame(data)
    return frame.with_columns(
        pl.lit(rel, pl.String).cast(pl.Categorical).alias("_source_file"),
        pl.int_range(start + 1, start + n + 1, dtype=pl.Int64).alias("_source_row"),
    )


def _contract_positions(spec: TableSpec, header: list[str]) -> dict[str, int]:
    """Contract column -> position in the header; a contract column named twice refuses."""
    positions: dict[str, int] = {}
    for i, raw_name in enumerate(header):
        name = raw_name.strip(WHITESPACE)
        if name in spec.column_names:
            if name in positions:
                raise FileRefused(f"column '{name}' appears twice in the header")
            positions[name] = i
    return positions


def decode_text(data: bytes) -> str:
    """UTF-8 (BOM or not), else CP949 (BOM or not) as Korean Excel saves it; else refused."""
    if b"\x00" in data:
        raise FileRefused("binary content (NUL bytes), not a CSV text file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    try:  # a UTF-8 BOM in front of CP949 bytes is a mislabelled Excel file, not part of it
        return data.removeprefix(b"\xef\xbb\xbf").decode("cp949")
    except UnicodeDecodeError as exc:
        raise FileRefused(
            f"neither UTF-8 nor CP949 text (undecodable byte at offset {exc.start})"
        ) from None


def csv_records(text: str) -> list[list[str]]:
    """The records of CSV text, header first; blank lines are not records.

    The csv module, at the end of the text inside a quoted field, returns what it has as a
    last record: the rest of the file would silently become one field. A record that needed
    the end of the text to finish is exactly that case (any other record ends at its line
    end), so it refuses the file, naming the data record and line where the field starts.
    """
    ended = False

    def lines() -> Iterator[str]:
        nonlocal ended
        yield from io.StringIO(text, newline="")
        ended = True

    reader = csv.reader(lines())
    records: list[list[str]] = []
    start = 1
    try:
        for record in reader:
            if ended:
                where = f"record {len(records)}" if records else "the header"
                raise FileRefused(
                    f"unterminated quoted field starting at {where} (line {start}): "
                    "the file ends inside quotes"
                )
            if record:
                records.append(record)
            start = reader.line_num + 1
    except csv.Error as exc:
        raise FileRefused(f"malformed CSV at line {reader.line_num}: {exc}") from None
    return records


def read_csv_file(spec: TableSpec, path: Path, rel: str) -> pl.DataFrame:
    records = csv_records(decode_text(path.read_bytes()))
    if not records:
        raise FileRefused("empty file (no header row)")
    header, rows = records[0], records[1:]
    positions = _contract_positions(spec, header)
    columns = {
        name: [(r[i] or None) if i < len(r) else None for r in rows]
        for name, i in positions.items()
    }
    return _delivered_frame(spec, columns, len(rows), rel)


_INTS = (pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.UInt8, pl.UInt16, pl.UInt32)


# Years 0001-9999 (contract §1) as seconds and days from 1970-01-01.
_FIRST_SECOND, _END_SECOND = -62_135_596_800, 253_402_300_800
_FIRST_DAY, _END_DAY = -719_162, 2_932_897
_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}


def _outside_years(series: pl.Series) -> pl.Series | None:
    """For a Date or Datetime column holding a value outside the years 0001-9999, the mask of
    those values; else None. Read from the raw ticks: a damaged file can hold any 64-bit tick,
    and Polars' calendar operations panic on values beyond their calendar."""
    dtype = series.dtype
    if dtype == pl.Date:
        low, end = _FIRST_DAY, _END_DAY
    elif isinstance(dtype, pl.Datetime):
        per = _PER_SECOND[dtype.time_unit or "us"]
        low, end = max(_FIRST_SECOND * per, -(2**63)), min(_END_SECOND * per, 2**63 - 1)
    else:
        return None
    ticks = series.to_physical().cast(pl.Int64)
    outside = (ticks < low) | (ticks >= end)
    return outside if outside.any() else None


def _temporal_text(series: pl.Series, outside: pl.Series, tz: str) -> pl.Series:
    """A temporal column with values outside the contract's years, as text: the others as
    local-time text (parsed again by the CSV rules, to the same value), those as their raw
    tick count and unit, which no rule parses (`invalid_type`, with what was delivered)."""
    dtype = series.dtype
    inside = series.set(outside, None)  # type: ignore[arg-type]
    if dtype == pl.Date:
        text, unit = inside.dt.strftime("%Y-%m-%d"), "days"
    else:
        if dtype.time_zone is not None:  # type: ignore[union-attr]
            inside = inside.dt.convert_time_zone(tz).dt.replace_time_zone(None)
        text = inside.dt.cast_time_unit("us").dt.strftime("%Y-%m-%d %H:%M:%S%.6f")
        unit = dtype.time_unit  # type: ignore[union-attr]
    raw = series.to_physical().cast(pl.String) + f" {unit}"
    return (
        pl.select(pl.when(pl.lit(outside)).then(pl.lit(raw)).otherwise(pl.lit(text)))
        .to_series()
        .alias(series.name)
    )


def _native(series: pl.Series, type_: str, tz: str) -> pl.Series:
    """A Parquet column in its contract type when its native type maps exactly, else as text.

    Native ints, floats, bools, dates and timestamps skip text parsing entirely (timestamps
    truncated to microseconds, zone-aware ones converted to local time); anything else is
    rendered as the text a CSV would have carried and parsed by the CSV rules.
    """
    dtype = series.dtype
    outside = _outside_years(series)
    if outside is not None:
        return _temporal_text(series, outside, tz)
    if type_ == "int" and dtype in _INTS:
        return series.cast(pl.Int64)
    if type_ == "float" and (dtype.is_numeric() and dtype != pl.UInt64):
        return series.cast(pl.Float64)
    if type_ == "bool" and dtype == pl.Boolean:
        return series
    if type_ == "date" and dtype == pl.Date:
        return series
    if type_ == "timestamp" and isinstance(dtype, pl.Datetime):
        if dtype.time_zone is not None:
            series = series.dt.convert_time_zone(tz).dt.replace_time_zone(None)
        return series.dt.cast_time_unit("us")
    if type_ == "timestamp" and dtype == pl.Date:
        return series.cast(pl.Datetime("us"))
    if dtype == pl.String:
        return series.replace("", None)
    if isinstance(dtype, pl.Datetime):
        series = series.dt.cast_time_unit("us").dt.strftime("%Y-%m-%d %H:%M:%S%.6f")
    return series.cast(pl.String)


@contextmanager
def _stderr_held() -> Iterator[None]:
    """Polars reports a panic on a damaged file by printing it, with a Rust backtrace when
    RUST_BACKTRACE is set, straight to the process's stderr before raising; no setting turns
    that off (polars 2.1). The panic becomes a refusal with a one-line reason, so during the
    read the stderr descriptor goes to a temporary file, replayed afterwards unless the read
    failed (then it holds only the panic report)."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # the process has no stderr: nothing to hold back
        yield
        return
    failed = True
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
            failed = False
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            if not failed and held.tell():
                held.seek(0)
                os.write(2, held.read())


def _polars_read(path: Path, positions: dict[str, int], rows: int) -> dict[str, pl.Series] | None:
    """The contract columns by Polars' own Parquet reader (at L twice as fast as pyarrow plus
    the conversion); None when it cannot read them, and pyarrow then reads the file (or
    refuses it, with pyarrow's reason)."""
    if not positions:
        return None
    indices = sorted(set(positions.values()))
    try:
        with _stderr_held():  # a panic here is not the file's end: pyarrow may still read it
            frame = pl.read_parquet(path, columns=indices)
    except READ_FAILURES:  # an exotic layout, or a panic on damaged data
        return None  # the pyarrow path decides
    if frame.height != rows or frame.width != len(indices):
        return None
    by_index = dict(zip(indices, frame.get_columns(), strict=True))
    return {name: by_index[i].alias(name) for name, i in positions.items()}


def _typed_columns(
    spec: TableSpec, positions: dict[str, int], tz: str, column
) -> dict[str, pl.Series]:
    """The contract columns in their contract types (`_native`); `column(name, index)` gives
    the delivered column. A type Polars cannot take refuses the file."""
    types = {c.name: c.type for c in spec.columns}
    try:
        return {name: _native(column(name, i), types[name], tz) for name, i in positions.items()}
    except Exception as exc:  # an exotic column type polars cannot take
        raise FileRefused(f"unsupported Parquet column type ({exc})") from None


def _parquet_batches(
    spec: TableSpec, path: Path, rel: str, tz: str, batch_rows: int
) -> Iterator[pl.DataFrame]:
    """A Parquet file as delivered frames of whole row groups, about `batch_rows` rows each.

    Each batch is a slice of Polars' scan (it reads only the row groups of the slice); when
    Polars cannot read a batch, pyarrow reads the file and gives the rows not yielded yet (or
    its failure refuses the file), as `read_parquet_file` decides for a whole file.
    """
    meta = pq.ParquetFile(path)
    try:
        names, rows = meta.schema_arrow.names, meta.metadata.num_rows
        groups = [meta.metadata.row_group(i).num_rows for i in range(meta.num_row_groups)]
    finally:
        meta.close()
    positions = _contract_positions(spec, names)
    if not positions:  # no contract column: nothing to read in batches
        yield read_parquet_file(spec, path, rel, tz)
        return
    indices = sorted(set(positions.values()))
    chunks, size = [], 0
    for n in groups:
        size += n
        if size >= batch_rows:
            chunks.append(size)
            size = 0
    if size or not chunks:
        chunks.append(size)
    done = 0
    for n in chunks:
        frame = None
        try:
            with _stderr_held():  # a panic here is not the file's end: pyarrow may still read it
                frame = (
                    pl.scan_parquet(path, glob=False, hive_partitioning=False)
                    .select(pl.nth(indices))
                    .slice(done, n)
                    .collect()
                )
        except READ_FAILURES:  # an exotic layout, or a panic on damaged data
            frame = None
        if frame is None or frame.height != n or frame.width != len(indices):
            yield from _pyarrow_rest(spec, path, rel, tz, positions, done, batch_rows)
            return
        by_index = dict(zip(indices, frame.get_columns(), strict=True))
        del frame
        columns = _typed_columns(
            spec, positions, tz, lambda name, i, got=by_index: got[i].alias(name)
        )
        yield _delivered_frame(spec, columns, n, rel, start=done)
        done += n
    if done != rows:  # the row groups do not add up to the file's row count: pyarrow decides
        yield from _pyarrow_rest(spec, path, rel, tz, positions, done, batch_rows)


def _pyarrow_rest(
    spec: TableSpec,
    path: Path,
    rel: str,
    tz: str,
    positions: dict[str, int],
    done: int,
    batch_rows: int,
) -> Iterator[pl.DataFrame]:
    """The rows of a Parquet file from `done` on, read by pyarrow (a failure refuses it)."""
    table = pq.read_table(path)
    for start in range(done, table.num_rows, max(batch_rows, 1)):
        part = table.slice(start, batch_rows)
        columns = _typed_columns(
            spec,
            positions,
            tz,
            lambda name, i, part=part: pl.Series(name, pl.from_arrow(part.column(i))),
        )
        yield _delivered_frame(spec, columns, part.num_rows, rel, start=start)


def read_parquet_file(spec: TableSpec, path: Path, rel: str, tz: str) -> pl.DataFrame:
    meta = pq.ParquetFile(path)
    try:
        names, rows = meta.schema_arrow.names, meta.metadata.num_rows
    finally:
        meta.close()
    positions = _contract_positions(spec, names)
    types = {c.name: c.type for c in spec.columns}
    read = _polars_read(path, positions, rows)
    if read is None:
        table = pq.read_table(path)
        rows = table.num_rows
    try:
        columns = {
            name: _native(
                read[name] if read is not None else pl.Series(name, pl.from_arrow(table.column(i))),
                types[name],
                tz,
            )
            for name, i in positions.items()
        }
    except Exception as exc:  # an exotic column type polars cannot take
        raise FileRefused(f"unsupported Parquet column type ({exc})") from None
    return _delivered_frame(spec, columns, rows, rel)


def failure_reason(exc: BaseException, path: Path, rel: str) -> str:
    """The one-line reason a file could not be read, from whatever its reader raised."""
    message = str(exc).replace(os.fspath(path), rel).strip().splitlines()
    detail = message[0][:200] if message else "its reader failed"
    if isinstance(exc, OSError) and exc.errno is not None:  # the file system's error
        return f"cannot be read ({exc.strerror or detail})"
    if isinstance(exc, MemoryError):
        return "too large to read into memory"
    if Path(rel).suffix.lower() != ".parquet":
        return f"damaged file ({detail})"
    if isinstance(exc, UnicodeDecodeError):
        return "damaged Parquet file (a column name or text value is not UTF-8)"
    if isinstance(exc, PanicException):
        return "damaged Parquet file (its data does not match its own layout)"
    return f"not a readable Parquet file ({detail})"


STILL_WRITTEN = (
    "still being written: it changed while it was read (the next run reads it once it is complete)"
)


def _signature(path: Path) -> tuple[int, int]:
    status = path.stat()
    return status.st_size, status.st_mtime_ns


def _delivery(
    spec: TableSpec, landing: Path
) -> tuple[list[tuple[str, Path | RefusedFile]], dict[str, tuple[int, int] | None]]:
    """The table's files (or their refusals) in relative-path order, and each readable file's
    size and modification time as discovered (None when it could not be read)."""
    found, refused = scan(landing, spec.name)
    signatures: dict[str, tuple[int, int] | None] = {}
    for rel, path in found:
        try:
            signatures[rel] = _signature(path)
        except OSError:
            signatures[rel] = None
    entries: list[tuple[str, Path | RefusedFile]] = [*found, *((r.file, r) for r in refused)]
    return sorted(entries, key=lambda item: item[0]), signatures


def read_files(
    spec: TableSpec, landing: Path, tz: str
) -> Iterator[tuple[str, pl.DataFrame | RefusedFile]]:
    """Each file of the table, read as delivered text, or refused with its reason, in
    relative-path order.

    Whatever reading one file raises (a reader's panic included) refuses that file only. A
    file whose size or modification time changed between the table's discovery and the end of
    its read is still being written: refused whole rather than half-loaded.
    """
    entries, signatures = _delivery(spec, landing)
    for rel, entry in entries:
        if isinstance(entry, RefusedFile):
            yield rel, entry
            continue
        path = entry  # a link's checked target: the name (`rel`) tells the format
        result: pl.DataFrame | RefusedFile
        try:
            with _stderr_held():
                if Path(rel).suffix.lower() == ".csv":
                    result = read_csv_file(spec, path, rel)
                else:
                    result = read_parquet_file(spec, path, rel, tz)
            if _signature(path) != signatures[rel]:
                raise FileRefused(STILL_WRITTEN)
        except FileRefused as exc:
            result = RefusedFile(spec.name, rel, str(exc))
        except READ_FAILURES as exc:  # any failure refuses this file only
            _log.debug("%s: refused", rel, exc_info=True)  # the details, for whoever debugs
            result = RefusedFile(spec.name, rel, failure_reason(exc, path, rel))
        yield rel, result


class Refusal(Exception):
    """Raised while a file's batches are read: the file is refused whole (`refused`)."""

    def __init__(self, refused: RefusedFile):
        super().__init__(str(refused))
        self.refused = refused


# Rows per batch of a batched read: whole Parquet row groups adding up to at least this many.
BATCH_ROWS = 1_000_000


def read_file_batches(
    spec: TableSpec, landing: Path, tz: str, batch_rows: int = BATCH_ROWS
) -> Iterator[tuple[str, Iterator[pl.DataFrame] | RefusedFile]]:
    """`read_files` in bounded pieces: each file, in relative-path order, as an iterator of its
    delivered frames (record order; `_source_row` counts from the file's first record), or
    refused before reading.

    Iterating a file's batches raises `Refusal` when the file turns out unreadable (at any
    batch, or changed when its last batch was read): the consumer then drops what it took from
    the file's earlier batches, so nothing of a refused file is used. A Parquet file is read a
    few row groups at a time; a CSV file is read and decoded whole (its records are only known
    after its last quote), then handed out in slices, so its typed copies stay bounded.
    """
    entries, signatures = _delivery(spec, landing)
    for rel, entry in entries:
        if isinstance(entry, RefusedFile):
            yield rel, entry
        else:
            yield rel, _checked_batches(spec, entry, rel, tz, batch_rows, signatures[rel])


def _checked_batches(
    spec: TableSpec,
    path: Path,
    rel: str,
    tz: str,
    batch_rows: int,
    signature: tuple[int, int] | None,
) -> Iterator[pl.DataFrame]:
    try:
        if Path(rel).suffix.lower() == ".csv":
            with _stderr_held():
                frame = read_csv_file(spec, path, rel)
            if _signature(path) != signature:
                raise FileRefused(STILL_WRITTEN)
            for start in range(0, max(frame.height, 1), max(batch_rows, 1)):
                yield frame.slice(start, batch_rows)
            return
        yield from _parquet_batches(spec, path, rel, tz, batch_rows)
        if _signature(path) != signature:
            raise FileRefused(STILL_WRITTEN)
    except FileRefused as exc:
        raise Refusal(RefusedFile(spec.name, rel, str(exc))) from None
    except READ_FAILURES as exc:  # any failure refuses this file only
        _log.debug("%s: refused", rel, exc_info=True)  # the details, for whoever debugs
        raise Refusal(RefusedFile(spec.name, rel, failure_reason(exc, path, rel))) from None
