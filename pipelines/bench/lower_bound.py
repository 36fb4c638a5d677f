"""The floor: read every input column the marts use, once, and group it by key.

Any implementation of the marts must at least read these columns from the Parquet extracts and
bring each (enrollment, session)'s events together; this measures exactly that with Polars,
nothing else (no typing rules, no quarantine, no joins, no output). Files of one table whose
Parquet types differ (timestamp units and zones, integer widths, the all-text file of bad rows)
are brought to the contract's type per file, then unioned.
"""

from __future__ import annotations

import time
from pathlib import Path

import polars as pl

from pipelines.core.contract import SPECS
from pipelines.core.extracts import find_files

# Input columns the marts read (contract §4), per table.
USED_COLUMNS: dict[str, tuple[str, ...]] = {
    "lectures": ("lecture_id", "academy_id"),
    "sessions": ("session_id", "lecture_id", "session_order", "session_date"),
    "policies": tuple(SPECS["policies"].column_names),
    "enrollments": ("enrollment_id", "lecture_id", "student_id", "status"),
    "attendance": ("enrollment_id", "session_id", "attendance_type", "recorded_at"),
    "video_progress": ("enrollment_id", "session_id", "progress_rate", "recorded_at"),
    "submissions": (
        "submission_id",
        "enrollment_id",
        "session_id",
        "kind",
        "score",
        "teacher_approved",
        "submitted_at",
    ),
    "clinic_requests": (
        "enrollment_id",
        "session_id",
        "reason",
        "approved",
        "memo",
        "requested_at",
    ),
}
EVENT_KEY = ("enrollment_id", "session_id")
DTYPES = {
    "int": pl.Int64,
    "float": pl.Float64,
    "bool": pl.Boolean,
    "date": pl.Date,
    "timestamp": pl.Datetime("us"),
    "text": pl.String,
}


def group_key(table: str) -> list[str]:
    spec = SPECS[table]
    return list(EVENT_KEY) if spec.is_event else list(spec.key)


def _column(name: str, have: pl.DataType | None, type_: str, tz: str) -> pl.Expr:
    target = DTYPES[type_]
    col = pl.col(name)
    if have is None:
        return pl.lit(None, target).alias(name)
    if have == pl.String and type_ != "text":  # the all-text file of injected bad rows
        text = col.str.strip_chars()
        if type_ == "bool":
            return text.str.to_lowercase().is_in(["true", "1"]).alias(name)
        if type_ == "date":
            return text.str.to_date("%Y-%m-%d", strict=False).alias(name)
        if type_ == "timestamp":
            return text.str.slice(0, 19).str.to_datetime(strict=False, time_unit="us").alias(name)
        return text.cast(target, strict=False).alias(name)
    if isinstance(have, pl.Datetime) and have.time_zone is not None:
        col = col.dt.convert_time_zone(tz).dt.replace_time_zone(None)
    return col.cast(target, strict=False).alias(name)


def scan_table(landing: Path, table: str, tz: str = "Asia/Seoul") -> pl.LazyFrame:
    """Every file of the table, its used columns only, in the contract's types, unioned."""
    types = {c.name: c.type for c in SPECS[table].columns}
    frames = []
    for rel, path in find_files(landing, table):
        if path.suffix.lower() != ".parquet":
            raise ValueError(f"the lower bound reads Parquet extracts only, not {rel}")
        scan = pl.scan_parquet(path)
        schema = scan.collect_schema()
        frames.append(
            scan.select(_column(c, schema.get(c), types[c], tz) for c in USED_COLUMNS[table])
        )
    return pl.concat(frames, how="vertical")


def lower_bound(landing: Path, tz: str = "Asia/Seoul") -> dict[str, object]:
    """Read + group every table; seconds in total and per table, rows and groups seen."""
    per_table: dict[str, dict[str, float | int]] = {}
    start = time.perf_counter()
    for table in USED_COLUMNS:  # the eight tables the marts read (not the optional outcomes)
        t0 = time.perf_counter()
        key = group_key(table)
        grouped = (
            scan_table(landing, table, tz)
            .group_by(key)
            .agg(pl.len().alias("_rows"), pl.all().exclude(key).max())
            .select(pl.col("_rows").sum().alias("rows"), pl.len().alias("groups"))
            .collect()
        )
        per_table[table] = {
            "seconds": round(time.perf_counter() - t0, 4),
            "rows": int(grouped["rows"][0] or 0),
            "groups": int(grouped["groups"][0]),
        }
    return {
        "seconds": time.perf_counter() - start,
        "tables": per_table,
        "rows": sum(int(t["rows"]) for t in per_table.values()),
    }
