"""The ingest's fast paths agree with the plain Polars operations they replace.

`lookup` (an array gather for dense ids, else `replace_strict`) and `repeated_hashes` (sort and
compare neighbours instead of `is_duplicated`) are checked against the plain operation on
generated data: dense and sparse ids, values outside the keys, nulls, extreme Int64 values.
"""

from __future__ import annotations

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_series_equal

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
    plain = frame.select(
        pl.col("v")
        .replace_strict(key_series, target_series, default=None, return_dtype=pl.Int64)
        .alias("x")
    ).to_series()
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
@given(
    st.lists(
        st.tuples(st.none() | st.integers(0, 3), st.sampled_from(["a", "b", None])), max_size=60
    )
)
def test_duplicated_rows_equals_is_duplicated(rows):
    frame = pl.DataFrame(rows, schema={"k": pl.Int64, "t": pl.String}, orient="row")
    assert duplicated_rows(frame, ["k", "t"]).to_list() == frame.is_duplicated().to_list()


def test_parquet_read_by_polars_equals_the_pyarrow_path(tmp_path, monkeypatch):
    """Every Parquet type the generators and real exports use reads the same through Polars'
    reader as through pyarrow: native ints of any width, floats with NaN, bools, dates,
    zone-aware and naive timestamps in other units, dictionary-encoded and plain strings,
    padding, empty strings and nulls, and a column renamed with spaces."""
    from datetime import date, datetime

    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipelines.core import extracts
    from pipelines.core.contract import SPECS

    table = pa.table(
        {
            "submission_id": pa.array([1, 2, 3, None], pa.int32()),
            " enrollment_id ": pa.array([10, 11, 12, 13], pa.int64()),
            "session_id": pa.array(["5", " 6", "", None], pa.string()).dictionary_encode(),
            "kind": pa.array(["exam", "homework", " exam", None], pa.large_string()),
            "score": pa.array([1.5, float("nan"), None, 80.0], pa.float32()),
            "teacher_approved": pa.array([True, None, False, True]),
            "submitted_at": pa.array(
                [datetime(2026, 3, 2, 1, 2, 3), None, datetime(1, 1, 1), datetime(2026, 5, 1)],
                pa.timestamp("ms", tz="UTC"),
            ),
            "extra": pa.array([date(2026, 1, 1)] * 4),
        }
    )
    path = tmp_path / "submissions.parquet"
    pq.write_table(table, path, row_group_size=2)
    spec = SPECS["submissions"]
    fast = extracts.read_parquet_file(spec, path, "submissions.parquet", "Asia/Seoul")
    monkeypatch.setattr(extracts, "_polars_read", lambda *args: None)
    slow = extracts.read_parquet_file(spec, path, "submissions.parquet", "Asia/Seoul")
    assert fast.columns == slow.columns and fast.height == slow.height == 4
    for name in spec.column_names:  # text as the contract reads it: trimmed, empty = null
        a, b = fast.get_column(name), slow.get_column(name)
        if a.dtype == pl.String or b.dtype == pl.String:
            a, b = (s.cast(pl.String).str.strip_chars().replace("", None) for s in (a, b))
        assert_series_equal(a, b, check_names=False)  # NaN equals NaN here
