"""Dagster resources: where the extracts land, how the marts are computed, and the warehouse."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
from dagster_duckdb import DuckDBResource

from pipelines.core.marts import RiskThresholds
from pipelines.core.parse import parse_instant

DEFAULT_TIMEZONE = "Asia/Seoul"


class ProgressSettings(dg.ConfigurableResource):
    """Landing folder, local time zone, as-of instant and risk thresholds of a run."""

    landing_dir: str = "data/landing"
    timezone: str = DEFAULT_TIMEZONE
    as_of: str = ""  # contract timestamp text; empty means "now" in `timezone`
    warning_streak: int = 2
    danger_streak: int = 3

    @property
    def landing(self) -> Path:
        return Path(self.landing_dir)

    def as_of_instant(self) -> datetime:
        """The run's as-of as naive local time (contract §3)."""
        if self.as_of.strip():
            return parse_instant(self.as_of, self.timezone)
        now = datetime.now(ZoneInfo(self.timezone)).replace(tzinfo=None)
        return now.replace(microsecond=now.microsecond)

    @property
    def thresholds(self) -> RiskThresholds:
        return RiskThresholds(warning=self.warning_streak, danger=self.danger_streak)


def warehouse_resource(database: str | dg.EnvVar) -> DuckDBResource:
    return DuckDBResource(database=database)
