"""Typing and quarantine of one extract table (contract §1-§2), vectorized.

`validate_table` takes the delivered text of every file of a table and splits it into the raw
table (typed, one row per natural key) and the quarantine (every rejected row, as delivered,
with its first failing reason). Nothing is lost: delivered = used + collapsed + quarantined.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from .contract import SPECS, TableSpec
from .extracts import RefusedFile, read_files
from .parse import TYPES, parse, trimmed

LINEAGE = ["_source_file", "_source_row"]


@dataclass
class TableIngest:
    """What ingesting one table produced, with the numbers that prove nothing was lost."""

    table: str
    raw: pl.DataFrame
    quarantine: pl.DataFrame
    files: list[str] = field(default_factory=list)
    refused: list[RefusedFile] = field(default_factory=list)
    delivered: int = 0
    collapsed: int = 0

    @property
    def used(self) -> int:
        return self.raw.height

    @property
    def quarantined(self) -> int:
        return self.quarantine.height

    @property
    def quarantine_share(self) -> float:
        return self.quarantined / self.delivered if self.delivered else 0.0

    def reason_counts(self) -> dict[str, int]:
        counts = self.quarantine.group_by("_reason").len().sort("_reason")
        return dict(zip(counts["_reason"], counts["len"], strict=True))


def raw_schema(spec: TableSpec) -> dict[str, pl.DataType]:
    schema = {c.name: TYPES[c.type] for c in spec.columns}
    return schema | {"_source_file": pl.String(), "_source_row": pl.Int64()}


def quarantine_schema(spec: TableSpec) -> dict[str, pl.DataType]:
    schema: dict[str, pl.DataType] = {c: pl.String() for c in spec.column_names}
    return schema | {"_reason": pl.String(), "_source_file": pl.String(), "_source_row": pl.Int64()}


def _typed(delivered: pl.DataFrame, spec: TableSpec, tz: str) -> pl.DataFrame:
    """Parsed values (`v:<col>`) and the first failing check of §2 steps 1-4 (`_reason`)."""
    text = {c.name: trimmed(pl.col(c.name)) for c in spec.columns}
    typed = delivered.with_columns(
        parse(text[c.name], c.type, tz).alias(f"v:{c.name}") for c in spec.columns
    )
    value = {c.name: pl.col(f"v:{c.name}") for c in spec.columns}
    missing = [text[c.name].is_null() for c in spec.columns if c.required]
    invalid = [
        text[c.name].is_not_null() & value[c.name].is_null()
        for c in spec.columns
        if c.type != "text"
    ]
    bad_enum = [~value[c.name].is_in(list(c.enum)) for c in spec.columns if c.enum]
    out_of_range = [
        (value[c.name] < c.min if c.min is not None else pl.lit(False))
        | (value[c.name] > c.max if c.max is not None else pl.lit(False))
        for c in spec.columns
        if c.min is not None or c.max is not None
    ]
    checks = [
        ("missing_value", missing),
        ("invalid_type", invalid),
        ("invalid_enum", bad_enum),
        ("out_of_range", out_of_range),
    ]
    reason = pl.lit(None, pl.String)
    for name, conditions in reversed(checks):
        if conditions:
            reason = pl.when(pl.any_horizontal(conditions).fill_null(False)).then(
                pl.lit(name)
            ).otherwise(reason)
    return typed.with_columns(reason.alias("_reason"))


def _reference_failures(
    rows: pl.DataFrame, spec: TableSpec, refs: dict[str, pl.DataFrame]
) -> pl.DataFrame:
    """Mark rows whose references are not valid (§2 step 6), then lecture mismatches (step 7)."""
    known = pl.lit(True)
    for column, table in spec.references.items():
        key = SPECS[table].key[0]
        valid_keys = refs[table].get_column(key).unique()
        known = known & pl.col(f"v:{column}").is_in(valid_keys.implode())
    rows = rows.with_columns(
        pl.when(~known).then(pl.lit("unknown_reference")).alias("_reason")
    )
    if not spec.is_event:
        return rows
    session_lecture = refs["sessions"].select(
        pl.col("session_id").alias("v:session_id"), pl.col("lecture_id").alias("_s_lecture")
    )
    enrollment_lecture = refs["enrollments"].select(
        pl.col("enrollment_id").alias("v:enrollment_id"), pl.col("lecture_id").alias("_e_lecture")
    )
    rows = rows.join(session_lecture, on="v:session_id", how="left").join(
        enrollment_lecture, on="v:enrollment_id", how="left"
    )
    mismatch = pl.col("_reason").is_null() & (pl.col("_s_lecture") != pl.col("_e_lecture"))
    return rows.with_columns(
        pl.when(mismatch).then(pl.lit("lecture_mismatch")).otherwise(pl.col("_reason"))
        .alias("_reason")
    ).drop("_s_lecture", "_e_lecture")


def validate_table(
    delivered: pl.DataFrame, spec: TableSpec, tz: str, refs: dict[str, pl.DataFrame]
) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    """Split delivered text into (raw, quarantine, collapsed exact duplicates).

    `delivered` holds every file's rows in delivery order (files by path, then record order).
    `refs` maps each referenced table to its already-validated raw frame.
    """
    values = [f"v:{c}" for c in spec.column_names]
    typed = _typed(delivered.with_row_index("_seq"), spec, tz)

    failed_early = typed.filter(pl.col("_reason").is_not_null())
    passed = typed.filter(pl.col("_reason").is_null())

    # §2 step 5: identical parsed rows collapse to the first copy; a natural key with more than
    # one distinct row is a conflict, and every delivered copy of it is quarantined.
    key_values = [f"v:{c}" for c in spec.key]
    passed = passed.with_columns(
        (pl.col("_seq") == pl.col("_seq").min().over(values)).alias("_first")
    ).with_columns(
        (pl.col("_first").sum().over(key_values) > 1).alias("_conflict")
    )
    conflicts = passed.filter("_conflict").with_columns(
        pl.lit("duplicate_conflict").alias("_reason")
    )
    kept = passed.filter(~pl.col("_conflict") & pl.col("_first"))
    collapsed = passed.filter(~pl.col("_conflict") & ~pl.col("_first")).height

    checked = _reference_failures(kept, spec, refs)
    late_failures = checked.filter(pl.col("_reason").is_not_null())
    raw = (
        checked.filter(pl.col("_reason").is_null())
        .sort("_seq")
        .select([pl.col(f"v:{c}").alias(c) for c in spec.column_names] + LINEAGE)
    )
    quarantine_cols = spec.column_names + ["_reason", *LINEAGE]
    quarantine = (
        pl.concat(
            [f.select("_seq", *quarantine_cols) for f in (failed_early, conflicts, late_failures)]
        )
        .sort("_seq")
        .drop("_seq")
    )
    return raw, quarantine, collapsed


def ingest_table(
    table: str, landing: Path, tz: str, refs: dict[str, pl.DataFrame]
) -> TableIngest:
    """Read every file of `table` under `landing`, type it and quarantine what breaks the contract."""
    spec = SPECS[table]
    frames: list[pl.DataFrame] = []
    result = TableIngest(table, pl.DataFrame(), pl.DataFrame())
    for rel, read in read_files(spec, landing, tz):
        if isinstance(read, RefusedFile):
            result.refused.append(read)
        else:
            result.files.append(rel)
            frames.append(read)
    delivered = (
        pl.concat(frames)
        if frames
        else pl.DataFrame(schema={c: pl.String for c in spec.column_names}
                          | {"_source_file": pl.String, "_source_row": pl.Int64})
    )
    result.delivered = delivered.height
    result.raw, result.quarantine, result.collapsed = validate_table(delivered, spec, tz, refs)
    result.raw = result.raw.cast(raw_schema(spec))  # type: ignore[arg-type]
    result.quarantine = result.quarantine.cast(quarantine_schema(spec))  # type: ignore[arg-type]
    return result


def ingest_all(landing: Path, tz: str = "Asia/Seoul") -> dict[str, TableIngest]:
    """Ingest every contract table in dependency order (references before their users)."""
    from .contract import TABLES

    results: dict[str, TableIngest] = {}
    for table in TABLES:
        refs = {t: results[t].raw for t in set(SPECS[table].references.values())}
        if SPECS[table].is_event:
            refs |= {"sessions": results["sessions"].raw, "enrollments": results["enrollments"].raw}
        results[table] = ingest_table(table, landing, tz, refs)
    return results
