"""The ingest's fast paths agree with the plain Polars operations they replace.

`lookup` (an array gather for dense ids, else `replace_strict`) and `repeated_hashes` (sort and
compare neighbours instead of `is_duplicated`) are checked against the plain operation on
generated data: dense and sparse ids, values outside the keys, nulls, extreme Int64 values.
"""

from __future__ import annotations

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.core.ingest import dense_span, lookup
from pipelines.core.keys import duplicated_rows, repeated_hashes

INT64 = st.integers(-(2**63), 2**63 - 1)
SMALL = st.integers(-50, 400)


@settings(max_examples=150, deadline=None)
@given(
    keys=st.one_of(st.sets(SMALL, max_size=60), st.sets(INT64, max_size=20)),
    values=st.lists(st.one_of(st.none(), SMALL, INT64), max_size=80),
    data=st.data(),
)
def test_lookup_equals_replace_strict(keys, values, data):
    keys = sorted(keys)
    targets = data.draw(st.lists(st.integers(1, 10**6), min_size=len(keys), max_size=len(keys)))
    key_series = pl.Series("k", keys, dtype=pl.Int64)
    target_series = pl.Series("t", targets, dtype=pl.Int64)
    frame = pl.DataFrame({"v": values}, schema={"v": pl.Int64})
    fast = frame.select(lookup(pl.col("v"), key_series, target_series).alias("x")).to_series()
    plain = frame.select(pl.col("v").replace_strict(
        key_series, target_series, default=None, return_dtype=pl.Int64).alias("x")).to_series()
    assert fast.to_list() == plain.to_list()


def test_lookup_takes_the_array_path_for_dense_ids_only():
    assert dense_span(pl.Series([3, 4, 7, 10])) == (3, 10)
    assert dense_span(pl.Series([1, 2**40])) is None
    assert dense_span(pl.Series([], dtype=pl.Int64)) is None


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(0, 2**64 - 1) | st.integers(0, 5), max_size=200))
def test_repeated_hashes_equals_is_duplicated(hashes):
    series = pl.Series("h", hashes, dtype=pl.UInt64)
    repeated = repeated_hashes(series)
    expected = series.is_duplicated()
    if repeated is None:
        assert not expected.any()
    else:
        assert repeated.to_list() == expected.to_list()


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.none() | st.integers(0, 3), st.sampled_from(["a", "b", None])),
                max_size=60))
def test_duplicated_rows_equals_is_duplicated(rows):
    frame = pl.DataFrame(rows, schema={"k": pl.Int64, "t": pl.String}, orient="row")
    assert duplicated_rows(frame, ["k", "t"]).to_list() == frame.is_duplicated().to_list()
