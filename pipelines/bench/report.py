"""Markdown tables from `progress bench` JSON files, for BENCHMARKS.md.

uv run python -m pipelines.bench.report bench-results/S.json bench-results/M.json ...
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pipelines.bench.commands import COMMAND_STAGES
from pipelines.bench.runner import STAGE_ORDER as STAGES
from pipelines.bench.runner import _fmt  # the console's formatter, with another missing mark


def _f(value, digits: int = 2) -> str:
    return _fmt(value, digits, missing="–")  # an en dash in the markdown tables


def stage_table(result: dict) -> str:
    spm = result["ratios"]["seconds_per_million_session_rows"]
    lines = [
        "| stage | status | work s | work CPU s | process s | peak RSS MB | s / M session rows |",
        "|---|---|--:|--:|--:|--:|--:|",
    ]
    for name in STAGES:
        s = result["stages"].get(name)
        if not s or name in COMMAND_STAGES:  # the commands have their own table
            continue
        status = s["status"] if not s.get("error") else f"{s['status']}: {s['error']}"
        if s["status"] == "skipped":
            status = f"skipped ({s.get('note') or s.get('error')})"
        lines.append(
            f"| {name} | {status} | {_f(s.get('seconds'))} | {_f(s.get('cpu_seconds'))} "
            f"| {_f(s.get('process_seconds'))} | {_f(s.get('peak_rss_mb'), 0)} "
            f"| {_f(spm.get(name))} |"
        )
    return "\n".join(lines)


def command_table(result: dict) -> str:
    """The commands users run: wall time and the process tree's memory, by measurement."""
    lines = [
        "| command stage | status | wall s | CPU s | peak RSS MB (tree) | tree-sum sampled MB "
        "| largest process MB | processes | command |",
        "|---|---|--:|--:|--:|--:|--:|--:|---|",
    ]
    found = False
    for name in COMMAND_STAGES:
        s = result["stages"].get(name)
        if not s:
            continue
        found = True
        d = s.get("details") or {}
        status = s["status"] if not s.get("error") else f"{s['status']}: {s['error']}"
        if s["status"] == "skipped":
            status = f"skipped ({s.get('note') or s.get('error')})"
        command = (d.get("command") or "").replace(str(Path.cwd()) + "/", "")
        lines.append(
            f"| {name} | {status} | {_f(s.get('process_seconds'))} "
            f"| {_f(s.get('process_cpu_seconds'))} | {_f(s.get('peak_rss_mb'), 0)} "
            f"| {_f(d.get('tree_peak_rss_mb'), 0)} | {_f(d.get('top_maxrss_mb'), 0)} "
            f"| {_f(d.get('max_processes'))} | `{command}` |"
        )
    second = (result["stages"].get("cmd_second_run") or {}).get("details") or {}
    if second.get("warehouse_bytes_before"):
        lines.append(
            f"\ncmd_second_run: {second.get('history_days')} dates of history "
            f"({second.get('real_day')} real, copied to the others by SQL), warehouse "
            f"{second['warehouse_bytes_before'] / 2**20:,.1f} MiB before the run."
        )
    return "\n".join(lines) if found else ""


def targets_table(result: dict) -> str:
    tier = result["tier"]["name"]
    lines = [
        f"| target (binding at L) | {tier} | met |",
        "|---|--:|---|",
    ]
    for row in result.get("targets", []):
        met = {True: "met", False: "**missed**", None: "–"}[row["met"]]
        lines.append(f"| {row['target']} | {_f(row['value'], 3)} | {met} |")
    return "\n".join(lines)


def summary(result: dict) -> str:
    d, t = result["data"], result["tier"]
    load = result.get("load_average_start", [None])[0]
    return (
        f"tier {t['name']}: {t['enrollments']:,} enrollments, {t['academies']} academies, "
        f"seed {t['seed']}; {_f(d.get('session_progress_rows'))} session_progress rows, "
        f"{_f(d.get('event_rows'))} valid event rows, {_f(d.get('extract_bytes'))} bytes of "
        f"Parquet; commit {str((result.get('code') or {}).get('commit'))[:7]} "
        f"(+{(result.get('code') or {}).get('changed_files')} changed files); "
        f"load average at start {_f(load)}"
    )


def main(paths: list[str]) -> None:
    for path in paths:
        result = json.loads(Path(path).read_text(encoding="utf-8"))
        print(f"#### {result['tier']['name']} ({path})\n\n{summary(result)}\n")
        print(stage_table(result) + "\n")
        commands = command_table(result)
        if commands:
            print(commands + "\n")
        rows = []
        for key, value in result["ratios"].items():
            items = value.items() if isinstance(value, dict) else [(None, value)]
            rows += [
                f"| {key}{'.' + k if k else ''} | {_f(v, 3)} |" for k, v in items if v is not None
            ]
        if rows:
            print("| ratio | value |\n|---|--:|\n" + "\n".join(rows) + "\n")
        else:
            print("(no ratio measured)\n")
        print(targets_table(result) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
