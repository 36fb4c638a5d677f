"""Plain, row-by-row reference implementation of the data contract.

Source of truth: the data contract (docs/data-contract.md). This module exists only so the vectorized
pipeline can be compared against an independent, obviously-correct implementation. It uses the
standard library only (csv, re, datetime, zoneinfo); pyarrow is used solely to read parquet files
into Python lists. Clarity over speed.

Public API:
    reference_ingest(landing, tz) -> (raw, quarantine, refused_files)
    reference_marts(raw, as_of, warning_streak, danger_streak) -> {mart name: [row dict, ...]}
    parse_timestamp(text, tz) -> naive local datetime | None
"""

from __future__ import annotations

import csv
import io
import math
import numbers
import os
import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

DEFAULT_TZ = "Asia/Seoul"

# Values are trimmed of exactly these four characters at both ends (contract section 1).
TRIM_CHARS = " \t\r\n"

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


# --------------------------------------------------------------------------------------------
# Contract tables
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Col:
    name: str
    type: str  # "int" | "float" | "bool" | "text" | "date" | "timestamp"
    required: bool = False
    enum: tuple[str, ...] | None = None
    min: float | None = None
    max: float | None = None


# Dict order is the dependency order used for the reference checks.
SCHEMA: dict[str, list[Col]] = {
    "lectures": [
        Col("lecture_id", "int", True),
        Col("academy_id", "int", True),
        Col("title", "text"),
    ],
    "sessions": [
        Col("session_id", "int", True),
        Col("lecture_id", "int", True),
        Col("session_order", "int", True, min=1),
        Col("title", "text"),
        Col("session_date", "date"),
    ],
    "policies": [
        Col("lecture_id", "int", True),
        Col("video_required_rate", "int", min=0, max=100),
        Col("exam_start_session_order", "int", min=0),
        Col("exam_end_session_order", "int", min=0),
        Col("exam_pass_score", "float", min=0),
        Col("homework_start_session_order", "int", min=0),
        Col("homework_end_session_order", "int", min=0),
        Col("homework_pass_type", "text", enum=("SUBMIT", "SCORE", "TEACHER_APPROVAL")),
        Col("homework_pass_score", "float", min=0),
    ],
    "enrollments": [
        Col("enrollment_id", "int", True),
        Col("lecture_id", "int", True),
        Col("student_id", "int", True),
        Col("status", "text", enum=("ACTIVE", "DROPPED")),
        Col("enrolled_at", "timestamp"),
    ],
    "attendance": [
        Col("enrollment_id", "int", True),
        Col("session_id", "int", True),
        Col("attendance_type", "text", True, enum=("online", "offline")),
        Col("recorded_at", "timestamp", True),
    ],
    "video_progress": [
        Col("enrollment_id", "int", True),
        Col("session_id", "int", True),
        Col("progress_rate", "int", True, min=0, max=100),
        Col("recorded_at", "timestamp", True),
    ],
    "submissions": [
        Col("submission_id", "int", True),
        Col("enrollment_id", "int", True),
        Col("session_id", "int", True),
        Col("kind", "text", True, enum=("exam", "homework")),
        Col("score", "float", min=0),
        Col("teacher_approved", "bool"),
        Col("submitted_at", "timestamp", True),
    ],
    "clinic_requests": [
        Col("enrollment_id", "int", True),
        Col("session_id", "int", True),
        Col(
            "reason",
            "text",
            True,
            enum=("AUTO_FAILED", "AUTO_RISK", "MANUAL_REQUEST", "TEACHER_RECOMMEND"),
        ),
        Col("approved", "bool"),
        Col("memo", "text"),
        Col("requested_at", "timestamp", True),
    ],
    # optional (contract section 5): absent from a landing folder means an empty table
    "outcomes": [
        Col("enrollment_id", "int", True),
        Col("result", "text", True, enum=("PASS", "FAIL", "WITHDRAWN")),
        Col("decided_at", "timestamp"),
    ],
}

NATURAL_KEY: dict[str, tuple[str, ...]] = {
    "lectures": ("lecture_id",),
    "sessions": ("session_id",),
    "policies": ("lecture_id",),
    "enrollments": ("enrollment_id",),
    "attendance": ("enrollment_id", "session_id", "recorded_at"),
    "video_progress": ("enrollment_id", "session_id", "recorded_at"),
    "submissions": ("submission_id",),
    "clinic_requests": ("enrollment_id", "session_id", "reason", "requested_at"),
    "outcomes": ("enrollment_id",),
}

TABLES = list(SCHEMA)
EVENT_TABLES = ("attendance", "video_progress", "submissions", "clinic_requests")

DEFAULT_POLICY = {
    "video_required_rate": 90,
    "exam_start_session_order": 2,
    "exam_end_session_order": 9999,
    "exam_pass_score": 60.0,
    "homework_start_session_order": 2,
    "homework_end_session_order": 9999,
    "homework_pass_type": "TEACHER_APPROVAL",
    "homework_pass_score": None,
}


