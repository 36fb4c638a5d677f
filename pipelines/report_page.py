"""The static parts of the report page: its style, its scripts and the sortable tables.

Everything here is inlined into the one HTML file the report writes (the page's
Content-Security-Policy forbids loading anything), and works offline:

- `HARNESS` counts drawn charts, script errors, CSP violations and fetched resources into
  `data-*` attributes of <body>, then checks the layout once every chart has drawn: no two
  cards, sections or chart parts (legend, axis titles and tick labels, plot area) overlap and
  nothing is wider than the window. The verdict goes to `data-overlaps` (a count) and
  `data-overlap-detail` (the first few pairs), `data-page-height` to the page's full height
  (`data-window-height`: the window's);
  the browser test reads them with `chromium --dump-dom`.
- `TABLE_JS` makes every `table.data` sortable (click a column header; numbers sort as numbers,
  empty cells last) and filterable (words that must all occur in a row, and the academy). The
  same state can be given in the address's hash, e.g.
  `report.html#sort=t-atrisk:days_since_last_activity:desc&filter=t-atrisk:위험&academy=t-clinic:10`,
  so a saved link (and the browser test) opens the table sorted and filtered.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time

import polars as pl

FONT = "'Noto Sans KR', 'Malgun Gothic', 'Apple SD Gothic Neo', 'Nanum Gothic', sans-serif"

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
  function box(el) { return el.getBoundingClientRect(); }
  function visible(el) { var r = box(el); return r.width > 0 && r.height > 0; }
  function overlaps(a, b) {
    var x = Math.min(a.right, b.right) - Math.max(a.left, b.left);
    var y = Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top);
    return x > 1 && y > 1;  // touching edges is not overlapping
  }
  function name(el) {
    return (el.id || el.getAttribute("class") || el.tagName).toString().split(" ")[0];
  }
  function checkLayout() {
    var problems = [];
    function pairwise(items, where) {
      for (var i = 0; i < items.length; i++) {
        for (var j = i + 1; j < items.length; j++) {
          if (overlaps(box(items[i]), box(items[j]))) {
            problems.push(where + ": " + name(items[i]) + " / " + name(items[j]));
          }
        }
      }
    }
    var width = document.documentElement.clientWidth;
    if (document.documentElement.scrollWidth > width + 1) {
      problems.push("page wider than the window (" + document.documentElement.scrollWidth +
                    " > " + width + ")");
    }
    var blocks = document.querySelectorAll("header, nav, main > *, footer");
    pairwise(Array.prototype.filter.call(blocks, visible), "page");
    var cards = Array.prototype.filter.call(document.querySelectorAll(".kpi"), visible);
    pairwise(cards, "cards");
    cards.forEach(function (card) {
      if (card.scrollWidth > card.clientWidth + 1) { problems.push("card text overflows: " +
                                                                   card.textContent); }
    });
    document.querySelectorAll(".js-plotly-plot").forEach(function (plot) {
      var section = plot.closest("section");
      if (section && box(plot).right > box(section).right + 1) {
        problems.push(plot.id + ": chart wider than its section");
      }
      var parts = [];
      plot.querySelectorAll(".legend, .modebar-container, .g-xtitle, .g-ytitle, " +
                            ".xtick text, .ytick text, .annotation").forEach(function (el) {
        if (visible(el)) { parts.push(el); }
      });
      var legend = plot.querySelector(".legend");
      var area = plot.querySelector(".draglayer .nsewdrag");
      if (legend && visible(legend)) {
        parts.forEach(function (el) {
          if (el !== legend && overlaps(box(legend), box(el))) {
            problems.push(plot.id + ": legend / " + name(el));
          }
        });
        if (area && overlaps(box(legend), box(area))) {
          problems.push(plot.id + ": legend covers the plot area");
        }
      }
      var bar = plot.querySelector(".modebar-container");
      if (bar && visible(bar) && area && overlaps(box(bar), box(area))) {
        problems.push(plot.id + ": toolbar covers the plot area");
      }
    });
    body.dataset.overlaps = String(problems.length);
    body.dataset.overlapDetail = problems.slice(0, 5).join(" | ");
    // the content's height (the document's scrollHeight is at least the window's)
    body.dataset.pageHeight = String(Math.ceil(body.getBoundingClientRect().bottom +
                                               window.scrollY));
    body.dataset.windowHeight = String(window.innerHeight);
    body.dataset.layoutChecked = "1";
  }
  window.addEventListener("load", function () {
    body.dataset.resourceRequests = String(performance.getEntriesByType("resource").length);
    var tries = 0;
    (function wait() {  // charts draw asynchronously; check once all have (or after ~5 s)
      if (Number(body.dataset.chartsDrawn) >= Number(body.dataset.chartsExpected) ||
          ++tries > 50) { checkLayout(); } else { setTimeout(wait, 100); }
    })();
  });
})();
"""

