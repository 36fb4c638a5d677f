"""The publication gate on the extracts (contract §1, §2): when a run publishes nothing.

Every extract table, reference or event (the contract's `TABLES`, whatever it lists), is
judged on its ingest ledger:

- **blocked** when more than 5% of its delivered rows, and at least 5 rows, were quarantined:
  the extract is taken as broken rather than as a few bad rows;
- **refused** when any of its files could not be read at all (its rows are missing);
- **warned** when more than 1% of its delivered rows were quarantined.

A blocked or refused table makes the run publish nothing. The messages name the first cause
in the user's terms; they are built here only (`blocked_message`, `refused_message`), so a
richer diagnosis (e.g. of a file's header) has one place to plug into.
"""

from __future__ import annotations

WARN_SHARE = 0.01  # any table: warn above 1% of delivered rows quarantined
BLOCK_SHARE = 0.05  # any table: above 5% ...
BLOCK_MIN_ROWS = 5  # ... and at least 5 rows quarantined: a broken extract, nothing published


def share(quarantined: int, delivered: int) -> float:
    return quarantined / delivered if delivered else 0.0


def blocks(quarantined: int, delivered: int) -> bool:
    """Contract §2: more than 5% of the delivered rows AND at least 5 rows quarantined."""
    return quarantined >= BLOCK_MIN_ROWS and share(quarantined, delivered) > BLOCK_SHARE


def warns(quarantined: int, delivered: int) -> bool:
    return share(quarantined, delivered) > WARN_SHARE


def blocked_message(
    table: str, quarantined: int, delivered: int, reason: str | None = None, file: str | None = None
) -> str:
    """`<table>: N of M rows (x%) quarantined, mostly <reason> in <file>`: `reason` and `file`
    are the most frequent (reason, source file) pair of the table's quarantine."""
    text = (
        f"{table}: {quarantined:,} of {delivered:,} rows "
        f"({share(quarantined, delivered):.1%}) quarantined"
    )
    if reason:
        text += f", mostly {reason}" + (f" in {file}" if file else "")
    return text


def warned_message(table: str, quarantined: int, delivered: int) -> str:
    return (
        f"{table}: {share(quarantined, delivered):.1%} of delivered rows quarantined "
        f"({quarantined:,} of {delivered:,}, > {WARN_SHARE:.0%})"
    )


def refused_message(refused: str) -> str:
    """A refused file as the run's cause: `<file>: refused (<reason>)` (several: `; `-joined,
    as `raw.ingest_audit.refused_files` records them)."""
    return refused


class PublicationBlocked(Exception):
    """The gate (or a schema or an invariant) stopped the run: nothing is published."""


def ingest_causes(results) -> list[str]:
    """Why a set of ingests (`ingest.TableIngest`, in contract order) blocks the run, first
    cause first: a refused file, a table over the quarantine gate, raw rows breaking their
    schema. Empty when the run may publish. (The file backend's asset checks say the same,
    one check per table: checks/extract_checks.py.)"""
    causes = []
    for result in results:
        if result.refused:
            causes.append(refused_message("; ".join(str(r) for r in result.refused)))
        if blocks(result.quarantined, result.delivered):
            reason = file = None
            if result.quarantined:
                top = (
                    result.quarantine.group_by("_reason", "_source_file")
                    .len()
                    .sort(["len", "_reason", "_source_file"], descending=[True, False, False])
                    .row(0, named=True)
                )
                reason, file = top["_reason"], top["_source_file"]
            causes.append(
                blocked_message(result.table, result.quarantined, result.delivered, reason, file)
            )
        if result.raw_failure:
            causes.append(f"raw.{result.table} breaks its schema: {result.raw_failure}")
    return causes
