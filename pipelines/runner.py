"""Run the whole pipeline as one Dagster run and summarize what it published.

Used by the `progress run` command: one in-process Dagster run of every asset and check,
recorded in the instance at DAGSTER_HOME when that is set (so it shows in the UI).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import dagster as dg
import duckdb

from assets import core_assets
from checks import all_checks
from pipelines.core.contract import TABLES
from pipelines.core.extracts import find_files
from pipelines.resources import DEFAULT_TIMEZONE, ProgressSettings, WarehouseResource


class RunFailed(Exception):
    """The run did not publish; the message is the one line shown to the user."""


@dataclass
class RunReport:
    run_id: str
    as_of: datetime
    table_rows: dict[str, int] = field(default_factory=dict)
    quarantine_reasons: dict[str, dict[str, int]] = field(default_factory=dict)
    refused_files: list[str] = field(default_factory=list)
    risk_levels: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    ledger: list[dict] = field(default_factory=list)
    publication: dict = field(default_factory=dict)


def dagster_instance() -> dg.DagsterInstance:
    """The instance at DAGSTER_HOME (runs show in the UI), else a throwaway one."""
    if os.environ.get("DAGSTER_HOME"):
        return dg.DagsterInstance.get()
    return dg.DagsterInstance.ephemeral()


def _root_message(error) -> str:
    """The innermost error's first line, without a `module.Class: ` prefix."""
    while getattr(error, "cause", None) is not None:
        error = error.cause
    lines = [line for line in (error.message if error else "").splitlines() if line.strip()]
    message = lines[0].strip() if lines else "failed"
    head, _, rest = message.partition(": ")
    return rest if rest and "." in head and " " not in head else message


def run_failure(result: dg.ExecuteInProcessResult) -> str | None:
    """Why a run did not publish: a failed ERROR check, else the first error event's root cause
    (a failed step, or a resource that could not start, e.g. the writer lock not obtained)."""
    for evaluation in result.get_asset_check_evaluations():
        if not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR:
            return evaluation.description or f"check {evaluation.check_name} failed"
    for event in result.all_events:
        error = getattr(event.event_specific_data, "error", None)
        if error is not None:
            return _root_message(error)
    return None if result.success else "the Dagster run failed"


def _summarize(report: RunReport, warehouse: Path) -> None:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        tables = con.execute(
            "SELECT schema_name, table_name, estimated_size FROM duckdb_tables() "
            "ORDER BY schema_name, table_name"
        ).fetchall()
        for schema, table, _ in tables:
            (count,) = con.execute(f'SELECT count(*) FROM "{schema}"."{table}"').fetchone()
            report.table_rows[f"{schema}.{table}"] = count
        for table in TABLES:
            rows = con.execute(
                f"SELECT _reason, count(*) FROM quarantine.{table} GROUP BY 1 ORDER BY 1"
            ).fetchall()
            if rows:
                report.quarantine_reasons[table] = dict(rows)
        report.refused_files = [
            r[0] for r in con.execute(
                "SELECT refused_files FROM raw.ingest_audit WHERE refused_files IS NOT NULL"
            ).fetchall()
        ]
        report.ledger = con.execute(
            "SELECT table_name, delivered_rows, used_rows, collapsed_duplicates, "
            "quarantined_rows FROM raw.ingest_audit"
        ).pl().to_dicts()
        report.publication = con.execute(
            "SELECT * FROM marts.publication ORDER BY published_at DESC LIMIT 1"
        ).pl().to_dicts()[0]
        report.risk_levels = dict(con.execute(
            "SELECT risk_level, count(*) FROM marts.lecture_progress GROUP BY 1"
        ).fetchall())


def run_pipeline(
    landing: Path,
    warehouse: Path,
    as_of: str | None = None,
    timezone: str = DEFAULT_TIMEZONE,
    verbose: bool = False,
    lock_timeout: float = 600.0,
) -> RunReport:
    """Materialize every asset and check once; raise RunFailed with a one-line reason."""
    if not landing.is_dir():
        raise RunFailed(f"landing folder {landing} does not exist")
    if not any(find_files(landing, t) for t in TABLES):
        raise RunFailed(f"no extracts in landing folder {landing}")
    settings = ProgressSettings(landing_dir=str(landing), timezone=timezone, as_of=as_of or "")
    instant = settings.as_of_instant()  # fixed once, so every step computes as of the same time
    settings = settings.model_copy(update={"as_of": instant.isoformat(sep=" ")})
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    log_level = "INFO" if verbose else "CRITICAL"
    result = dg.materialize(
        [*core_assets, *all_checks],
        resources={"settings": settings,
                   "warehouse": WarehouseResource(path=str(warehouse),
                                                lock_timeout_seconds=lock_timeout)},
        instance=dagster_instance(),
        raise_on_error=False,
        run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
        tags={"progress/as_of": instant.isoformat(sep=" "), "progress/landing": str(landing)},
    )
    failure = run_failure(result)
    if failure:
        raise RunFailed(failure)
    report = RunReport(run_id=result.run_id, as_of=instant)
    report.warnings = [
        e.description or e.check_name for e in result.get_asset_check_evaluations() if not e.passed
    ]
    _summarize(report, warehouse)
    return report
