"""The lake run as Dagster ops: one run, one publication, fanned out over academy buckets.

    lake_prepare  (1 step)      ingest every extract into the run's private build, apply the
                                quarantine gate, cut the bucket plan into pieces (DynamicOut)
    lake_bucket   (1 per piece) marts + checks of the piece's buckets, staged as Parquet
    lake_publish  (1 step)      the rest staged, every file registered in ONE lake transaction

The rules live in `pipelines.core` (`fanout`, `lake_run`, `engine`, `ingest`); these ops only
read their resources, call core and report. Any executor runs them: in-process (one process,
steps one after another), multiprocess (`progress run --backend lake --workers N`), or
Kubernetes (docs/deploy.md). Steps share nothing but the build folder (keyed by the root run
id, so "re-execute from failure" finds the build of the run it re-executes) and the lake's
staged files; their outputs are small summaries (`fanout.Piece`).

A step that fails (or is killed) publishes nothing: only `lake_publish` writes the catalog, in
one transaction. Re-executing the run from failure reruns the failed steps, which overwrite
their own staged files, then publishes.
"""

import shutil
import time
from datetime import date, datetime

import dagster as dg
import duckdb
import polars as pl

from assets.consume import ExportConfig, export_folder
from assets.extracts import AUDIT_DOC, AUDIT_TABLE, ingest_into
from assets.marts import check_bucket
from pipelines.core import fanout, lake_run, publish
from pipelines.core.bucket_store import read_plan
from pipelines.core.contract import TABLES
from pipelines.core.evaluation import (
    RULE_EVALUATION_SCHEMA,
    evaluate_streaks,
    replace_as_of,
    sweep_pairs,
)
from pipelines.core.exports import ExportError, export_lake
from pipelines.core.gate import PublicationBlocked, ingest_causes
from pipelines.core.history import AS_OF_DATE, HISTORY_TABLES
from pipelines.core.history_schemas import HISTORY_MODELS
from pipelines.core.labels import dim_labels
from pipelines.core.marts import PROGRESS_MARTS
from pipelines.core.schemas import MART_MODELS, RuleEvaluation, validate
from pipelines.core.warehouse import document_table, read_table, replace_tables, table_exists
from pipelines.metadata import table_doc
from pipelines.pandera_checks import schema_failure
from pipelines.resources import LakeResource, ProgressSettings

BUILD = "build.duckdb"
# the tag naming the lake_job run a lake_exports_job run exports (set by the sensor)
PUBLISHED_BY = "progress/published_by"


class LakeRunConfig(dg.Config):
    """History dates (YYYY-MM-DD) the run also publishes: lecture_progress_daily, the daily
    risk summary and the alerts of each date, as of its end; none: only the current marts.
    A date's rows in the lake are replaced, other dates are kept (the schedule gives
    yesterday)."""

    history_dates: list[str] = []


def _validate_history(name: str, frame: pl.DataFrame) -> None:
    validate(HISTORY_MODELS[name], frame)


def _root(context) -> str:
    """The run id every step of this run and of its re-executions shares."""
    return context.run.root_run_id or context.run.run_id


def _block(context, lake: LakeResource, cause: str) -> None:
    """Nothing is published: keep the build aside as the rejected build, drop the folder."""
    folder = lake.build_dir(_root(context))
    publish.reject(lake.warehouse, context.run.run_id, cause, folder / BUILD)
    shutil.rmtree(folder, ignore_errors=True)
    context.log.error(f"nothing published: {cause}")
    raise PublicationBlocked(cause)


