"""`progress report`: one self-contained HTML page for academy directors and teachers (issues 6, 13).

The page opens offline: Plotly's JavaScript is inlined from the `plotly` Python package (no CDN),
no font or image is fetched (system fonts only), and a Content-Security-Policy meta tag forbids
the browser from loading anything at all, so a page that would reach the network cannot draw.

What it shows, as of the marts' calculated_at (Korean labels from `marts.dim_labels`):

- cards that count distinct students and enrollments apart (a student in two lectures is one
  student and two enrollments; the 주의 / 위험 cards count enrollments and name the students);
- the at-risk enrollments (`v_at_risk_students`), most urgent first, in a table sortable and
  filterable offline (at most `max_rows`, see "Bounded page" below);
- the clinic queue per student and lecture (`views.CLINIC_BY_STUDENT`): pending sessions, the
  oldest, the latest failure, approved or not; and a chart of who has waited how long;
- risk levels per lecture, the session completion rate per lecture, the completion funnel and
  the weekly risk trend (`marts.risk_log`);
- the rule evaluation (`marts.rule_evaluation`, data contract §5) when outcomes were delivered:
  the precision / recall trade-off of every threshold pair, with the configured one marked.

Display rule (the marts keep the contract's meaning): a session held on the as-of date is *in
progress*. Students finish it during the day, so the completion charts leave it out of their
lines and mark it apart, and the clinic queue counts its AUTO_FAILED links apart, instead of
showing them as failures. Risk levels and the cards are the marts' own.

A chart with nothing to show is replaced by a sentence. Each drawn chart increments
`document.body.dataset.chartsDrawn` after Plotly has rendered its SVG; `data-charts-expected`
on <body> tells how many to expect (the browser test compares them). Page scripts and the layout
check: `pipelines/report_page.py`.

Bounded page (issue 10): a page is for people, and at tier L (1M enrollments) the full lists
would make an ~800 MB page no browser opens. So each list table shows at most `max_rows` rows
(default 1,000; `progress report --max-rows N`) in its own order, the most urgent first, read
with LIMIT in DuckDB; when capped, its title shows both numbers ("상위 1,000건 / 전체 12,345건")
and a note points to the complete lists: `progress export` (v_at_risk_students, v_clinic_queue
per academy) and `progress sql`. Totals and the cards are SQL counts, exact. The per-lecture
charts draw at most `CHART_LECTURES` (40) lectures, the ones their own ranking puts first (most
at-risk enrollments; most waiting students for the clinic chart), with a note giving the total.
"""

from __future__ import annotations

import html
import tempfile
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import duckdb
import plotly.graph_objects as go
import plotly.io as pio
import polars as pl
from plotly.offline import get_plotlyjs

from pipelines.core.evaluation import PRECISION_FLOOR, best_row
from pipelines.core.evaluation import RULE_EVALUATION_COLUMNS as EVALUATION_COLUMNS
from pipelines.core.marts import RiskThresholds
from pipelines.core.views import (
    CLINIC_BY_STUDENT,
    CLINIC_ORDER_COLUMNS,
    VIEWS,
    View,
    clinic_by_student_select,
)
from pipelines.report_page import FONT, HARNESS, STYLE, TABLE_JS, Column, data_table

CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "img-src data: blob:; font-src data:; connect-src 'none'; base-uri 'none'; form-action 'none'"
)
LEVEL_COLORS = {"NORMAL": "#4caf50", "WARNING": "#ffb300", "DANGER": "#e53935"}
STAGES = [  # (view column prefix, Korean label, color)
    ("video_completed", "영상 완료", "#90caf9"),
    ("exam_passed", "시험 통과", "#64b5f6"),
    ("homework_passed", "과제 통과", "#1e88e5"),
    ("completed", "차시 완료", "#0d47a1"),
]
WAIT_BUCKETS = [  # (label, upper bound in days or None, color) for the clinic chart
    ("7일 이내", 7, "#90a4ae"),
    ("8~28일", 28, "#ffb300"),
    ("29일 이상", None, "#e53935"),
]


DEFAULT_MAX_ROWS = 1_000  # rows of each list table (the complete lists are in the exports)
CHART_LECTURES = 40  # lectures per per-lecture chart: 34 px a bar, about 1,500 px at most
FULL_LISTS = (
    "전체 목록은 <code>progress export</code>의 학원별 v_at_risk_students · v_clinic_queue 파일과 "
    "<code>progress sql</code>에 있습니다 (The complete list: <code>progress export</code>, "
    "per academy, and <code>progress sql</code>)."
)


class ReportError(Exception):
    """The report could not be made; the message is one line for the user."""


@dataclass
class ReportData:
    as_of: str | None
    academy: int | None
    academies: list[int]
    labels: dict[tuple[str, str], str]
    counts: dict[str, int]
    summary: pl.DataFrame
    funnel: pl.DataFrame
    clinic: pl.DataFrame
    at_risk: pl.DataFrame
    risk_trend: pl.DataFrame  # week (Monday), risk_level, len: risk_log entries (RISK_TREND_SQL)
    evaluation: pl.DataFrame | None  # None: no marts.rule_evaluation (outcomes not delivered)
    thresholds: RiskThresholds = field(default_factory=RiskThresholds)
    max_rows: int = DEFAULT_MAX_ROWS
    # rows of the whole list (SQL counts): at_risk and clinic hold at most max_rows of them
    at_risk_total: int | None = None
    clinic_total: int | None = None
    # clinic cards: students, lines and sessions waiting (SQL, over the whole queue)
    clinic_pending: dict[str, int] = field(default_factory=dict)
    # the clinic chart's counts: academy_id, lecture_id, lecture_title, bucket, len
    clinic_buckets: pl.DataFrame | None = None

    def label(self, domain: str, code: str | None) -> str:
        if code is None:
            return ""
        return self.labels.get((domain, code), code)

    @property
    def today(self) -> date | None:
        """The as-of date: sessions held on it are in progress (display rule)."""
        return date.fromisoformat(self.as_of[:10]) if self.as_of else None


@dataclass
class ReportResult:
    path: Path
    charts: list[str] = field(default_factory=list)  # titles of the charts drawn
    notes: list[str] = field(default_factory=list)  # charts replaced by a sentence
    academy: int | None = None
    as_of: str | None = None


