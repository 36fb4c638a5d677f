"""Path safety: where the pipeline's outputs may go, so that no output destroys an input.

Every command that writes a file or a folder the user names (`export --out`, `report --out`,
`generate --out`) asks `check_output` first. An output is refused, with one line, when it
resolves (symlinks followed) to:

- the warehouse file or one of its companions (write-ahead log, lock, staging or rejected
  build): writing there would replace the publication readers rely on;
- a place inside the landing folder: the next run would read the output as an extract;
- a folder that holds the landing folder or the warehouse: replacing it would delete them.

Paths are resolved before they are compared, so a symlink or a `..` cannot slip past.
No orchestration dependency: the standard library only.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_LANDING = Path("data/landing")

# Files DuckDB and the publication keep beside the warehouse file `<name>`.
_COMPANIONS = (".wal", ".lock", ".building", ".building.wal")


class UnsafePath(Exception):
    """An output path that would overwrite or feed an input; the message is one line."""


def resolve(path: Path | str) -> Path:
    """The real absolute path (`~` expanded, symlinks followed as far as they exist)."""
    return Path(os.path.realpath(Path(path).expanduser()))


def resolve_warehouse(path: Path | str) -> Path:
    """The warehouse file a run publishes to: resolved *before* its lock, staging and rejected
    paths are derived from it, so a symlinked path publishes to the real file (the link stays)
    and the lock guards the real file whichever path a run was given."""
    return resolve(path)


def rejected_path(warehouse: Path) -> Path:
    """Where the last discarded build is kept for inspection: `warehouse.rejected.duckdb`
    beside `warehouse.duckdb` (same folder, so keeping it is a rename)."""
    warehouse = resolve_warehouse(warehouse)
    return warehouse.with_name(f"{warehouse.stem}.rejected{warehouse.suffix or '.duckdb'}")


def warehouse_files(warehouse: Path) -> list[Path]:
    """The warehouse file and every file the pipeline keeps beside it."""
    real = resolve_warehouse(warehouse)
    rejected = rejected_path(real)
    return [
        real,
        *(real.with_name(real.name + s) for s in _COMPANIONS),
        rejected,
        rejected.with_name(rejected.name + ".wal"),
    ]


def landing_folder(landing: Path | str | None = None) -> Path:
    """The landing folder outputs must stay out of: the one given, else $PROGRESS_LANDING,
    else the default `data/landing`."""
    if landing is not None and str(landing).strip():
        return Path(landing)
    env = os.environ.get("PROGRESS_LANDING", "").strip()
    return Path(env) if env else DEFAULT_LANDING


def _within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def refuse_warehouse(out: Path | str, warehouse: Path | str, option: str = "--out") -> Path:
    """Refuse an output that is the warehouse file, one of its companions, or a folder holding
    it; return the output resolved. Raises UnsafePath with one line."""
    real = resolve(out)
    if real in warehouse_files(Path(warehouse)):
        raise UnsafePath(
            f"{option} {out} is the warehouse file {warehouse} (or one of its "
            "companion files); refusing to overwrite it"
        )
    if _within(resolve_warehouse(warehouse), real):
        raise UnsafePath(
            f"{option} {out} holds the warehouse file {warehouse}; refusing to replace it"
        )
    return real


def refuse_lake_folder(out: Path | str, folder: Path | str, option: str = "--out") -> Path:
    """Refuse an output inside a lake's local data folder (its files belong to the catalog)
    or holding it; return the output resolved. Raises UnsafePath with one line."""
    real, lake = resolve(out), resolve(folder)
    if _within(real, lake) or _within(lake, real):
        raise UnsafePath(
            f"{option} {out} overlaps the lake's data folder {folder}; refusing to write there"
        )
    return real


def refuse_landing(
    out: Path | str, landing: Path | str | None = None, option: str = "--out"
) -> Path:
    """Refuse an output inside the landing folder (the next run would read it as an extract)
    or holding it; return the output resolved. Raises UnsafePath with one line."""
    real, shown = resolve(out), landing_folder(landing)
    land = resolve(shown)
    if _within(real, land):
        raise UnsafePath(
            f"{option} {out} is inside the landing folder {shown}; the next run "
            "would read it as an extract"
        )
    if _within(land, real):
        raise UnsafePath(f"{option} {out} holds the landing folder {shown}; refusing to replace it")
    return real


def check_output(
    out: Path | str, warehouse: Path | str, landing: Path | str | None = None, option: str = "--out"
) -> Path:
    """Both rules of the module doc for an export or report output; return it resolved."""
    refuse_warehouse(out, warehouse, option)
    return refuse_landing(out, landing, option)
