"""Diagnosing a landing folder without publishing anything (contract §1, §2).

Per file: the encoding, the header against the contract (missing, unknown and near-miss names:
`LECTURE_ID` or `lecture id` for `lecture_id`), rows, or the reason it is refused. Per table:
rows delivered / used / collapsed / quarantined, quarantine by reason with the first examples
(file, record, column, value). The verdict is the contract's gate (`pipelines.core.gate`): any
refused file, or any table with more than 5% and at least 5 of its delivered rows quarantined,
blocks publication;
each block comes with its likeliest cause (a header that lacks a required column, rows that
refer to a table that was itself broken, ...).

One function, `diagnose`, serves `progress check`, the message of a blocked run and the
blocking Dagster check. It runs the core ingest itself (no Dagster, no warehouse).
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from . import gate
from .contract import SPECS, TABLES, TableSpec
from .extracts import WHITESPACE, FileRefused, decode_text, find_files
from .ingest import TableIngest, ingest_all
from .parse import parse, trimmed

EXAMPLES_PER_REASON = 3
NEAR_MISS_CUTOFF = 0.8  # difflib ratio: `lecture_idd` -> lecture_id, `lecture` does not


@dataclass
class FileDiagnosis:
    table: str
    file: str  # relative to the landing folder
    encoding: str | None = None  # "UTF-8", "UTF-8 with BOM", "CP949", "Parquet"
    rows: int | None = None
    missing_required: list[str] = field(default_factory=list)
    missing_optional: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    near_misses: dict[str, str] = field(default_factory=dict)  # delivered name -> contract name
    refused: str | None = None

    def header_problem(self) -> str | None:
        """One phrase for a header that loses rows (a required column missing), else None."""
        if not self.missing_required:
            return None
        parts = []
        for name in self.missing_required:
            near = [k for k, v in self.near_misses.items() if v == name]
            parts.append(f"'{name}'" + (f" (found '{near[0]}')" if near else ""))
        return f"{self.file} lacks required column {', '.join(parts)}"


@dataclass
class Example:
    file: str
    record: int
    column: str | None
    value: str | None


@dataclass
class TableDiagnosis:
    table: str
    files: int = 0
    delivered: int = 0
    used: int = 0
    collapsed: int = 0
    quarantined: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[Example]] = field(default_factory=dict)
    blocks: bool = False
    cause: str | None = None

    @property
    def share(self) -> float:
        return self.quarantined / self.delivered if self.delivered else 0.0


@dataclass
class Diagnosis:
    landing: str
    files: list[FileDiagnosis]
    tables: dict[str, TableDiagnosis]

    @property
    def refused(self) -> list[FileDiagnosis]:
        return [f for f in self.files if f.refused]

    @property
    def blocking(self) -> list[str]:
        """Why publication is blocked, one line per cause, root causes first; empty: publish."""
        lines = [f"{f.file}: refused ({f.refused})" for f in self.refused]
        for t in self.tables.values():
            if t.blocks:
                top = max(t.reasons, key=t.reasons.__getitem__) if t.reasons else None
                line = gate.blocked_message(t.table, t.quarantined, t.delivered, top)
                lines.append(line + (f"; likeliest cause: {t.cause}" if t.cause else ""))
        return lines

    @property
    def would_publish(self) -> bool:
        return not self.blocking

    def to_dict(self) -> dict:
        return {
            "landing": self.landing,
            "verdict": "publish" if self.would_publish else "blocked",
            "blocking": self.blocking,
            "files": [asdict(f) for f in self.files],
            "tables": {
                name: asdict(t) | {"share": round(t.share, 6)} for name, t in self.tables.items()
            },
        }


def _normalized(name: str) -> str:
    return "_".join(name.strip(WHITESPACE).lower().replace("-", " ").replace("_", " ").split())


def compare_header(spec: TableSpec, header: list[str], diagnosis: FileDiagnosis) -> None:
    """Fill the missing, unknown and near-miss names of a header against the contract."""
    names = [h.strip(WHITESPACE) for h in header]
    present = set(names) & set(spec.column_names)
    missing = [c for c in spec.columns if c.name not in present]
    diagnosis.missing_required = [c.name for c in missing if c.required]
    diagnosis.missing_optional = [c.name for c in missing if not c.required]
    diagnosis.unknown = [n for n in names if n not in spec.column_names]
    candidates = [c.name for c in missing]
    for name in diagnosis.unknown:
        match = difflib.get_close_matches(_normalized(name), candidates, 1, NEAR_MISS_CUTOFF)
        if match:
            diagnosis.near_misses[name] = match[0]


def inspect_file(spec: TableSpec, rel: str, path: Path) -> FileDiagnosis:
    """Encoding, header and rows of one file, read as the ingest reads it (headers only for
    Parquet)."""
    import csv
    import io

    found = FileDiagnosis(spec.name, rel)
    try:
        if path.suffix.lower() == ".parquet":
            meta = pq.ParquetFile(path)
            found.encoding, found.rows = "Parquet", meta.metadata.num_rows
            compare_header(spec, meta.schema_arrow.names, found)
            return found
        data = path.read_bytes()
        text = decode_text(data)
        try:
            data.decode("utf-8-sig")
            found.encoding = "UTF-8 with BOM" if data.startswith(b"\xef\xbb\xbf") else "UTF-8"
        except UnicodeDecodeError:
            found.encoding = "CP949"
        records = [r for r in csv.reader(io.StringIO(text, newline="")) if r]
        if records:
            compare_header(spec, records[0], found)
            found.rows = len(records) - 1
    except FileRefused as exc:
        found.refused = str(exc)
    except (pa.ArrowException, OSError, csv.Error) as exc:
        found.refused = str(exc).strip().splitlines()[0] if str(exc).strip() else "unreadable"
    return found


def _culprit(spec: TableSpec, row: dict, reason: str, tz: str) -> tuple[str | None, str | None]:
    """The column (and its delivered value) that gave a quarantined row its reason."""
    columns = spec.columns
    if reason == "missing_value":
        column = next(
            (c for c in columns if c.required and not (row.get(c.name) or "").strip(WHITESPACE)),
            None,
        )
    elif reason == "invalid_type":
        column = None
        for c in columns:
            value = row.get(c.name)
            if value is not None and value.strip(WHITESPACE):
                parsed = pl.select(parse(trimmed(pl.lit(value, pl.String)), c.type, tz)).item()
                if parsed is None:
                    column = c
                    break
    elif reason == "invalid_enum":
        column = next(
            (
                c
                for c in columns
                if c.enum
                and row.get(c.name) is not None
                and row[c.name].strip(WHITESPACE) not in c.enum
            ),
            None,
        )
    elif reason == "out_of_range":
        column = next((c for c in columns if c.min is not None or c.max is not None), None)
        for c in columns:
            if (c.min is not None or c.max is not None) and row.get(c.name):
                try:
                    number = float(row[c.name])
                except ValueError:
                    continue
                if (c.min is not None and number < c.min) or (c.max is not None and number > c.max):
                    column = c
                    break
    elif reason in ("unknown_reference", "lecture_mismatch", "duplicate_conflict"):
        names = (
            list(spec.key)
            if reason == "duplicate_conflict"
            else ["session_id"]
            if reason == "lecture_mismatch"
            else list(spec.references) or ["lecture_id"]
        )
        return ", ".join(names), ", ".join(str(row.get(n)) for n in names)
    else:
        column = None
    return (column.name, row.get(column.name)) if column else (None, None)


def diagnose_table(result: TableIngest, tz: str) -> TableDiagnosis:
    spec = SPECS[result.table]
    found = TableDiagnosis(
        result.table,
        files=len(result.files),
        delivered=result.delivered,
        used=result.used,
        collapsed=result.collapsed,
        quarantined=result.quarantined,
        reasons=result.reason_counts() if result.quarantined else {},
    )
    for reason in found.reasons:
        rows = result.quarantine.filter(pl.col("_reason") == reason).head(EXAMPLES_PER_REASON)
        found.examples[reason] = [
            Example(
                str(row["_source_file"]), int(row["_source_row"]), *_culprit(spec, row, reason, tz)
            )
            for row in rows.iter_rows(named=True)
        ]
    found.blocks = gate.blocks(found.quarantined, found.delivered)
    return found


def likeliest_cause(
    table: TableDiagnosis, files: list[FileDiagnosis], tables: dict[str, TableDiagnosis]
) -> str:
    """The likeliest cause of a table's quarantine share, in the operator's terms."""
    own = [f for f in files if f.table == table.table]
    headers = [p for f in own if (p := f.header_problem())]
    if headers:
        return "; ".join(headers)
    top = max(table.reasons, key=table.reasons.__getitem__) if table.reasons else None
    if top in ("unknown_reference", "lecture_mismatch"):
        upstream = sorted(
            set(SPECS[table.table].references.values())
            | ({"sessions", "enrollments"} if SPECS[table.table].is_event else set())
        )
        broken = [
            t
            for t in upstream
            if t in tables
            and (
                tables[t].blocks
                or any(f.table == t and (f.refused or f.missing_required) for f in files)
            )
        ]
        if broken:
            return (
                f"most rows refer to {' and '.join(broken)} rows that were quarantined or "
                "not delivered (fix that extract first)"
            )
    cp949 = [f.file for f in own if f.encoding == "CP949"]
    if top is None:
        return ""
    example = (table.examples.get(top) or [None])[0]
    where = (
        f" (e.g. {example.file} record {example.record}"
        + (f", {example.column} = {example.value!r}" if example.column else "")
        + ")"
        if example
        else ""
    )
    note = f"; {', '.join(cp949)} read as CP949" if cp949 and top == "invalid_type" else ""
    if not where and not note:  # nothing beyond the reason itself, which the message gives
        return ""
    return f"most rows are {top}{where}{note}"


def diagnose(
    landing: Path, tz: str = "Asia/Seoul", results: dict[str, TableIngest] | None = None
) -> Diagnosis:
    """Read and check every extract of `landing` as a run would; publish nothing."""
    files = [
        inspect_file(SPECS[t], rel, path) for t in TABLES for rel, path in find_files(landing, t)
    ]
    results = results if results is not None else ingest_all(landing, tz)
    tables = {t: diagnose_table(results[t], tz) for t in TABLES if t in results}
    refused = {(r.table, r.file): r.reason for res in results.values() for r in res.refused}
    for f in files:  # the ingest's own verdict on a file wins over the header read here
        f.refused = refused.get((f.table, f.file), f.refused)
    for t in tables.values():
        if t.blocks:
            t.cause = likeliest_cause(t, files, tables)
    return Diagnosis(str(landing), files, tables)


def block_cause(landing: Path, table: str, reasons: dict[str, int]) -> str:
    """The likeliest cause of one table's block from its headers alone (cheap: for the
    blocking Dagster check and a blocked run's message, which already have the counts)."""
    files = [
        inspect_file(SPECS[t], rel, path) for t in TABLES for rel, path in find_files(landing, t)
    ]
    stub = TableDiagnosis(table, reasons=dict(reasons), blocks=True)
    others = {
        t: TableDiagnosis(
            t, blocks=any(f.table == t and (f.refused or f.missing_required) for f in files)
        )
        for t in TABLES
    }
    others[table] = stub
    return likeliest_cause(stub, files, others)