def _query(
    con: duckdb.DuckDBPyConnection,
    view: View,
    academy: int | None,
    limit: int | None = None,
) -> pl.DataFrame:
    """A view's rows in its order (at most `limit`), only the academy's when one is given
    (filtered in DuckDB)."""
    where = "" if academy is None else "WHERE academy_id = $academy"
    sql = f"SELECT * FROM ({view.select.rstrip()}) AS v {where} ORDER BY {view.order_by}"
    sql += "" if limit is None else f" LIMIT {int(limit)}"
    return con.execute(sql, {} if academy is None else {"academy": academy}).pl()


def _count(con: duckdb.DuckDBPyConnection, view: View, academy: int | None) -> int:
    where = "" if academy is None else "WHERE academy_id = $academy"
    sql = f"SELECT count(*) FROM ({view.select.rstrip()}) AS v {where}"
    return con.execute(sql, {} if academy is None else {"academy": academy}).fetchone()[0]


# The clinic queue's order and counts are computed once into a temporary table (the read-only
# warehouse allows them) for every student, then read three ways: the card counts, the chart's
# counts and the keys of the first `max_rows` rows, whose whole rows (titles, labels, reasons)
# are then computed from those students' links alone (`_clinic_rows`). At L (8.8M links) the
# whole CLINIC_BY_STUDENT took ~20 s of the report's 21 s. Measured at M (best of 3, loaded
# machine): the whole CLINIC_BY_STUDENT 1.58 CPU s; the order columns 0.30, the 1,000 shown
# rows 0.17, the counts 0.02.
CLINIC_TEMP = "report_clinic"
CLINIC_SHOWN = "report_clinic_shown"
CLINIC_PENDING_SQL = f"""
SELECT count(*) AS total,
    count(DISTINCT student_id) FILTER (WHERE pending_sessions > 0) AS students,
    count(*) FILTER (WHERE pending_sessions > 0) AS lines,
    coalesce(sum(pending_sessions) FILTER (WHERE pending_sessions > 0), 0) AS sessions
FROM {CLINIC_TEMP}
"""


def _clinic_buckets_sql() -> str:
    """Waiting students per lecture and wait bucket (the clinic chart), from CLINIC_TEMP."""
    bucket = "CASE WHEN days_waiting IS NULL THEN '날짜 없음' "
    for label, upper, _ in WAIT_BUCKETS:
        bucket += f"WHEN days_waiting <= {upper} THEN '{label}' " if upper else f"ELSE '{label}' "
    # the title joined after counting (raw.lectures is unique on lecture_id): the one every
    # row of the lecture has in CLINIC_BY_STUDENT
    return (
        "SELECT c.academy_id, c.lecture_id, lec.title AS lecture_title, c.bucket, c.len FROM "
        f"(SELECT academy_id, lecture_id, {bucket}END AS bucket, count(*) AS len "
        f"FROM {CLINIC_TEMP} WHERE pending_sessions > 0 GROUP BY academy_id, lecture_id, bucket) "
        "AS c LEFT JOIN raw.lectures AS lec ON lec.lecture_id = c.lecture_id "
        "ORDER BY c.academy_id, c.lecture_id, c.bucket"
    )


def _clinic_rows(con: duckdb.DuckDBPyConnection, max_rows: int) -> pl.DataFrame:
    """The first `max_rows` rows of CLINIC_BY_STUDENT, in its order: the keys are taken from
    CLINIC_TEMP (its order columns, every student), then CLINIC_BY_STUDENT is computed over
    those students' clinic links and session rows only (each row aggregates its own student's
    rows, so it is the same row as over all of them)."""
    order = CLINIC_BY_STUDENT.order_by
    con.execute(
        f"CREATE TEMP TABLE {CLINIC_SHOWN} AS SELECT academy_id, lecture_id, student_id "
        f"FROM {CLINIC_TEMP} ORDER BY {order} LIMIT {int(max_rows)}"
    )
    keys = f"SEMI JOIN {CLINIC_SHOWN} AS k USING (academy_id, lecture_id, student_id)"
    rows = clinic_by_student_select(
        links=f"(SELECT c.* FROM marts.clinic_links AS c {keys})",
        progress=f"(SELECT p.* FROM marts.session_progress AS p {keys})",
    )
    return con.execute(f"SELECT * FROM ({rows.rstrip()}) AS v ORDER BY {order}").pl()


# The weekly risk trend, counted in DuckDB (risk_log has a row per risk entry: 2.4M at L);
# weeks start on Monday (ISO), as Polars' dt.truncate("1w") does.
RISK_TREND_SQL = """
SELECT CAST(date_trunc('week', session_date) AS DATE) AS week, risk_level, count(*) AS len
FROM marts.risk_log
WHERE session_date IS NOT NULL AND ($academy IS NULL OR academy_id = $academy)
GROUP BY ALL
ORDER BY week, risk_level
"""


COUNTS_SQL = """
SELECT
    count(DISTINCT lecture_id) AS lectures,
    count(DISTINCT student_id) FILTER (WHERE status = 'ACTIVE') AS active_students,
    count(*) FILTER (WHERE status = 'ACTIVE') AS active_enrollments,
    count(*) FILTER (WHERE risk_level = 'WARNING') AS warning_enrollments,
    count(DISTINCT student_id) FILTER (WHERE risk_level = 'WARNING') AS warning_students,
    count(*) FILTER (WHERE risk_level = 'DANGER') AS danger_enrollments,
    count(DISTINCT student_id) FILTER (WHERE risk_level = 'DANGER') AS danger_students
FROM marts.lecture_progress
WHERE $academy IS NULL OR academy_id = $academy
"""


def _evaluation(con: duckdb.DuckDBPyConnection) -> pl.DataFrame | None:
    """The latest as_of of marts.rule_evaluation; None when the table is absent or empty."""
    found = con.execute(
        "SELECT 1 FROM duckdb_tables() WHERE schema_name = 'marts' "
        "AND table_name = 'rule_evaluation'"
    ).fetchone()
    if not found:
        return None
    frame = con.sql(
        "SELECT * FROM marts.rule_evaluation WHERE as_of = "
        "(SELECT max(as_of) FROM marts.rule_evaluation)"
    ).pl()
    missing = [c for c in EVALUATION_COLUMNS if c not in frame.columns]
    if missing:
        raise ReportError(
            f"marts.rule_evaluation has no column {', '.join(missing)}; "
            "run `progress evaluate` again"
        )
    return frame.select(EVALUATION_COLUMNS) if frame.height else None


