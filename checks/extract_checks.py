"""Checks on the raw and quarantine layers: schema, the publication gate, nothing lost.

`raw_schema` and `quarantine_schema` are reported by the ingest asset itself (`ingest_checks`
gives their specs and results): it validates each frame in memory, right before writing it,
then compares the stored column types; a second read of a 50M-row table would cost more than
the ingest. The others are separate checks on the audit ledger and the stored row counts.

The publication gate (contract §1, §2; rules in `pipelines.core.gate`) is two blocking checks
on every table of the contract: `quarantine_share` (more than 5% and at least 5 rows
quarantined) and `extract_delivered` (a refused file). Failing with ERROR severity, either
makes the run publish nothing (see `pipelines.resources.WarehouseResource`).
"""

import dagster as dg
import polars as pl

from pipelines.core import gate
from pipelines.core.contract import TABLES
from pipelines.core.diagnosis import block_cause
from pipelines.core.ingest import TableIngest, missing_extract_message, missing_extract_warned
from pipelines.core.schemas import RAW_MODELS, quarantine_models
from pipelines.pandera_checks import schema_check_result
from pipelines.resources import ProgressSettings, WarehouseResource


def _audit(warehouse: WarehouseResource, table: str) -> dict:
    with warehouse.read_connection() as con:
        row = (
            con.execute("SELECT * FROM raw.ingest_audit WHERE table_name = ?", [table])
            .pl()
            .to_dicts()
        )
        counts = con.execute(
            f"SELECT (SELECT count(*) FROM raw.{table}), (SELECT count(*) FROM quarantine.{table})"
        ).fetchone()
    return row[0] | {"raw_count": counts[0], "quarantine_count": counts[1]}


def quarantine_share_outcome(
    table: str,
    quarantined: int,
    delivered: int,
    reason: str | None = None,
    file: str | None = None,
    cause: str | None = None,
) -> dg.AssetCheckResult:
    """Pass up to 1%; warn above; fail (ERROR: nothing is published) when the gate blocks.
    `reason` and `file`: the table's most frequent quarantine reason and source file; `cause`:
    the likeliest cause (`pipelines.core.diagnosis`, as `progress check` gives it)."""
    metadata = {
        "quarantined_rows": quarantined,
        "delivered_rows": delivered,
        "quarantine_share": round(gate.share(quarantined, delivered), 6),
    }
    if gate.blocks(quarantined, delivered):
        return dg.AssetCheckResult(
            passed=False,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata=metadata | ({"likeliest_cause": cause} if cause else {}),
            description=gate.blocked_message(table, quarantined, delivered, reason, file)
            + (f"; likeliest cause: {cause}" if cause else ""),
        )
    if gate.warns(quarantined, delivered):
        return dg.AssetCheckResult(
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            metadata=metadata,
            description=gate.warned_message(table, quarantined, delivered),
        )
    return dg.AssetCheckResult(passed=True, metadata=metadata)


def _mostly(warehouse: WarehouseResource, table: str) -> tuple[str | None, str | None]:
    """The most frequent (reason, source file) of a table's quarantine."""
    with warehouse.read_connection() as con:
        found = con.execute(
            f"SELECT _reason, _source_file FROM quarantine.{table} GROUP BY ALL "
            "ORDER BY count(*) DESC, 1, 2 LIMIT 1"
        ).fetchone()
    return (found[0], found[1]) if found else (None, None)


def ingest_check_specs(table: str) -> list[dg.AssetCheckSpec]:
    """The schema checks the ingest asset of `table` reports itself."""
    return [
        dg.AssetCheckSpec(
            "raw_schema",
            asset=dg.AssetKey(["raw", table]),
            blocking=True,
            description="Every row matches the contract types, ranges and key (validated in "
            "memory before writing), and the stored columns have the contract's types.",
        ),
        dg.AssetCheckSpec(
            "quarantine_schema",
            asset=dg.AssetKey(["quarantine", table]),
            description="Quarantined rows carry a known reason, file and record number; the "
            "stored columns have the quarantine's types.",
        ),
    ]


