"""Compare the vectorized pipeline with the row-by-row reference, table by table."""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path

import polars as pl

from pipelines.core.buckets import Bucket, plan_buckets
from pipelines.core.contract import SPECS, TABLES
from pipelines.core.engine import split_inputs
from pipelines.core.evaluation import evaluate
from pipelines.core.ingest import ingest_all
from pipelines.core.marts import RiskThresholds, build_marts
from pipelines.core.vocabulary import RULE_EVALUATION_KEY
from tests.reference import reference_ingest, reference_marts
from tests.reference_evaluation import reference_evaluation


def _pairs(raw: dict[str, pl.DataFrame]) -> pl.DataFrame:
    return raw["enrollments"].join(raw["lectures"], on="lecture_id").select("academy_id", E)


E = "enrollment_id"
# Bucket plans the comparisons run through: one bucket for everything, one academy per bucket,
# and every academy split by enrollment range (buckets of 3 enrollments).
PLANS = {
    "one bucket": lambda raw: [],
    "one academy per bucket": lambda raw: [
        Bucket(i, a, a, n)
        for i, (a, n) in enumerate(
            _pairs(raw).group_by("academy_id").len().sort("academy_id").iter_rows()
        )
    ],
    "every academy split": lambda raw: plan_buckets(_pairs(raw), 3),
}

MART_KEYS = {
    "session_progress": ["enrollment_id", "session_id"],
    "lecture_progress": ["enrollment_id"],
    "risk_log": ["enrollment_id", "session_id"],
    "clinic_links": ["enrollment_id", "session_id", "reason"],
}


def _norm(value):
    if isinstance(value, float) and not math.isnan(value):
        return round(value, 9)
    return value


def _rows(rows: list[dict], columns: list[str], key: list[str]) -> list[tuple]:
    out = [tuple(_norm(r.get(c)) for c in columns) for r in rows]
    idx = [columns.index(k) for k in key]
    return sorted(
        out, key=lambda t: tuple((v is None, str(type(v)), v) for v in (t[i] for i in idx))
    )


def assert_same(name: str, ours: pl.DataFrame, theirs: list[dict], key: list[str]) -> None:
    columns = ours.columns
    a, b = _rows(ours.to_dicts(), columns, key), _rows(theirs, columns, key)
    if a != b:
        missing = [r for r in b if r not in a][:3]
        extra = [r for r in a if r not in b][:3]
        raise AssertionError(
            f"{name}: {len(a)} rows vs reference {len(b)}\ncolumns {columns}\n"
            f"only in reference: {missing}\nonly in pipeline: {extra}"
        )


def compare_landing(
    landing: Path,
    as_of_list: list[datetime],
    tz: str = "Asia/Seoul",
    thresholds: RiskThresholds | None = None,
    compare_quarantine_text: bool = True,
    evaluation_pairs: list[tuple[int, int]] | None = None,
    plan: str = "one bucket",
) -> dict[str, int]:
    """Assert raw, quarantine, marts and the rule evaluation (the sweep's rows of
    `evaluation_pairs`, default the given thresholds and (1, 4)) equal the reference; return
    row counts seen. The marts are computed through the engine's buckets (`plan`: a key of
    PLANS), stacked."""
    thresholds = thresholds or RiskThresholds()
    ours = ingest_all(landing, tz)
    ref_raw, ref_quarantine, ref_refused = reference_ingest(landing, tz)
    assert sorted(r.file for t in TABLES for r in ours[t].refused) == sorted(
        f for f, _ in ref_refused
    )
    counts: dict[str, int] = {}
    for table in TABLES:
        key = ["_source_file", "_source_row"]
        assert_same(f"raw.{table}", ours[table].raw, ref_raw[table], key)
        cols = ["_reason", "_source_file", "_source_row"]
        if compare_quarantine_text:
            cols = SPECS[table].column_names + cols
        assert_same(
            f"quarantine.{table}", ours[table].quarantine.select(cols), ref_quarantine[table], key
        )
        counts[f"raw.{table}"] = ours[table].raw.height
        counts[f"quarantine.{table}"] = ours[table].quarantine.height
    raw = {t: r.raw for t, r in ours.items()}
    chosen = PLANS[plan](raw)
    counts["buckets"] = max(len(chosen), 1)
    for as_of in as_of_list:
        parts = [build_marts(inputs, as_of, thresholds) for inputs in split_inputs(raw, chosen)]
        marts = {name: pl.concat([p[name] for p in parts]) for name in MART_KEYS}
        expected = reference_marts(ref_raw, as_of, thresholds.warning, thresholds.danger)
        for name, key in MART_KEYS.items():
            assert_same(f"{name} as of {as_of}", marts[name], expected[name], key)
            counts[name] = counts.get(name, 0) + marts[name].height
        # the whole sweep in one pass, compared on the pairs asked for (the reference runs
        # its marts once per pair)
        pairs = sorted(set(evaluation_pairs or [(thresholds.warning, thresholds.danger), (1, 4)]))
        evaluation = evaluate(raw, as_of).filter(
            pl.concat_list("warning_streak", "danger_streak").is_in([list(p) for p in pairs])
        )
        assert_same(
            f"rule_evaluation as of {as_of}",
            evaluation,
            reference_evaluation(ref_raw, as_of, pairs),
            RULE_EVALUATION_KEY,
        )
        counts["rule_evaluation"] = counts.get("rule_evaluation", 0) + evaluation.height
    return counts
