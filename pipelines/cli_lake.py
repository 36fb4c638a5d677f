"""The lake backend's CLI options (`--backend`, `--catalog`, `--data-path`) shared by
`progress run` and `progress sql`, and `progress expire` (retention)."""

from __future__ import annotations

from typing import Annotated

import typer

from pipelines.exit_codes import CommandFailed, ExitCode, fail, one_line

BackendOption = Annotated[
    str,
    typer.Option(
        "--backend",
        envvar="PROGRESS_BACKEND",
        help="file (the DuckDB warehouse file) or lake (DuckLake: --catalog, --data-path; "
        "docs/lake.md).",
    ),
]
CatalogOption = Annotated[
    str | None,
    typer.Option(
        "--catalog",
        envvar="PROGRESS_LAKE_CATALOG",
        help="The lake's Postgres catalog, a libpq string (e.g. 'dbname=lake host=db').",
    ),
]
DataPathOption = Annotated[
    str | None,
    typer.Option(
        "--data-path",
        envvar="PROGRESS_LAKE_DATA_PATH",
        help="The lake's data: a folder or s3://bucket/prefix/ (S3 settings from the "
        "PROGRESS_LAKE_S3_* variables).",
    ),
]


def lake_config(backend: str, catalog: str | None, data_path: str | None):
    """The LakeConfig of `--backend lake` (None for `file`); CommandFailed (usage) when a
    setting is missing or the backend unknown."""
    import os

    if backend not in ("file", "lake"):
        raise CommandFailed(f"--backend must be file or lake, not {backend!r}", ExitCode.USAGE)
    if backend == "file":
        return None
    from pipelines.core.lake import ENV, LakeConfig

    environ = dict(os.environ)
    for name, value in (("CATALOG", catalog), ("DATA_PATH", data_path)):
        if value:
            environ[ENV + name] = value
    try:
        return LakeConfig.from_env(environ)
    except ValueError:
        raise CommandFailed(
            "--backend lake needs --catalog and --data-path (or PROGRESS_LAKE_CATALOG and "
            "PROGRESS_LAKE_DATA_PATH)",
            ExitCode.USAGE,
        ) from None


def expire(
    keep_days: Annotated[
        float,
        typer.Option(min=0, help="Keep the publications of the last N days (and the current)."),
    ] = 7.0,
    catalog: CatalogOption = None,
    data_path: DataPathOption = None,
) -> None:
    """Lake retention: expire publications older than --keep-days (never the current one),
    delete the files only they used, and files staged by failed runs over 24 h ago."""
    from rich.console import Console

    try:
        config = lake_config("lake", catalog, data_path)
        from pipelines.core import lake

        with lake.connect(config) as con:
            removed = lake.expire(con, keep_days)
            kept = lake.snapshots(con).height
    except CommandFailed as exc:
        fail(str(exc), exc.code)
    except Exception as exc:  # never a traceback to the user
        fail(one_line(exc), ExitCode.INTERNAL)
    Console().print(
        f"expired {removed['snapshots']} snapshots, deleted {removed['files']} files and "
        f"{removed['orphans']} orphaned staged files; {kept} publications kept",
        highlight=False,
        soft_wrap=True,
    )
