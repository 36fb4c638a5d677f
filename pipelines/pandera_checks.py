"""Turn a Pandera validation into a Dagster asset check result (failure cases as metadata)."""

from __future__ import annotations

import dagster as dg
import pandera.errors
import polars as pl

from pipelines.core.schemas import validate


def schema_check_result(model, frame: pl.DataFrame) -> dg.AssetCheckResult:
    try:
        validate(model, frame)
    except (pandera.errors.SchemaErrors, pandera.errors.SchemaError) as exc:
        cases = getattr(exc, "failure_cases", None)
        summary = str(cases.head(20)) if isinstance(cases, pl.DataFrame) else str(exc)[:2000]
        return dg.AssetCheckResult(
            passed=False, metadata={"rows": frame.height, "failure_cases": dg.MetadataValue.md(
                f"```\n{summary}\n```")},
        )
    return dg.AssetCheckResult(passed=True, metadata={"rows": frame.height})
