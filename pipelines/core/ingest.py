"""Typing and quarantine of one extract table (contract §1-§2), vectorized.

`validate_table` takes the delivered text of every file of a table and splits it into the raw
table (typed, one row per natural key) and the quarantine (every rejected row, as delivered,
with its first failing reason). Nothing is lost: delivered = used + collapsed + quarantined.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from .contract import SPECS, ColumnType, TableSpec
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
    """Parsed values (`v:<col>`), delivered text (`t:<col>`) and §2 steps 1-4 (`_reason`).

    A String column is trimmed and parsed by the contract's rules. A column that arrived
    natively typed (Parquet) is used as is; its text is rendered only where it is invalid
    (e.g. a NaN), the rest is rendered from the typed value if the row is quarantined.
    """
    present, value, text_out = {}, {}, {}
    for c in spec.columns:
        col = pl.col(c.name)
        if delivered.schema[c.name] == pl.String:
            trimmed_text = trimmed(col)
            present[c.name] = trimmed_text.is_not_null()
            value[c.name] = parse(trimmed_text, c.type, tz)
            text_out[c.name] = col
        else:
            present[c.name] = col.is_not_null()
            value[c.name] = native_value(col, c.type)
            text_out[c.name] = pl.when(present[c.name] & value[c.name].is_null()).then(
                col.cast(pl.String)
            )
    typed = delivered.select(
        *(value[c.name].alias(f"v:{c.name}") for c in spec.columns),
        *(text_out[c.name].alias(f"t:{c.name}") for c in spec.columns),
        *LINEAGE,
        _reason(spec, present, value),
    )
    return typed.cast({f"v:{c.name}": TYPES[c.type] for c in spec.columns}
                      | {f"t:{c.name}": pl.String for c in spec.columns})


def native_value(col: pl.Expr, type_: ColumnType) -> pl.Expr:
    """A natively typed value, null where the contract calls it invalid."""
    if type_ == "float":
        return pl.when(col.is_finite()).then(col)
    if type_ == "timestamp":
        return pl.when(col.dt.year().is_between(1, 9999)).then(col)
    return col


def _reason(spec: TableSpec, present: dict[str, pl.Expr], value: dict[str, pl.Expr]) -> pl.Expr:
    """The first of missing_value, invalid_type, invalid_enum, out_of_range that applies."""
    missing = [~present[c.name] for c in spec.columns if c.required]
    invalid = [present[c.name] & value[c.name].is_null() for c in spec.columns]
    bad_enum = [~value[c.name].is_in(list(c.enum)) for c in spec.columns if c.enum]
    out_of_range = [
        (value[c.name] < c.min if c.min is not None else pl.lit(False))
        | (value[c.name] > c.max if c.max is not None else pl.lit(False))
        for c in spec.columns
        if c.min is not None or c.max is not None
    ]
    reason = pl.lit(None, pl.String)
    for name, conditions in reversed([
        ("missing_value", missing),
        ("invalid_type", invalid),
        ("invalid_enum", bad_enum),
        ("out_of_range", out_of_range),
    ]):
        if conditions:
            reason = (
                pl.when(pl.any_horizontal(conditions).fill_null(False))
                .then(pl.lit(name))
                .otherwise(reason)
            )
    return reason.alias("_reason")


def _as_delivered(spec: TableSpec) -> list[pl.Expr]:
    """Quarantine text: the delivered text, or the typed value rendered for native columns."""
    out = []
    for c in spec.columns:
        v = pl.col(f"v:{c.name}")
        rendered = v.dt.strftime("%Y-%m-%d %H:%M:%S%.6f") if c.type == "timestamp" else v.cast(
            pl.String)
        out.append(pl.coalesce(pl.col(f"t:{c.name}"), rendered).alias(c.name))
    return out


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
    files: list[pl.DataFrame], spec: TableSpec, tz: str, refs: dict[str, pl.DataFrame]
) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    """Split delivered rows into (raw, quarantine, collapsed exact duplicates).

    `files` holds each file's delivered frame in delivery order (files by path, then record
    order). `refs` maps each referenced table to its already-validated raw frame.
    """
    typed = [_typed(frame, spec, tz) for frame in files]
    empty = _typed(empty_delivery(spec), spec, tz)
    typed_all = pl.concat([empty, *typed]).with_row_index("_seq")

    failed_early = typed_all.filter(pl.col("_reason").is_not_null())
    passed = typed_all.filter(pl.col("_reason").is_null())

    # §2 step 5: identical parsed rows collapse to the first copy; a natural key with more than
    # one distinct row is a conflict, and every delivered copy of it is quarantined. Only keys
    # delivered more than once need the full-row comparison.
    values = [f"v:{c}" for c in spec.column_names]
    key_values = [f"v:{c}" for c in spec.key]
    repeated = pl.len().over(key_values) > 1
    single, multi = passed.filter(~repeated), passed.filter(repeated)
    multi = multi.with_columns(
        (pl.col("_seq") == pl.col("_seq").min().over(values)).alias("_first")
    ).with_columns((pl.col("_first").sum().over(key_values) > 1).alias("_conflict"))
    conflicts = multi.filter("_conflict").with_columns(
        pl.lit("duplicate_conflict").alias("_reason")
    )
    kept = pl.concat([single, multi.filter(~pl.col("_conflict") & pl.col("_first"))
                     .drop("_first", "_conflict")])
    collapsed = multi.filter(~pl.col("_conflict") & ~pl.col("_first")).height

    checked = _reference_failures(kept, spec, refs)
    late_failures = checked.filter(pl.col("_reason").is_not_null())
    raw = (
        checked.filter(pl.col("_reason").is_null())
        .sort("_seq")
        .select([pl.col(f"v:{c}").alias(c) for c in spec.column_names] + LINEAGE)
    )
    quarantine = (
        pl.concat([f.select(typed_all.columns) for f in (failed_early, conflicts, late_failures)])
        .sort("_seq")
        .select(*_as_delivered(spec), "_reason", *LINEAGE)
    )
    return raw, quarantine, collapsed


def empty_delivery(spec: TableSpec) -> pl.DataFrame:
    return pl.DataFrame(
        schema={c: pl.String for c in spec.column_names}
        | {"_source_file": pl.String, "_source_row": pl.Int64}
    )


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
    result.delivered = sum(frame.height for frame in frames)
    result.raw, result.quarantine, result.collapsed = validate_table(frames, spec, tz, refs)
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