TABLE_JS = """
(function () {
  function value(td, type) {
    var v = td.hasAttribute("data-v") ? td.getAttribute("data-v") : td.textContent;
    if (v === "") { return null; }
    return type === "num" ? Number(v) : v;
  }
  function controls(table) { return document.querySelector('[data-for="' + table.id + '"]'); }
  function sortTable(table, key, dir) {
    var heads = table.tHead.rows[0].cells, index = -1, type = "text", i;
    for (i = 0; i < heads.length; i++) {
      if (heads[i].dataset.key === key) { index = i; type = heads[i].dataset.type; }
    }
    if (index < 0) { return; }
    var sign = dir === "desc" ? -1 : 1, body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {  // stable: ties keep the page's order
      var x = value(a.cells[index], type), y = value(b.cells[index], type);
      if (x === null || y === null) { return x === y ? 0 : (x === null ? 1 : -1); }
      return sign * (type === "num" ? x - y : x.localeCompare(y, "ko"));
    });
    rows.forEach(function (row) { body.appendChild(row); });
    for (i = 0; i < heads.length; i++) {
      heads[i].setAttribute("aria-sort", i !== index ? "none" :
                            (dir === "desc" ? "descending" : "ascending"));
    }
    table.dataset.sortKey = key;
    table.dataset.sortDir = dir;
  }
  function filterTable(table) {
    var box = controls(table), rows = table.tBodies[0].rows, shown = 0;
    var words = box.querySelector("input").value.toLowerCase().split(/\\s+/).filter(Boolean);
    var select = box.querySelector("select"), academy = select ? select.value : "";
    for (var i = 0; i < rows.length; i++) {
      var text = rows[i].textContent.toLowerCase();
      var keep = (!academy || rows[i].dataset.academy === academy) &&
        words.every(function (w) { return text.indexOf(w) >= 0; });
      rows[i].hidden = !keep;
      if (keep) { shown++; }
    }
    table.dataset.shown = String(shown);
    box.querySelector(".shown").textContent = shown + " / " + rows.length;
  }
  function fromHash() {
    var state = {};
    location.hash.replace(/^#/, "").split("&").forEach(function (part) {
      var eq = part.indexOf("="), colon = part.indexOf(":");
      if (eq < 0 || colon < eq) { return; }
      var what = part.slice(0, eq), id = part.slice(eq + 1, colon);
      (state[id] = state[id] || {})[what] = decodeURIComponent(part.slice(colon + 1));
    });
    return state;
  }
  document.addEventListener("DOMContentLoaded", function () {
    var state = fromHash();
    document.querySelectorAll("table.data").forEach(function (table) {
      var box = controls(table), mine = state[table.id] || {};
      box.querySelector("input").addEventListener("input", function () { filterTable(table); });
      var select = box.querySelector("select");
      if (select) {
        select.addEventListener("change", function () { filterTable(table); });
        if (mine.academy) { select.value = mine.academy; }
      }
      if (mine.filter) { box.querySelector("input").value = mine.filter; }
      table.querySelectorAll("th button").forEach(function (button) {
        button.addEventListener("click", function () {
          var key = button.parentNode.dataset.key;
          var dir = table.dataset.sortKey === key && table.dataset.sortDir === "asc"
            ? "desc" : "asc";
          sortTable(table, key, dir);
        });
      });
      if (mine.sort) {
        var parts = mine.sort.split(":");
        sortTable(table, parts[0], parts[1] === "desc" ? "desc" : "asc");
      }
      filterTable(table);
    });
    document.body.dataset.tablesReady = "1";
  });
})();
"""

