"""The rule evaluation asset (`marts.rule_evaluation`, contract §5).

A thin shell around `pipelines.core.evaluation`: it reads the raw tables of this run's staging
warehouse a bucket of enrollments at a time (as the marts do), evaluates every threshold pair in
one pass per as-of instant, and replaces the rows of those instants in one transaction.

How it stays fresh: the asset belongs to the `marts` group, so `progress_job` / `daily_job`
(and `progress run`) materialize it right after ingesting, as of the run's own as-of; it
depends on `raw/outcomes`, so the landing-folder sensor's run after an outcomes delivery
re-evaluates. Without outcomes it evaluates nothing and leaves the stored rows as they are
(creating the empty table on first use). `evaluation_job` (`pipelines.jobs`) runs it alone for the instants given
in its config (`progress evaluate --as-of T ...`), from the raw tables already in the warehouse.
"""

import dagster as dg
import polars as pl

from pipelines.core.contract import TABLES
from pipelines.core.engine import bucket_plan, cached_streaks, for_each_bucket
from pipelines.core.evaluation import (
    RULE_EVALUATION_SCHEMA,
    best_f1,
    configured_rows,
    enrollment_streaks,
    evaluate_streaks,
    replace_as_of,
    sweep_pairs,
)
from pipelines.core.parse import parse_instant
from pipelines.core.schemas import RuleEvaluation, table_description
from pipelines.core.warehouse import read_table, stored_schema, table_exists
from pipelines.metadata import definition_metadata, frame_metadata, preview, table_doc
from pipelines.pandera_checks import schema_check_result, schema_failure
from pipelines.resources import WAREHOUSE_POOL, ProgressSettings, WarehouseResource

KEY = dg.AssetKey(["marts", "rule_evaluation"])
TABLE = "marts.rule_evaluation"


class EvaluationConfig(dg.Config):
    """Instants to evaluate as of (contract timestamp text); none: the run's as-of."""

    as_of: list[str] = []


@dg.asset(
    key=KEY,
    group_name="marts",
    pool=WAREHOUSE_POOL,
    kinds={"duckdb", "polars"},
    # after the marts: a run that computes both hands the evaluation the marts' streaks
    deps=[*(dg.AssetKey(["raw", t]) for t in TABLES), dg.AssetKey(["marts", "lecture_progress"])],
    metadata=definition_metadata(RuleEvaluation),
    description=table_description(RuleEvaluation),
    check_specs=[
        dg.AssetCheckSpec(
            "schema",
            asset=KEY,
            description="Every row matches the Pandera model (validated in "
            "memory before writing); the stored columns have its types.",
        )
    ],
)
def rule_evaluation(
    context: dg.AssetExecutionContext,
    config: EvaluationConfig,
    settings: ProgressSettings,
    warehouse: WarehouseResource,
):
    """Precision, recall, F1 ... of every threshold pair against the delivered outcomes."""
    instants = sorted({parse_instant(text, settings.timezone) for text in config.as_of}) or [
        settings.as_of_instant()
    ]
    pairs = sweep_pairs(settings.thresholds)
    highest = max(t for pair in pairs for t in pair)
    with warehouse.get_connection() as con:
        outcomes = (
            read_table(con, "raw.outcomes") if table_exists(con, "raw.outcomes") else pl.DataFrame()
        )
        frames = []
        if not outcomes.is_empty():
            # only enrollments with an outcome are evaluated: the grid is built for them alone,
            # one academy bucket at a time (the engine's plan)
            plan = bucket_plan(con, settings.bucket_enrollments)
            for as_of in instants:
                context.log.info(f"evaluating the risk rules as of {as_of:%Y-%m-%d %H:%M:%S}")
                kept = cached_streaks(con, context.run.run_id, as_of, highest)
                if kept is None:  # no marts of this run at this instant: build the grid
                    streaks: list[pl.DataFrame] = []
                    for_each_bucket(
                        con,
                        plan,
                        lambda inputs, as_of=as_of, streaks=streaks: streaks.append(
                            enrollment_streaks(inputs, as_of, highest)
                        ),
                        only=outcomes["enrollment_id"],
                    )
                    kept = pl.concat(streaks)
                else:
                    context.log.info("using the streaks the marts step of this run kept")
                frames.append(evaluate_streaks(kept, outcomes, as_of, pairs))
        frame = pl.concat(frames) if frames else pl.DataFrame(schema=RULE_EVALUATION_SCHEMA)
        failure = schema_failure(RuleEvaluation, frame)
        if failure is not None:  # refuse to publish what the contract forbids
            yield schema_check_result(
                RuleEvaluation, frame, asset_key=KEY, check_name="schema", failure=failure
            )
            raise dg.Failure(description=f"{TABLE} breaks its schema: not published")
        # no outcomes: nothing is evaluated; earlier rows stay (the table exists, maybe empty)
        replace_as_of(con, frame, instants if frames else [], table_doc(RuleEvaluation))
        stored = stored_schema(con, TABLE)
    extra: dict[str, object] = {
        "as_of": ", ".join(t.isoformat(sep=" ") for t in instants),
        "evaluated": bool(frames),
    }
    if frames:
        latest = instants[-1]
        shown = [
            c.row
            for c in configured_rows(frame, latest, settings.thresholds) + best_f1(frame, latest)
            if c.row is not None
        ]
        extra["preview"] = preview(pl.DataFrame(shown, schema=frame.schema, orient="row"))
    else:
        context.log.info("no outcomes delivered: nothing evaluated")
    yield dg.MaterializeResult(metadata=frame_metadata(RuleEvaluation, frame) | extra)
    yield schema_check_result(
        RuleEvaluation, frame, stored=stored, asset_key=KEY, check_name="schema"
    )