def _duckdb_config(scratch: str) -> dict:
    """DuckDB bounded for the report's views: 1 GB, spilling into `scratch` beyond it (by
    default DuckDB may take 80% of the machine's memory), and 2 threads (our machines have
    two cores). Measured at M: the load takes the same CPU (2.3-2.6 s) and peak RSS (350-390
    MB) with or without these; at L they keep DuckDB's share of the load under 1 GB."""
    return {"memory_limit": "1GB", "threads": 2, "temp_directory": scratch}


def load(
    warehouse: Path,
    academy: int | None = None,
    thresholds: RiskThresholds | None = None,
    max_rows: int = DEFAULT_MAX_ROWS,
) -> ReportData:
    """Read what the report shows, read-only; ReportError with a one-line reason. The list
    tables get at most `max_rows` rows each (their totals are counted)."""
    if max_rows < 1:
        raise ReportError(f"max_rows must be at least 1, not {max_rows}")
    if not warehouse.is_file():
        raise ReportError(f"warehouse {warehouse} does not exist; run `progress run` first")
    try:
        with (
            tempfile.TemporaryDirectory(prefix="progress-report-") as scratch,
            duckdb.connect(str(warehouse), read_only=True, config=_duckdb_config(scratch)) as con,
        ):
            # no progress bar: the clinic queue's temporary table (~5 s at M) drew one on
            # stderr (a connection setting; DuckDB refuses it in the connect config)
            con.execute("SET enable_progress_bar = false")
            found = {
                r[0]
                for r in con.execute(
                    "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'marts'"
                ).fetchall()
            }
            missing = [
                t
                for t in (
                    "session_progress",
                    "lecture_progress",
                    "risk_log",
                    "clinic_links",
                    "dim_labels",
                )
                if t not in found
            ]
            if missing:
                raise ReportError(
                    f"warehouse {warehouse} has no marts."
                    f"{', marts.'.join(missing)}; run `progress run` first"
                )
            academies = [
                r[0]
                for r in con.execute(
                    "SELECT DISTINCT academy_id FROM marts.lecture_progress ORDER BY 1"
                ).fetchall()
            ]
            if academy is not None and academy not in academies:
                known = ", ".join(map(str, academies)) or "none"
                raise ReportError(f"academy {academy} is not in the warehouse (academies: {known})")
            labels = {
                (d, c): k
                for d, c, k in con.execute(
                    "SELECT domain, code, label_ko FROM marts.dim_labels"
                ).fetchall()
            }
            (as_of,) = con.execute(
                "SELECT max(calculated_at) FROM marts.lecture_progress"
            ).fetchone()
            counts = con.execute(COUNTS_SQL, {"academy": academy}).pl().row(0, named=True)
            risk_trend = con.execute(RISK_TREND_SQL, {"academy": academy}).pl()
            where = "" if academy is None else f"WHERE academy_id = {int(academy)}"
            con.execute(
                f"CREATE TEMP TABLE {CLINIC_TEMP} AS SELECT * FROM "
                f"({CLINIC_ORDER_COLUMNS.rstrip()}) AS v {where}"
            )
            pending = con.execute(CLINIC_PENDING_SQL).pl().row(0, named=True)
            at_risk_view = VIEWS["v_at_risk_students"]
            return ReportData(
                as_of=as_of.isoformat(sep=" ") if as_of else None,
                academy=academy,
                academies=academies if academy is None else [academy],
                labels=labels,
                counts={k: int(v or 0) for k, v in counts.items()},
                summary=_query(con, VIEWS["v_lecture_summary"], academy),
                funnel=_query(con, VIEWS["v_session_funnel"], academy),
                clinic=_clinic_rows(con, max_rows),
                at_risk=_query(con, at_risk_view, academy, max_rows),
                risk_trend=risk_trend,
                evaluation=_evaluation(con),
                thresholds=thresholds or RiskThresholds(),
                max_rows=max_rows,
                at_risk_total=_count(con, at_risk_view, academy),
                clinic_total=int(pending.pop("total")),
                clinic_pending={k: int(v or 0) for k, v in pending.items()},
                clinic_buckets=con.execute(_clinic_buckets_sql()).pl(),
            )
    except duckdb.Error as exc:
        raise ReportError(
            f"cannot read warehouse {warehouse}: {str(exc).strip().splitlines()[0]}"
        ) from exc


# --------------------------------------------------------------------------------------------
# Charts
# --------------------------------------------------------------------------------------------


def _lecture_names(several_academies: bool) -> pl.Expr:
    title = pl.coalesce(pl.col("lecture_title"), pl.lit("강의"))
    name = pl.format("{} (#{})", title, pl.col("lecture_id"))
    if several_academies:
        name = pl.format("학원 {} · {}", pl.col("academy_id"), name)
    return name


def _layout(fig, height: int, **extra) -> None:
    """Common layout: legend in a row above the plot, where nothing else is drawn (the
    toolbar is switched off in `render`, so it cannot cover the legend)."""
    layout = {
        "template": "plotly_white",
        "height": height,
        "font": {"family": FONT, "size": 13},
        "margin": {"l": 10, "r": 10, "t": 10, "b": 40},
        "legend": {
            "orientation": "h",
            "yanchor": "bottom",
            "y": 1.02,
            "xanchor": "left",
            "x": 0,
            "traceorder": "normal",
        },
    }
    fig.update_layout(**(layout | extra))


def _count_axis(title: str, largest: int, from_zero: bool = True) -> dict:
    """An axis of whole counts: no 0.5 ticks when the counts are small."""
    axis = {"tickformat": ",d"} | ({"rangemode": "tozero"} if from_zero else {})
    axis |= {"title": title} if title else {}
    return axis | ({"dtick": 1} if largest <= 8 else {})


def _risk_lectures(data: ReportData) -> pl.DataFrame:
    """Lectures with ACTIVE enrollments, fewest DANGER / WARNING first (drawn bottom-up)."""
    return data.summary.filter(pl.col("active_enrollments") > 0).sort(
        "danger_enrollments", "warning_enrollments"
    )


