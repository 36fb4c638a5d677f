"""Checks on the raw and quarantine layers: schema, quarantine share, nothing lost.

`raw_schema` and `quarantine_schema` are reported by the ingest asset itself (`ingest_checks`
gives their specs and results): it validates each frame in memory, right before writing it,
then compares the stored column types; a second read of a 50M-row table would cost more than
the ingest. The others are separate checks on the audit ledger and the stored row counts.
"""


import dagster as dg
import polars as pl

from pipelines.core.contract import SPECS, TABLES
from pipelines.core.ingest import TableIngest, missing_extract_message
from pipelines.core.schemas import RAW_MODELS, quarantine_models
from pipelines.pandera_checks import schema_check_result
from pipelines.resources import WarehouseResource

WARN_SHARE = 0.01  # any table: warn above 1% of delivered rows quarantined
BLOCK_SHARE = 0.05  # event tables: above 5% is a broken extract; the marts are not refreshed


def _audit(warehouse: WarehouseResource, table: str) -> dict:
    with warehouse.read_connection() as con:
        row = con.execute(
            "SELECT * FROM raw.ingest_audit WHERE table_name = ?", [table]
        ).pl().to_dicts()
        counts = con.execute(
            f"SELECT (SELECT count(*) FROM raw.{table}), (SELECT count(*) FROM quarantine.{table})"
        ).fetchone()
    return row[0] | {"raw_count": counts[0], "quarantine_count": counts[1]}


def quarantine_share_outcome(table: str, quarantined: int, delivered: int) -> dg.AssetCheckResult:
    """Pass below 1%; warn above; for event tables fail (ERROR, blocking the marts) above 5%."""
    share = quarantined / delivered if delivered else 0.0
    metadata = {"quarantined_rows": quarantined, "delivered_rows": delivered,
                "quarantine_share": round(share, 6)}
    if SPECS[table].is_event and share > BLOCK_SHARE:
        return dg.AssetCheckResult(
            passed=False, severity=dg.AssetCheckSeverity.ERROR, metadata=metadata,
            description=f"{table}: {share:.1%} of delivered rows quarantined (> 5%): "
            "broken extract, marts not refreshed",
        )
    if share > WARN_SHARE:
        return dg.AssetCheckResult(
            passed=False, severity=dg.AssetCheckSeverity.WARN, metadata=metadata,
            description=f"{table}: {share:.1%} of delivered rows quarantined (> 1%)",
        )
    return dg.AssetCheckResult(passed=True, metadata=metadata)


def ingest_check_specs(table: str) -> list[dg.AssetCheckSpec]:
    """The schema checks the ingest asset of `table` reports itself."""
    return [
        dg.AssetCheckSpec(
            "raw_schema", asset=dg.AssetKey(["raw", table]), blocking=True,
            description="Every row matches the contract types, ranges and key (validated in "
            "memory before writing), and the stored columns have the contract's types.",
        ),
        dg.AssetCheckSpec(
            "quarantine_schema", asset=dg.AssetKey(["quarantine", table]),
            description="Quarantined rows carry a known reason, file and record number; the "
            "stored columns have the quarantine's types.",
        ),
    ]


def ingest_check_results(result: TableIngest, stored: dict[str, pl.Schema]
                         ) -> list[dg.AssetCheckResult]:
    """raw_schema and quarantine_schema of one ingested table; `stored` maps `raw` and
    `quarantine` to the column types of the tables as written to DuckDB."""
    table = result.table
    return [
        schema_check_result(RAW_MODELS[table], result.raw, stored=stored["raw"],
                            asset_key=dg.AssetKey(["raw", table]), check_name="raw_schema"),
        schema_check_result(quarantine_models()[table], result.quarantine,
                            stored=stored["quarantine"],
                            asset_key=dg.AssetKey(["quarantine", table]),
                            check_name="quarantine_schema"),
    ]


def build_extract_checks(table: str) -> list[dg.AssetChecksDefinition]:
    raw_key = dg.AssetKey(["raw", table])

    @dg.asset_check(asset=raw_key, name="quarantine_share", blocking=True,
                    description="Share of delivered rows quarantined: warn > 1%; event tables "
                    "fail > 5% and block the marts.")
    def quarantine_share(warehouse: WarehouseResource) -> dg.AssetCheckResult:
        audit = _audit(warehouse, table)
        return quarantine_share_outcome(table, audit["quarantined_rows"], audit["delivered_rows"])

    @dg.asset_check(asset=raw_key, name="rows_conserved", blocking=True,
                    description="delivered = used + collapsed duplicates + quarantined.")
    def rows_conserved(warehouse: WarehouseResource) -> dg.AssetCheckResult:
        a = _audit(warehouse, table)
        accounted = a["raw_count"] + a["collapsed_duplicates"] + a["quarantine_count"]
        passed = accounted == a["delivered_rows"] and a["raw_count"] == a["used_rows"]
        return dg.AssetCheckResult(
            passed=passed,
            metadata={"delivered": a["delivered_rows"], "used": a["raw_count"],
                      "collapsed": a["collapsed_duplicates"], "quarantined": a["quarantine_count"]},
        )

    @dg.asset_check(asset=raw_key, name="extract_delivered",
                    description="At least one readable file was delivered for the table; warns "
                    "when it was ingested empty because nothing came or every file was refused.")
    def extract_delivered(warehouse: WarehouseResource) -> dg.AssetCheckResult:
        audit = _audit(warehouse, table)
        if audit["files"]:
            return dg.AssetCheckResult(passed=True, metadata={"files": audit["files"]})
        return dg.AssetCheckResult(
            passed=False, severity=dg.AssetCheckSeverity.WARN,
            description=missing_extract_message(table, audit["refused_files"]),
            metadata={"files": 0, "refused_files": audit["refused_files"] or ""},
        )

    return [quarantine_share, rows_conserved, extract_delivered]


extract_checks = [check for table in TABLES for check in build_extract_checks(table)]
