"""Finding and reading the extract files of one table (contract §1), as delivered text.

Every file becomes a frame with one column per contract column plus `_source_file` and
`_source_row`: String holding the value exactly as delivered (null when the file lacks the
column or the field is empty), or, for a Parquet column whose native type maps onto the
contract type, that value already typed. A file that cannot be read at all is refused whole with a reason; nothing of it
is half-used.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from .contract import TableSpec

EXTENSIONS = (".csv", ".parquet")
WHITESPACE = " \t\r\n"


@dataclass(frozen=True)
class RefusedFile:
    table: str
    file: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}: refused ({self.reason})"


class FileRefused(Exception):
    """A file that cannot be read at all; carries the reason shown to the user."""


def _counts(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in EXTENSIONS


def find_files(landing: Path, table: str) -> list[tuple[str, Path]]:
    """The table's files as (path relative to landing, path), in relative-path order.

    `<table>.csv|.parquet` in the landing folder and every such file under `<table>/`;
    names (and folders) starting with '.' are skipped.
    """
    found: list[tuple[str, Path]] = []
    if landing.is_dir():
        for path in landing.iterdir():
            if path.stem == table and not path.name.startswith(".") and _counts(path):
                found.append((path.name, path))
        folder = landing / table
        if folder.is_dir():
            for path in folder.rglob("*"):
                rel = path.relative_to(landing)
                if _counts(path) and not any(p.startswith(".") for p in rel.parts):
                    found.append((rel.as_posix(), path))
    return sorted(found, key=lambda item: item[0])


def _delivered_frame(spec: TableSpec, columns: dict[str, list | pl.Series], n: int,
                     rel: str) -> pl.DataFrame:
    data = [
        columns[name] if isinstance(columns.get(name), pl.Series)
        else pl.Series(name, columns.get(name, [None] * n), pl.String)
        for name in spec.column_names
    ]
    frame = pl.DataFrame(data)
    return frame.with_columns(
        pl.lit(rel, pl.String).cast(pl.Categorical).alias("_source_file"),
        pl.int_range(1, n + 1, dtype=pl.Int64).alias("_source_row"),
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


def read_csv_file(spec: TableSpec, path: Path, rel: str) -> pl.DataFrame:
    text = decode_text(path.read_bytes())
    try:
        # csv skips blank lines; a record is what it yields, quoted newlines included.
        records = [r for r in csv.reader(io.StringIO(text, newline="")) if r]
    except csv.Error as exc:
        raise FileRefused(f"malformed CSV: {exc}") from None
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


def _native(series: pl.Series, type_: str, tz: str) -> pl.Series:
    """A Parquet column in its contract type when its native type maps exactly, else as text.

    Native ints, floats, bools, dates and timestamps skip text parsing entirely (timestamps
    truncated to microseconds, zone-aware ones converted to local time); anything else is
    rendered as the text a CSV would have carried and parsed by the CSV rules.
    """
    dtype = series.dtype
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


def _polars_read(path: Path, positions: dict[str, int], rows: int) -> dict[str, pl.Series] | None:
    """The contract columns by Polars' own Parquet reader (at L twice as fast as pyarrow plus
    the conversion); None when it cannot read them, and pyarrow then reads the file (or
    refuses it, with pyarrow's reason)."""
    if not positions:
        return None
    indices = sorted(set(positions.values()))
    try:
        frame = pl.read_parquet(path, columns=indices)
    except Exception:  # an exotic type or layout: the pyarrow path decides
        return None
    if frame.height != rows or frame.width != len(indices):
        return None
    by_index = dict(zip(indices, frame.get_columns(), strict=True))
    return {name: by_index[i].alias(name) for name, i in positions.items()}


def read_parquet_file(spec: TableSpec, path: Path, rel: str, tz: str) -> pl.DataFrame:
    try:
        meta = pq.ParquetFile(path)
        names, rows = meta.schema_arrow.names, meta.metadata.num_rows
        meta.close()
    except (pa.ArrowException, OSError) as exc:
        raise FileRefused(f"not a readable Parquet file ({exc})") from None
    positions = _contract_positions(spec, names)
    types = {c.name: c.type for c in spec.columns}
    read = _polars_read(path, positions, rows)
    if read is None:
        try:
            table = pq.read_table(path)
        except (pa.ArrowException, OSError) as exc:
            raise FileRefused(f"not a readable Parquet file ({exc})") from None
        rows = table.num_rows
    try:
        columns = {
            name: _native(read[name] if read is not None else
                          pl.Series(name, pl.from_arrow(table.column(i))), types[name], tz)
            for name, i in positions.items()
        }
    except Exception as exc:  # an exotic column type polars cannot take
        raise FileRefused(f"unsupported Parquet column type ({exc})") from None
    return _delivered_frame(spec, columns, rows, rel)


def read_files(
    spec: TableSpec, landing: Path, tz: str
) -> Iterator[tuple[str, pl.DataFrame | RefusedFile]]:
    """Each file of the table, read as delivered text, or refused with its reason."""
    for rel, path in find_files(landing, spec.name):
        try:
            if path.suffix.lower() == ".csv":
                yield rel, read_csv_file(spec, path, rel)
            else:
                yield rel, read_parquet_file(spec, path, rel, tz)
        except FileRefused as exc:
            yield rel, RefusedFile(spec.name, rel, str(exc))
        except OSError as exc:
            yield rel, RefusedFile(spec.name, rel, f"cannot be read ({exc.strerror or exc})")
