"""The lake run's fan-out over academy buckets: what one bucket step computes and stages, and
how the publish step puts the steps' pieces together. No Dagster here (`pipelines/lake_steps.py`
wires these functions into ops).

One lake run is one Dagster run and one publication:

1. **prepare** (one step): ingest every extract into the run's private build file (today's
   bucketed ingest, with its quarantine, audit and bucket plan), apply the quarantine gate, and
   hand out the plan's buckets in `pieces` of contiguous buckets;
2. **one step per piece** (`stage_piece`, any number at once, in other processes or on other
   machines): open the build READ-ONLY, and for each bucket of the piece compute the four
   progress marts (the engine's pure functions), validate them in memory (the caller's
   `check`: Pandera and the invariants), and stage as Parquet, one file per bucket and table,
   the marts and the bucket's rows of every raw table keyed by enrollment. A step never touches
   the catalog; its staged paths are deterministic, so a retried or re-executed step overwrites
   its own files;
3. **publish** (one step): the tables no bucket step staged (reference tables, quarantine,
   audit, labels, the rule evaluation) are staged from the build, and every file is
   registered in ONE lake transaction (`lake_run.register`), with the row counts and content
   hashes summed over the pieces (`merge`).

The pieces' figures (rows, content hashes, schemas, check results) travel to the publish step
as the steps' outputs (`Piece`, small); the rows travel only as staged files.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import duckdb
import polars as pl

from . import lake
from .bucket_store import read_bucket, read_plan
from .buckets import Bucket
from .engine import (
    _SUMMARY_INPUT,
    REFERENCE_TABLES,
    _only,
    bucket_alerts,
    bucket_history,
    read_inputs,
    risk_distribution,
)
from .evaluation import streak_summary
from .history import AS_OF_DATE, risk_daily_summary
from .ingest import BUCKETED_TABLES
from .marts import (
    LEVELS,
    MART_INPUT_COLUMNS,
    PROGRESS_MARTS,
    RiskThresholds,
    build_marts_and_streaks,
)
from .publish import add_hashes, content_hash
from .warehouse import read_table, table_exists

E = "enrollment_id"
# raw tables whose rows a bucket step stages (every row belongs to one enrollment's bucket)
RAW_BY_BUCKET = ("enrollments", *BUCKETED_TABLES)
EMPTY_HASH = content_hash(pl.DataFrame())

# A bucket's marts -> ({mart: schema failure}, {mart: [invariant violations]}), given by the
# caller (Pandera lives in the Dagster layer).
Check = Callable[[dict[str, pl.DataFrame], int], tuple[dict[str, str], dict[str, list[str]]]]
# (history table, frame) -> raises when the frame breaks its schema
Validate = Callable[[str, pl.DataFrame], object]
# Beside the build: what a bucket step keeps for the publish step (not published as such).
KEPT = {
    "streaks": "streaks",
    "narrow": "history-narrow",
    "alerts": "history-alerts",
    "run_alerts": "run-alerts",  # who rose since the previous day, for `progress run` to print
}


@dataclass
class Piece:
    """What one bucket step staged and found: small, sent to the publish step."""

    buckets: list[int]
    as_of: str = ""  # the run's instant, as the prepare step fixed it
    days: list[str] = field(default_factory=list)  # history dates of the run (ISO)
    files: dict[str, list[str]] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    hashes: dict[str, str] = field(default_factory=dict)
    schemas: dict[str, dict[str, pl.DataType]] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    violations: dict[str, list[str]] = field(default_factory=dict)
    risk: dict[str, int] = field(default_factory=lambda: dict.fromkeys(LEVELS, 0))
    # files kept beside the build for the publish step: streak summaries (the rule
    # evaluation), the history's narrow summary inputs and its alerts, one per bucket
    kept: dict[str, list[str]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def pieces(plan: Sequence[Bucket], steps: int) -> list[list[int]]:
    """The plan's bucket indices cut into at most `steps` runs of contiguous buckets, as even
    as possible (one piece [0] for an empty plan: everything in one step)."""
    if not plan:
        return [[0]]
    count = max(1, min(steps, len(plan)))
    size, extra = divmod(len(plan), count)
    out, start = [], 0
    for i in range(count):
        end = start + size + (1 if i < extra else 0)
        out.append([b.index for b in plan[start:end]])
        start = end
    return out


def lake_frame(frame: pl.DataFrame) -> pl.DataFrame:
    """A frame as the lake stores and reads it back: Enum and Categorical columns as text
    (DuckLake has no enum type), so the content hash of what is staged is the hash a reader
    of the lake computes."""
    text = [c for c, t in frame.schema.items() if isinstance(t, pl.Enum | pl.Categorical)]
    return frame.with_columns(pl.col(text).cast(pl.String)) if text else frame


def stage_frame(
    piece: Piece, config: lake.LakeConfig, stage_id: str, table: str, index: int, frame
) -> None:
    """Stage `frame` as bucket `index` of `table` and count it into `piece`."""
    frame = lake_frame(frame)
    piece.schemas.setdefault(table, dict(frame.schema))
    piece.rows[table] = piece.rows.get(table, 0) + frame.height
    piece.hashes.setdefault(table, EMPTY_HASH)
    if frame.is_empty():
        return
    path = lake.stage_path(config, stage_id, table, index)
    lake.write_staged(frame, path, config)
    piece.files.setdefault(table, []).append(path)
    piece.hashes[table] = add_hashes(piece.hashes[table], content_hash(frame))


def _keep(piece: Piece, folder: Path, kind: str, index: int, frame: pl.DataFrame) -> None:
    """Keep a bucket's frame beside the build for the publish step (a retried step
    overwrites its own file)."""
    path = folder / KEPT[kind] / f"bucket={index:04d}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(path)
    piece.kept.setdefault(kind, []).append(str(path))


def kept_frame(total: Piece, kind: str) -> pl.DataFrame | None:
    """The kept frames of one kind, every bucket's, in bucket order (None when none)."""
    paths = sorted(total.kept.get(kind, []))
    return pl.concat([pl.read_parquet(p) for p in paths]) if paths else None


