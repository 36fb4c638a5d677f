"""Which Dagster executor runs the steps of a run: chosen by the code location's environment
when the definitions load (docs/deploy.md).

`PROGRESS_EXECUTOR`:

- `in_process` (the default, and what an unset or empty variable means): every step in the
  run's own process, one after another. The file backend needs it: one process writes the
  DuckDB file.
- `multiprocess`: one process per step on one machine, at most `PROGRESS_WORKERS` at once.
- `k8s`: one Kubernetes Job per step (`dagster_k8s.k8s_job_executor`), with the container
  resources below. `dagster_k8s` is imported only then (the `deploy` dependency group).

Only the lake backend's `lake_job` can use the last two: its steps share nothing but the
build folder and the staged files (pipelines/lake_steps.py). The file backend's jobs need
`in_process`: their writer lock and staging copy belong to one process.

No executor is started here: the functions build definitions only.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import dagster as dg

EXECUTOR_ENV = "PROGRESS_EXECUTOR"
WORKERS_ENV = "PROGRESS_WORKERS"
EXECUTORS = ("in_process", "multiprocess", "k8s")
DEFAULT_WORKERS = 2

# Kubernetes secret holding the PROGRESS_LAKE_* variables (pipelines/core/lake.py); every step
# pod gets it as environment variables (envFrom).
LAKE_SECRET = "progress-lake"

# Container resources of every step pod. The warehouse resource caps DuckDB at 2 GB
# (WarehouseResource.duckdb_memory_limit); Polars frames take the rest.
STEP_RESOURCES: dict[str, dict[str, str]] = {
    "requests": {"cpu": "1", "memory": "4Gi"},
    "limits": {"cpu": "2", "memory": "6Gi"},
}
# Per op (the executor's `per_step_k8s_config` is keyed by op name): lake_job's ingest
# (measured at 1M enrollments: 3.2 GB peak for the submissions table) and its bucket steps
# (one 100k-enrollment bucket of Polars frames at a time, plus DuckDB's 2 GB buffer pool) are
# its heavy steps; progress_marts is the file backend's.
HEAVY_STEP = {"requests": {"cpu": "2", "memory": "8Gi"}, "limits": {"cpu": "4", "memory": "12Gi"}}
PER_STEP_RESOURCES: dict[str, dict[str, dict[str, str]]] = {
    "progress_marts": HEAVY_STEP,
    "lake_prepare": HEAVY_STEP,
    "lake_bucket": HEAVY_STEP,
}


def executor_name(environ: Mapping[str, str] = os.environ) -> str:
    name = environ.get(EXECUTOR_ENV, "").strip() or "in_process"
    if name not in EXECUTORS:
        raise ValueError(f"{EXECUTOR_ENV}={name!r}: use one of {', '.join(EXECUTORS)}")
    return name


def workers(environ: Mapping[str, str] = os.environ) -> int:
    text = environ.get(WORKERS_ENV, "").strip() or str(DEFAULT_WORKERS)
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{WORKERS_ENV}={text!r}: a whole number of at least 1")
    return int(text)


def k8s_executor_config(environ: Mapping[str, str] = os.environ) -> dict:
    """The k8s_job_executor's configuration: at most `PROGRESS_WORKERS` step pods at once per
    run, the lake secret as environment, the step resources and their per-op overrides."""
    return {
        "max_concurrent": workers(environ),
        "env_secrets": [LAKE_SECRET],
        "step_k8s_config": {"container_config": {"resources": STEP_RESOURCES}},
        "per_step_k8s_config": {
            op: {"container_config": {"resources": resources}}
            for op, resources in PER_STEP_RESOURCES.items()
        },
    }


def executor(environ: Mapping[str, str] = os.environ) -> dg.ExecutorDefinition:
    """The executor `PROGRESS_EXECUTOR` names (in-process when unset)."""
    name = executor_name(environ)
    if name == "in_process":
        return dg.in_process_executor
    if name == "multiprocess":
        return dg.multiprocess_executor.configured(
            {"max_concurrent": workers(environ)}, name="multiprocess"
        )
    from dagster_k8s import k8s_job_executor  # the `deploy` group; only when selected

    return k8s_job_executor.configured(k8s_executor_config(environ), name="k8s")
