"""Turn a Pandera validation into a Dagster asset check result (failure cases as metadata)."""

from __future__ import annotations

import dagster as dg
import pandera.errors
import polars as pl

from pipelines.core.schemas import stored_type_mismatches, validate


def schema_failure(model, frame: pl.DataFrame) -> str | None:
    """None when `frame` satisfies `model`, else the failure cases (first 20) as text."""
    try:
        validate(model, frame)
    except (pandera.errors.SchemaErrors, pandera.errors.SchemaError) as exc:
        cases = getattr(exc, "failure_cases", None)
        return str(cases.head(20)) if isinstance(cases, pl.DataFrame) else str(exc)[:2000]
    return None


def schema_check_result(
    model,
    frame: pl.DataFrame,
    *,
    stored: pl.Schema | None = None,
    asset_key: dg.AssetKey | None = None,
    check_name: str | None = None,
    failure: str | None = None,
    rows: int | None = None,
) -> dg.AssetCheckResult:
    """Validate `frame` against `model` (unless `failure` already says how it failed) and,
    with `stored`, compare the columns as stored in DuckDB with the model's types.

    `asset_key`/`check_name` are given when an asset reports the check itself, having
    validated the frame in memory before writing it (no second read of the table). `rows`
    overrides the row count shown (a table validated in buckets).
    """
    problems = [] if stored is None else stored_type_mismatches(model, stored)
    failure = failure if failure is not None else schema_failure(model, frame)
    metadata: dict[str, object] = {"rows": frame.height if rows is None else rows}
    if failure is not None:
        metadata["failure_cases"] = dg.MetadataValue.md(f"```\n{failure}\n```")
    if problems:
        metadata["stored_types"] = dg.MetadataValue.md("\n".join(f"- {p}" for p in problems))
    return dg.AssetCheckResult(
        asset_key=asset_key,
        check_name=check_name,
        passed=failure is None and not problems,
        metadata=metadata,
        description="; ".join(
            (["rows break the schema (see failure_cases)"] if failure is not None else [])
            + problems
        )
        or None,
    )
