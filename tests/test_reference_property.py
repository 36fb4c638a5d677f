"""Property-based: random messy extracts, vectorized pipeline == row-by-row reference.

Extracts are mostly valid (so the marts have real content: streaks, risk changes, clinic
links), with a few corrupted fields, padded values, re-deliveries, conflicting copies,
CRLF endings and folders of daily drops mixed in.
"""

from __future__ import annotations

from datetime import datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.core.marts import RiskThresholds
from tests.compare import PLANS, compare_landing
from tests.conftest import HEADERS as EXTRACT_HEADERS

HEADERS = EXTRACT_HEADERS | {"outcomes": "enrollment_id,result,decided_at"}

BAD = ["", "x", "1.5", "-1", "NaN", "2026/03/01", "ONLINE", "150", "99999999999999999999"]
DATES = ["2026-03-02", "2026-03-09", "2026-03-16", "2026-03-23", "", "2026-04-20"]
TIMES = [
    "",
    " 09:00",
    "T10:30:00",
    " 23:59:59.5",
    "T01:00:00Z",
    "T02:00+09:00",
    " 03:00:00-0500",
    "T12:00:00.123456+0100",
]


def stamp(draw) -> str:
    return f"2026-03-{draw(st.integers(1, 31)):02d}" + draw(st.sampled_from(TIMES))


def csv_field(text: str) -> str:
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\n\r') else text