def chart_risk_by_lecture(data: ReportData):
    frame = _risk_lectures(data)
    if frame.is_empty():
        return None
    # at most CHART_LECTURES bars: the lectures with the most DANGER, then WARNING (the top)
    frame = frame.tail(CHART_LECTURES).with_columns(
        _lecture_names(len(data.academies) > 1).alias("name")
    )
    fig = go.Figure()
    for level, column in (
        ("NORMAL", "normal_enrollments"),
        ("WARNING", "warning_enrollments"),
        ("DANGER", "danger_enrollments"),
    ):
        label = data.label("risk_level", level)
        fig.add_bar(
            y=frame["name"].to_list(),
            x=frame[column].to_list(),
            orientation="h",
            name=label,
            marker_color=LEVEL_COLORS[level],
            hovertemplate=f"%{{y}}<br>{label}: %{{x}}명<extra></extra>",
        )
    _layout(
        fig,
        140 + 34 * frame.height,
        barmode="stack",
        xaxis=_count_axis(
            "수강중인 수강생 수 (강의별: 수강 1건 = 학생 1명)",
            int(frame["active_enrollments"].max()),
        ),
    )
    return fig


def _held_before_today(data: ReportData) -> pl.DataFrame:
    """Held sessions of lectures with ACTIVE enrollments, today's (in progress) left out."""
    held = data.funnel.filter(pl.col("held") & (pl.col("active_enrollments") > 0))
    return held.filter(
        pl.col("session_date").is_null() | (pl.col("session_date") != pl.lit(data.today))
    )


def _in_progress(data: ReportData) -> pl.DataFrame:
    return data.funnel.filter(
        pl.col("held")
        & (pl.col("active_enrollments") > 0)
        & (pl.col("session_date") == pl.lit(data.today))
    )


def chart_funnel(data: ReportData):
    held = _held_before_today(data)
    if held.is_empty():
        return None
    by_order = (
        held.group_by("session_order")
        .agg(
            pl.col("active_enrollments").sum(),
            *(pl.col(f"{s}_count").sum() for s, _, _ in STAGES),
        )
        .sort("session_order")
    )
    x = [f"{n}차시" for n in by_order["session_order"]]
    fig = go.Figure()
    for stage, label, color in STAGES:
        share = (by_order[f"{stage}_count"] / by_order["active_enrollments"]).to_list()
        fig.add_bar(
            x=x,
            y=share,
            name=label,
            marker_color=color,
            customdata=list(
                zip(
                    by_order[f"{stage}_count"].to_list(),
                    by_order["active_enrollments"].to_list(),
                    strict=True,
                )
            ),
            hovertemplate=(
                f"%{{x}} {label}: %{{y:.0%}} "
                "(%{customdata[0]}/%{customdata[1]}명)<extra></extra>"
            ),
        )
    _layout(
        fig,
        420,
        barmode="group",
        yaxis={"tickformat": ".0%", "range": [0, 1.05]},
        xaxis_title="차시 순서",
    )
    return fig


def _completion_lectures(data: ReportData) -> pl.DataFrame:
    """The lectures the completion chart can draw (held sessions before today), the most
    at-risk enrollments first: academy_id, lecture_id."""
    held = _held_before_today(data).select("academy_id", "lecture_id").unique()
    at_risk = data.summary.select(
        "academy_id",
        "lecture_id",
        (pl.col("danger_enrollments") + pl.col("warning_enrollments")).alias("at_risk"),
        "danger_enrollments",
    )
    return (
        held.join(at_risk, on=["academy_id", "lecture_id"], how="left")
        .sort(
            "at_risk",
            "danger_enrollments",
            "academy_id",
            "lecture_id",
            descending=[True, True, False, False],
            nulls_last=True,
        )
        .select("academy_id", "lecture_id")
    )


