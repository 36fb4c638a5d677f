"""`progress report`: one self-contained HTML page of charts for academy directors (issue 6).

The page opens offline: Plotly's JavaScript is inlined from the `plotly` Python package (no CDN),
no font or image is fetched (system fonts only), and a Content-Security-Policy meta tag forbids
the browser from loading anything at all, so a page that would reach the network cannot draw.

Charts (Korean labels from `marts.dim_labels`), all read from the analyst views' SQL and
`marts.risk_log`, as of the marts' calculated_at:

1. risk levels per lecture (ACTIVE enrollments: 정상 / 주의 / 위험);
2. the completion funnel by session order (video, exam, homework, session, held sessions);
3. the session completion rate per lecture by session order;
4. the clinic queue: links pending approval per lecture and reason (plus the oldest ones);
5. the risk trend: entries into 주의 / 위험 per week of session_date (when risk_log has any).

A chart with nothing to show is replaced by a sentence. Each drawn chart increments
`document.body.dataset.chartsDrawn` after Plotly has rendered its SVG; `data-charts-expected`
on <body> tells how many to expect (the browser test compares them).
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from datetime import datetime, time
from pathlib import Path

import duckdb
import plotly.graph_objects as go
import plotly.io as pio
import polars as pl
from plotly.offline import get_plotlyjs

from pipelines.core.views import view_query

CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "img-src data: blob:; font-src data:; connect-src 'none'; base-uri 'none'; form-action 'none'"
)
FONT = "'Noto Sans KR', 'Malgun Gothic', 'Apple SD Gothic Neo', 'Nanum Gothic', sans-serif"
LEVEL_COLORS = {"NORMAL": "#4caf50", "WARNING": "#ffb300", "DANGER": "#e53935"}
REASON_COLORS = {
    "AUTO_FAILED": "#5c6bc0", "AUTO_RISK": "#e53935",
    "MANUAL_REQUEST": "#26a69a", "TEACHER_RECOMMEND": "#8d6e63",
}
STAGES = [  # (view column prefix, Korean label, color)
    ("video_completed", "영상 완료", "#90caf9"),
    ("exam_passed", "시험 통과", "#64b5f6"),
    ("homework_passed", "과제 통과", "#1e88e5"),
    ("completed", "차시 완료", "#0d47a1"),
]
TABLE_ROWS = 20


class ReportError(Exception):
    """The report could not be made; the message is one line for the user."""


@dataclass
class ReportData:
    as_of: str | None
    academy: int | None
    academies: list[int]
    labels: dict[tuple[str, str], str]
    summary: pl.DataFrame
    funnel: pl.DataFrame
    queue: pl.DataFrame
    at_risk: pl.DataFrame
    risk_log: pl.DataFrame

    def label(self, domain: str, code: str | None) -> str:
        if code is None:
            return ""
        return self.labels.get((domain, code), code)


@dataclass
class ReportResult:
    path: Path
    charts: list[str] = field(default_factory=list)  # titles of the charts drawn
    notes: list[str] = field(default_factory=list)  # charts replaced by a sentence
    academy: int | None = None
    as_of: str | None = None


def _view(con: duckdb.DuckDBPyConnection, name: str, academy: int | None) -> pl.DataFrame:
    frame = con.sql(view_query(name)).pl()
    return frame if academy is None else frame.filter(pl.col("academy_id") == academy)


def load(warehouse: Path, academy: int | None = None) -> ReportData:
    """Read what the report shows, read-only; ReportError with a one-line reason."""
    if not warehouse.is_file():
        raise ReportError(f"warehouse {warehouse} does not exist; run `progress run` first")
    try:
        with duckdb.connect(str(warehouse), read_only=True) as con:
            found = {r[0] for r in con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'marts'").fetchall()}
            missing = [t for t in ("session_progress", "lecture_progress", "risk_log",
                                   "clinic_links", "dim_labels") if t not in found]
            if missing:
                raise ReportError(f"warehouse {warehouse} has no marts."
                                  f"{', marts.'.join(missing)}; run `progress run` first")
            academies = [r[0] for r in con.execute(
                "SELECT DISTINCT academy_id FROM marts.lecture_progress ORDER BY 1").fetchall()]
            if academy is not None and academy not in academies:
                known = ", ".join(map(str, academies)) or "none"
                raise ReportError(f"academy {academy} is not in the warehouse "
                                  f"(academies: {known})")
            labels = {(d, c): k for d, c, k in con.execute(
                "SELECT domain, code, label_ko FROM marts.dim_labels").fetchall()}
            (as_of,) = con.execute(
                "SELECT max(calculated_at) FROM marts.lecture_progress").fetchone()
            risk_log = con.sql(
                "SELECT r.*, l.title AS lecture_title FROM marts.risk_log AS r "
                "LEFT JOIN raw.lectures AS l USING (lecture_id) "
                "ORDER BY enrollment_id, session_order, session_id").pl()
            if academy is not None:
                risk_log = risk_log.filter(pl.col("academy_id") == academy)
            return ReportData(
                as_of=as_of.isoformat(sep=" ") if as_of else None,
                academy=academy,
                academies=academies if academy is None else [academy],
                labels=labels,
                summary=_view(con, "v_lecture_summary", academy),
                funnel=_view(con, "v_session_funnel", academy),
                queue=_view(con, "v_clinic_queue", academy),
                at_risk=_view(con, "v_at_risk_students", academy),
                risk_log=risk_log,
            )
    except duckdb.Error as exc:
        raise ReportError(f"cannot read warehouse {warehouse}: "
                          f"{str(exc).strip().splitlines()[0]}") from exc


# --------------------------------------------------------------------------------------------
# Charts
# --------------------------------------------------------------------------------------------


def _lecture_names(frame: pl.DataFrame, several_academies: bool) -> pl.Expr:
    title = pl.coalesce(pl.col("lecture_title"), pl.lit("강의"))
    name = pl.format("{} (#{})", title, pl.col("lecture_id"))
    if several_academies:
        name = pl.format("학원 {} · {}", pl.col("academy_id"), name)
    return name


def _layout(fig, height: int, **extra) -> None:
    layout = {
        "template": "plotly_white",
        "height": height,
        "font": {"family": FONT, "size": 13},
        "margin": {"l": 10, "r": 10, "t": 36, "b": 40},
        "legend": {"orientation": "h", "yanchor": "bottom", "y": 1.0, "xanchor": "right", "x": 1,
                   "traceorder": "normal"},
    }
    fig.update_layout(**(layout | extra))


def chart_risk_by_lecture(data: ReportData):
    frame = data.summary.filter(pl.col("active_enrollments") > 0)
    if frame.is_empty():
        return None
    frame = frame.with_columns(
        _lecture_names(frame, len(data.academies) > 1).alias("name")
    ).sort("danger_enrollments", "warning_enrollments", descending=[False, False])
    fig = go.Figure()
    for level, column in (("NORMAL", "normal_enrollments"), ("WARNING", "warning_enrollments"),
                          ("DANGER", "danger_enrollments")):
        label = data.label("risk_level", level)
        fig.add_bar(
            y=frame["name"].to_list(), x=frame[column].to_list(), orientation="h",
            name=label, marker_color=LEVEL_COLORS[level],
            hovertemplate=f"%{{y}}<br>{label}: %{{x}}명<extra></extra>",
        )
    _layout(fig, 120 + 34 * frame.height,
            barmode="stack", xaxis_title="학생 수")
    return fig


def _held_funnel(data: ReportData) -> pl.DataFrame:
    return data.funnel.filter(pl.col("held") & (pl.col("active_enrollments") > 0))


def chart_funnel(data: ReportData):
    held = _held_funnel(data)
    if held.is_empty():
        return None
    by_order = held.group_by("session_order").agg(
        pl.col("active_enrollments").sum(),
        *(pl.col(f"{s}_count").sum() for s, _, _ in STAGES),
    ).sort("session_order")
    x = [f"{n}차시" for n in by_order["session_order"]]
    fig = go.Figure()
    for stage, label, color in STAGES:
        share = (by_order[f"{stage}_count"] / by_order["active_enrollments"]).to_list()
        fig.add_bar(
            x=x, y=share, name=label, marker_color=color,
            customdata=list(zip(by_order[f"{stage}_count"].to_list(),
                                by_order["active_enrollments"].to_list(), strict=True)),
            hovertemplate=(f"%{{x}} {label}: %{{y:.0%}} "
                           "(%{customdata[0]}/%{customdata[1]}명)<extra></extra>"),
        )
    _layout(fig, 420,
            barmode="group", yaxis={"tickformat": ".0%", "range": [0, 1.05]},
            xaxis_title="차시 순서")
    return fig


def chart_completion_by_lecture(data: ReportData):
    held = _held_funnel(data)
    if held.is_empty():
        return None
    held = held.with_columns(_lecture_names(held, len(data.academies) > 1).alias("name"))
    fig = go.Figure()
    for (name,), part in held.sort("session_order", "session_id").group_by(
            "name", maintain_order=True):
        fig.add_scatter(
            x=part["session_order"].to_list(), y=part["completed_share"].to_list(),
            mode="lines+markers", name=name,
            hovertemplate=f"{html.escape(name)}<br>%{{x}}차시 완료율 %{{y:.0%}}<extra></extra>",
        )
    _layout(fig, 440,
            yaxis={"tickformat": ".0%", "range": [0, 1.05]}, xaxis_title="차시 순서",
            legend={"orientation": "v"})
    return fig


def chart_clinic_queue(data: ReportData):
    if data.queue.is_empty():
        return None
    queue = data.queue.with_columns(
        _lecture_names(data.queue, len(data.academies) > 1).alias("name")
    )
    counts = queue.group_by("name", "reason").len()
    order = counts.group_by("name").agg(pl.col("len").sum()).sort("len")["name"].to_list()
    fig = go.Figure()
    for reason, color in REASON_COLORS.items():
        part = counts.filter(pl.col("reason") == reason)
        if part.is_empty():
            continue
        found = dict(zip(part["name"].to_list(), part["len"].to_list(), strict=True))
        label = data.label("clinic_reason", reason)
        fig.add_bar(
            y=order, x=[found.get(n, 0) for n in order], orientation="h", name=label,
            marker_color=color, hovertemplate=f"%{{y}}<br>{label}: %{{x}}건<extra></extra>",
        )
    _layout(fig, 120 + 34 * len(order),
            barmode="stack", xaxis_title="대기 건수")
    return fig


def chart_risk_trend(data: ReportData):
    dated = data.risk_log.filter(pl.col("session_date").is_not_null())
    if dated.is_empty():
        return None
    weekly = (
        dated.with_columns(pl.col("session_date").dt.truncate("1w").alias("week"))
        .group_by("week", "risk_level").len().sort("week")
    )
    weeks = weekly["week"].unique().sort().to_list()
    fig = go.Figure()
    for level in ("WARNING", "DANGER"):
        part = weekly.filter(pl.col("risk_level") == level)
        found = dict(zip(part["week"].to_list(), part["len"].to_list(), strict=True))
        label = data.label("risk_level", level)
        fig.add_bar(
            x=[w.isoformat() for w in weeks], y=[found.get(w, 0) for w in weeks],
            name=f"{label} 진입", marker_color=LEVEL_COLORS[level],
            hovertemplate=f"%{{x}} 주: {label} 진입 %{{y}}건<extra></extra>",
        )
    _layout(fig, 400,
            barmode="stack", xaxis={"title": "주 (월요일 시작)", "type": "category"},
            yaxis_title="진입 건수")
    return fig


CHARTS = [
    ("risk", "강의별 위험 단계 (수강중 학생 수)", chart_risk_by_lecture, "수강중 학생이 있는 강의가 없습니다."),
    ("funnel", "차시 순서별 완료 퍼널 (진행된 차시, 수강중 학생 기준)", chart_funnel, "아직 진행된 차시가 없습니다."),
    ("completion", "강의별 차시 완료율 (진행된 차시)", chart_completion_by_lecture,
     "아직 진행된 차시가 없습니다."),
    ("clinic", "클리닉 대기열 (승인 대기 건수, 강의·사유별)", chart_clinic_queue, "승인 대기 중인 클리닉이 없습니다."),
    ("trend", "위험 추이: 주별 주의·위험 진입 건수 (risk_log, 차시 날짜 기준)", chart_risk_trend,
     "위험 이력(risk_log)에 날짜가 있는 기록이 없어 추이를 그리지 않았습니다."),
]


# --------------------------------------------------------------------------------------------
# Page
# --------------------------------------------------------------------------------------------

HARNESS = """
(function () {
  var body = document.body;
  body.dataset.chartsDrawn = "0";
  body.dataset.jsErrors = "0";
  body.dataset.cspViolations = "0";
  function bump(key) { body.dataset[key] = String(Number(body.dataset[key]) + 1); }
  window.addEventListener("error", function () { bump("jsErrors"); });
  document.addEventListener("securitypolicyviolation", function () { bump("cspViolations"); });
  window.progressChartDrawn = function (id) {
    var el = document.getElementById(id);
    if (el && el.querySelector("svg.main-svg")) { bump("chartsDrawn"); }
  };
  window.addEventListener("load", function () {
    body.dataset.resourceRequests = String(performance.getEntriesByType("resource").length);
  });
})();
"""

STYLE = f"""
body {{ font-family: {FONT}; margin: 0; background: #f5f6f8; color: #222; }}
header {{ background: #263238; color: #fff; padding: 20px 28px; }}
header h1 {{ margin: 0 0 6px; font-size: 22px; }}
header p {{ margin: 0; color: #cfd8dc; font-size: 14px; }}
main {{ max-width: 1180px; margin: 0 auto; padding: 20px; }}
.kpis {{ display: grid; grid-template-columns: repeat(auto-fit, minmax(150px, 1fr)); gap: 12px; }}
.kpi {{ background: #fff; border-radius: 8px; padding: 14px 16px; box-shadow: 0 1px 2px #0002; }}
.kpi b {{ display: block; font-size: 26px; margin-top: 4px; }}
.kpi.warn b {{ color: #e69500; }} .kpi.danger b {{ color: #d32f2f; }}
section {{ background: #fff; border-radius: 8px; margin: 16px 0; padding: 12px 16px;
           box-shadow: 0 1px 2px #0002; }}
section h2 {{ font-size: 17px; margin: 6px 0 10px; }}
p.note {{ color: #607d8b; }}
table {{ border-collapse: collapse; width: 100%; font-size: 13px; }}
th, td {{ border-bottom: 1px solid #e0e0e0; padding: 5px 8px; text-align: left; }}
th {{ background: #eceff1; }} td.num {{ text-align: right; }}
footer {{ color: #78909c; font-size: 12px; padding: 0 20px 24px; text-align: center; }}
"""


def _cell(value) -> str:
    if value is None:
        return "<td></td>"
    if isinstance(value, datetime):
        text = f"{value:%Y-%m-%d}" if value.time() == time(0) else f"{value:%Y-%m-%d %H:%M}"
        return f"<td>{text}</td>"
    if isinstance(value, float):
        return f'<td class="num">{value:.1f}</td>'
    if isinstance(value, int):
        return f'<td class="num">{value}</td>'
    return f"<td>{html.escape(str(value))}</td>"


def _table(frame: pl.DataFrame, columns: dict[str, str]) -> str:
    head = "".join(f"<th>{html.escape(label)}</th>" for label in columns.values())
    rows = "".join(
        "<tr>" + "".join(_cell(row[c]) for c in columns) + "</tr>"
        for row in frame.select(list(columns)).iter_rows(named=True)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _kpis(data: ReportData) -> str:
    summary = data.summary
    total = lambda column: int(summary[column].sum()) if summary.height else 0  # noqa: E731
    items = [
        ("", "강의", str(summary.height)),
        ("", "수강중 학생", f"{total('active_enrollments'):,}"),
        ("warn", f"{data.label('risk_level', 'WARNING')} 학생", f"{total('warning_enrollments'):,}"),
        ("danger", f"{data.label('risk_level', 'DANGER')} 학생",
         f"{total('danger_enrollments'):,}"),
        ("", "클리닉 승인 대기", f"{data.queue.height:,}"),
    ]
    return '<div class="kpis">' + "".join(
        f'<div class="kpi {cls}">{html.escape(label)}<b>{html.escape(value)}</b></div>'
        for cls, label, value in items
    ) + "</div>"


def render(data: ReportData) -> tuple[str, list[str], list[str]]:
    """The page's HTML, the titles of the charts drawn and of those replaced by a note."""
    drawn, notes, sections = [], [], []
    config = {"displaylogo": False, "responsive": True, "locale": "ko"}
    for key, title, build, note in CHARTS:
        fig = build(data)
        if fig is None:
            notes.append(title)
            sections.append(f'<section id="{key}"><h2>{html.escape(title)}</h2>'
                            f'<p class="note">{html.escape(note)}</p></section>')
            continue
        drawn.append(title)
        div = pio.to_html(
            fig, config=config, include_plotlyjs=False, full_html=False,
            div_id=f"chart-{key}", default_height=f"{fig.layout.height}px",
            post_script="window.progressChartDrawn('{plot_id}');",
        )
        extra = ""
        if key == "clinic":
            extra = ("<h3>가장 오래 기다린 클리닉</h3>" + _table(data.queue.head(TABLE_ROWS), {
                "queued_since": "대기 시작", "days_waiting": "대기 일수",
                "lecture_title": "강의", "session_order": "차시", "student_id": "학생",
                "reason_ko": "사유", "status_ko": "수강 상태", "memo": "메모"}))
        sections.append(f'<section id="{key}"><h2>{html.escape(title)}</h2>{div}{extra}</section>')
    at_risk = data.at_risk.head(TABLE_ROWS)
    sections.insert(1, '<section id="students"><h2>주의·위험 학생</h2>' + (
        _table(at_risk, {
            "risk_level_ko": "위험 단계", "reason": "사유", "lecture_title": "강의",
            "student_id": "학생", "enrollment_id": "수강", "last_session_order": "마지막 차시",
            "days_since_last_activity": "마지막 활동 후 일수", "avg_exam_score": "평균 점수",
        }) + (f'<p class="note">상위 {TABLE_ROWS}명만 표시 (전체 {data.at_risk.height}명: '
              'marts.v_at_risk_students).</p>' if data.at_risk.height > TABLE_ROWS else "")
        if at_risk.height else '<p class="note">주의·위험 단계의 학생이 없습니다.</p>'
    ) + "</section>")
    scope = f"학원 {data.academy}" if data.academy is not None else (
        "전체 학원 (" + ", ".join(map(str, data.academies)) + ")")
    as_of = (data.as_of or "-")[:19]  # to the second
    page = f"""<!DOCTYPE html>
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
<script id="plotlyjs">{get_plotlyjs()}</script>
<header><h1>학원 진도 리포트</h1>
<p>{html.escape(scope)} · 기준 시각(as-of) {html.escape(as_of)} · 모든 수치는 이 시각의 마트 기준입니다.</p>
</header>
<main>
{_kpis(data)}
{''.join(sections)}
</main>
<footer>academy-progress · marts.v_lecture_summary, v_session_funnel, v_clinic_queue,
v_at_risk_students, risk_log · 차트: Plotly (오프라인 내장)</footer>
</body>
</html>
"""
    return page, drawn, notes


def write_report(warehouse: Path, out: Path, academy: int | None = None) -> ReportResult:
    """Render the report for the warehouse (one academy or all) into `out`, atomically."""
    data = load(Path(warehouse), academy)
    page, drawn, notes = render(data)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(f".{out.name}.tmp")
    staging.write_text(page, encoding="utf-8")
    staging.replace(out)
    return ReportResult(path=out, charts=drawn, notes=notes, academy=academy, as_of=data.as_of)

