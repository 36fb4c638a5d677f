"""Ingest assets: one per extract table, writing `raw.<table>` and `quarantine.<table>`.

Thin shells: the rules live in `pipelines.core.ingest`. Each table's raw and quarantine tables
and its audit row are replaced in one transaction, with (for a table with an enrollment_id) the
academy bucket plan and the rowid range of each of its buckets, or (for lectures and
enrollments, which change the plan) the plan and every range dropped: see
`pipelines.core.bucket_store`.
"""

import time
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl

from checks.extract_checks import ingest_check_results, ingest_check_specs
from pipelines.core import bucket_store, publish
from pipelines.core.buckets import plan_buckets
from pipelines.core.contract import SPECS, TABLES
from pipelines.core.ingest import (
    BUCKETED_TABLES,
    PLAN_INPUTS,
    BucketMap,
    TableIngest,
    ingest_table,
    missing_extract_message,
    missing_extract_warned,
    raw_frame_schema,
)
from pipelines.core.schemas import RAW_MODELS, quarantine_models, table_description
from pipelines.core.warehouse import (
    TableDoc,
    building,
    document_table,
    drop_building,
    read_table,
    stored_schema,
    swap_in,
    transaction,
    write_table,
)
from pipelines.core.write_behind import WriteBehind
from pipelines.metadata import definition_metadata, frame_metadata, table_doc
from pipelines.pandera_checks import schema_failure
from pipelines.resources import WAREHOUSE_POOL, ProgressSettings, WarehouseResource

AUDIT_TABLE = "raw.ingest_audit"
AUDIT_DDL = f"""
CREATE TABLE IF NOT EXISTS {AUDIT_TABLE} (
    table_name VARCHAR PRIMARY KEY,
    files INTEGER,
    refused_files VARCHAR,
    delivered_rows BIGINT,
    used_rows BIGINT,
    collapsed_duplicates BIGINT,
    quarantined_rows BIGINT,
    loaded_at TIMESTAMP
)"""
AUDIT_DOC = TableDoc(
    "One row per extract table: the 'nothing lost' ledger of the run that loaded it "
    "(delivered = used + collapsed_duplicates + quarantined).",
    {
        "table_name": "Extract table (contract section 1).",
        "files": "Files read for the table (refused files not counted).",
        "refused_files": "Files refused whole, each with its reason ('; '-separated); null "
        "when none.",
        "delivered_rows": "Data records delivered in the files read.",
        "used_rows": "Rows in raw.<table>.",
        "collapsed_duplicates": "Exact re-deliveries collapsed to their first copy.",
        "quarantined_rows": "Rows in quarantine.<table>.",
        "loaded_at": "Wall-clock time (UTC, like marts.publication.published_at) the table was "
        "loaded.",
    },
)


def audit_statements(result: TableIngest) -> list[tuple[str, list]]:
    """Rows delivered, used, collapsed and quarantined: the 'nothing lost' ledger."""
    refused = "; ".join(str(r) for r in result.refused) or None
    return [
        (AUDIT_DDL, []),
        (f"DELETE FROM {AUDIT_TABLE} WHERE table_name = ?", [result.table]),
        (
            f"INSERT INTO {AUDIT_TABLE} VALUES (?, ?, ?, ?, ?, ?, ?, now()::TIMESTAMP)",
            [
                result.table,
                len(result.files),
                refused,
                result.delivered,
                result.used,
                result.collapsed,
                result.quarantined,
            ],
        ),
    ]


def spill_folder(warehouse: Path) -> Path:
    """Where the ingest spills rows per bucket: beside the staging file, in the folder DuckDB
    spills to (`<warehouse>.building.tmp/`)."""
    staging = publish.staging_path(warehouse)
    return staging.with_name(staging.name + ".tmp")