def ingest_check_results(
    result: TableIngest, stored: dict[str, pl.Schema]
) -> list[dg.AssetCheckResult]:
    """raw_schema and quarantine_schema of one ingested table; `stored` maps `raw` and
    `quarantine` to the column types of the tables as written to DuckDB."""
    table = result.table
    return [
        schema_check_result(
            RAW_MODELS[table],
            # validated bucket by bucket as it was written (then `raw_failure` says how)
            result.raw.clear() if result.raw_validated else result.raw,
            failure=result.raw_failure,
            rows=result.used,
            stored=stored["raw"],
            asset_key=dg.AssetKey(["raw", table]),
            check_name="raw_schema",
        ),
        schema_check_result(
            quarantine_models()[table],
            result.quarantine,
            stored=stored["quarantine"],
            asset_key=dg.AssetKey(["quarantine", table]),
            check_name="quarantine_schema",
        ),
    ]


def build_extract_checks(table: str) -> list[dg.AssetChecksDefinition]:
    raw_key = dg.AssetKey(["raw", table])

    @dg.asset_check(
        asset=raw_key,
        name="quarantine_share",
        blocking=True,
        description="Share of delivered rows quarantined: warn > 1%; more than 5% "
        "and at least 5 rows is a broken extract: the run publishes nothing.",
    )
    def quarantine_share(
        warehouse: WarehouseResource, settings: ProgressSettings
    ) -> dg.AssetCheckResult:
        audit = _audit(warehouse, table)
        quarantined, delivered = audit["quarantined_rows"], audit["delivered_rows"]
        if not gate.blocks(quarantined, delivered):
            return quarantine_share_outcome(table, quarantined, delivered)
        with warehouse.read_connection() as con:
            reasons = dict(
                con.execute(
                    f"SELECT _reason, count(*) FROM quarantine.{table} GROUP BY 1"
                ).fetchall()
            )
        cause = block_cause(settings.landing, table, reasons)
        return quarantine_share_outcome(
            table, quarantined, delivered, *_mostly(warehouse, table), cause=cause
        )

    @dg.asset_check(
        asset=raw_key,
        name="rows_conserved",
        blocking=True,
        description="delivered = used + collapsed duplicates + quarantined.",
    )
    def rows_conserved(warehouse: WarehouseResource) -> dg.AssetCheckResult:
        a = _audit(warehouse, table)
        accounted = a["raw_count"] + a["collapsed_duplicates"] + a["quarantine_count"]
        passed = accounted == a["delivered_rows"] and a["raw_count"] == a["used_rows"]
        return dg.AssetCheckResult(
            passed=passed,
            metadata={
                "delivered": a["delivered_rows"],
                "used": a["raw_count"],
                "collapsed": a["collapsed_duplicates"],
                "quarantined": a["quarantine_count"],
            },
        )

    @dg.asset_check(
        asset=raw_key,
        name="extract_delivered",
        blocking=True,
        description="Every delivered file was readable: a refused file fails "
        "(nothing is published); warns when nothing was delivered for the table (the "
        "optional outcomes extract may be absent).",
    )
    def extract_delivered(warehouse: WarehouseResource) -> dg.AssetCheckResult:
        audit = _audit(warehouse, table)
        if audit["refused_files"]:
            return dg.AssetCheckResult(
                passed=False,
                severity=dg.AssetCheckSeverity.ERROR,
                description=gate.refused_message(audit["refused_files"]),
                metadata={"files": audit["files"], "refused_files": audit["refused_files"]},
            )
        if not missing_extract_warned(table, audit["files"], refused=False):
            # delivered, or the optional outcomes extract not delivered: that is normal
            return dg.AssetCheckResult(passed=True, metadata={"files": audit["files"]})
        return dg.AssetCheckResult(
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            description=missing_extract_message(table, audit["refused_files"]),
            metadata={"files": 0, "refused_files": audit["refused_files"] or ""},
        )

    return [quarantine_share, rows_conserved, extract_delivered]


extract_checks = [check for table in TABLES for check in build_extract_checks(table)]
