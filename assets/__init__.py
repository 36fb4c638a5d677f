"""Dagster assets: thin shells around the pure core in `pipelines.core`."""

from assets.consume import consume_assets
from assets.extracts import extract_assets
from assets.marts import mart_assets

all_assets = [*extract_assets, *mart_assets, *consume_assets]