STYLE = f"""
* {{ box-sizing: border-box; }}
body {{ font-family: {FONT}; margin: 0; background: #f5f6f8; color: #222; }}
header {{ background: #263238; color: #fff; padding: 20px 28px; }}
header h1 {{ margin: 0 0 6px; font-size: 22px; }}
header p {{ margin: 0; color: #cfd8dc; font-size: 14px; }}
nav {{ max-width: 1180px; margin: 12px auto 0; padding: 0 20px; font-size: 13px;
       display: flex; flex-wrap: wrap; gap: 6px 14px; }}
nav a {{ color: #37474f; }}
main {{ max-width: 1180px; margin: 0 auto; padding: 12px 20px 20px; }}
.kpis {{ display: grid; grid-template-columns: repeat(auto-fit, minmax(165px, 1fr)); gap: 12px; }}
.kpi {{ background: #fff; border-radius: 8px; padding: 12px 14px; box-shadow: 0 1px 2px #0002;
        font-size: 13px; color: #455a64; min-width: 0; overflow-wrap: anywhere; }}
.kpi b {{ display: block; font-size: 26px; margin: 4px 0 2px; color: #222; }}
.kpi small {{ display: block; color: #78909c; }}
.kpi.warn b {{ color: #e69500; }} .kpi.danger b {{ color: #d32f2f; }}
section {{ background: #fff; border-radius: 8px; margin: 16px 0; padding: 12px 16px;
           box-shadow: 0 1px 2px #0002; min-width: 0; }}
section h2 {{ font-size: 17px; margin: 6px 0 6px; }}
section h3 {{ font-size: 15px; margin: 14px 0 6px; }}
p.note, p.lead {{ color: #607d8b; font-size: 13px; margin: 4px 0 8px; }}
.controls {{ display: flex; flex-wrap: wrap; gap: 8px; align-items: center; margin: 6px 0;
             font-size: 13px; }}
.controls input {{ flex: 1 1 220px; padding: 5px 8px; font: inherit; }}
.controls select {{ padding: 4px; font: inherit; }}
.controls .shown {{ color: #607d8b; }}
.scroll {{ max-height: 520px; overflow: auto; border: 1px solid #e0e0e0; border-radius: 4px; }}
table {{ border-collapse: collapse; width: 100%; font-size: 13px; }}
th, td {{ border-bottom: 1px solid #e0e0e0; padding: 5px 8px; text-align: left;
          white-space: nowrap; }}
th {{ background: #eceff1; position: sticky; top: 0; white-space: normal; word-break: keep-all;
      vertical-align: bottom; }}
th button {{ all: unset; cursor: pointer; }}
th[aria-sort="ascending"] button::after {{ content: " ▲"; }}
th[aria-sort="descending"] button::after {{ content: " ▼"; }}
td.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
tr.configured td {{ background: #fff8e1; }}
footer {{ color: #78909c; font-size: 12px; padding: 0 20px 24px; text-align: center; }}
"""


@dataclass(frozen=True)
class Column:
    """One column of a data table: frame column, header label and kind: text, date, or
    numeric ones sorted as numbers: num (thousands separated), id (digits as they are), pct,
    ratio."""

    key: str
    label: str
    kind: str = "text"