@dg.op(out=dg.DynamicOut(dict), tags={"kind": "duckdb"})
def lake_prepare(
    context: dg.OpExecutionContext,
    config: LakeRunConfig,
    settings: ProgressSettings,
    lake: LakeResource,
):
    """Ingest every extract into the run's build; gate; hand out the pieces of the plan."""
    lake.lake_config()  # a missing lake setting fails the run before anything is computed
    days = sorted({date.fromisoformat(d).isoformat() for d in config.history_dates})
    as_of = settings.as_of_instant()  # fixed once: every step computes as of this instant
    folder = lake.build_dir(_root(context))
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    results = []
    with duckdb.connect(str(folder / BUILD), config=lake.duckdb_config) as con:
        for table in TABLES:  # references first, as the ingest reads them
            result = ingest_into(
                con,
                table,
                settings.landing,
                settings.timezone,
                settings.bucket_enrollments,
                folder / "spill",
            )
            document_table(con, AUDIT_TABLE, AUDIT_DOC)
            for refused in result.refused:
                context.log.warning(f"{table}: {refused}")
            context.log.info(
                f"{table}: {result.delivered:,} delivered, {result.used:,} used, "
                f"{result.quarantined:,} quarantined"
            )
            results.append(result)
        causes = ingest_causes(results)
        labels = dim_labels()
        failure = schema_failure(MART_MODELS["dim_labels"], labels)
        if failure:
            causes.append(f"marts.dim_labels breaks its schema: {failure}")
        if not causes:
            replace_tables(
                con,
                {"marts.dim_labels": labels},
                {"marts.dim_labels": table_doc(MART_MODELS["dim_labels"])},
            )
        plan = read_plan(con) or []
    if causes:
        _block(context, lake, "; ".join(causes))
    cut = fanout.pieces(plan, lake.steps)
    context.log.info(f"{len(plan)} academy bucket(s) in {len(cut)} step(s), as of {as_of}")
    for buckets in cut:
        yield dg.DynamicOutput(
            {"buckets": buckets, "as_of": as_of.isoformat(sep=" "), "days": days},
            mapping_key=f"b{buckets[0]:04d}",
        )


@dg.op(
    retry_policy=dg.RetryPolicy(max_retries=2, delay=1.0),
    tags={"kind": "polars"},
)
def lake_bucket(
    context: dg.OpExecutionContext, settings: ProgressSettings, lake: LakeResource, piece: dict
) -> fanout.Piece:
    """The marts of a piece's buckets, checked in memory and staged with their raw rows."""
    folder = lake.build_dir(_root(context))
    as_of = datetime.fromisoformat(piece["as_of"])
    done = fanout.stage_piece(
        folder / BUILD,
        lake.lake_config(),
        _root(context),
        piece["buckets"],
        as_of,
        settings.thresholds,
        check_bucket,
        max(map(max, sweep_pairs(settings.thresholds))),
        folder,
        lake.duckdb_config,
        [date.fromisoformat(d) for d in piece.get("days", [])],
        _validate_history,
    )
    if done.failures:
        raise dg.Failure(
            description="marts not published: "
            + "; ".join(f"marts.{n} breaks its schema: {f}" for n, f in done.failures.items())
        )
    context.log.info(
        f"buckets {done.buckets[0]}..{done.buckets[-1]}: "
        + ", ".join(f"{phase} {seconds:.1f} s" for phase, seconds in done.seconds.items())
    )
    return done


def _evaluation(con, total: fanout.Piece, as_of, settings) -> pl.DataFrame:
    """marts.rule_evaluation as of the run's instant, from the streaks the steps kept."""
    outcomes = read_table(con, "raw.outcomes") if table_exists(con, "raw.outcomes") else None
    kept = fanout.kept_frame(total, "streaks")
    if outcomes is None or outcomes.is_empty() or kept is None:
        return pl.DataFrame(schema=RULE_EVALUATION_SCHEMA)
    return evaluate_streaks(kept, outcomes, as_of, sweep_pairs(settings.thresholds))


