"""Every job of the pipeline, by name: what `progress` commands, the schedule, the sensors and
the UI launch. The definitions gather them from this module (`pipelines.definitions`); the CLI
runs them as the definitions define them (`pipelines.runner.job`).

Selections are by asset group (`pipelines.operations`) or key, so an asset added to a group joins the
jobs that select the group without being listed here.
"""

import dagster as dg

from assets.evaluation import KEY as EVALUATION_KEY
from pipelines.lake_steps import lake_exports_graph, lake_run_graph
from pipelines.operations import EXPORTS_GROUP, HISTORY_GROUP, RUN_TAGS

progress_job = dg.define_asset_job(
    "progress_job",
    selection=dg.AssetSelection.all() - dg.AssetSelection.groups(HISTORY_GROUP, EXPORTS_GROUP),
    description="Ingest every extract, then recompute and publish the marts and views as of "
    "now (what `progress run` runs; exports_job follows it).",
    run_tags=RUN_TAGS,
)

# The extracts alone: every raw and quarantine table with their checks (what `progress
# backfill` runs before the history dates; the current marts are left as they are).
ingest_job = dg.define_asset_job(
    "ingest_job",
    selection=dg.AssetSelection.groups("raw", "quarantine"),
    description="Ingest every extract into raw and quarantine, with their checks, without "
    "recomputing the marts (what `progress backfill` runs before the history dates).",
    run_tags=RUN_TAGS,
)

# Every asset and check but the exports: raw -> quarantine -> current marts and views, plus one
# date of history when the run has a partition key (the schedule and the sensor always give
# one: yesterday). The exports follow in their own run (exports_job).
daily_job = dg.define_asset_job(
    "daily_job",
    selection=dg.AssetSelection.all() - dg.AssetSelection.groups(EXPORTS_GROUP),
    description=(
        "Ingest every extract, publish the current marts as of now, and the history of one "
        "date (the run's partition, yesterday for the schedule and the sensor)."
    ),
    run_tags=RUN_TAGS,
)

# Only the history assets: for re-materializing or backfilling dates from the UI.
history_job = dg.define_asset_job(
    "history_job",
    selection=dg.AssetSelection.groups(HISTORY_GROUP),
    description="Recompute the daily history (lecture_progress_daily, risk summary, alerts) "
    "of the selected dates from the raw tables already in the warehouse.",
    run_tags=RUN_TAGS,
)

# The per-academy exports of what the last run published (read-only: no writer lock). The
# `exports_after_publication` sensor launches it after every successful publishing run.
exports_job = dg.define_asset_job(
    "exports_job",
    selection=dg.AssetSelection.groups(EXPORTS_GROUP),
    description="Export the published marts and views per academy (Parquet + CSV, manifest), "
    "atomically; launched after each successful run of progress_job or daily_job.",
    run_tags={"progress/exports": "write"},
)


evaluation_job = dg.define_asset_job(
    "evaluation_job",
    selection=dg.AssetSelection.assets(EVALUATION_KEY),
    description="Evaluate the risk rules against the delivered outcomes as of the instants in "
    "the config (`progress evaluate --as-of T`), from the raw tables in the warehouse, and "
    "replace marts.rule_evaluation's rows of those instants.",
    run_tags=RUN_TAGS,
)


# The lake backend's run (docs/lake.md): ingest, one step per piece of academy buckets, one
# publish step; what `progress run --backend lake [--workers N]` runs. Any executor (the
# definitions' PROGRESS_EXECUTOR) can run its bucket steps at once.
lake_job = lake_run_graph.to_job(
    name="lake_job",
    description="Ingest every extract, compute the marts one piece of academy buckets per "
    "step, and publish every table to the lake in one DuckLake transaction.",
    tags={"progress/lake": "publish"},
)

# The lake's per-academy exports: the publication of the lake_job run the
# `lake_exports_after_publication` sensor names (pinned to its snapshot), as exports_job does
# for the file.
lake_exports_job = lake_exports_graph.to_job(
    name="lake_exports_job",
    description="Export one lake publication per academy (Parquet + CSV, manifest), "
    "atomically, read from its snapshot; launched after each successful run of lake_job.",
    tags={"progress/exports": "write"},
)