def _cell(value, kind: str) -> str:
    if value is None:
        return '<td data-v=""></td>' if kind != "text" else "<td></td>"
    if kind == "id":
        return f'<td class="num" data-v="{value}">{value}</td>'
    if kind == "pct":
        return f'<td class="num" data-v="{value!r}">{value:.0%}</td>'
    if kind == "ratio":
        return f'<td class="num" data-v="{value!r}">{value:.2f}</td>'
    if isinstance(value, bool):
        return f"<td>{'예' if value else '아니오'}</td>"
    if isinstance(value, datetime):
        text = f"{value:%Y-%m-%d}" if value.time() == time(0) else f"{value:%Y-%m-%d %H:%M}"
        return f'<td data-v="{value.isoformat()}">{text}</td>'
    if isinstance(value, date):
        return f'<td data-v="{value.isoformat()}">{value.isoformat()}</td>'
    if isinstance(value, float):
        return f'<td class="num" data-v="{value!r}">{value:.1f}</td>'
    if isinstance(value, int):
        return f'<td class="num" data-v="{value}">{value:,}</td>'
    return f"<td>{html.escape(str(value))}</td>"


def _formatter(dtype: pl.DataType, kind: str) -> Callable[[object], str]:
    """`_cell` for the non-null values of one column, chosen once for the column's type (at M
    the two long tables took 2.9 s cell by cell); an unknown type goes through `_cell`."""
    if kind == "id":
        return lambda v: f'<td class="num" data-v="{v}">{v}</td>'
    if kind == "pct":
        return lambda v: f'<td class="num" data-v="{v!r}">{v:.0%}</td>'
    if kind == "ratio":
        return lambda v: f'<td class="num" data-v="{v!r}">{v:.2f}</td>'
    if dtype == pl.Boolean:
        return lambda v: f"<td>{'예' if v else '아니오'}</td>"
    if isinstance(dtype, pl.Datetime):
        return lambda v: _cell(v, kind)
    if dtype == pl.Date:
        return lambda v: f'<td data-v="{v.isoformat()}">{v.isoformat()}</td>'
    if dtype.is_float():
        return lambda v: f'<td class="num" data-v="{v!r}">{v:.1f}</td>'
    if dtype.is_integer():
        return lambda v: f'<td class="num" data-v="{v}">{v:,}</td>'
    if dtype == pl.String:
        return lambda v: f"<td>{html.escape(v)}</td>"
    return lambda v: _cell(v, kind)


def _cells(series: pl.Series, kind: str) -> list[str]:
    """Every cell of one column, as `_cell` writes it."""
    empty = '<td data-v=""></td>' if kind != "text" else "<td></td>"
    write = _formatter(series.dtype, kind)
    return [empty if v is None else write(v) for v in series.to_list()]


def data_table(
    table_id: str,
    frame: pl.DataFrame,
    columns: list[Column],
    academies: list[int],
    placeholder: str,
    marked: str | None = None,
) -> str:
    """A sortable, filterable table of every row of `frame` (which has an academy_id column);
    rows whose boolean column `marked` is true are highlighted."""
    heads = "".join(
        f'<th data-key="{c.key}" data-type="{"text" if c.kind in ("text", "date") else "num"}" '
        f'aria-sort="none"><button type="button">{html.escape(c.label)}</button></th>'
        for c in columns
    )
    academy = (
        frame["academy_id"].to_list() if "academy_id" in frame.columns else [None] * frame.height
    )
    configured = frame[marked].to_list() if marked else [False] * frame.height
    cells = zip(*(_cells(frame[c.key], c.kind) for c in columns), strict=True)
    rows = "".join(
        f'<tr data-academy="{"" if a is None else a}"'
        + (' class="configured"' if m else "")
        + ">"
        + "".join(row)
        + "</tr>"
        for a, m, row in zip(academy, configured, cells, strict=True)
    )
    select = ""
    if len(academies) > 1:
        options = "".join(f'<option value="{a}">학원 {a}</option>' for a in academies)
        select = f'<select aria-label="학원"><option value="">모든 학원</option>{options}</select>'
    return (
        f'<div class="controls" data-for="{table_id}">'
        f'<input type="search" aria-label="검색" placeholder="{html.escape(placeholder)}">'
        f'{select}<span class="shown">{frame.height} / {frame.height}</span>'
        "<span>· 열 제목을 누르면 정렬됩니다</span></div>"
        f'<div class="scroll"><table class="data" id="{table_id}" data-rows="{frame.height}">'
        f"<thead><tr>{heads}</tr></thead><tbody>{rows}</tbody></table></div>"
    )
