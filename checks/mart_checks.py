"""Checks on the marts: Pandera schemas (types, enums, keys, the rules within a row) and the
contract's cross-table invariants.

The marts asset reports these itself (`mart_check_specs` on the asset): it computes the marts
a range of enrollments at a time, validates every bucket in memory before writing it (a bucket
that breaks its schema stops the publication), evaluates the invariants on the same frames
(every invariant holds per enrollment, so per bucket is exact), and compares the stored
column types afterwards. Reading 30M rows back from DuckDB to check them again would cost
more than computing them.
"""

import dagster as dg
import polars as pl

from pipelines.core import invariants
from pipelines.core.marts import PROGRESS_MARTS
from pipelines.pandera_checks import schema_check_result

INVARIANTS = {
    "lecture_progress": "One row per valid enrollment (the rules within a row are schema checks).",
    "session_progress": "One row per enrollment x session; completions agree with "
    "lecture_progress.",
    "risk_log": "Each at-risk enrollment's last risk_log row equals its lecture_progress risk.",
    "clinic_links": "AUTO_FAILED = failed held sessions and AUTO_RISK = at-risk ACTIVE "
    "enrollments.",
}
SCHEMA_DESCRIPTION = (
    "Types, nullability, enums, ranges and the grain's unique key (validated "
    "in memory before writing), and the stored column types."
)


def _key(name: str) -> dg.AssetKey:
    return dg.AssetKey(["marts", name])


def mart_check_specs() -> list[dg.AssetCheckSpec]:
    """`schema` and `invariants` of each progress mart, reported by the marts asset."""
    return [
        *(
            dg.AssetCheckSpec("schema", asset=_key(name), description=SCHEMA_DESCRIPTION)
            for name in PROGRESS_MARTS
        ),
        *(
            dg.AssetCheckSpec("invariants", asset=_key(name), description=text)
            for name, text in INVARIANTS.items()
        ),
    ]


def labels_check_spec() -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec("schema", asset=_key("dim_labels"), description=SCHEMA_DESCRIPTION)


def mart_violations(marts: dict[str, pl.DataFrame], valid_enrollments: int) -> dict[str, list[str]]:
    """The invariant violations of one set of marts (all enrollments, or one bucket of them
    with its count of valid enrollments)."""
    progress = marts["lecture_progress"]
    return {
        "lecture_progress": invariants.lecture_progress_violations(progress, valid_enrollments),
        "session_progress": invariants.session_progress_violations(
            marts["session_progress"], progress
        ),
        "risk_log": invariants.risk_log_violations(marts["risk_log"], progress),
        "clinic_links": invariants.clinic_link_violations(marts["clinic_links"], progress),
    }


def invariant_result(name: str, violations: list[str]) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        asset_key=_key(name),
        check_name="invariants",
        passed=not violations,
        metadata={"violations": violations or ["none"]},
        description="; ".join(violations) or None,
    )


def schema_result(
    model,
    frame: pl.DataFrame,
    name: str,
    *,
    stored: pl.Schema | None = None,
    failure: str | None = None,
    rows: int | None = None,
) -> dg.AssetCheckResult:
    """The `schema` check of mart `name`: `failure` when a bucket already failed validation,
    `rows` the total over all buckets (`frame` is then an empty frame of the mart)."""
    return schema_check_result(
        model,
        frame,
        stored=stored,
        asset_key=_key(name),
        check_name="schema",
        failure=failure,
        rows=rows,
    )
