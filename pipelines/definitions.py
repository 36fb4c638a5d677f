"""The Dagster code location: every asset, check, job, schedule, sensor and resource.

Nothing is listed by hand: the assets are every asset defined in a module of `assets/`, the
checks every check in a module of `checks/`, the jobs, schedules and sensors every one defined
in `pipelines/jobs.py`, `pipelines/schedules.py` and `pipelines/sensors.py`. Defining one there
registers it (tests/test_definitions.py fails if a definition is missing from `defs`).

Resources read their settings from environment variables at run time (`dg.EnvVar`), never at
import; `.env` at the project root gives the local defaults `dagster dev` picks up. The executor
is the one setting read when the definitions load: `PROGRESS_EXECUTOR` (`pipelines.deploy`;
in-process when unset).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping

import dagster as dg

import assets
import checks
from pipelines import deploy, jobs, schedules, sensors
from pipelines.resources import (
    LakeResource,
    ProgressSettings,
    WarehouseReader,
    WarehouseResource,
)

MODULES = [*assets.modules(), *checks.modules(), jobs, schedules, sensors]


def build(environ: Mapping[str, str] = os.environ) -> dg.Definitions:
    """The definitions, with the executor `environ` selects (`pipelines.deploy.executor`)."""
    # load_definitions_from_modules is marked preview in Dagster 1.13.27 (a PreviewWarning on
    # every load of the code location); the version is locked, and tests/test_definitions.py
    # checks that it finds every definition of these modules.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return dg.load_definitions_from_modules(
            MODULES,
            resources={
                "settings": ProgressSettings(
                    landing_dir=dg.EnvVar("PROGRESS_LANDING"),
                    timezone=dg.EnvVar("PROGRESS_TIMEZONE"),
                ),
                "warehouse": WarehouseResource(path=dg.EnvVar("PROGRESS_WAREHOUSE")),
                "warehouse_reader": WarehouseReader(path=dg.EnvVar("PROGRESS_WAREHOUSE")),
                "lake": LakeResource(path=dg.EnvVar("PROGRESS_WAREHOUSE")),
            },
            # In-process by default: one process writes the DuckDB file, steps one after
            # another in the run's process.
            executor=deploy.executor(environ),
        )


defs = build()