def chart_completion_by_lecture(data: ReportData):
    held = _held_before_today(data)
    if held.is_empty():
        return None
    several = len(data.academies) > 1
    lectures = _completion_lectures(data)
    if lectures.height > CHART_LECTURES:  # one line per lecture: the most at-risk ones
        held = held.join(lectures.head(CHART_LECTURES), on=["academy_id", "lecture_id"])
    held = held.with_columns(_lecture_names(several).alias("name"))
    fig = go.Figure()
    for (name,), part in held.sort("session_order", "session_id").group_by(
        "name", maintain_order=True
    ):
        fig.add_scatter(
            x=part["session_order"].to_list(),
            y=part["completed_share"].to_list(),
            mode="lines+markers",
            name=name,
            hovertemplate=f"{html.escape(name)}<br>%{{x}}차시 완료율 %{{y:.0%}}<extra></extra>",
        )
    today = _in_progress(data)
    if lectures.height > CHART_LECTURES:
        today = today.join(lectures.head(CHART_LECTURES), on=["academy_id", "lecture_id"])
    today = today.with_columns(_lecture_names(several).alias("name"))
    if today.height:
        fig.add_scatter(
            x=today["session_order"].to_list(),
            y=today["completed_share"].to_list(),
            mode="markers",
            name="오늘 진행 중 (완료 집계 전)",
            marker={"symbol": "circle-open", "size": 11, "color": "#78909c", "line": {"width": 2}},
            text=today["name"].to_list(),
            hovertemplate="%{text}<br>%{x}차시: 오늘 진행 중, 지금까지 %{y:.0%} 완료"
            "<extra></extra>",
        )
    _layout(
        fig,
        460 + 22 * ((held["name"].n_unique() + 1) // 2),
        yaxis={"tickformat": ".0%", "range": [0, 1.05]},
        # the legend goes below the plot, where an axis title would collide with it
        xaxis=_count_axis("", int(held["session_order"].max()), from_zero=False)
        | {"ticksuffix": "차시"},
        legend={
            "orientation": "h",
            "yanchor": "top",
            "y": -0.08,
            "xanchor": "left",
            "x": 0,
            "entrywidth": 280,
        },
        margin={"l": 10, "r": 10, "t": 10, "b": 10},
    )
    return fig


def _clinic_lectures(data: ReportData) -> tuple[pl.DataFrame, pl.Series]:
    """The clinic chart's counts (name, bucket, len) and its lectures' names, the fewest
    waiting students first (drawn bottom-up); counted in DuckDB over the whole queue."""
    counts = data.clinic_buckets.with_columns(
        _lecture_names(len(data.academies) > 1).alias("name")
    ).select("name", "bucket", "len")
    order = counts.group_by("name").agg(pl.col("len").sum()).sort("len", "name")["name"]
    return counts, order


def chart_clinic_waiting(data: ReportData):
    counts, order = _clinic_lectures(data)
    if order.is_empty():
        return None
    if order.len() > CHART_LECTURES:  # the lectures with the most waiting students
        order = order.tail(CHART_LECTURES)
        counts = counts.filter(pl.col("name").is_in(order.implode()))
    fig = go.Figure()
    for label, _, color in [*WAIT_BUCKETS, ("날짜 없음", None, "#bdbdbd")]:
        part = counts.filter(pl.col("bucket") == label)
        if part.is_empty():
            continue
        found = dict(zip(part["name"].to_list(), part["len"].to_list(), strict=True))
        fig.add_bar(
            y=order.to_list(),
            x=[found.get(n, 0) for n in order],
            orientation="h",
            name=label,
            marker_color=color,
            hovertemplate=f"%{{y}}<br>{label}: %{{x}}명<extra></extra>",
        )
    _layout(
        fig,
        140 + 34 * order.len(),
        barmode="stack",
        showlegend=True,
        legend_title_text="가장 오래 기다린 차시:",
        xaxis=_count_axis("클리닉 대기 학생 수", int(counts["len"].max())),
    )
    return fig


def chart_risk_trend(data: ReportData):
    weekly = data.risk_trend
    if weekly.is_empty():
        return None
    weeks = weekly["week"].unique().sort().to_list()
    fig = go.Figure()
    for level in ("WARNING", "DANGER"):
        part = weekly.filter(pl.col("risk_level") == level)
        found = dict(zip(part["week"].to_list(), part["len"].to_list(), strict=True))
        label = data.label("risk_level", level)
        fig.add_bar(
            x=[w.isoformat() for w in weeks],
            y=[found.get(w, 0) for w in weeks],
            name=f"{label} 진입",
            marker_color=LEVEL_COLORS[level],
            hovertemplate=f"%{{x}} 주: {label} 진입 %{{y}}건<extra></extra>",
        )
    largest = int(weekly.group_by("week").agg(pl.col("len").sum())["len"].max())
    _layout(
        fig,
        400,
        barmode="stack",
        xaxis={"title": "주 (월요일 시작)", "type": "category"},
        yaxis=_count_axis("진입 건수 (수강)", largest),
    )
    return fig


EVAL_LEVELS = {
    "WARNING": ("주의 이상으로 표시", "#ffb300", "warning_streak"),
    "DANGER": ("위험으로 표시", "#e53935", "danger_streak"),
}


LEVEL_KO = (
    pl.col("level")
    .replace_strict({k: v[0] for k, v in EVAL_LEVELS.items()}, default=pl.col("level"))
    .alias("level_ko")
)


def _sweep(data: ReportData) -> pl.DataFrame:
    """The threshold sweep the page shows: the academy's own rows for an academy report, else
    the rows for all academies together; `configured` marks the configured pair."""
    frame = data.evaluation
    if data.academy is None:
        frame = frame.filter(pl.col("scope") == "all")
    else:
        frame = frame.filter((pl.col("scope") == "academy") & (pl.col("scope_id") == data.academy))
    return frame.with_columns(
        (
            (pl.col("warning_streak") == data.thresholds.warning)
            & (pl.col("danger_streak") == data.thresholds.danger)
        ).alias("configured"),
        pl.lit(data.academy).alias("academy_id"),
        LEVEL_KO,
    ).sort("level", "warning_streak", "danger_streak", descending=[True, False, False])


def chart_evaluation(data: ReportData):
    if data.evaluation is None:
        return None
    sweep = _sweep(data).filter(pl.col("precision").is_not_null() & pl.col("recall").is_not_null())
    if sweep.is_empty():
        return None
    # A level's flag depends on its own threshold only (WARNING or higher once the streak
    # reaches warning_streak, DANGER once it reaches danger_streak), so both levels trace the
    # same curve over the streak t: one line, each point labelled with t, the configured
    # thresholds starred.
    curve = (
        sweep.with_columns(
            pl.when(pl.col("level") == "WARNING")
            .then(pl.col("warning_streak"))
            .otherwise(pl.col("danger_streak"))
            .alias("t")
        )
        .sort("t", pl.col("level") == "DANGER")
        .unique("t", keep="first", maintain_order=True)
    )
    hover = (
        "연속 %{customdata[0]}차시 이상이면 표시<br>정밀도 %{y:.0%} · 재현율 %{x:.0%}"
        "<br>F1 %{customdata[1]:.2f} · TP %{customdata[2]} FP %{customdata[3]} "
        "FN %{customdata[4]}<extra></extra>"
    )
    columns = ["t", "f1", "tp", "fp", "fn"]
    fig = go.Figure()
    fig.add_scatter(
        x=curve["recall"].to_list(),
        y=curve["precision"].to_list(),
        mode="lines+markers+text",
        text=[f"{t}" for t in curve["t"]],
        textposition="top center",
        name="연속 n차시 이상이면 표시 (점 옆 숫자 = n)",
        line={"color": "#546e7a"},
        customdata=curve.select(columns).rows(),
        hovertemplate=hover,
    )
    t = data.thresholds
    for level, value, label in (("WARNING", t.warning, "주의"), ("DANGER", t.danger, "위험")):
        mine = curve.filter(pl.col("t") == value)
        if mine.height:
            fig.add_scatter(
                x=mine["recall"].to_list(),
                y=mine["precision"].to_list(),
                mode="markers",
                name=f"현재 {label} 기준 ({value}차시)",
                marker={"symbol": "star", "size": 16, "color": EVAL_LEVELS[level][1]},
                customdata=mine.select(columns).rows(),
                hovertemplate=hover,
            )
    _layout(
        fig,
        440,
        xaxis={
            "title": "재현율 (실패 학생 중 미리 표시된 비율)",
            "tickformat": ".0%",
            "range": [-0.02, 1.05],
        },
        yaxis={
            "title": "정밀도 (표시된 학생 중 실제 실패 비율)",
            "tickformat": ".0%",
            "range": [-0.02, 1.05],
        },
    )
    return fig


CHARTS = {  # key: (title, builder, sentence when there is nothing to draw)
    "clinic": (
        "강의별 클리닉 대기 학생 (가장 오래 기다린 차시 기준)",
        chart_clinic_waiting,
        "승인 대기 중인 클리닉이 없습니다.",
    ),
    "risk": (
        "강의별 위험 단계 (수강중 학생)",
        chart_risk_by_lecture,
        "수강중 학생이 있는 강의가 없습니다.",
    ),
    "completion": (
        "강의별 차시 완료율 (진행된 차시)",
        chart_completion_by_lecture,
        "아직 진행된 차시가 없습니다.",
    ),
    "funnel": (
        "차시 순서별 완료 퍼널 (진행된 차시, 수강중 학생 기준)",
        chart_funnel,
        "아직 진행된 차시가 없습니다.",
    ),
    "trend": (
        "위험 추이: 주별 주의·위험 진입 건수 (차시 날짜 기준)",
        chart_risk_trend,
        "위험 이력(risk_log)에 날짜가 있는 기록이 없어 추이를 그리지 않았습니다.",
    ),
    "evaluation": (
        "위험 기준 평가: 정밀도와 재현율 (기준별)",
        chart_evaluation,
        "결과(outcomes)가 제공되지 않아 위험 기준을 평가하지 않았습니다.",
    ),
}


# --------------------------------------------------------------------------------------------
# Page
# --------------------------------------------------------------------------------------------


def _kpis(data: ReportData) -> str:
    c = data.counts
    pending = data.clinic_pending
    warn, danger = data.label("risk_level", "WARNING"), data.label("risk_level", "DANGER")
    items = [
        ("", "강의", f"{c['lectures']:,}", "수강생이 있는 강의"),
        (
            "",
            "수강중 학생",
            f"{c['active_students']:,}명",
            f"수강중 수강 {c['active_enrollments']:,}건 (한 학생이 여러 강의 수강 가능)",
        ),
        (
            "warn",
            f"{warn} 수강",
            f"{c['warning_enrollments']:,}건",
            f"학생 {c['warning_students']:,}명 (수강 건수 기준 카드)",
        ),
        (
            "danger",
            f"{danger} 수강",
            f"{c['danger_enrollments']:,}건",
            f"학생 {c['danger_students']:,}명 (수강 건수 기준 카드)",
        ),
        (
            "",
            "클리닉 대기 학생",
            f"{pending['students']:,}명",
            f"학생·강의 {pending['lines']:,}줄 · 대기 차시 {pending['sessions']:,}개",
        ),
        (
            "",
            "오늘 진행 중 차시",
            f"{_in_progress(data).height:,}개",
            "완료 집계 전: 실패로 세지 않음",
        ),
    ]
    return (
        '<div class="kpis" id="cards">'
        + "".join(
            f'<div class="kpi {cls}">{html.escape(label)}<b>{html.escape(value)}</b>'
            f"<small>{html.escape(small)}</small></div>"
            for cls, label, value, small in items
        )
        + "</div>"
    )


def _section(key: str, title: str, lead: str, body: str) -> str:
    lead_html = f'<p class="lead">{html.escape(lead)}</p>' if lead else ""
    return f'<section id="{key}"><h2>{html.escape(title)}</h2>{lead_html}{body}</section>'


def _capped(shown: int, total: int | None) -> bool:
    return total is not None and total > shown


def _cap_note(shown: int, total: int | None, unit: str = "건") -> str:
    """The sentence under a capped list table ("" when the table holds the whole list)."""
    if not _capped(shown, total):
        return ""
    return (
        f'<p class="note">이 페이지에는 가장 급한 {shown:,}{unit}만 싣습니다 (전체 {total:,}{unit}). '
        f"{FULL_LISTS}</p>"
    )


def _at_risk_section(data: ReportData) -> str:
    shown, total = data.at_risk.height, data.at_risk_total
    title = (
        f"주의·위험 수강 (상위 {shown:,}건 / 전체 {total:,}건)"
        if _capped(shown, total)
        else f"주의·위험 수강 전체 ({shown:,}건)"
    )
    if data.at_risk.is_empty():
        return _section(
            "students", title, "", '<p class="note">주의·위험 단계의 수강이 없습니다.</p>'
        )
    columns = [
        Column("risk_level_ko", "위험 단계"),
        Column("reason", "사유"),
        Column("streak", "연속", "num"),
        Column("lecture_title", "강의"),
        Column("student_id", "학생", "id"),
        Column("enrollment_id", "수강", "id"),
        Column("risk_since_session_order", "시작 차시", "num"),
        Column("last_session_order", "마지막 차시", "num"),
        Column("days_since_last_activity", "무활동 일수", "num"),
        Column("completion_rate", "완료율", "pct"),
        Column("avg_exam_score", "평균 점수", "num"),
    ]
    if len(data.academies) > 1:
        columns.insert(3, Column("academy_id", "학원", "id"))
    lead = (
        "수강중인 수강 가운데 현재 주의·위험 단계인 모든 건입니다 (한 줄 = 학생 한 명의 한 강의). "
        "위험 먼저, 연속 차시가 긴 순서. 검색어와 학원으로 거를 수 있습니다."
    )
    return _section(
        "students",
        title,
        lead,
        data_table(
            "t-atrisk", data.at_risk, columns, data.academies, "검색: 학생 번호, 강의, 사유, 위험…"
        )
        + _cap_note(shown, total),
    )


def _clinic_section(data: ReportData, chart: str) -> str:
    frame = data.clinic.with_columns(
        pl.when(pl.col("approved"))
        .then(pl.format("승인 {}건", pl.col("approved_links")))
        .otherwise(pl.lit("미승인"))
        .alias("approved_text")
    )
    columns = [
        Column("lecture_title", "강의"),
        Column("student_id", "학생", "id"),
        Column("pending_sessions", "대기 차시", "num"),
        Column("oldest_pending_session_order", "가장 오래된 차시", "num"),
        Column("oldest_pending_session_date", "그 차시 날짜", "date"),
        Column("days_waiting", "대기 일수", "num"),
        Column("latest_failed_session_order", "최근 미완료 차시", "num"),
        Column("latest_failed_session_date", "최근 미완료 날짜", "date"),
        Column("approved_text", "클리닉 승인"),
        Column("pending_reasons", "대기 사유"),
        Column("in_progress_sessions", "오늘 진행 중", "num"),
        Column("risk_level_ko", "위험 단계"),
        Column("status_ko", "수강 상태"),
    ]
    if len(data.academies) > 1:
        columns.insert(0, Column("academy_id", "학원", "id"))
    lead = (
        "한 줄 = 학생 한 명의 한 강의. 대기 = 승인되지 않은 클리닉 대상 차시 "
        "(오늘 진행 중인 차시의 자동 미통과는 제외하고 '오늘 진행 중'에 따로 셉니다). "
        "대기가 있는 줄이 먼저, 오래 기다린 순서입니다."
    )
    shown, total = frame.height, data.clinic_total
    table = (
        data_table(
            "t-clinic", frame, columns, data.academies, "검색: 학생 번호, 강의, 사유, 미승인…"
        )
        + _cap_note(shown, total, "줄")
        if frame.height
        else '<p class="note">클리닉 대상이 없습니다.</p>'
    )
    return _section(
        "clinic",
        f"클리닉 대기열 (학생·강의 상위 {shown:,}줄 / 전체 {total:,}줄)"
        if _capped(shown, total)
        else f"클리닉 대기열 (학생·강의 {shown:,}줄)",
        lead,
        chart + "<h3>학생별 클리닉 대기열</h3>" + table,
    )


def _best(sweep: pl.DataFrame, level: str) -> str:
    part = sweep.filter(pl.col("level") == level)
    lines = []
    b = best_row(part, "f1")
    if b is not None:
        lines.append(
            f"F1 최대: 주의 {b['warning_streak']} · 위험 {b['danger_streak']} "
            f"(F1 {b['f1']:.2f}, 정밀도 {b['precision']:.0%}, 재현율 {b['recall']:.0%})"
        )
    p = best_row(part.filter(pl.col("precision") >= PRECISION_FLOOR), "recall")
    if p is not None:
        lines.append(
            f"정밀도 {PRECISION_FLOOR:.0%} 이상 중 재현율 최대: 주의 {p['warning_streak']} · "
            f"위험 {p['danger_streak']} (재현율 {p['recall']:.0%})"
        )
    else:
        lines.append(f"정밀도 {PRECISION_FLOOR:.0%} 이상인 기준 없음")
    return f"<li><b>{EVAL_LEVELS[level][0]}</b>: " + "; ".join(lines) + "</li>"


def _evaluation_section(data: ReportData, chart: str, title: str) -> str:
    if data.evaluation is None:
        return _section(
            "evaluation",
            title,
            "",
            f'<p class="note">{CHARTS["evaluation"][2]} '
            "(outcomes 추출을 넣고 <code>progress run</code> 또는 <code>progress evaluate</code>를 "
            "실행하면 "
            "이 자리에 기준별 정밀도·재현율이 나옵니다.)</p>",
        )
    sweep = _sweep(data)
    as_of = str(data.evaluation["as_of"][0])[:19]
    if sweep.is_empty():
        return _section(
            "evaluation",
            title,
            "",
            f'<p class="note">기준 시각 {as_of}의 평가에 이 학원의 결과가 없습니다.</p>',
        )
    mine = sweep.filter(pl.col("configured") & (pl.col("level") == "WARNING")).head(1)
    facts = ""
    if mine.height:
        m = mine.row(0, named=True)
        base = f"{m['base_rate']:.0%}" if m["base_rate"] is not None else "-"
        facts = (
            f"평가 대상 {m['population']:,}건 (수강중, 결과 PASS/FAIL), 실패 비율 {base}, "
            f"중도 포기(WITHDRAWN) {m['withdrawn']:,}건은 따로 셈. "
        )
    lead = (
        f"결과가 정해진 수강에 대해, 기준 시각 {as_of}에 각 기준이 표시했을 학생과 실제 결과를 "
        "비교했습니다. "
        + facts
        + "정밀도 = 표시된 수강 중 실제로 실패한 비율, 재현율 = 실패한 수강 중 "
        "미리 표시된 비율. ★ = 현재 설정."
    )
    thresholds = [
        Column("warning_streak", "주의 기준", "num"),
        Column("danger_streak", "위험 기준", "num"),
    ]
    figures = [
        Column("population", "대상", "num"),
        Column("tp", "TP", "num"),
        Column("fp", "FP", "num"),
        Column("fn", "FN", "num"),
        Column("tn", "TN", "num"),
        Column("precision", "정밀도", "pct"),
        Column("recall", "재현율", "pct"),
        Column("f1", "F1", "ratio"),
        Column("accuracy", "정확도", "pct"),
        Column("base_rate", "실패 비율", "pct"),
        Column("withdrawn", "포기", "num"),
        Column("withdrawn_flagged", "포기 중 표시", "num"),
        Column("median_lead_days", "선행 일수(중앙값)", "num"),
    ]
    level_column = [Column("level_ko", "표시 기준")]
    best = "<ul>" + "".join(_best(sweep, level) for level in EVAL_LEVELS) + "</ul>"
    table = data_table(
        "t-eval",
        sweep,
        level_column + thresholds + figures,
        [],
        "검색: 주의, 위험…",
        marked="configured",
    )
    body = chart + best + "<h3>모든 기준 (노란 줄 = 현재 설정)</h3>" + table
    scopes = _scopes(data)
    if scopes.height:
        t = data.thresholds
        body += (
            f"<h3>학원·강의별 (현재 설정: 주의 {t.warning} · 위험 {t.danger})</h3>"
            + data_table(
                "t-eval-scopes",
                scopes.head(data.max_rows),
                [Column("scope_name", "학원·강의"), *level_column, *figures],
                data.academies,
                "검색: 강의 이름, 학원…",
            )
            + (
                f'<p class="note">이 페이지에는 처음 {data.max_rows:,}줄만 싣습니다 '
                f"(전체 {scopes.height:,}줄; <code>progress sql</code>로 "
                "marts.rule_evaluation 전체를 볼 수 있습니다).</p>"
                if scopes.height > data.max_rows
                else ""
            )
        )
    return _section("evaluation", title, lead, body)


def _scopes(data: ReportData) -> pl.DataFrame:
    """The configured thresholds' rows per academy and per lecture of the report's academies."""
    lectures = data.summary.select(
        pl.col("lecture_id").alias("scope_id"),
        pl.col("academy_id").alias("lecture_academy"),
        pl.format("강의 {} (#{})", pl.coalesce("lecture_title", pl.lit("")), "lecture_id").alias(
            "lecture_name"
        ),
    )
    frame = data.evaluation.filter(
        pl.col("scope").is_in(["academy", "lecture"])
        & (pl.col("warning_streak") == data.thresholds.warning)
        & (pl.col("danger_streak") == data.thresholds.danger)
    ).join(lectures, on="scope_id", how="left")
    is_academy = pl.col("scope") == "academy"
    return (
        frame.with_columns(
            pl.when(is_academy).then(pl.col("scope_id")).otherwise("lecture_academy")
            .alias("academy_id"),
            pl.when(is_academy).then(pl.format("학원 {} 전체", "scope_id"))
            .otherwise("lecture_name").alias("scope_name"),
            LEVEL_KO,
        )
        .filter(pl.col("academy_id").is_in(data.academies))
        .sort("academy_id", is_academy, "scope_id", "level",
              descending=[False, True, False, True])
    )  # fmt: skip


def _chart_div(key: str, fig) -> str:
    # No toolbar: it would cover the legend, and every chart's figures are in its hover texts.
    config = {"displaylogo": False, "displayModeBar": False, "responsive": True, "locale": "ko"}
    return pio.to_html(
        fig,
        config=config,
        include_plotlyjs=False,
        full_html=False,
        div_id=f"chart-{key}",
        default_height=f"{fig.layout.height}px",
        post_script="window.progressChartDrawn('{plot_id}');",
    )


LEADS = {
    "risk": "강의마다 수강중 학생을 현재 위험 단계로 나눴습니다 (마트 기준, 오늘 진행 중인 차시 포함).",
    "completion": "차시마다 수강중 학생 중 그 차시를 완료한 비율. 오늘 진행 중인 차시는 선에서 빼고 "
    "빈 원으로 따로 표시합니다 (학생들이 아직 끝내는 중).",
    "funnel": "차시 순서마다 영상 → 시험 → 과제 → 차시 완료 비율 (오늘 진행 중인 차시 제외).",
    "trend": "주마다 학생이 주의 또는 위험 단계에 새로 들어간 건수 (risk_log).",
}


def _chart_cap_note(data: ReportData, key: str) -> str:
    """The sentence above a per-lecture chart that draws CHART_LECTURES of more lectures."""
    if key == "risk":
        total, rule = _risk_lectures(data).height, "위험·주의 수강이 많은"
    elif key == "completion":
        total, rule = _completion_lectures(data).height, "위험·주의 수강이 많은"
    elif key == "clinic":
        total, rule = _clinic_lectures(data)[1].len(), "클리닉 대기 학생이 많은"
    else:
        return ""
    if total <= CHART_LECTURES:
        return ""
    one = (
        ""
        if data.academy is not None
        else "; 학원 하나만: <code>progress report --academy N</code>"
    )
    return (
        f'<p class="note">강의 {total:,}개 가운데 {rule} {CHART_LECTURES}개만 그렸습니다 '
        f"(showing the {CHART_LECTURES} of {total:,} lectures that rank first{one}).</p>"
    )


def render(data: ReportData) -> tuple[str, list[str], list[str]]:
    """The page's HTML, the titles of the charts drawn and of those replaced by a note."""
    parts, drawn, notes = render_parts(data)
    return "".join(parts), drawn, notes


def render_parts(data: ReportData) -> tuple[list[str], list[str], list[str]]:
    """`render` with the page in pieces (head, each section, tail), so `write_report` writes
    them one by one instead of joining and encoding the whole page (79 MB at M) at once."""
    drawn, notes, charts = [], [], {}
    for key, (title, build, note) in CHARTS.items():
        fig = build(data)
        if fig is None:
            notes.append(title)
            charts[key] = f'<p class="note">{html.escape(note)}</p>'
        else:
            drawn.append(title)
            charts[key] = _chart_cap_note(data, key) + _chart_div(key, fig)
    sections = [
        _at_risk_section(data),
        _clinic_section(data, charts["clinic"]),
        *(
            _section(key, CHARTS[key][0], LEADS[key], charts[key])
            for key in ("risk", "completion", "funnel", "trend")
        ),
        _evaluation_section(data, charts["evaluation"], CHARTS["evaluation"][0]),
    ]
    nav = "".join(
        f'<a href="#{key}">{html.escape(text)}</a>'
        for key, text in (
            ("students", "주의·위험 수강"),
            ("clinic", "클리닉 대기열"),
            ("risk", "강의별 위험"),
            ("completion", "차시 완료율"),
            ("funnel", "완료 퍼널"),
            ("trend", "위험 추이"),
            ("evaluation", "위험 기준 평가"),
        )
    )
    scope = (
        f"학원 {data.academy}"
        if data.academy is not None
        else ("전체 학원 (" + ", ".join(map(str, data.academies)) + ")")
    )
    as_of = (data.as_of or "-")[:19]  # to the second
    head = f"""<!DOCTYPE html>
<html lang="ko">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>학원 진도 리포트 · {html.escape(scope)} · {html.escape(as_of)}</title>
<style>{STYLE}</style>
</head>
<body data-charts-expected="{len(drawn)}">
<script>{HARNESS}</script>
<script>{TABLE_JS}</script>
<script id="plotlyjs">{get_plotlyjs()}</script>
<header><h1>학원 진도 리포트</h1>
<p>{html.escape(scope)} · 기준 시각(as-of) {html.escape(as_of)} · 모든 수치는 이 시각의 마트 기준입니다.
오늘({html.escape(as_of[:10])}) 진행된 차시는 '진행 중'으로 표시합니다.</p>
</header>
<nav>{nav}</nav>
<main>
{_kpis(data)}
"""
    tail = """
</main>
<footer>academy-progress · marts.v_at_risk_students, v_lecture_summary, v_session_funnel,
clinic_links, risk_log, rule_evaluation · 차트: Plotly (오프라인 내장)</footer>
</body>
</html>
"""
    return [head, *sections, tail], drawn, notes


def write_report(
    warehouse: Path,
    out: Path,
    academy: int | None = None,
    thresholds: RiskThresholds | None = None,
    max_rows: int = DEFAULT_MAX_ROWS,
) -> ReportResult:
    """Render the report for the warehouse (one academy or all) into `out`, atomically; each
    list table holds at most `max_rows` rows."""
    data = load(Path(warehouse), academy, thresholds, max_rows)
    parts, drawn, notes = render_parts(data)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(f".{out.name}.tmp")
    with staging.open("w", encoding="utf-8") as handle:
        for part in parts:
            handle.write(part)
    staging.replace(out)
    return ReportResult(path=out, charts=drawn, notes=notes, academy=academy, as_of=data.as_of)
