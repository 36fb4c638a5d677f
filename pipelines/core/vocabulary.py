"""The risk vocabulary of the contract (§4.3), defined once: the levels and their order, the
rules that raise a level, and the Korean reason text of each rule.

The marts compute with these names, the schemas check against them, the views, history,
evaluation and labels read them; a new level or rule is added here and nowhere else.
"""

from __future__ import annotations

import polars as pl

NORMAL, WARNING, DANGER = "NORMAL", "WARNING", "DANGER"
# Lowest to highest: a level "rises" when its rank grows.
RISK_LEVELS = (NORMAL, WARNING, DANGER)
LEVEL_RANK = {level: rank for rank, level in enumerate(RISK_LEVELS)}
# The levels an alert or an evaluation counts (WARNING means WARNING or higher).
FLAGGED_LEVELS = (WARNING, DANGER)

INCOMPLETE, LOW_SCORE = "CONSECUTIVE_INCOMPLETE", "CONSECUTIVE_LOW_SCORE"
RISK_RULES = (INCOMPLETE, LOW_SCORE)
# The reason text of a rule, formatted with the streak (`연속 3차시 미완료`).
REASON_TEMPLATES = {INCOMPLETE: "연속 {}차시 미완료", LOW_SCORE: "연속 {}회 저점수"}


def risk_reason(rule: pl.Expr, streak: pl.Expr) -> pl.Expr:
    """The Korean reason text of a risk rule and its streak (contract §4.3)."""
    return (
        pl.when(rule == LOW_SCORE)
        .then(pl.format(REASON_TEMPLATES[LOW_SCORE], streak))
        .otherwise(pl.format(REASON_TEMPLATES[INCOMPLETE], streak))
    )


# The rule evaluation (contract §5): the levels it scores, the scopes it reports and the key
# of marts.rule_evaluation.
EVALUATED_LEVELS = FLAGGED_LEVELS  # WARNING means WARNING or higher
SCOPES = ("all", "academy", "lecture")
RULE_EVALUATION_KEY = ["as_of", "scope", "scope_id", "warning_streak", "danger_streak", "level"]


def level_rank_sql(column: str) -> str:
    """A SQL CASE giving the rank of a risk-level column (unknown levels rank below NORMAL)."""
    whens = " ".join(f"WHEN '{level}' THEN {rank}" for level, rank in LEVEL_RANK.items())
    return f"CASE {column} {whens} ELSE -1 END"