@st.composite
def landings(draw):
    rows: dict[str, list[list[str]]] = {t: [] for t in EXTRACT_HEADERS}
    lectures = [1, 2, 3]
    rows["lectures"] = [[str(lec), str(10 + lec % 2), f"강의 {lec}"] for lec in lectures]
    sessions: dict[int, list[int]] = {}
    for lec in lectures:
        count = draw(st.integers(0, 6))
        sessions[lec] = [100 * lec + k for k in range(1, count + 1)]
        for k, sid in enumerate(sessions[lec], start=1):
            order = k if draw(st.integers(0, 5)) else draw(st.integers(1, 6))
            rows["sessions"].append(
                [str(sid), str(lec), str(order), f"{k}차시", draw(st.sampled_from(DATES))]
            )
    for lec in draw(st.sets(st.sampled_from(lectures))):
        rows["policies"].append(
            [
                str(lec),
                draw(st.sampled_from(["", "0", "50", "80", "100"])),
                draw(st.sampled_from(["", "0", "1", "2"])),
                draw(st.sampled_from(["", "3", "9999"])),
                draw(st.sampled_from(["", "60", "40.5", "0"])),
                draw(st.sampled_from(["", "1", "2"])),
                draw(st.sampled_from(["", "4", "9999"])),
                draw(st.sampled_from(["", "SUBMIT", "SCORE", "TEACHER_APPROVAL"])),
                draw(st.sampled_from(["", "70", "0"])),
            ]
        )
    enrollments = {}
    for i in range(draw(st.integers(1, 10))):
        lec = draw(st.sampled_from(lectures))
        enrollments[1000 + i] = lec
        rows["enrollments"].append(
            [
                str(1000 + i),
                str(lec),
                str(draw(st.integers(1, 4))),
                draw(st.sampled_from(["", "ACTIVE", "ACTIVE", "DROPPED"])),
                stamp(draw),
            ]
        )
    pairs = [(e, s) for e, lec in enrollments.items() for s in sessions[lec]]
    any_session = [s for ss in sessions.values() for s in ss] or [999]

    def pair():
        if pairs and draw(st.integers(0, 9)):
            return draw(st.sampled_from(pairs))
        return draw(st.sampled_from(list(enrollments) + [1999])), draw(st.sampled_from(any_session))

    for _ in range(draw(st.integers(0, 40))):
        e, s = pair()
        rows["attendance"].append(
            [str(e), str(s), draw(st.sampled_from(["online", "offline"])), stamp(draw)]
        )
    for _ in range(draw(st.integers(0, 60))):
        e, s = pair()
        rows["video_progress"].append(
            [str(e), str(s), str(draw(st.sampled_from([0, 30, 50, 79, 80, 90, 100]))), stamp(draw)]
        )
    for i in range(draw(st.integers(0, 60))):
        e, s = pair()
        sid = i + 1 if draw(st.integers(0, 9)) else draw(st.integers(1, i + 1))
        rows["submissions"].append(
            [
                str(sid),
                str(e),
                str(s),
                draw(st.sampled_from(["exam", "exam", "homework"])),
                draw(st.sampled_from(["", "30", "59.9", "60", "75", "100"])),
                draw(st.sampled_from(["", "true", "FALSE", "1", "0"])),
                stamp(draw),
            ]
        )
    for _ in range(draw(st.integers(0, 15))):
        e, s = pair()
        rows["clinic_requests"].append(
            [
                str(e),
                str(s),
                draw(
                    st.sampled_from(
                        ["AUTO_FAILED", "AUTO_RISK", "MANUAL_REQUEST", "TEACHER_RECOMMEND"]
                    )
                ),
                draw(st.sampled_from(["", "true", "false"])),
                draw(st.sampled_from(["", "메모", "a,b"])),
                stamp(draw),
            ]
        )
    # the optional outcomes extract: absent, or some enrollments (and an unknown one), with a
    # re-delivered or conflicting copy now and then
    if draw(st.integers(0, 3)):
        rows["outcomes"] = [
            [
                str(e),
                draw(st.sampled_from(["PASS", "FAIL", "FAIL", "WITHDRAWN", "pass"])),
                draw(st.sampled_from(["", "2026-03-20 10:00", "2026-04-01", "2026-02-01 09:00"])),
            ]
            for e in draw(st.lists(st.sampled_from([*enrollments, 1999]), max_size=10))
        ]
    lines: dict[str, list[str]] = {}
    for table, table_rows in rows.items():
        out = []
        for r in table_rows:
            r = [draw(st.sampled_from(BAD)) if draw(st.integers(0, 40)) == 0 else v for v in r]
            r = [
                draw(st.sampled_from(["", " ", "\t"])) + v + draw(st.sampled_from(["", "  "]))
                if draw(st.integers(0, 8)) == 0
                else v
                for v in r
            ]
            out.append(",".join(csv_field(v) for v in r))
        if out:
            out += draw(st.lists(st.sampled_from(out), max_size=2))  # re-delivery
        lines[table] = out
    eol = draw(st.sampled_from(["\n", "\r\n"]))
    split = draw(st.sampled_from(list(HEADERS)))
    return lines, eol, split


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    case=landings(),
    warning=st.integers(1, 3),
    extra=st.integers(0, 2),
    swept=st.tuples(st.integers(1, 6), st.integers(0, 5)),
    plan=st.sampled_from(list(PLANS)),
)
def test_random_extracts_match_reference(tmp_path_factory, case, warning, extra, swept, plan):
    files, eol, split = case
    landing = tmp_path_factory.mktemp("landing")
    for table, lines in files.items():
        if table == split and len(lines) > 1:  # a folder of daily drops plus a header-only file
            half = len(lines) // 2
            (landing / table).mkdir()
            (landing / table / "b.csv").write_text(eol.join([HEADERS[table], *lines[:half]]) + eol)
            (landing / table / "a.csv").write_text(eol.join([HEADERS[table], *lines[half:]]) + eol)
            (landing / f"{table}.csv").write_text(HEADERS[table] + eol)
        else:
            (landing / f"{table}.csv").write_text(eol.join([HEADERS[table], *lines]) + eol)
    compare_landing(
        landing,
        [datetime(2026, 3, 10, 12), datetime(2026, 3, 31, 23, 59, 59)],
        thresholds=RiskThresholds(warning=warning, danger=warning + extra + 1),
        # the rule evaluation: the sweep's rows of the run's pair and of one more pair
        evaluation_pairs=[(warning, warning + extra + 1), (swept[0], min(6, swept[0] + swept[1]))],
        plan=plan,  # the marts through the engine's buckets, stacked
    )