# --------------------------------------------------------------------------------------------
# Scalar parsing (text -> typed value)
# --------------------------------------------------------------------------------------------

INT_RE = re.compile(r"[+-]?[0-9]+")
FLOAT_RE = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
DATE_RE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
TIMESTAMP_RE = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})"  # date
    r"(?:[T ]([0-9]{2}):([0-9]{2})"  # optional time: HH:MM
    r"(?::([0-9]{2})(?:\.([0-9]{1,6}))?)?"  # optional :SS and optional .f (1-6 digits)
    r"(Z|[+-][0-9]{2}(?::?[0-9]{2})?)?"  # optional offset, only after a time
    r")?"
)


def trim(text: str) -> str:
    return text.strip(TRIM_CHARS)


def parse_int(text: str) -> int | None:
    if not INT_RE.fullmatch(text):
        return None
    try:
        value = int(text)
    except ValueError:  # absurdly long digit strings exceed Python's int() digit limit
        return None
    if value < INT64_MIN or value > INT64_MAX:
        return None
    return value


def parse_float(text: str) -> float | None:
    if not FLOAT_RE.fullmatch(text):
        return None
    value = float(text)
    if not math.isfinite(value):
        return None
    return value


def parse_bool(text: str) -> bool | None:
    lowered = text.lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    return None


def parse_date(text: str) -> date | None:
    match = DATE_RE.fullmatch(text)
    if not match:
        return None
    year, month, day = (int(g) for g in match.groups())
    try:
        return date(year, month, day)
    except ValueError:
        return None


def _fixed_offset_to_zone(wall: datetime, offset: timedelta, zone: ZoneInfo) -> datetime | None:
    """Wall time `wall` at UTC offset `offset` -> naive wall time in `zone`; None if outside
    years 0001-9999."""
    try:
        utc = wall - offset
    except OverflowError:
        # The UTC instant itself lies just outside datetime's range although the local result
        # may be inside it (e.g. 0001-01-01T05:00+09:00 in Seoul, whose LMT offset is +08:27:52).
        # Do the same conversion two days further inside the range and shift back.
        shift = timedelta(days=2) if wall.year == 1 else -timedelta(days=2)
        inner = _fixed_offset_to_zone(wall + shift, offset, zone)
        if inner is None:
            return None
        try:
            return inner - shift
        except OverflowError:
            return None
    try:
        return utc.replace(tzinfo=UTC).astimezone(zone).replace(tzinfo=None)
    except OverflowError:
        return None


def _parse_timestamp_trimmed(text: str, zone: ZoneInfo) -> datetime | None:
    match = TIMESTAMP_RE.fullmatch(text)
    if not match:
        return None
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    microsecond = int(fraction.ljust(6, "0")) if fraction else 0
    try:
        wall = datetime(
            int(year),
            int(month),
            int(day),
            int(hour) if hour else 0,
            int(minute) if minute else 0,
            int(second) if second else 0,
            microsecond,
        )
    except ValueError:  # not a calendar date, hour > 23, minute/second > 59, year 0000
        return None
    if offset is None:
        return wall  # local time in the configured zone, stored as is
    if offset == "Z":
        delta = timedelta(0)
    else:
        sign = -1 if offset[0] == "-" else 1
        digits = offset[1:].replace(":", "")
        off_hours = int(digits[0:2])
        off_minutes = int(digits[2:4]) if len(digits) == 4 else 0
        if off_hours > 23 or off_minutes > 59:
            return None
        delta = sign * timedelta(hours=off_hours, minutes=off_minutes)
    return _fixed_offset_to_zone(wall, delta, zone)


def parse_timestamp(text: str, tz: str = DEFAULT_TZ) -> datetime | None:
    """Parse a contract timestamp; returns naive local time in `tz`, or None when invalid.

    The text is first trimmed of space/tab/CR/LF like every contract value; empty -> None.
    """
    if text is None:
        return None
    return _parse_timestamp_trimmed(trim(text), ZoneInfo(tz))


def parse_text_value(text: str, col_type: str, zone: ZoneInfo):
    """Parse an already trimmed, non-empty text. Returns (ok, value)."""
    if col_type == "text":
        return True, text
    if col_type == "int":
        value = parse_int(text)
    elif col_type == "float":
        value = parse_float(text)
    elif col_type == "bool":
        value = parse_bool(text)
    elif col_type == "date":
        value = parse_date(text)
    elif col_type == "timestamp":
        value = _parse_timestamp_trimmed(text, zone)
    else:
        raise ValueError(col_type)
    return value is not None, value


# --------------------------------------------------------------------------------------------
# Cells: one delivered value of one contract column
# --------------------------------------------------------------------------------------------

NULL, OK, BAD = "null", "ok", "bad"


@dataclass
class Cell:
    status: str  # NULL | OK | BAD
    value: object  # parsed value when OK, else None
    text: str | None  # the delivered text for quarantine


