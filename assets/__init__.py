"""Dagster assets: thin shells around the pure core in `pipelines.core`."""

from assets.consume import export_assets, view_assets
from assets.evaluation import evaluation_assets
from assets.extracts import extract_assets
from assets.marts import mart_assets

# What one publication computes: raw, quarantine, the marts and the analyst views, and the
# rule evaluation when outcomes were delivered.
core_assets = [*extract_assets, *mart_assets, *view_assets, *evaluation_assets]
all_assets = [*core_assets, *export_assets]
