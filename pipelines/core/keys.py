"""Finding repeated keys in tens of millions of rows, fast.

A hash-table `is_duplicated` over 50M rows costs ~4 s on two cores. Sorting the rows' 64-bit
key hashes and comparing neighbours costs ~0.7 s and finds the (usually few) repeated hashes;
only those rows are then compared exactly. Used by the ingest's duplicate screen and by the
uniqueness checks of the Pandera schemas.
"""

from __future__ import annotations

import polars as pl


def repeated_hashes(hashes: pl.Series) -> pl.Series | None:
    """Which rows' hash occurs more than once, or None when no hash repeats.

    A repeated hash is only a candidate (two keys may share a hash): callers compare those
    rows exactly.
    """
    ordered = hashes.sort()
    twice = ordered.filter(ordered == ordered.shift(1))
    if twice.is_empty():
        return None
    return hashes.is_in(twice.unique().implode())


def duplicated_rows(frame: pl.DataFrame, columns: list[str]) -> pl.Series:
    """True for every row whose `columns` equal another row's (nulls equal), like
    `frame.select(columns).is_duplicated()`."""
    hashes = frame.select(pl.struct(columns).hash(seed=0)).to_series()
    candidates = repeated_hashes(hashes)
    if candidates is None:
        return pl.repeat(False, frame.height, eager=True).alias("duplicated")
    exact = frame.filter(candidates).select(pl.struct(columns).is_duplicated()).to_series()
    return candidates.scatter(candidates.arg_true(), exact).alias("duplicated")