def cell_from_text(raw: str | None, col: Col, zone: ZoneInfo) -> Cell:
    """A value delivered as text (CSV field or parquet text column)."""
    delivered = raw if raw != "" else None
    if raw is None:
        return Cell(NULL, None, None)
    trimmed = trim(raw)
    if trimmed == "":
        return Cell(NULL, None, delivered)
    ok, value = parse_text_value(trimmed, col.type, zone)
    return Cell(OK, value, delivered) if ok else Cell(BAD, None, delivered)


# --------------------------------------------------------------------------------------------
# Reading files
# --------------------------------------------------------------------------------------------


def _size_and_time(path: Path) -> tuple[int, int]:
    """A file still being written changes size or modification time while it is read."""
    info = os.stat(path)
    return info.st_size, info.st_mtime_ns


class Refused(Exception):
    """The whole file cannot be read; the message is the reason."""


def discover_files(landing: Path, table: str) -> tuple[list[str], list[tuple[str, str]]]:
    """Relative posix paths of the files of `table`, in plain string order, and the entries
    refused before reading as (relative path, reason): symlinks whose target is outside the
    landing folder or missing, and table entries that are not regular files. Links inside the
    landing folder are followed; a folder already walked is not walked again."""
    found: list[str] = []
    refused: list[tuple[str, str]] = []
    root = os.path.realpath(landing)
    walked = {root}

    def look(path: Path, rel: str, is_table_entry: bool, may_walk: bool) -> None:
        if os.path.islink(path):
            target = os.path.realpath(path)
            if not os.path.exists(target):
                if is_table_entry:
                    refused.append((rel, "symlink_dangling"))
                return
            if os.path.commonpath([target, root]) != root:
                if is_table_entry or os.path.isdir(target):
                    refused.append((rel, "symlink_outside"))
                return
        if os.path.isdir(path):
            real = os.path.realpath(path)
            if may_walk and real not in walked:
                walked.add(real)
                for name in sorted(os.listdir(path)):
                    if not name.startswith("."):
                        counts = name.lower().endswith((".csv", ".parquet"))
                        look(path / name, f"{rel}/{name}", counts, True)
        elif is_table_entry and rel.lower().endswith((".csv", ".parquet")):
            if os.path.isfile(path):
                found.append(rel)
            else:
                refused.append((rel, "not_regular_file"))

    for name in sorted(os.listdir(landing)):
        if name.startswith("."):
            continue
        if name == table:
            look(landing / name, name, True, True)
        elif name[: len(table) + 1] == f"{table}." and name[len(table) :].lower() in (
            ".csv",
            ".parquet",
        ):
            look(landing / name, name, True, False)
    return sorted(found), refused


def _check_header(names: list[str], table: str) -> None:
    contract_names = {c.name for c in SCHEMA[table]}
    seen: set[str] = set()
    for name in names:
        if name in contract_names:
            if name in seen:
                raise Refused(f"duplicate_column: {name}")
            seen.add(name)


def _csv_rows(text: str) -> list[list[str]]:
    """Fields may be of any length (contract section 1): the csv module's limit (128 KiB by
    default, one setting for the whole process) is lifted only while this reads."""
    previous = csv.field_size_limit(2**62)
    try:
        return list(csv.reader(io.StringIO(text, newline="")))
    finally:
        csv.field_size_limit(previous)


def _unterminated_quote_record(text: str) -> int | None:
    """The data record (0 = the header) in which a quoted field is still open at the end of the
    text, else None. A quote opens a quoted field only at the start of a field; inside it, two
    quotes are one quote and a single quote closes it (what follows is plain text). Blank lines
    are not records."""
    if '"' not in text:
        return None
    state = "start"  # start of a field | plain | quoted | quote seen inside quoted
    records, content = 0, False
    for char in text:
        if state == "quoted":
            if char == '"':
                state = "quote_in_quoted"
            continue
        if state == "quote_in_quoted" and char == '"':
            state = "quoted"
            continue
        if char in "\r\n":
            if content:
                records += 1
            state, content = "start", False
        elif char == ",":
            state, content = "start", True
        elif state == "start" and char == '"':
            state, content = "quoted", True
        else:
            state, content = "plain", True
    return records if state == "quoted" else None


def read_csv_records(path: Path, table: str, zone: ZoneInfo) -> list[dict[str, Cell]]:
    data = path.read_bytes()
    if b"\x00" in data:
        raise Refused("nul_byte")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:
            text = data.removeprefix(b"\xef\xbb\xbf").decode("cp949")
        except UnicodeDecodeError:
            raise Refused("undecodable: neither UTF-8 nor CP949") from None

    unterminated_at = _unterminated_quote_record(text)
    if unterminated_at is not None:
        raise Refused(f"unterminated_quote: record {unterminated_at}")
    header: list[str] | None = None
    records: list[dict[str, Cell]] = []
    for fields in _csv_rows(text):
        if fields == []:  # a completely blank line is not a record
            continue
        if header is None:
            header = [trim(name) for name in fields]
            _check_header(header, table)
            position = {name: i for i, name in enumerate(header)}  # names are unique if used
            continue
        row: dict[str, Cell] = {}
        for col in SCHEMA[table]:
            index = position.get(col.name)
            # None when the column is absent from the file, or the record is short.
            raw = None if index is None or index >= len(fields) else fields[index]
            row[col.name] = cell_from_text(raw, col, zone)
        records.append(row)
    if header is None:
        raise Refused("empty: no header line")
    return records


