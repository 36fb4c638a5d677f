"""Operating the pipeline: the jobs the schedule and sensor launch, freshness, retries, and the
single-writer rule for the DuckDB warehouse.

- **Freshness** (`MARTS_FRESHNESS`): the marts refresh every morning; an asset not materialized
  for 26 hours is WARN (the 06:00 run is late or failed), for 30 hours FAIL (staff are reading
  yesterday's list by noon). Evaluated by the instance when `dagster.yaml` has
  `freshness: enabled: true`. The policy is per asset, not per partition: for the history
  assets it says "some date was materialized recently", which the daily schedule keeps true.
- **One writer** (`pipelines.resources.WAREHOUSE_POOL`): every asset that writes the warehouse
  belongs to the concurrency pool `warehouse`; `dagster.yaml` limits pools to 1 at run
  granularity, so a queued run waits in the queue until no other run holding the pool is in
  progress. Runs of the jobs below also carry the `progress/warehouse` tag, limited to 1
  in-progress run. Underneath, the warehouse resource holds a file lock for the whole run
  (waiting up to 10 minutes); the queue keeps runs from piling up on that lock. In-process runs (`progress run`, `progress backfill`)
  bypass the queue and rely on the lock alone.
- **Retries**: run retries (`dagster/max_retries: 2`; `dagster.yaml` enables them for runs that
  fail outside an asset step: the writer lock not obtained in time (`WriterBusy` at resource
  start-up), the run worker crashing or killed). A failed asset or check is not retried: that is
  a data problem (refused extract, quarantine share, schema), and re-running gives the same.
"""

import dagster as dg

from pipelines.timing import FAIL_AFTER, WARN_AFTER

WAREHOUSE_TAG = "progress/warehouse"
RUN_TAGS = {WAREHOUSE_TAG: "write", "dagster/max_retries": "2"}

MARTS_FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=FAIL_AFTER, warn_window=WARN_AFTER)

HISTORY_GROUP = "history"
EXPORTS_GROUP = "exports"


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

history_jobs = [daily_job, history_job]
