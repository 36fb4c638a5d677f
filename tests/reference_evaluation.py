"""Plain, row-by-row reference of the rule evaluation (data contract section 5).

Independent of the pipeline's code: for every threshold pair it runs the reference marts
(`tests.reference.reference_marts`) with those thresholds, reads each enrollment's risk level
from their lecture_progress and its first risk_log row at level L or higher, and counts with
plain loops. Slow by design (one reference marts computation per pair), obviously correct.

Public API:
    reference_evaluation(raw, as_of, pairs) -> [row dict, ...] with the marts.rule_evaluation
    columns (raw as returned by tests.reference.reference_ingest).
"""

from __future__ import annotations

import statistics
from datetime import datetime

from tests.reference import reference_marts

RANK = {"NORMAL": 0, "WARNING": 1, "DANGER": 2}
LEVELS = ("WARNING", "DANGER")


def all_pairs(highest: int = 6) -> list[tuple[int, int]]:
    return [(w, d) for w in range(1, highest + 1) for d in range(w, highest + 1)]


def _ratio(numerator, denominator):
    return None if denominator == 0 else numerator / denominator


def _figures(members: list[dict], level: str) -> dict:
    """The counts and ratios of one scope at one level; `members` hold risk, result, lead."""
    tp = fp = fn = tn = withdrawn = withdrawn_flagged = 0
    leads = []
    for m in members:
        flagged = RANK[m["risk"]] >= RANK[level]
        if m["result"] == "WITHDRAWN":
            withdrawn += 1
            withdrawn_flagged += flagged
        elif m["result"] == "FAIL":
            if flagged:
                tp += 1
                if m["lead"][level] is not None:
                    leads.append(m["lead"][level])
            else:
                fn += 1
        elif flagged:
            fp += 1
        else:
            tn += 1
    population = tp + fp + fn + tn
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    f1 = None
    if precision is not None and recall is not None:
        f1 = _ratio(2 * precision * recall, precision + recall)
    return {
        "population": population,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "accuracy": _ratio(tp + tn, population),
        "base_rate": _ratio(tp + fn, population),
        "withdrawn": withdrawn,
        "withdrawn_flagged": withdrawn_flagged,
        "median_lead_days": float(statistics.median(leads)) if leads else None,
    }


def reference_evaluation(
    raw: dict[str, list[dict]], as_of: datetime, pairs: list[tuple[int, int]] | None = None
) -> list[dict]:
    outcomes = {row["enrollment_id"]: row for row in raw.get("outcomes", [])}
    if not outcomes:
        return []
    out = []
    for warning, danger in pairs or all_pairs():
        marts = reference_marts(raw, as_of, warning, danger)
        first_at = {}  # (enrollment, level) -> session_date of its first risk_log row >= level
        for row in marts["risk_log"]:  # in (enrollment, session_order, session) order
            for level in LEVELS:
                if RANK[row["risk_level"]] >= RANK[level]:
                    first_at.setdefault((row["enrollment_id"], level), row["session_date"])
        members = []
        for progress in marts["lecture_progress"]:
            outcome = outcomes.get(progress["enrollment_id"])
            if outcome is None or progress["status"] != "ACTIVE":
                continue
            decided = outcome["decided_at"]
            lead = {}
            for level in LEVELS:
                started = first_at.get((progress["enrollment_id"], level))
                lead[level] = (
                    None if started is None or decided is None else (decided.date() - started).days
                )
            members.append(
                {
                    "risk": progress["risk_level"],
                    "result": outcome["result"],
                    "lead": lead,
                    "academy_id": progress["academy_id"],
                    "lecture_id": progress["lecture_id"],
                }
            )
        scopes = [("all", None, members)]
        for scope, column in (("academy", "academy_id"), ("lecture", "lecture_id")):
            for scope_id in sorted({m[column] for m in members}):
                scopes.append((scope, scope_id, [m for m in members if m[column] == scope_id]))
        for scope, scope_id, group in scopes:
            for level in LEVELS:
                out.append(
                    {
                        "as_of": as_of,
                        "scope": scope,
                        "scope_id": scope_id,
                        "warning_streak": warning,
                        "danger_streak": danger,
                        "level": level,
                        **_figures(group, level),
                    }
                )
    return out