# ---- parquet ----


def _canonical_text(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value if value != "" else None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return str(value)


def _native_cell(value, col: Col, arrow_kind: str, zone: ZoneInfo) -> Cell:
    """A value from a non-text parquet column."""
    if value is None:
        return Cell(NULL, None, None)
    text = _canonical_text(value)
    if col.type == "int" and arrow_kind == "integer":
        if INT64_MIN <= value <= INT64_MAX:
            return Cell(OK, int(value), text)
        return Cell(BAD, None, text)
    if col.type == "float" and arrow_kind in ("integer", "floating", "decimal"):
        number = float(value) if isinstance(value, (numbers.Number, Decimal)) else None
        if number is not None and math.isfinite(number):
            return Cell(OK, number, text)
        return Cell(BAD, None, text)
    if col.type == "bool" and arrow_kind == "boolean":
        return Cell(OK, bool(value), text)
    if col.type == "date" and arrow_kind == "date":
        return Cell(OK, value, text)
    if col.type == "timestamp" and arrow_kind == "date":
        return Cell(OK, datetime(value.year, value.month, value.day), text)
    # Any other native type is not the contract's type: invalid_type.
    return Cell(BAD, None, text)


def _timestamp_cells(ticks: list, unit: str, tz_name: str | None, zone: ZoneInfo) -> list[Cell]:
    per_second = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}[unit]
    cells = []
    for tick in ticks:
        if tick is None:
            cells.append(Cell(NULL, None, None))
            continue
        # Truncate to microseconds (floor: drop the sub-microsecond digits of the wall time).
        micros = tick * 1_000_000 // per_second
        try:
            wall = datetime(1970, 1, 1) + timedelta(microseconds=micros)
        except OverflowError:
            cells.append(Cell(BAD, None, f"{tick} {unit}"))
            continue
        if tz_name is None:
            # Naive parquet timestamp: already local wall time in the configured zone.
            cells.append(Cell(OK, wall, wall.isoformat()))
        else:
            # Zone-aware: the ticks count UTC; convert to the configured zone.
            local = _fixed_offset_to_zone(wall, timedelta(0), zone)
            text = wall.isoformat() + "+00:00"
            cells.append(Cell(OK, local, text) if local is not None else Cell(BAD, None, text))
    return cells


