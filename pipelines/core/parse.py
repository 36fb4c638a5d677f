"""Vectorized parsing of delivered text into contract types (contract §1 "Values").

Each parser takes an expression of trimmed text (null when empty) and returns the typed value,
null when the text does not parse; the caller tells "empty" from "invalid" by comparing the two.
"""

from __future__ import annotations

from datetime import datetime

import polars as pl

from .contract import ColumnType

WHITESPACE = " \t\r\n"

INT_RE = r"^[+-]?[0-9]+$"
FLOAT_RE = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"
DATE_RE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
TIMESTAMP_RE = (
    r"^(?<date>[0-9]{4}-[0-9]{2}-[0-9]{2})"
    r"(?:[T ](?<hh>[0-9]{2}):(?<mi>[0-9]{2})(?::(?<ss>[0-9]{2})(?:\.(?<frac>[0-9]{1,6}))?)?"
    r"(?<tz>Z|(?<sign>[+-])(?<oh>[0-9]{2})(?::?(?<om>[0-9]{2}))?)?)?$"
)

TYPES: dict[ColumnType, pl.DataType] = {
    "int": pl.Int64(),
    "float": pl.Float64(),
    "bool": pl.Boolean(),
    "date": pl.Date(),
    "timestamp": pl.Datetime("us"),
    "text": pl.String(),
}


def trimmed(expr: pl.Expr) -> pl.Expr:
    """Trim space, tab, CR and LF; a value that is then empty is null."""
    text = expr.str.strip_chars(WHITESPACE)
    return pl.when(text.str.len_bytes() > 0).then(text)


def parse_int(text: pl.Expr) -> pl.Expr:
    return pl.when(text.str.contains(INT_RE)).then(text.str.to_integer(strict=False))


def parse_float(text: pl.Expr) -> pl.Expr:
    value = pl.when(text.str.contains(FLOAT_RE)).then(text.cast(pl.Float64, strict=False))
    return pl.when(value.is_finite()).then(value)


def parse_bool(text: pl.Expr) -> pl.Expr:
    lower = text.str.to_lowercase()
    return (
        pl.when(lower.is_in(["true", "1"]))
        .then(pl.lit(True))
        .when(lower.is_in(["false", "0"]))
        .then(pl.lit(False))
    )


def _real_date(text: pl.Expr) -> pl.Expr:
    value = text.str.to_date("%Y-%m-%d", strict=False)
    return pl.when(value.dt.year() >= 1).then(value)


def parse_date(text: pl.Expr) -> pl.Expr:
    return pl.when(text.str.contains(DATE_RE)).then(_real_date(text))


def parse_timestamp(text: pl.Expr, tz: str) -> pl.Expr:
    """Contract timestamp text -> naive local datetime (µs) in `tz`; null when invalid."""
    g = text.str.extract_groups(TIMESTAMP_RE)
    field = g.struct.field
    hh = field("hh").cast(pl.Int64).fill_null(0)
    mi = field("mi").cast(pl.Int64).fill_null(0)
    ss = field("ss").cast(pl.Int64).fill_null(0)
    us = field("frac").str.pad_end(6, "0").cast(pl.Int64).fill_null(0)
    oh = field("oh").cast(pl.Int64).fill_null(0)
    om = field("om").cast(pl.Int64).fill_null(0)
    sign = pl.when(field("sign") == "-").then(-1).otherwise(1)
    naive = _real_date(field("date")).cast(pl.Datetime("us")) + pl.duration(
        hours=hh, minutes=mi, seconds=ss, microseconds=us
    )
    utc = naive - pl.duration(minutes=sign * (oh * 60 + om))
    converted = utc.dt.replace_time_zone("UTC").dt.convert_time_zone(tz).dt.replace_time_zone(None)
    local = pl.when(field("tz").is_null()).then(naive).otherwise(converted)
    valid = (hh <= 23) & (mi <= 59) & (ss <= 59) & (oh <= 23) & (om <= 59)
    in_years = local.dt.year().is_between(1, 9999)
    return pl.when(valid & in_years).then(local)


def parse(text: pl.Expr, type_: ColumnType, tz: str) -> pl.Expr:
    """Typed value of trimmed text; null for null text and for text that does not parse."""
    if type_ == "int":
        return parse_int(text)
    if type_ == "float":
        return parse_float(text)
    if type_ == "bool":
        return parse_bool(text)
    if type_ == "date":
        return parse_date(text)
    if type_ == "timestamp":
        return parse_timestamp(text, tz)
    return text


def parse_instant(value: str | datetime, tz: str) -> datetime:
    """Parse one as-of instant with the same rules as the extracts (aware -> local naive)."""
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = pl.Series([value]).dt.convert_time_zone(tz).dt.replace_time_zone(None)[0]
        return value.replace(microsecond=value.microsecond)
    frame = pl.DataFrame({"t": [value]}).select(parse_timestamp(trimmed(pl.col("t")), tz))
    parsed = frame.item()
    if parsed is None:
        raise ValueError(
            f"as-of {value!r} is not a contract timestamp (YYYY-MM-DD[ HH:MM[:SS[.f]]][offset])"
        )
    return parsed
