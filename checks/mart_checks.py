"""Checks on the marts: Pandera schemas (types, enums, keys) and the contract's invariants."""


import dagster as dg
import polars as pl

from pipelines.core import invariants
from pipelines.core.schemas import MART_MODELS
from pipelines.core.warehouse import read_table
from pipelines.pandera_checks import schema_check_result
from pipelines.resources import WarehouseResource


def _read(warehouse: WarehouseResource, *names: str) -> list[pl.DataFrame]:
    with warehouse.read_connection() as con:
        return [read_table(con, name) for name in names]


def _invariant_result(violations: list[str]) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=not violations,
        metadata={"violations": violations or ["none"]},
        description="; ".join(violations) or None,
    )


def build_schema_check(name: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(asset=dg.AssetKey(["marts", name]), name="schema",
                    description="Types, nullability, enums, ranges and the grain's unique key.")
    def _schema(warehouse: WarehouseResource) -> dg.AssetCheckResult:
        (frame,) = _read(warehouse, f"marts.{name}")
        return schema_check_result(MART_MODELS[name], frame)

    return _schema


@dg.asset_check(asset=dg.AssetKey(["marts", "lecture_progress"]), name="invariants",
                description="One row per enrollment; completed <= held/total; rate and risk "
                "rule consistent.")
def lecture_progress_invariants(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    progress, enrollments = _read(warehouse, "marts.lecture_progress", "raw.enrollments")
    return _invariant_result(invariants.lecture_progress_violations(progress, enrollments.height))


@dg.asset_check(asset=dg.AssetKey(["marts", "session_progress"]), name="invariants",
                description="One row per enrollment x session; completions agree with "
                "lecture_progress.")
def session_progress_invariants(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    sessions, progress = _read(warehouse, "marts.session_progress", "marts.lecture_progress")
    return _invariant_result(invariants.session_progress_violations(sessions, progress))


@dg.asset_check(asset=dg.AssetKey(["marts", "risk_log"]), name="invariants",
                description="Each at-risk enrollment's last risk_log row equals its "
                "lecture_progress risk.")
def risk_log_invariants(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    log, progress = _read(warehouse, "marts.risk_log", "marts.lecture_progress")
    return _invariant_result(invariants.risk_log_violations(log, progress))


@dg.asset_check(asset=dg.AssetKey(["marts", "clinic_links"]), name="invariants",
                description="AUTO_FAILED = failed held sessions and AUTO_RISK = at-risk ACTIVE "
                "enrollments.")
def clinic_links_invariants(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    links, progress = _read(warehouse, "marts.clinic_links", "marts.lecture_progress")
    return _invariant_result(invariants.clinic_link_violations(links, progress))


mart_checks = [
    *(build_schema_check(name) for name in MART_MODELS),
    lecture_progress_invariants,
    session_progress_invariants,
    risk_log_invariants,
    clinic_links_invariants,
]