def read_parquet_records(path: Path, table: str, zone: ZoneInfo) -> list[dict[str, Cell]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        arrow_table = pq.read_table(path)
        names = [trim(name) for name in arrow_table.schema.names]  # may not be UTF-8
    except Exception as exc:  # noqa: BLE001 - any failure to read means the file is refused
        raise Refused(f"unreadable_parquet: {type(exc).__name__}") from None
    _check_header(names, table)
    n_rows = arrow_table.num_rows

    columns: dict[str, list[Cell]] = {}
    for col in SCHEMA[table]:
        if col.name not in names:
            columns[col.name] = [Cell(NULL, None, None)] * n_rows
            continue
        chunked = arrow_table.column(names.index(col.name))
        arrow_type = chunked.type
        if pa.types.is_dictionary(arrow_type):
            chunked = chunked.cast(arrow_type.value_type)
            arrow_type = arrow_type.value_type
        if (
            pa.types.is_string(arrow_type)
            or pa.types.is_large_string(arrow_type)
            or pa.types.is_string_view(arrow_type)
        ):
            columns[col.name] = [cell_from_text(v, col, zone) for v in chunked.to_pylist()]
        elif pa.types.is_null(arrow_type):
            columns[col.name] = [Cell(NULL, None, None)] * n_rows
        elif pa.types.is_timestamp(arrow_type) and col.type == "timestamp":
            ticks = chunked.cast(pa.int64()).to_pylist()
            columns[col.name] = _timestamp_cells(ticks, arrow_type.unit, arrow_type.tz, zone)
        else:
            if pa.types.is_integer(arrow_type):
                kind = "integer"
            elif pa.types.is_floating(arrow_type):
                kind = "floating"
            elif pa.types.is_decimal(arrow_type):
                kind = "decimal"
            elif pa.types.is_boolean(arrow_type):
                kind = "boolean"
            elif pa.types.is_date(arrow_type):
                kind = "date"
            else:
                kind = "other"
            if pa.types.is_timestamp(arrow_type):
                values = [
                    None if t is None else f"{t} {arrow_type.unit}"
                    for t in chunked.cast(pa.int64()).to_pylist()
                ]
            else:
                values = chunked.to_pylist()
            columns[col.name] = [_native_cell(v, col, kind, zone) for v in values]

    return [{name: cells[i] for name, cells in columns.items()} for i in range(n_rows)]


# --------------------------------------------------------------------------------------------
# Ingest
# --------------------------------------------------------------------------------------------


@dataclass
class Delivered:
    """One delivered row: its cells and where it came from."""

    table: str
    cells: dict[str, Cell]
    source_file: str
    source_row: int

    def parsed(self) -> dict:
        return {name: cell.value for name, cell in self.cells.items()}

    def parsed_tuple(self) -> tuple:
        return tuple(self.cells[c.name].value for c in SCHEMA[self.table])

    def key(self) -> tuple:
        return tuple(self.cells[name].value for name in NATURAL_KEY[self.table])

    def raw_row(self) -> dict:
        row = self.parsed()
        row["_source_file"] = self.source_file
        row["_source_row"] = self.source_row
        return row

    def quarantine_row(self, reason: str) -> dict:
        row = {name: cell.text for name, cell in self.cells.items()}
        row["_reason"] = reason
        row["_source_file"] = self.source_file
        row["_source_row"] = self.source_row
        return row


def row_reason(table: str, cells: dict[str, Cell]) -> str | None:
    """Checks 1-4 of contract section 2, in order; the first that applies wins."""
    columns = SCHEMA[table]
    for col in columns:
        if col.required and cells[col.name].status == NULL:
            return "missing_value"
    for col in columns:
        if cells[col.name].status == BAD:
            return "invalid_type"
    for col in columns:
        cell = cells[col.name]
        if col.enum is not None and cell.status == OK and cell.value not in col.enum:
            return "invalid_enum"
    for col in columns:
        cell = cells[col.name]
        if cell.status != OK:
            continue
        if col.min is not None and cell.value < col.min:
            return "out_of_range"
        if col.max is not None and cell.value > col.max:
            return "out_of_range"
    return None


def reference_ingest(
    landing: Path, tz: str = DEFAULT_TZ
) -> tuple[dict[str, list[dict]], dict[str, list[dict]], list[tuple[str, str]]]:
    """Returns (raw, quarantine, refused_files). raw[table] = list of row dicts for the valid
    rows; quarantine[table] = list of row dicts; refused_files = [(relative_path, reason)]."""
    landing = Path(landing)
    zone = ZoneInfo(tz)
    raw: dict[str, list[dict]] = {}
    quarantine: dict[str, list[dict]] = {}
    refused: list[tuple[str, str]] = []

    valid_lecture_ids: set = set()
    session_lecture: dict = {}  # valid session_id -> lecture_id
    enrollment_lecture: dict = {}  # valid enrollment_id -> lecture_id

    for table in TABLES:
        quarantined: list[tuple[Delivered, str]] = []

        # Read every file and apply checks 1-4 row by row.
        passed: list[Delivered] = []
        files, refused_entries = discover_files(landing, table)
        refused.extend(refused_entries)
        sizes = {rel: _size_and_time(landing / rel) for rel in files}
        for rel in files:
            path = landing / rel
            try:
                if rel.lower().endswith(".csv"):
                    records = read_csv_records(path, table, zone)
                else:
                    records = read_parquet_records(path, table, zone)
                if _size_and_time(path) != sizes[rel]:
                    raise Refused("changed_while_read")
            except Refused as refusal:
                refused.append((rel, str(refusal)))
                continue
            for number, cells in enumerate(records, start=1):
                row = Delivered(table, cells, rel, number)
                reason = row_reason(table, cells)
                if reason is None:
                    passed.append(row)
                else:
                    quarantined.append((row, reason))

        # Check 5: identical rows collapse to the first copy; conflicting keys are quarantined.
        groups: dict[tuple, list[Delivered]] = defaultdict(list)
        for row in passed:  # files in path order, then record order
            groups[row.key()].append(row)
        survivors: list[Delivered] = []
        for copies in groups.values():
            distinct = {copy.parsed_tuple() for copy in copies}
            if len(distinct) == 1:
                survivors.append(copies[0])
            else:
                for copy in copies:
                    quarantined.append((copy, "duplicate_conflict"))

        # Checks 6 and 7.
        kept: list[Delivered] = []
        for row in survivors:
            values = row.parsed()
            reason = None
            if table in ("sessions", "policies", "enrollments"):
                if values["lecture_id"] not in valid_lecture_ids:
                    reason = "unknown_reference"
            elif table == "outcomes":
                if values["enrollment_id"] not in enrollment_lecture:
                    reason = "unknown_reference"
            elif table in EVENT_TABLES:
                enrollment_id, session_id = values["enrollment_id"], values["session_id"]
                if enrollment_id not in enrollment_lecture or session_id not in session_lecture:
                    reason = "unknown_reference"
                elif enrollment_lecture[enrollment_id] != session_lecture[session_id]:
                    reason = "lecture_mismatch"
            if reason is None:
                kept.append(row)
            else:
                quarantined.append((row, reason))

        kept.sort(key=lambda r: (r.source_file, r.source_row))
        quarantined.sort(key=lambda item: (item[0].source_file, item[0].source_row))
        raw[table] = [row.raw_row() for row in kept]
        quarantine[table] = [row.quarantine_row(reason) for row, reason in quarantined]

        if table == "lectures":
            valid_lecture_ids = {r["lecture_id"] for r in raw[table]}
        elif table == "sessions":
            session_lecture = {r["session_id"]: r["lecture_id"] for r in raw[table]}
        elif table == "enrollments":
            enrollment_lecture = {r["enrollment_id"]: r["lecture_id"] for r in raw[table]}

    return raw, quarantine, refused


# --------------------------------------------------------------------------------------------
# Marts
# --------------------------------------------------------------------------------------------

NORMAL, WARNING, DANGER = "NORMAL", "WARNING", "DANGER"
LEVEL_RANK = {NORMAL: 0, WARNING: 1, DANGER: 2}
RULE_INCOMPLETE = "CONSECUTIVE_INCOMPLETE"
RULE_LOW_SCORE = "CONSECUTIVE_LOW_SCORE"


def effective_policy(policy_row: dict | None) -> dict:
    """Null policy columns (or no policy row at all) take the default policy's value."""
    policy = {}
    for name, default in DEFAULT_POLICY.items():
        value = policy_row.get(name) if policy_row is not None else None
        policy[name] = default if value is None else value
    return policy


def level_of(streak: int, warning_streak: int, danger_streak: int) -> str:
    if streak >= danger_streak:
        return DANGER
    if streak >= warning_streak:
        return WARNING
    return NORMAL


def risk_of(fail_streak: int, low_streak: int, warning_streak: int, danger_streak: int):
    """(level, rule, streak of the rule) from the two streaks."""
    fail_level = level_of(fail_streak, warning_streak, danger_streak)
    low_level = level_of(low_streak, warning_streak, danger_streak)
    level = fail_level if LEVEL_RANK[fail_level] >= LEVEL_RANK[low_level] else low_level
    if level == NORMAL:
        return NORMAL, None, None
    if low_level == level:
        return level, RULE_LOW_SCORE, low_streak
    return level, RULE_INCOMPLETE, fail_streak


def compute_session_progress(
    enrollment: dict,
    lecture: dict,
    session: dict,
    policy: dict,
    attendance_rows: list[dict],
    video_rows: list[dict],
    submission_rows: list[dict],
    as_of: datetime,
) -> dict:
    """One session_progress row, computed as contract section 4.1 words it."""
    order = session["session_order"]

    # attendance_type: of the latest attendance row; online when none.
    latest_attendance = None
    for row in attendance_rows:
        if latest_attendance is None or row["recorded_at"] > latest_attendance["recorded_at"]:
            latest_attendance = row
    attendance_type = latest_attendance["attendance_type"] if latest_attendance else "online"

    # video_progress_rate: the highest progress_rate reported; 0 when none.
    video_rate = 0
    for row in video_rows:
        video_rate = max(video_rate, row["progress_rate"])

    video_completed = attendance_type == "offline" or video_rate >= policy["video_required_rate"]

    # Exam.
    exam_applicable = (
        policy["exam_start_session_order"] <= order <= policy["exam_end_session_order"]
    )
    counted_exam = None  # latest exam submission that has a score
    for row in submission_rows:
        if row["kind"] != "exam" or row["score"] is None:
            continue
        if counted_exam is None or (row["submitted_at"], row["submission_id"]) > (
            counted_exam["submitted_at"],
            counted_exam["submission_id"],
        ):
            counted_exam = row
    exam_score = counted_exam["score"] if counted_exam else None
    if not exam_applicable:
        exam_passed = True
    else:
        exam_passed = exam_score is not None and exam_score >= policy["exam_pass_score"]

    # Homework.
    homework_applicable = (
        policy["homework_start_session_order"] <= order <= policy["homework_end_session_order"]
    )
    homework_rows = [row for row in submission_rows if row["kind"] == "homework"]
    homework_submitted = len(homework_rows) > 0
    pass_type = policy["homework_pass_type"]

    def approved(row: dict) -> bool:
        return bool(row["teacher_approved"])  # null teacher_approved is false

    if pass_type == "SUBMIT":
        qualifying = homework_rows
    elif pass_type == "TEACHER_APPROVAL":
        qualifying = [row for row in homework_rows if approved(row)]
    elif pass_type == "SCORE":
        if policy["homework_pass_score"] is not None:
            qualifying = [
                row
                for row in homework_rows
                if row["score"] is not None and row["score"] >= policy["homework_pass_score"]
            ]
        else:
            qualifying = [row for row in homework_rows if approved(row)]
    else:
        raise ValueError(pass_type)

    if not homework_applicable:
        homework_passed = True
    elif pass_type == "SUBMIT":
        homework_passed = homework_submitted
    else:
        homework_passed = len(qualifying) > 0

    completed = video_completed and exam_passed and homework_passed

    # completed_at: the latest of the evidence times that exist.
    completed_at = None
    if completed:
        evidence: list[datetime] = []
        if attendance_type == "offline":
            evidence.append(latest_attendance["recorded_at"])
        else:
            reaching = [
                row["recorded_at"]
                for row in video_rows
                if row["progress_rate"] >= policy["video_required_rate"]
            ]
            if reaching:
                evidence.append(min(reaching))
        if exam_applicable and counted_exam is not None:
            evidence.append(counted_exam["submitted_at"])
        if homework_applicable and qualifying:
            evidence.append(min(row["submitted_at"] for row in qualifying))
        if evidence:
            completed_at = max(evidence)

    session_date = session["session_date"]
    held = session_date is None or session_date <= as_of.date()

    return {
        "enrollment_id": enrollment["enrollment_id"],
        "session_id": session["session_id"],
        "lecture_id": enrollment["lecture_id"],
        "academy_id": lecture["academy_id"],
        "student_id": enrollment["student_id"],
        "session_order": order,
        "session_date": session_date,
        "held": held,
        "attendance_type": attendance_type,
        "video_progress_rate": video_rate,
        "video_completed": video_completed,
        "exam_applicable": exam_applicable,
        "exam_score": exam_score,
        "exam_passed": exam_passed,
        "homework_applicable": homework_applicable,
        "homework_submitted": homework_submitted,
        "homework_passed": homework_passed,
        "completed": completed,
        "completed_at": completed_at,
        "calculated_at": as_of,
    }


def reference_marts(
    raw: dict[str, list[dict]],
    as_of: datetime,
    warning_streak: int = 2,
    danger_streak: int = 3,
) -> dict[str, list[dict]]:
    """Returns {"session_progress": [...], "lecture_progress": [...], "risk_log": [...],
    "clinic_links": [...]}. `as_of` is naive local time."""
    if as_of.tzinfo is not None:
        raise ValueError("as_of must be a naive local datetime")

    def rows(table: str) -> list[dict]:
        return raw.get(table, [])

    lectures = {row["lecture_id"]: row for row in rows("lectures")}
    policies = {row["lecture_id"]: row for row in rows("policies")}
    sessions_of_lecture: dict[int, list[dict]] = defaultdict(list)
    for row in rows("sessions"):
        sessions_of_lecture[row["lecture_id"]].append(row)
    for lecture_sessions in sessions_of_lecture.values():
        lecture_sessions.sort(key=lambda s: (s["session_order"], s["session_id"]))
    enrollments = sorted(rows("enrollments"), key=lambda e: e["enrollment_id"])

    # Events up to as_of, grouped by (enrollment_id, session_id); later events are ignored.
    attendance_of = defaultdict(list)
    video_of = defaultdict(list)
    submissions_of = defaultdict(list)
    activity_of = defaultdict(list)  # enrollment_id -> timestamps of any activity
    for row in rows("attendance"):
        if row["recorded_at"] <= as_of:
            attendance_of[(row["enrollment_id"], row["session_id"])].append(row)
            activity_of[row["enrollment_id"]].append(row["recorded_at"])
    for row in rows("video_progress"):
        if row["recorded_at"] <= as_of:
            video_of[(row["enrollment_id"], row["session_id"])].append(row)
            activity_of[row["enrollment_id"]].append(row["recorded_at"])
    for row in rows("submissions"):
        if row["submitted_at"] <= as_of:
            submissions_of[(row["enrollment_id"], row["session_id"])].append(row)
            activity_of[row["enrollment_id"]].append(row["submitted_at"])
    requests_of = defaultdict(list)  # (enrollment_id, session_id, reason) -> rows up to as_of
    for row in rows("clinic_requests"):
        if row["requested_at"] <= as_of:
            requests_of[(row["enrollment_id"], row["session_id"], row["reason"])].append(row)

    session_progress: list[dict] = []
    lecture_progress: list[dict] = []
    risk_log: list[dict] = []
    links: dict[tuple, dict] = {}  # (enrollment_id, session_id, reason) -> link skeleton

    for enrollment in enrollments:
        enrollment_id = enrollment["enrollment_id"]
        lecture = lectures[enrollment["lecture_id"]]
        policy = effective_policy(policies.get(enrollment["lecture_id"]))
        status = enrollment["status"] if enrollment["status"] is not None else "ACTIVE"
        is_active = status == "ACTIVE"
        lecture_sessions = sessions_of_lecture.get(enrollment["lecture_id"], [])

        # 4.1: one row per session of the lecture.
        progress_rows = []
        for session in lecture_sessions:
            key = (enrollment_id, session["session_id"])
            progress = compute_session_progress(
                enrollment,
                lecture,
                session,
                policy,
                attendance_of.get(key, []),
                video_of.get(key, []),
                submissions_of.get(key, []),
                as_of,
            )
            progress_rows.append(progress)
        session_progress.extend(progress_rows)

        # 4.2 / 4.3: walk the held sessions in order, keeping both streaks.
        held_rows = [p for p in progress_rows if p["held"]]
        fail_streak = 0
        low_streak = 0
        previous = (NORMAL, None)
        for progress in held_rows:
            if progress["completed"]:
                fail_streak = 0
            else:
                fail_streak += 1
            if progress["exam_applicable"] and progress["exam_score"] is not None:
                if progress["exam_score"] < policy["exam_pass_score"]:
                    low_streak += 1
                else:
                    low_streak = 0
            if is_active:
                level, rule, streak = risk_of(
                    fail_streak, low_streak, warning_streak, danger_streak
                )
                if level != NORMAL and (level, rule) != previous:
                    if rule == RULE_INCOMPLETE:
                        reason = f"연속 {streak}차시 미완료"
                    else:
                        reason = f"연속 {streak}회 저점수"
                    risk_log.append(
                        {
                            "enrollment_id": enrollment_id,
                            "lecture_id": enrollment["lecture_id"],
                            "academy_id": lecture["academy_id"],
                            "student_id": enrollment["student_id"],
                            "session_id": progress["session_id"],
                            "session_order": progress["session_order"],
                            "session_date": progress["session_date"],
                            "risk_level": level,
                            "rule": rule,
                            "streak": streak,
                            "reason": reason,
                        }
                    )
                previous = (level, rule)

        if is_active:
            risk_level, risk_rule, _ = risk_of(
                fail_streak, low_streak, warning_streak, danger_streak
            )
        else:
            risk_level, risk_rule = NORMAL, None

        total = len(progress_rows)
        completed_count = sum(1 for p in progress_rows if p["completed"])
        counted_scores = [
            p["exam_score"]
            for p in held_rows
            if p["exam_applicable"] and p["exam_score"] is not None
        ]
        activity = activity_of.get(enrollment_id, [])
        last_session_id = held_rows[-1]["session_id"] if held_rows else None
        lecture_progress.append(
            {
                "enrollment_id": enrollment_id,
                "lecture_id": enrollment["lecture_id"],
                "academy_id": lecture["academy_id"],
                "student_id": enrollment["student_id"],
                "status": status,
                "total_sessions": total,
                "held_sessions": len(held_rows),
                "completed_sessions": completed_count,
                "failed_sessions": sum(1 for p in held_rows if not p["completed"]),
                "completion_rate": completed_count / total if total else 0.0,
                "consecutive_failed_sessions": fail_streak,
                "consecutive_low_scores": low_streak,
                "avg_exam_score": (
                    sum(counted_scores) / len(counted_scores) if counted_scores else None
                ),
                "risk_level": risk_level,
                "risk_rule": risk_rule,
                "last_session_id": last_session_id,
                "last_activity_at": max(activity) if activity else None,
                "calculated_at": as_of,
            }
        )

        # 4.4: derived (AUTO_*) links, ACTIVE enrollments only.
        if is_active:
            for progress in held_rows:
                if not progress["completed"]:
                    links[(enrollment_id, progress["session_id"], "AUTO_FAILED")] = progress
            if risk_level in (WARNING, DANGER) and last_session_id is not None:
                links[(enrollment_id, last_session_id, "AUTO_RISK")] = held_rows[-1]

    # 4.4: requested links, whatever the enrollment's status.
    enrollment_by_id = {e["enrollment_id"]: e for e in enrollments}
    session_by_id = {row["session_id"]: row for row in rows("sessions")}
    for (enrollment_id, session_id, reason), _requests in requests_of.items():
        if reason in ("MANUAL_REQUEST", "TEACHER_RECOMMEND"):
            enrollment = enrollment_by_id[enrollment_id]
            links[(enrollment_id, session_id, reason)] = {
                "enrollment_id": enrollment_id,
                "session_id": session_id,
                "lecture_id": enrollment["lecture_id"],
                "academy_id": lectures[enrollment["lecture_id"]]["academy_id"],
                "student_id": enrollment["student_id"],
                "session_order": session_by_id[session_id]["session_order"],
            }

    clinic_links: list[dict] = []
    for (enrollment_id, session_id, reason), base in links.items():
        latest = None
        for request in requests_of.get((enrollment_id, session_id, reason), []):
            if latest is None or request["requested_at"] > latest["requested_at"]:
                latest = request
        clinic_links.append(
            {
                "enrollment_id": enrollment_id,
                "session_id": session_id,
                "lecture_id": base["lecture_id"],
                "academy_id": base["academy_id"],
                "student_id": base["student_id"],
                "session_order": base["session_order"],
                "reason": reason,
                "is_auto": reason.startswith("AUTO_"),
                "approved": bool(latest["approved"]) if latest else False,
                "memo": latest["memo"] if latest else None,
                "requested_at": latest["requested_at"] if latest else None,
            }
        )
    clinic_links.sort(
        key=lambda link: (
            link["enrollment_id"],
            link["session_order"],
            link["session_id"],
            link["reason"],
        )
    )

    return {
        "session_progress": session_progress,
        "lecture_progress": lecture_progress,
        "risk_log": risk_log,
        "clinic_links": clinic_links,
    }