def history_rest(total: Piece, validate: Validate | None) -> dict[str, pl.DataFrame]:
    """The history tables the publish step computes from the kept bucket files: the daily
    risk summary (a lecture of a split academy spans buckets) and the alerts, validated."""
    narrow, alerts = kept_frame(total, "narrow"), kept_frame(total, "alerts")
    if narrow is None or alerts is None:
        return {}
    frames = {
        "risk_daily_summary": risk_daily_summary(narrow.sort(AS_OF_DATE, E)),
        "risk_alerts": alerts.sort(AS_OF_DATE, E),
    }
    for name, frame in frames.items():
        if validate is not None:
            validate(name, frame)
    return frames


def _sorted(frame: pl.DataFrame) -> pl.DataFrame:
    """Rows by academy then enrollment, so each file's min/max statistics stay tight."""
    keys = [c for c in ("academy_id", E) if c in frame.columns]
    return frame.sort(keys) if keys else frame


def stage_piece(
    build: Path,
    config: lake.LakeConfig,
    stage_id: str,
    buckets: Sequence[int],
    as_of: datetime,
    thresholds: RiskThresholds,
    check: Check,
    max_streak: int,
    folder: Path,
    duckdb_config: dict | None = None,
    days: Sequence[date] = (),
    validate: Validate | None = None,
) -> Piece:
    """One bucket step: the marts of `buckets` (indices of the build's plan) as of `as_of`,
    checked, and staged with the buckets' raw rows; with `days`, also the buckets' daily
    history of those dates (lecture_progress_daily staged; its summary inputs and alerts kept
    in `folder` for the publish step). A bucket whose marts break their schema stops the piece
    (`failures` set, nothing more staged); violations are collected."""
    piece = Piece(
        list(buckets),
        as_of.isoformat(sep=" "),
        [d.isoformat() for d in days],
        seconds=dict.fromkeys(("read", "compute", "stage"), 0.0),
    )
    with duckdb.connect(str(build), read_only=True, config=duckdb_config or {}) as con:
        plan = read_plan(con) or []
        raw_tables = [t for t in RAW_BY_BUCKET if table_exists(con, f"raw.{t}")]
        raw_columns = {t: read_table(con, f"raw.{t}", None, "false").columns for t in raw_tables}
        outcomes = table_exists(con, "raw.outcomes")
        references = {
            t: read_table(con, f"raw.{t}", MART_INPUT_COLUMNS[t]) for t in REFERENCE_TABLES
        }
        for index in buckets:
            bucket = plan[index] if plan else None
            started = time.perf_counter()
            inputs = read_inputs(con, bucket, plan, references)
            now = time.perf_counter()
            piece.seconds["read"] += now - started
            marts, streaks = build_marts_and_streaks(inputs, as_of, thresholds)
            failures, violations = check(marts, inputs["enrollments"].height)
            if failures:
                piece.failures |= failures
                return piece
            for name, found in violations.items():
                piece.violations.setdefault(name, []).extend(found)
            for level, count in risk_distribution(marts["lecture_progress"]).items():
                piece.risk[level] += count
            rose = bucket_alerts(inputs, marts["lecture_progress"], as_of.date(), thresholds)
            _keep(piece, folder, "run_alerts", index, rose)
            if outcomes:
                ids = read_bucket(con, "outcomes", [E], bucket, plan)[E].unique()
                if ids.len():
                    summary = streak_summary(
                        streaks.filter(pl.col(E).is_in(ids.implode())),
                        _only(inputs, ids),
                        max_streak,
                    )
                    _keep(piece, folder, "streaks", index, summary)
            del streaks
            if days:
                progress, alerts = bucket_history(inputs, days, thresholds)
                if validate is not None:
                    validate("lecture_progress_daily", progress)
                _keep(piece, folder, "narrow", index, progress.select(_SUMMARY_INPUT))
                _keep(piece, folder, "alerts", index, alerts)
                table = "marts.lecture_progress_daily"
                stage_frame(piece, config, stage_id, table, index, _sorted(progress))
                del progress, alerts
            del inputs
            started, now = now, time.perf_counter()
            piece.seconds["compute"] += now - started
            for name in PROGRESS_MARTS:
                stage_frame(piece, config, stage_id, f"marts.{name}", index, _sorted(marts[name]))
            del marts
            for table in raw_tables:
                frame = (
                    read_bucket(con, table, raw_columns[table], bucket, plan)
                    if bucket is not None
                    else read_table(con, f"raw.{table}")
                )
                # in the ingest's order: the file is one academy range already, and sorting
                # cost as much as writing it (measured at M: 3.6 of 15 s for the raw tables)
                stage_frame(piece, config, stage_id, f"raw.{table}", index, frame)
            piece.seconds["stage"] += time.perf_counter() - now
    return piece


def merge(parts: Sequence[Piece]) -> Piece:
    """The pieces summed: files, rows and hashes per table, failures, violations, risk."""
    first = parts[0] if parts else Piece([])
    total = Piece(sorted(b for p in parts for b in p.buckets), first.as_of, first.days)
    for part in sorted(parts, key=lambda p: p.buckets):
        for table, files in part.files.items():
            total.files.setdefault(table, []).extend(files)
        for table, rows in part.rows.items():
            total.rows[table] = total.rows.get(table, 0) + rows
        for table, digest in part.hashes.items():
            total.hashes[table] = add_hashes(total.hashes.get(table, EMPTY_HASH), digest)
        for table, schema in part.schemas.items():
            total.schemas.setdefault(table, schema)
        total.failures |= part.failures
        for name, found in part.violations.items():
            total.violations.setdefault(name, []).extend(found)
        for level, count in part.risk.items():
            total.risk[level] = total.risk.get(level, 0) + count
        for kind, paths in part.kept.items():
            total.kept.setdefault(kind, []).extend(paths)
        for phase, seconds in part.seconds.items():
            total.seconds[phase] = total.seconds.get(phase, 0.0) + seconds
    return total
