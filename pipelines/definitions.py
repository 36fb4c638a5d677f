"""The Dagster code location: every asset, check, job and resource of the pipeline.

Resources read their settings from environment variables at run time (`dg.EnvVar`), never at
import; `.env` at the project root gives the local defaults `dagster dev` picks up.
"""

from __future__ import annotations

import dagster as dg

from assets import all_assets
from assets.evaluation import evaluation_job
from assets.history import history_assets
from checks import all_checks
from checks.history_checks import history_checks
from pipelines.operations import exports_job, history_jobs, ingest_job, progress_job
from pipelines.resources import ProgressSettings, WarehouseReader, WarehouseResource
from pipelines.schedules import schedules
from pipelines.sensors import sensors

defs = dg.Definitions(
    assets=[*all_assets, *history_assets],
    asset_checks=[*all_checks, *history_checks],
    jobs=[progress_job, ingest_job, *history_jobs, exports_job, evaluation_job],
    schedules=schedules,
    sensors=sensors,
    resources={
        "settings": ProgressSettings(
            landing_dir=dg.EnvVar("PROGRESS_LANDING"),
            timezone=dg.EnvVar("PROGRESS_TIMEZONE"),
        ),
        "warehouse": WarehouseResource(path=dg.EnvVar("PROGRESS_WAREHOUSE")),
        "warehouse_reader": WarehouseReader(path=dg.EnvVar("PROGRESS_WAREHOUSE")),
    },
    # One process writes the DuckDB file: steps run one after another in the run's process.
    executor=dg.in_process_executor,
)
