"""Operating the pipeline: freshness, retries, the asset groups the jobs select, and the
single-writer rule for the DuckDB warehouse (the jobs themselves are in `pipelines.jobs`).

- **Freshness** (`MARTS_FRESHNESS`): the marts refresh every morning; an asset not materialized
  for 26 hours is WARN (the 06:00 run is late or failed), for 30 hours FAIL (staff are reading
  yesterday's list by noon). Evaluated by the instance when `dagster.yaml` has
  `freshness: enabled: true`. The policy is per asset, not per partition: for the history
  assets it says "some date was materialized recently", which the daily schedule keeps true.
- **One writer** (`pipelines.resources.WAREHOUSE_POOL`): every asset that writes the warehouse
  belongs to the concurrency pool `warehouse`; `dagster.yaml` limits pools to 1 at run
  granularity, so a queued run waits in the queue until no other run holding the pool is in
  progress. Runs of the jobs (`pipelines.jobs`) also carry the `progress/warehouse` tag, limited to 1
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