@dg.op(tags={"kind": "ducklake"})
def lake_publish(
    context: dg.OpExecutionContext,
    settings: ProgressSettings,
    lake: LakeResource,
    pieces: list[fanout.Piece],
) -> dict:
    """Stage what the bucket steps did not, then register every file in one transaction.
    Returns {"snapshot": its number, "alerts": who rose since the previous day (the frame
    `progress run` prints; None when re-executed after its commit)}."""
    root = _root(context)
    folder = lake.build_dir(root)
    config = lake.lake_config()
    done_before = lake_run.staged_snapshot(config, root)
    if done_before is not None:  # killed after its commit, then re-executed: already published
        context.log.info(f"run {root} was already published as snapshot {done_before}")
        shutil.rmtree(folder, ignore_errors=True)
        return {"snapshot": done_before, "alerts": None}
    total = fanout.merge(pieces)
    violations = [f"marts.{n}: {v}" for n, found in total.violations.items() for v in found]
    if violations:
        _block(context, lake, "; ".join(violations[:5]))
    as_of = datetime.fromisoformat(pieces[0].as_of)
    with duckdb.connect(str(folder / BUILD), config=lake.duckdb_config) as con:
        evaluation = _evaluation(con, total, as_of, settings)
        failure = schema_failure(RuleEvaluation, evaluation)
        if failure:
            _block(context, lake, f"marts.rule_evaluation breaks its schema: {failure}")
        instants = [as_of] if not evaluation.is_empty() else []
        replace_as_of(con, evaluation, instants, table_doc(RuleEvaluation))
        everything = lake_run.published_tables(con)
        docs = lake_run.table_docs(con, everything)
        rest = [t for t in everything if t not in total.rows]
        staged, rows, hashes, schemas = lake_run.stage_whole(con, config, root, rest)
    docs |= {f"marts.{name}": table_doc(MART_MODELS[name]) for name in PROGRESS_MARTS}
    history = fanout.Piece(total.buckets)  # the history tables computed here, each one file
    for name, frame in fanout.history_rest(total, _validate_history).items():
        fanout.stage_frame(history, config, root, f"marts.{name}", 0, frame)
    replace_where = {}
    if total.days:  # only the run's dates are replaced: other dates stay as published
        docs |= {f"marts.{n}": table_doc(HISTORY_MODELS[n]) for n in HISTORY_TABLES}
        dates = ", ".join("?" for _ in total.days)
        replace_where = {
            f"marts.{n}": (
                f"{AS_OF_DATE} IN ({dates})",
                [date.fromisoformat(d) for d in total.days],
            )
            for n in HISTORY_TABLES
        }
    for part in (total, history):
        staged |= part.files
        rows |= part.rows
        hashes |= part.hashes
        schemas |= part.schemas
    started = time.perf_counter()
    done = lake_run.register(
        config,
        staged,
        rows,
        hashes,
        schemas,
        docs,
        context.run.run_id,
        as_of,
        True,
        replace_where,
        root,
    )
    alerts = fanout.kept_frame(total, "run_alerts")
    shutil.rmtree(folder, ignore_errors=True)
    context.log.info(
        f"published run {context.run.run_id} to the lake: snapshot {done.snapshot}, "
        f"{done.files} files, {len(staged)} tables; the catalog transaction (with the "
        f"schema and views) took {time.perf_counter() - started:.1f} s"
    )
    for table in sorted(staged):
        context.log_event(
            dg.AssetMaterialization(
                asset_key=["lake", *table.split(".")],
                metadata={
                    "dagster/row_count": rows.get(table, 0),
                    "content_hash": hashes.get(table, ""),
                    "files": len(staged[table]),
                    "snapshot": done.snapshot,
                },
            )
        )
    return {"snapshot": done.snapshot, "alerts": alerts}


@dg.graph
def lake_run_graph():
    """One lake publication: prepare -> one step per piece of buckets -> publish."""
    lake_publish(lake_prepare().map(lake_bucket).collect())


@dg.op(tags={"kind": "parquet"})
def lake_export(
    context: dg.OpExecutionContext,
    config: ExportConfig,
    settings: ProgressSettings,
    lake: LakeResource,
) -> None:
    """Export one lake publication per academy, as `progress export --backend lake` does: the
    publication of the run named by the `progress/published_by` tag (its snapshot, pinned for
    the whole export, even if later runs have published since), else the latest one."""
    config_lake = lake.lake_config()
    run_id = context.run.tags.get(PUBLISHED_BY)
    snapshot = None
    if run_id:
        published = context.instance.get_run_by_id(run_id)
        root = (published.root_run_id or run_id) if published else run_id
        snapshot = lake_run.run_snapshot(config_lake, run_id, root)
        if snapshot is None:
            raise dg.Failure(
                description=f"run {run_id}'s publication is not in the lake (expired by "
                "`progress expire`, or published to another lake); nothing exported"
            )
    out = export_folder(config.out_dir, lake.warehouse)
    try:
        manifest = export_lake(config_lake, out, snapshot, settings.landing)
    except ExportError as exc:
        raise dg.Failure(description=str(exc)) from exc
    context.log.info(f"exported {len(manifest['files'])} files of {manifest['source']} to {out}")
    context.log_event(
        dg.AssetMaterialization(
            asset_key=["lake", "exports"],
            metadata={
                "path": dg.MetadataValue.path(str(out.absolute())),
                "source": manifest["source"],
                "as_of": manifest["as_of"] or "",
                "academies": dg.MetadataValue.json(manifest["academies"]),
                "files": len(manifest["files"]),
            },
        )
    )


@dg.graph
def lake_exports_graph():
    """The per-academy exports of one lake publication."""
    lake_export()
