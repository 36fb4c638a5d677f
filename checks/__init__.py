"""Asset checks, declared per layer next to the assets they guard.

The definitions gather every check defined in this package's modules (`pipelines.definitions`
scans them). The marts' and the raw tables' schema checks are reported by their assets
(check_specs), so they are part of the assets, not of this package.
"""

import importlib
import pkgutil
from types import ModuleType

import dagster as dg


def modules() -> list[ModuleType]:
    """The modules of this package (not this file: the selection below would count twice)."""
    return [importlib.import_module(f"{__name__}.{m.name}") for m in pkgutil.iter_modules(__path__)]


def package_checks() -> list[dg.AssetChecksDefinition]:
    """Every asset check defined at module scope in this package's modules."""
    return list(dg.load_asset_checks_from_modules(modules()))


def _targets_history(check: dg.AssetChecksDefinition) -> bool:
    from assets.history import HISTORY_KEYS

    return any(key.asset_key in HISTORY_KEYS.values() for key in check.check_keys)


# The checks of the assets a run without a history date materializes (`assets.all_assets`).
all_checks = [c for c in package_checks() if not _targets_history(c)]
