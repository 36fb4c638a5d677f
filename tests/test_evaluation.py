"""The outcomes extract and the rule evaluation (contract §5): hand-written cases.

The evaluation case below is small enough to compute by hand (the figures in the comments); it
goes through the real `progress run` (a Dagster run) and the real `progress evaluate` CLI.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import duckdb
import polars as pl
import pytest

from pipelines.core.evaluation import evaluate, sweep_pairs
from pipelines.core.ingest import ingest_all, missing_extract_warned
from pipelines.core.marts import RiskThresholds
from pipelines.core.vocabulary import RULE_EVALUATION_KEY
from pipelines.runner import run_pipeline
from tests.compare import assert_same
from tests.conftest import write_landing

OUTCOMES_HEADER = "enrollment_id,result,decided_at"
T = datetime(2026, 3, 31, 12, 0)

# Exams and homework outside every window (order 99): a session is completed exactly when the
# student attended it offline, so only the incomplete streak moves (the low-score one stays 0).
LECTURES = {
    1: (10, ["2026-03-02", "2026-03-09", "2026-03-16", "2026-03-23", "2026-03-30", "2026-04-06"]),
    2: (20, ["2026-03-03", "2026-03-10", "2026-03-17", "2026-03-24"]),
    3: (20, ["2026-03-04", "2026-03-11"]),
}
# enrollment -> (lecture, status, completed pattern of its held sessions as of T, outcome)
ENROLLMENTS = {
    1001: (1, "ACTIVE", "CCCCC", "PASS,2026-04-20 10:00"),  # streak 0
    1002: (1, "ACTIVE", "CCXXX", "FAIL,2026-04-20 10:00"),  # 3: t1 03-16, t2 03-23, t3 03-30
    1003: (1, "ACTIVE", "CCCXX", "PASS,2026-04-20 10:00"),  # 2
    1004: (1, "ACTIVE", "XXCCC", "FAIL,2026-04-10 10:00"),  # 0 (was at 2, recovered)
    1005: (1, "ACTIVE", "XXXXX", "WITHDRAWN,2026-04-01 10:00"),  # 5
    1006: (1, "DROPPED", "XXXXX", "FAIL,2026-04-01 10:00"),  # never evaluated
    2001: (2, "ACTIVE", "CCCX", "FAIL,"),  # 1 (t1 03-24), no decided_at: no lead time
    2002: (2, "ACTIVE", "XXXX", "FAIL,2026-03-31 18:00"),  # 4: t1 03-03 t2 03-10 t3 03-17 ...
    2003: (2, "ACTIVE", "CCCC", "PASS,2026-04-02"),  # 0
    2004: (2, "ACTIVE", "XXXX", None),  # no outcome: not evaluated
    3001: (3, "DROPPED", "XX", "WITHDRAWN,2026-03-20"),  # lecture 3 gets no row
}


def evaluation_landing(root: Path, outcomes: list[str] | None = None) -> Path:
    rows: dict[str, list[str]] = {
        "lectures": [],
        "sessions": [],
        "policies": [],
        "enrollments": [],
        "attendance": [],
    }
    for lecture, (academy, dates) in LECTURES.items():
        rows["lectures"].append(f"{lecture},{academy},강의 {lecture}")
        rows["policies"].append(f"{lecture},90,99,99,60,99,99,SUBMIT,")
        rows["sessions"] += [
            f"{lecture * 100 + k},{lecture},{k},{k}차시,{day}"
            for k, day in enumerate(dates, start=1)
        ]
    for enrollment, (lecture, status, pattern, _) in ENROLLMENTS.items():
        rows["enrollments"].append(f"{enrollment},{lecture},{enrollment % 100},{status},")
        dates = LECTURES[lecture][1]
        rows["attendance"] += [
            f"{enrollment},{lecture * 100 + k},offline,{dates[k - 1]} 10:00"
            for k, mark in enumerate(pattern, start=1)
            if mark == "C"
        ]
    if outcomes is None:
        outcomes = [f"{e},{o}" for e, (*_, o) in ENROLLMENTS.items() if o is not None]
    write_landing(root, rows)
    (root / "outcomes.csv").write_text("\n".join([OUTCOMES_HEADER, *outcomes]) + "\n")
    return root


def progress_cli(*args: str) -> subprocess.CompletedProcess:
    env = os.environ | {"COLUMNS": "220"}
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


# (scope, scope_id, warning, danger, level) -> population, tp, fp, fn, tn, precision, recall,
# f1, accuracy, base_rate, withdrawn, withdrawn_flagged, median_lead_days
EXPECTED = {
    # WARNING+ at 2: flagged 1002 F, 1003 P, 2002 F (and 1005 WITHDRAWN); leads 28, 21 days
    ("all", None, 2, 3, "WARNING"): (7, 2, 1, 2, 2, 2 / 3, 0.5, 4 / 7, 4 / 7, 4 / 7, 1, 1, 24.5),
    # DANGER at 3: flagged 1002 F, 2002 F (and 1005); leads 21 (03-30 -> 04-20), 14 days
    ("all", None, 2, 3, "DANGER"): (7, 2, 0, 2, 3, 1.0, 0.5, 2 / 3, 5 / 7, 4 / 7, 1, 1, 17.5),
    ("academy", 10, 2, 3, "WARNING"): (4, 1, 1, 1, 1, 0.5, 0.5, 0.5, 0.5, 0.5, 1, 1, 28.0),
    ("academy", 20, 2, 3, "WARNING"): (3, 1, 0, 1, 1, 1.0, 0.5, 2 / 3, 2 / 3, 2 / 3, 0, 0, 21.0),
    ("lecture", 1, 2, 3, "DANGER"): (4, 1, 0, 1, 2, 1.0, 0.5, 2 / 3, 0.75, 0.5, 1, 1, 21.0),
    ("lecture", 2, 2, 3, "DANGER"): (3, 1, 0, 1, 1, 1.0, 0.5, 2 / 3, 2 / 3, 2 / 3, 0, 0, 14.0),
    # WARNING+ at 1: 2001 is a flagged FAIL without decided_at: left out of the lead times
    ("all", None, 1, 4, "WARNING"): (7, 3, 1, 1, 2, 0.75, 0.75, 0.75, 5 / 7, 4 / 7, 1, 1, 31.5),
    # nobody is at 6: precision (0/0), F1 and the lead time are null
    ("all", None, 6, 6, "DANGER"): (7, 0, 0, 4, 3, None, 0.0, None, 3 / 7, 4 / 7, 1, 0, None),
    # at 5 only the WITHDRAWN 1005 is flagged
    ("all", None, 5, 5, "WARNING"): (7, 0, 0, 4, 3, None, 0.0, None, 3 / 7, 4 / 7, 1, 1, None),
    ("academy", 20, 5, 6, "WARNING"): (3, 0, 0, 2, 1, None, 0.0, None, 1 / 3, 2 / 3, 0, 0, None),
}
FIGURES = [
    "population",
    "tp",
    "fp",
    "fn",
    "tn",
    "precision",
    "recall",
    "f1",
    "accuracy",
    "base_rate",
    "withdrawn",
    "withdrawn_flagged",
    "median_lead_days",
]


def assert_expected(evaluation: pl.DataFrame) -> None:
    for (scope, scope_id, w, d, level), figures in EXPECTED.items():
        found = evaluation.filter(
            (pl.col("scope") == scope)
            & pl.col("scope_id").eq_missing(scope_id)
            & (pl.col("warning_streak") == w)
            & (pl.col("danger_streak") == d)
            & (pl.col("level") == level)
        )
        assert found.height == 1, (scope, scope_id, w, d, level)
        got = found.select(FIGURES).row(0)
        assert got == pytest.approx(figures, nan_ok=False), (scope, scope_id, w, d, level)


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """The hand case through `progress run` (Dagster) as of T, then `progress evaluate`."""
    root = tmp_path_factory.mktemp("evaluation")
    landing = evaluation_landing(root / "landing")
    warehouse = root / "wh.duckdb"
    report = run_pipeline(landing, warehouse, as_of=T.isoformat(sep=" "))
    with duckdb.connect(str(warehouse), read_only=True) as con:
        after_run = con.sql("SELECT * FROM marts.rule_evaluation").pl()
    cli = progress_cli(
        "evaluate",
        "--warehouse",
        str(warehouse),
        "--as-of",
        "2026-03-31 12:00",
        "--as-of",
        "2026-03-31T03:00:00Z",
    )
    with duckdb.connect(str(warehouse), read_only=True) as con:
        stored = con.sql("SELECT * FROM marts.rule_evaluation").pl()
    return report, after_run, cli, stored, warehouse


def test_hand_computed_case_through_progress_evaluate(evaluated):
    report, after_run, cli, stored, _ = evaluated
    assert cli.returncode == 0, cli.stderr
    # the two --as-of are the same instant (03:00Z = 12:00 in Seoul): one set of rows, which
    # replaced the rows `progress run` had stored for its own as-of (the same T)
    assert stored["as_of"].unique().to_list() == [T]
    assert stored.sort(stored.columns).equals(after_run.sort(after_run.columns))
    assert_expected(stored)
    # 21 pairs x 2 levels x (all, academy 10, academy 20, lecture 1, lecture 2): lecture 3 has
    # only a DROPPED enrollment with an outcome, so no row
    assert stored.height == 21 * 2 * 5
    assert set(stored.filter(pl.col("scope") == "lecture")["scope_id"]) == {1, 2}
    # printed: the configured pair, the best F1 (t=1: 0.75) and the best recall at
    # precision >= 0.9 (WARNING: warning 3 gives P 1.0, R 0.5; DANGER: danger 3)
    lines = cli.stdout.splitlines()
    assert "evaluation as of 2026-03-31 12:00:00" in cli.stdout
    configured = next(i for i, line in enumerate(lines) if "configured thresholds" in line)
    warning_line = next(line for line in lines[configured:] if line.startswith("│ WARNING"))
    assert [c.strip() for c in warning_line.strip("│").split("│")][:11] == [
        "WARNING",
        "2",
        "3",
        "7",
        "2",
        "1",
        "2",
        "2",
        "0.667",
        "0.500",
        "0.571",
    ]
    best = next(i for i, line in enumerate(lines) if "thresholds maximizing F1" in line)
    assert [
        c.strip()
        for c in next(line for line in lines[best:] if line.startswith("│ WARNING"))
        .strip("│")
        .split("│")
    ][:3] == ["WARNING", "1", "1"]
    recall = next(i for i, line in enumerate(lines) if "best recall at precision" in line)
    chosen = [
        [c.strip() for c in line.strip("│").split("│")][:3]
        for line in lines[recall:]
        if line.startswith(("│ WARNING", "│ DANGER"))
    ]
    assert chosen == [["WARNING", "3", "3"], ["DANGER", "1", "3"]]


def test_configured_row_equals_the_published_marts(evaluated):
    """Done-when: the sweep's row of the configured thresholds (2, 3) is what the published
    marts.lecture_progress and marts.risk_log of the same run say, counted here in SQL."""
    *_, stored, warehouse = evaluated
    with duckdb.connect(str(warehouse), read_only=True) as con:
        from_marts = con.sql("""
            WITH levels(level, rank) AS (VALUES ('WARNING', 1), ('DANGER', 2)),
            first_row AS (
                SELECT r.enrollment_id, l.level, min(r.session_date) AS since
                FROM marts.risk_log r JOIN levels l
                  ON (CASE r.risk_level WHEN 'DANGER' THEN 2 ELSE 1 END) >= l.rank
                GROUP BY ALL),
            members AS (
                SELECT p.*, o.result, l.level,
                       (CASE p.risk_level WHEN 'DANGER' THEN 2 WHEN 'WARNING' THEN 1 ELSE 0 END)
                           >= l.rank AS flagged,
                       date_diff('day', f.since, o.decided_at::DATE) AS lead
                FROM marts.lecture_progress p JOIN raw.outcomes o USING (enrollment_id)
                CROSS JOIN levels l
                LEFT JOIN first_row f ON f.enrollment_id = p.enrollment_id AND f.level = l.level
                WHERE p.status = 'ACTIVE')
            SELECT 'academy' AS scope, academy_id AS scope_id, level,
                   count(*) FILTER (result IN ('PASS', 'FAIL')) AS population,
                   count(*) FILTER (flagged AND result = 'FAIL') AS tp,
                   count(*) FILTER (flagged AND result = 'PASS') AS fp,
                   count(*) FILTER (result = 'WITHDRAWN') AS withdrawn,
                   median(lead) FILTER (flagged AND result = 'FAIL') AS median_lead_days
            FROM members GROUP BY ALL
            UNION ALL
            SELECT 'all', NULL, level, count(*) FILTER (result IN ('PASS', 'FAIL')),
                   count(*) FILTER (flagged AND result = 'FAIL'),
                   count(*) FILTER (flagged AND result = 'PASS'),
                   count(*) FILTER (result = 'WITHDRAWN'),
                   median(lead) FILTER (flagged AND result = 'FAIL')
            FROM members GROUP BY ALL
        """).pl()
    configured = stored.filter(
        (pl.col("warning_streak") == 2)
        & (pl.col("danger_streak") == 3)
        & pl.col("scope").is_in(["all", "academy"])
    )
    columns = [
        "scope",
        "scope_id",
        "level",
        "population",
        "tp",
        "fp",
        "withdrawn",
        "median_lead_days",
    ]
    key = ["scope", "scope_id", "level"]
    assert configured.height == from_marts.height == 6
    assert (
        configured.select(columns)
        .sort(key)
        .equals(from_marts.select(columns).cast(configured.select(columns).schema).sort(key))
    )


def test_outcomes_quarantine_every_rule(tmp_path):
    landing = evaluation_landing(
        tmp_path / "landing",
        outcomes=[
            "1001,PASS,2026-04-20 10:00",
            "1001,PASS,2026-04-20 10:00",  # exact re-delivery: collapses
            "1002,FAIL,2026-04-20",
            "1002,PASS,2026-04-20",  # same key, another result: both copies quarantined
            "1003,pass,2026-04-20",  # enum matching is exact
            "1004,,2026-04-20",  # result is required
            "1005,FAIL,2026-04-31",  # not a date
            "9999,FAIL,2026-04-20",  # no such enrollment
            " 2001 ,WITHDRAWN, ",  # padded; decided_at empty is null
        ],
    )
    (landing / "enrollments.csv").write_text(
        (landing / "enrollments.csv").read_text() + "2005,77,5,ACTIVE,\n"
    )  # unknown lecture
    (landing / "outcomes.csv").write_text(
        (landing / "outcomes.csv").read_text() + "2005,PASS,\n"
    )  # its enrollment is quarantined
    result = ingest_all(landing)["outcomes"]
    assert result.delivered == 10 and result.collapsed == 1
    assert result.raw.select("enrollment_id", "result", "decided_at").rows() == [
        (1001, "PASS", datetime(2026, 4, 20, 10)),
        (2001, "WITHDRAWN", None),
    ]
    reasons = result.quarantine.select("enrollment_id", "_reason", "_source_row").rows()
    assert reasons == [
        ("1002", "duplicate_conflict", 3),
        ("1002", "duplicate_conflict", 4),
        ("1003", "invalid_enum", 5),
        ("1004", "missing_value", 6),
        ("1005", "invalid_type", 7),
        ("9999", "unknown_reference", 8),
        ("2005", "unknown_reference", 10),
    ]


def test_without_outcomes_nothing_is_evaluated_and_nothing_warned(tmp_path):
    """A landing folder without outcomes is normal. (That every check of a whole Dagster run on
    such a folder passes, outcomes' extract_delivered and rule_evaluation's schema included, is
    test_asset_checks.test_every_reported_check_passes_and_counts_rows.)"""
    landing = evaluation_landing(tmp_path / "landing")
    (landing / "outcomes.csv").unlink()
    result = ingest_all(landing)["outcomes"]
    assert result.raw.is_empty() and result.quarantine.is_empty() and not result.files
    assert not missing_extract_warned("outcomes", 0, refused=False)
    assert missing_extract_warned("outcomes", 0, refused=True)  # delivered, but unreadable
    assert missing_extract_warned("lectures", 0, refused=False)
    raw = {t: r.raw for t, r in ingest_all(landing).items()}
    assert evaluate(raw, T).is_empty()
    warehouse = tmp_path / "wh.duckdb"  # a warehouse published without outcomes
    with duckdb.connect(str(warehouse)) as con:
        con.execute("CREATE SCHEMA raw")
    cli = progress_cli("evaluate", "--warehouse", str(warehouse), "--as-of", "2026-03-31")
    assert cli.returncode == 2  # bad input (docs/operating.md, exit codes)
    assert cli.stderr.startswith("error: no outcomes in") and "Traceback" not in cli.stderr
    bad = progress_cli("evaluate", "--warehouse", str(warehouse), "--as-of", "yesterday")
    assert bad.returncode == 2 and "--as-of 'yesterday' is not a timestamp" in bad.stderr


def test_sweep_matches_one_evaluation_per_pair(tmp_path):
    """The one-pass sweep gives, for every pair, what evaluating that pair alone gives."""
    landing = evaluation_landing(tmp_path / "landing")
    raw = {t: r.raw for t, r in ingest_all(landing).items()}
    sweep = evaluate(raw, T)
    assert sweep.height == 21 * 2 * 5
    for w, d in [(1, 1), (2, 3), (3, 6), (6, 6)]:
        alone = evaluate(raw, T, [(w, d)])
        assert alone.equals(
            sweep.filter((pl.col("warning_streak") == w) & (pl.col("danger_streak") == d))
        )
    assert sweep_pairs(RiskThresholds(4, 8))[-1] == (4, 8)
    wide = evaluate(raw, T, sweep_pairs(RiskThresholds(4, 8)))
    assert wide.filter(pl.col("danger_streak") == 8).height == 2 * 5


def test_sample_outcomes_follow_the_events():
    """The shipped sample's outcomes relate to the events as real ones would: students the
    rules flag fail far more often than the others (the rules have lift over the base rate)."""
    raw = {t: r.raw for t, r in ingest_all(Path("data/sample")).items()}
    evaluation = evaluate(raw, datetime(2026, 11, 25, 6), [(2, 3)])
    everyone = evaluation.filter(pl.col("scope") == "all")
    assert everyone.height == 2
    for row in everyone.iter_rows(named=True):
        assert row["population"] >= 50 and row["tp"] >= 5
        assert row["precision"] > 2 * row["base_rate"], row
    assert everyone["withdrawn"][0] > 0


def test_configured_warning_above_danger_matches_the_reference(tmp_path):
    """A configured pair with warning > danger (DANGER tested first) is evaluated as the marts
    would rank it: WARNING or higher from a streak of min(warning, danger)."""
    from tests.reference import reference_ingest
    from tests.reference_evaluation import reference_evaluation

    landing = evaluation_landing(tmp_path / "landing")
    raw = {t: r.raw for t, r in ingest_all(landing).items()}
    pairs = [(3, 2), (5, 1)]
    ours = evaluate(raw, T, pairs)
    ref_raw, _, _ = reference_ingest(landing, "Asia/Seoul")
    assert_same(
        "rule_evaluation w > d", ours, reference_evaluation(ref_raw, T, pairs), RULE_EVALUATION_KEY
    )
    flagged = ours.filter((pl.col("scope") == "all") & (pl.col("level") == "WARNING"))
    assert flagged["tp"].sum() + flagged["fp"].sum() > 0  # the case flags someone