def ingest_into(
    con: duckdb.DuckDBPyConnection,
    table: str,
    landing: Path,
    tz: str,
    target: int,
    spill: Path | None = None,
    validate: bool = True,
    timings: dict[str, float] | None = None,
) -> TableIngest:
    """Ingest `table` into raw.<table> and quarantine.<table>, with its audit row and (see
    `pipelines.core.bucket_store`) the bucket plan and ranges: the raw rows are appended to a
    side table (`warehouse.building`) and everything is swapped in by one transaction.

    A table with an enrollment_id is written bucket after bucket as the ingest hands the
    buckets out: each is validated against the raw model (Pandera, in memory: the first
    failure is kept for the raw_schema check; not with `validate=False`, the benchmark's
    ingest stage) and appended on a writer thread while the next bucket is screened, so no
    whole table is held. `timings`, when given, gets the seconds spent reading the references
    (`read_refs`) and writing to DuckDB (`write`, mostly overlapped with the screening).
    """
    timings = timings if timings is not None else {}
    started = time.perf_counter()
    spec, raw_model = SPECS[table], RAW_MODELS[table]
    refs = {t: read_table(con, f"raw.{t}") for t in sorted(set(spec.references.values()))}
    buckets = None
    if table in BUCKETED_TABLES:
        pairs = bucket_store.read_pairs(con)
        buckets = BucketMap.of(pairs, plan_buckets(pairs, target))
        del pairs
    failures: list[str] = []
    timings["read_refs"], timings["write"] = time.perf_counter() - started, 0.0

    raw = f"raw.{table}"

    def append(frame: pl.DataFrame) -> None:  # on the writer thread, the only user of `con`
        if validate and not failures:
            failure = schema_failure(raw_model, frame)
            if failure is not None:
                failures.append(failure)
        began = time.perf_counter()
        write_table(con, building(raw), frame, append=True)
        timings["write"] += time.perf_counter() - began

    try:
        write_table(con, building(raw), pl.DataFrame(schema=raw_frame_schema(spec)))
        # bucket i is validated and appended while bucket i+1 is read back and screened
        with WriteBehind(f"ingest-{table}") as behind:
            result = ingest_table(
                table,
                landing,
                tz,
                refs,
                buckets,
                emit=lambda bucket, frame: behind.submit(append, frame),
                spill=spill,
            )
        del refs
        began = time.perf_counter()
        result.raw_failure, result.raw_validated = (failures or [None])[0], validate
        with transaction(con):
            swap_in(con, raw)
            document_table(con, raw, table_doc(raw_model))
            write_table(con, f"quarantine.{table}", result.quarantine)
            document_table(con, f"quarantine.{table}", table_doc(quarantine_models()[table]))
            for sql, params in audit_statements(result):
                con.execute(sql, params)
            if buckets is not None and result.ranges is not None:
                bucket_store.write_plan(con, buckets.plan, target)
                bucket_store.write_ranges(con, table, result.ranges)
            elif table in PLAN_INPUTS:
                bucket_store.invalidate(con)
    finally:  # a refused or failed ingest leaves the previous raw table and no side table
        drop_building(con, raw)
    timings["write"] += time.perf_counter() - began  # the quarantine, audit, ranges, commit
    return result


def build_extract_asset(table: str) -> dg.AssetsDefinition:
    spec = SPECS[table]
    upstream = sorted(set(spec.references.values()))
    deps = [dg.AssetKey(["raw", t]) for t in upstream]
    raw_key, quarantine_key = dg.AssetKey(["raw", table]), dg.AssetKey(["quarantine", table])
    raw_model, quarantine_model = RAW_MODELS[table], quarantine_models()[table]

    @dg.multi_asset(
        name=f"ingest_{table}",
        pool=WAREHOUSE_POOL,
        check_specs=ingest_check_specs(table),
        specs=[
            dg.AssetSpec(
                raw_key,
                group_name="raw",
                deps=deps,
                kinds={"duckdb", "polars"},
                metadata=definition_metadata(raw_model),
                description=f"{table_description(raw_model)} Valid rows of the `{table}` "
                "extract, typed per the data contract.",
            ),
            dg.AssetSpec(
                quarantine_key,
                group_name="quarantine",
                deps=deps,
                kinds={"duckdb"},
                metadata=definition_metadata(quarantine_model),
                description=f"Rejected rows of the `{table}` extract, as delivered, with the "
                "first failing rule (`_reason`), file and record number.",
            ),
        ],
    )
    def _ingest(
        context: dg.AssetExecutionContext, settings: ProgressSettings, warehouse: WarehouseResource
    ):
        with warehouse.get_connection() as con:
            result = ingest_into(
                con,
                table,
                settings.landing,
                settings.timezone,
                settings.bucket_enrollments,
                spill_folder(warehouse.published),
            )
            document_table(con, AUDIT_TABLE, AUDIT_DOC)
            stored = {
                layer: stored_schema(con, f"{layer}.{table}") for layer in ("raw", "quarantine")
            }
        for refused in result.refused:
            context.log.warning(f"{table}: {refused}")
        # contract §1: a refused file contributes no row, the run goes on
        if missing_extract_warned(table, len(result.files), bool(result.refused)):
            refused = "; ".join(str(r) for r in result.refused) or None
            context.log.warning(missing_extract_message(table, refused))
        ledger = {
            "files": len(result.files),
            "refused_files": [str(r) for r in result.refused],
            "delivered_rows": result.delivered,
            "collapsed_duplicates": result.collapsed,
            "quarantined_rows": result.quarantined,
            "quarantine_share": round(result.quarantine_share, 6),
        }
        yield dg.MaterializeResult(
            asset_key=raw_key,
            metadata=frame_metadata(raw_model, result.raw)
            | {"dagster/row_count": result.used}
            | ledger,
        )
        yield dg.MaterializeResult(
            asset_key=quarantine_key,
            metadata=frame_metadata(quarantine_model, result.quarantine)
            | {"reasons": result.reason_counts()},
        )
        yield from ingest_check_results(result, stored)

    return _ingest


extract_assets = [build_extract_asset(table) for table in TABLES]
