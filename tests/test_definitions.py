"""The code location registers every definition of the project: an asset, check, job, schedule
or sensor defined at module scope anywhere in `assets/`, `checks/` or `pipelines/` is in `defs`.

The scan here is independent of the one `pipelines/definitions.py` uses (importlib + isinstance
over every module, lists included), so a definition put in a module the definitions do not scan
fails this test instead of silently missing from the UI and the CLI.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import (
    UnresolvedAssetJobDefinition,
)

import assets
import checks
import pipelines
from pipelines.definitions import defs

JOBS = (dg.JobDefinition, UnresolvedAssetJobDefinition)


def project_modules() -> list[ModuleType]:
    found = []
    for package in (assets, checks, pipelines):
        found.append(package)
        for info in pkgutil.walk_packages(package.__path__, prefix=package.__name__ + "."):
            found.append(importlib.import_module(info.name))
    return found


def module_scope(modules: list[ModuleType]) -> list[object]:
    """Every value at module scope, and every item of a module-level list."""
    values = []
    for module in modules:
        for value in vars(module).values():
            values.extend(value if isinstance(value, list) else [value])
    return values


def registered(definitions: dg.Definitions) -> dict[str, set]:
    repo = definitions.get_repository_def()
    return {
        "assets": {spec.key for spec in definitions.resolve_all_asset_specs()},
        "checks": set(definitions.resolve_asset_graph().asset_check_keys),
        "jobs": {job.name for job in repo.get_all_jobs()},
        "schedules": {s.name for s in repo.schedule_defs},
        "sensors": {s.name for s in repo.sensor_defs},
    }


def defined(modules: list[ModuleType]) -> dict[str, set]:
    found: dict[str, set] = {kind: set() for kind in registered(defs)}
    for value in module_scope(modules):
        if isinstance(value, dg.AssetChecksDefinition):
            found["checks"] |= set(value.check_keys)
        elif isinstance(value, dg.AssetsDefinition):
            found["assets"] |= set(value.keys)
            found["checks"] |= set(value.check_keys)  # checks an asset reports itself
        elif isinstance(value, JOBS):
            found["jobs"].add(value.name)
        elif isinstance(value, dg.ScheduleDefinition):
            found["schedules"].add(value.name)
        elif isinstance(value, dg.SensorDefinition):
            found["sensors"].add(value.name)
    return found


def unregistered(modules: list[ModuleType]) -> dict[str, set]:
    have = registered(defs)
    return {
        kind: names - have[kind] for kind, names in defined(modules).items() if names - have[kind]
    }


def test_every_definition_of_the_project_is_registered():
    found = defined(project_modules())
    # the scan sees the project's definitions (an empty scan would pass vacuously)
    assert {"progress_job", "daily_job", "evaluation_job", "exports_job"} <= found["jobs"]
    assert {"daily_schedule"} <= found["schedules"]
    assert {"landing_sensor", "exports_after_publication"} <= found["sensors"]
    assert dg.AssetKey(["marts", "lecture_progress"]) in found["assets"]
    assert len(found["checks"]) >= 31
    assert unregistered(project_modules()) == {}


def test_a_definition_left_out_of_the_scanned_modules_is_reported():
    stray = ModuleType("stray")
    stray.forgotten_job = dg.define_asset_job("forgotten_job", selection=dg.AssetSelection.all())

    @dg.asset(key=["marts", "forgotten"])
    def forgotten():
        return None

    stray.forgotten = forgotten
    assert unregistered([stray]) == {
        "jobs": {"forgotten_job"},
        "assets": {dg.AssetKey(["marts", "forgotten"])},
    }


def test_definitions_have_nothing_the_modules_do_not_define():
    """The scan loads only what modules define (no stale copy of an asset under another key)."""
    found, have = defined(project_modules()), registered(defs)
    # __ASSET_JOB is Dagster's implicit job over every asset, not a project definition
    have["jobs"].discard("__ASSET_JOB")
    assert have == found
