"""Dagster assets: thin shells around the pure core in `pipelines.core`.

The definitions gather every asset defined in this package's modules (`pipelines.definitions`
scans them), so an asset is registered by being defined here, never by being listed. The
selections below are derived from that same scan, by group, for the code (the schedule) and the
tests that materialize the assets of a run without a history date.
"""

import importlib
import pkgutil
from types import ModuleType

import dagster as dg

from pipelines.operations import EXPORTS_GROUP, HISTORY_GROUP


def modules() -> list[ModuleType]:
    """The modules of this package (not this file: the selections below would count twice)."""
    return [importlib.import_module(f"{__name__}.{m.name}") for m in pkgutil.iter_modules(__path__)]


def package_assets() -> list[dg.AssetsDefinition]:
    """Every asset defined at module scope in this package's modules (what the definitions load)."""
    return list(dg.load_assets_from_modules(modules()))


def _groups(asset: dg.AssetsDefinition) -> set[str]:
    return set(asset.group_names_by_key.values())


# What a run without a history date materializes: raw, quarantine, the marts, the analyst
# views, the rule evaluation, and the exports.
all_assets = [a for a in package_assets() if HISTORY_GROUP not in _groups(a)]
# What one publication computes: the same without the exports (they follow in their own run).
core_assets = [a for a in all_assets if EXPORTS_GROUP not in _groups(a)]
