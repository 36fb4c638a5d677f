"""`progress`: generate extracts, run the pipeline, query the warehouse."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pipelines.cli_bench import bench
from pipelines.cli_consume import export, report
from pipelines.cli_evaluate import evaluate
from pipelines.cli_history import alerts, alerts_table, backfill
from pipelines.cli_lake import BackendOption, CatalogOption, DataPathOption, expire, lake_config
from pipelines.cli_sql import sql
from pipelines.core.landing import DEFAULT_LANDING
from pipelines.core.vocabulary import RISK_LEVELS
from pipelines.exit_codes import ExitCode, Interrupted, fail, install_interrupt_handlers, one_line

app = typer.Typer(
    help="Academy progress pipeline: extracts -> DuckDB -> progress marts.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command()(export)
app.command()(report)
app.command()(backfill)
app.command()(alerts)
app.command()(bench)
# a query that starts with a `--` comment is the query, not an unknown option
app.command(context_settings={"ignore_unknown_options": True})(sql)
app.command()(evaluate)
app.command()(expire)
console = Console()
err = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        console.print(f"progress {version('academy-progress')}", highlight=False)
        raise typer.Exit()


@app.callback()
def _options(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Academy progress pipeline: extracts -> DuckDB -> progress marts."""


DEFAULT_WAREHOUSE = Path("data/warehouse.duckdb")
DEFAULT_TIMEZONE = "Asia/Seoul"


@app.command()
def generate(
    out: Annotated[Path, typer.Option(help="Folder to write the extracts into.")],
    academies: Annotated[int, typer.Option(min=1, help="Number of academies.")] = 2,
    enrollments: Annotated[int, typer.Option(min=1, help="Number of enrollments.")] = 300,
    seed: Annotated[int, typer.Option(help="Random seed; same seed, same files.")] = 0,
    format: Annotated[str, typer.Option("--format", help="csv or parquet.")] = "csv",
    tier: Annotated[
        str | None,
        typer.Option(
            help="Scale tier S (10k), M (100k) or L (1M enrollments), as Parquet; overrides "
            "--academies, --enrollments and --format."
        ),
    ] = None,
    outcomes: Annotated[
        bool, typer.Option(help="Also write the optional outcomes extract (PASS/FAIL/WITHDRAWN).")
    ] = True,
) -> None:
    """Write realistic synthetic extracts (with a few bad rows of every kind)."""
    from rich.progress import Progress

    from pipelines.bench import TIERS
    from pipelines.generate import OutputNotOurs, generate_extracts

    if tier is not None:
        if tier.upper() not in TIERS:
            fail(f"--tier must be one of {', '.join(TIERS)}, not {tier!r}")
        chosen = TIERS[tier.upper()]
        academies, enrollments, format = chosen.academies, chosen.enrollments, "parquet"
    if format not in ("csv", "parquet"):
        fail(f"--format must be csv or parquet, not {format!r}")
    try:
        with Progress(console=err, transient=True) as progress:
            task = progress.add_task("generating enrollments", total=enrollments)
            counts = generate_extracts(
                out,
                academies=academies,
                enrollments=enrollments,
                seed=seed,
                fmt=format,  # type: ignore[arg-type]
                outcomes=outcomes,
                progress=lambda done, total: progress.update(task, completed=done, total=total),
            )
    except OutputNotOurs as exc:
        fail(str(exc))
    table = Table("table", "rows", title=f"extracts written to {out}")
    for name, rows in counts.items():
        table.add_row(name, f"{rows:,}")
    console.print(table)


class RunDisplay:
    """Phases of a Dagster run as they happen: a live line on a terminal, plain lines in a
    log (one per finished step, with its seconds)."""

    def __init__(self, total_steps: int) -> None:
        import time

        self.clock = time.monotonic
        self.started = self.clock()
        self.total, self.done, self.step_started = total_steps, 0, {}
        self.live = err.status("starting the run") if err.is_terminal else None

    def __enter__(self) -> RunDisplay:
        if self.live:
            self.live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live:
            self.live.stop()

    def __call__(self, entry) -> None:
        event = entry.dagster_event
        if event is None or not entry.step_key:
            return
        kind = event.event_type_value
        if kind == "STEP_START":
            self.step_started[entry.step_key] = self.clock()
            if self.live:
                self.live.update(
                    f"{entry.step_key}  ({self.done}/{self.total} steps, "
                    f"{self.clock() - self.started:.0f} s)"
                )
        elif kind in ("STEP_SUCCESS", "STEP_FAILURE", "STEP_SKIPPED"):
            self.done += 1
            if not self.live:
                took = self.clock() - self.step_started.get(entry.step_key, self.clock())
                word = {"STEP_SUCCESS": "done", "STEP_FAILURE": "failed"}.get(kind, "skipped")
                err.print(
                    f"[{self.clock() - self.started:6.1f} s] {self.done}/{self.total} "
                    f"{entry.step_key} {word} ({took:.1f} s)",
                    highlight=False,
                )


def _run_json(report, warehouse: Path | str, alerts) -> dict:
    return {
        "run_id": report.run_id,
        "as_of": report.as_of.isoformat(sep=" "),
        "warehouse": str(warehouse),
        "published_at_utc": str(report.publication.get("published_at")),
        "tables": report.table_rows,
        "ledger": report.ledger,
        "quarantine_reasons": report.quarantine_reasons,
        "refused_files": report.refused_files,
        "risk_levels": {k: report.risk_levels.get(k, 0) for k in RISK_LEVELS},
        "alerts": alerts.alerts.to_dicts() if alerts is not None else None,
        "warnings": report.warnings,
    }


def _print_blocked(landing: Path, timezone: str, message: str, as_json: bool) -> None:
    """A blocked run: the same diagnosis `progress check` gives, then the one-line error."""
    from pipelines.core.diagnosis import diagnose

    try:
        diagnosis = diagnose(landing, timezone)
    except Exception:  # the run's own message is enough
        diagnosis = None
    if as_json:
        print_json(
            {
                "error": message,
                "verdict": "blocked",
                "diagnosis": diagnosis.to_dict() if diagnosis else None,
            }
        )
    elif diagnosis is not None:
        print_diagnosis(diagnosis, err)


@app.command()
def run(
    landing: Annotated[Path, typer.Option(help="Landing folder with the extracts.")] = (
        DEFAULT_LANDING
    ),
    warehouse: Annotated[
        Path,
        typer.Option(
            help="DuckDB warehouse file (with --backend lake: where the run's private build is "
            "made, beside its lock)."
        ),
    ] = DEFAULT_WAREHOUSE,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help="Instant to compute as of (e.g. '2026-05-01 23:59:59' or with an "
            "offset); default the landing folder's _landing.json as_of, else now.",
        ),
    ] = None,
    timezone: Annotated[str, typer.Option(help="Local time zone of the academy.")] = (
        DEFAULT_TIMEZONE
    ),
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose", "-v", help="Also print the row counts, the ledger and the quarantine."
        ),
    ] = False,
    logs: Annotated[bool, typer.Option("--logs", help="Show Dagster's own logs.")] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the summary as JSON (with every alert).")
    ] = False,
    lock_timeout: Annotated[
        float, typer.Option(help="Seconds to wait for another run writing the same warehouse.")
    ] = 300.0,
    show_alerts: Annotated[
        int,
        typer.Option(
            "--alerts", min=0, help="Alerts to print at most, highest risk and streak first."
        ),
    ] = 20,
    backend: BackendOption = "file",
    catalog: CatalogOption = None,
    data_path: DataPathOption = None,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="--backend lake: steps run at once (1: in this process; more: Dagster's "
            "multiprocess executor).",
        ),
    ] = 1,
    steps: Annotated[
        int | None,
        typer.Option(min=1, help="--backend lake: steps the academy buckets are cut into."),
    ] = None,
    history_date: Annotated[
        list[str] | None,
        typer.Option(
            "--history-date",
            help="--backend lake: also publish this date's daily history (YYYY-MM-DD, "
            "repeatable; the date's rows are replaced, other dates kept).",
        ),
    ] = None,
) -> None:
    """Ingest the extracts and publish the marts in one Dagster run (the definitions'
    progress_job), then summarize: publication, risk counts and the day's alerts.

    With --backend lake the run is the definitions' lake_job: the ingest, then the academy
    buckets in --steps steps (--workers at once), then one DuckLake transaction publishing
    every table (docs/lake.md)."""
    from pipelines.exit_codes import CommandFailed
    from pipelines.runner import RunFailed, check_landing, resolve_as_of

    try:  # bad input is refused before Dagster is even imported
        lake = lake_config(backend, catalog, data_path)
        if lake is None and (workers != 1 or steps or history_date):
            raise CommandFailed(
                "--workers, --steps and --history-date need --backend lake", ExitCode.USAGE
            )
        instant, source = resolve_as_of(as_of, landing, timezone)
        check_landing(landing)
    except CommandFailed as exc:
        fail(str(exc), exc.code)
    destination = str(warehouse) if lake is None else f"lake {lake.data_path}"
    if not as_json:
        err.print(
            f"run as of {instant:%Y-%m-%d %H:%M:%S} ({timezone}; from {source}): "
            f"{landing} -> {destination}",
            highlight=False,
            soft_wrap=True,
        )
    try:
        from pipelines.runner import run_lake, run_pipeline

        if lake is not None:
            report = run_lake(
                landing, warehouse, instant, timezone, lake, workers, steps, logs, history_date
            )
        else:
            with RunDisplay(total_steps=_job_steps()) as display:
                report = run_pipeline(
                    landing,
                    warehouse,
                    instant,
                    timezone,
                    logs,
                    lock_timeout,
                    on_event=None if as_json else display,
                )
    except RunFailed as exc:
        if exc.code == ExitCode.BLOCKED:
            _print_blocked(landing, timezone, str(exc), as_json)
        fail(str(exc), exc.code)
    except Exception as exc:  # never a traceback to the user
        fail(one_line(exc), ExitCode.INTERNAL)
    alerts = None
    try:
        from pipelines.backfill import alerts_from, alerts_summary, summarize_alerts

        if lake is None:
            alerts = alerts_summary(warehouse, report.as_of)
        else:
            from pipelines.core.lake import connect

            with connect(lake, snapshot=report.snapshot) as con:
                alerts = (
                    alerts_from(con, report.as_of)  # a re-executed publication
                    if report.alerts is None
                    else summarize_alerts(con, report.as_of, report.alerts)
                )
    except Exception as exc:  # alerts are a convenience; the run itself has published
        err.print(f"[yellow]warning:[/] alerts not computed: {one_line(exc)}", highlight=False)
    if lake is not None:
        destination = f"lake {lake.data_path} (snapshot {report.snapshot})"
    if as_json:
        print_json(_run_json(report, destination, alerts) | {"snapshot": report.snapshot})
        return
    _print_run(report, destination, alerts, verbose, show_alerts)


def _job_steps() -> int:
    from pipelines.definitions import defs

    return len(defs.resolve_job_def("progress_job").graph.nodes)


def _print_run(report, warehouse: Path | str, alerts, verbose: bool, show_alerts: int) -> None:
    published = report.publication.get("published_at")
    console.print(
        f"published run [bold]{report.run_id}[/] as of "
        f"{report.as_of:%Y-%m-%d %H:%M:%S} -> {warehouse}"
        + (f" (published {published:%Y-%m-%d %H:%M:%S} UTC)" if published else ""),
        highlight=False,
        soft_wrap=True,
    )
    delivered = sum(e["delivered_rows"] for e in report.ledger)
    quarantined = sum(e["quarantined_rows"] for e in report.ledger)
    console.print(
        f"extracts: {delivered:,} rows delivered, {quarantined:,} quarantined "
        f"({quarantined / delivered if delivered else 0:.1%}), "
        f"{len(report.refused_files)} refused files",
        highlight=False,
    )
    levels = " · ".join(f"{report.risk_levels.get(k, 0):,} {k}" for k in RISK_LEVELS)
    console.print(f"risk (enrollments): {levels}", highlight=False)
    if verbose:
        rows = Table("table", "rows", title="tables")
        for name, count in report.table_rows.items():
            rows.add_row(name, f"{count:,}")
        console.print(rows)
        ledger = Table(
            "table",
            "delivered",
            "used",
            "collapsed",
            "quarantined",
            title="rows delivered = used + collapsed duplicates + quarantined",
        )
        for entry in report.ledger:
            ledger.add_row(
                entry["table_name"],
                *(
                    f"{entry[k]:,}"
                    for k in (
                        "delivered_rows",
                        "used_rows",
                        "collapsed_duplicates",
                        "quarantined_rows",
                    )
                ),
            )
        console.print(ledger)
        reasons = Table("table", "reason", "rows", title="quarantine by reason")
        for table, counts in report.quarantine_reasons.items():
            for reason, count in counts.items():
                reasons.add_row(table, reason, f"{count:,}")
        console.print(reasons)
    if alerts is not None:  # a few: at L a day can have 80k alerts (80 s to render them all)
        console.print(alerts_table(alerts, show_alerts, "--alerts N; all: --json"))
    for refused in report.refused_files:
        err.print(f"[yellow]refused:[/] {refused}", highlight=False)
    for warning in report.warnings:
        err.print(f"[yellow]warning:[/] {warning}", highlight=False)
    if not verbose:
        console.print(
            "(row counts, ledger and quarantine: --verbose; a day's stored alerts: "
            "`progress alerts`)",
            highlight=False,
        )


def print_json(data: object) -> None:
    import json

    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n")


def print_diagnosis(diagnosis, out: Console) -> None:
    """The diagnosis of a landing folder, for people (`progress check`, a blocked run)."""
    files = Table("file", "encoding", "rows", "header", title=f"files in {diagnosis.landing}")
    for f in diagnosis.files:
        notes = []
        if f.refused:
            notes.append(f"[red]refused: {escape(f.refused)}[/]")
        if f.missing_required:
            notes.append("[red]missing required: " + ", ".join(f.missing_required) + "[/]")
        if f.missing_optional:
            notes.append("missing optional: " + ", ".join(f.missing_optional))
        for name, contract in f.near_misses.items():
            notes.append(f"[yellow]'{escape(name)}' looks like '{contract}'[/]")
        unknown = [u for u in f.unknown if u not in f.near_misses]
        if unknown:
            notes.append("ignored: " + escape(", ".join(unknown)))
        files.add_row(
            f.file,
            f.encoding or "-",
            "-" if f.rows is None else f"{f.rows:,}",
            "; ".join(notes) or "ok",
        )
    out.print(files)
    tables = Table(
        "table", "delivered", "used", "collapsed", "quarantined", "share", title="rows per table"
    )
    for t in diagnosis.tables.values():
        share = f"{t.share:.1%}"
        tables.add_row(
            t.table,
            f"{t.delivered:,}",
            f"{t.used:,}",
            f"{t.collapsed:,}",
            f"{t.quarantined:,}",
            f"[red]{share}[/]" if t.blocks else share,
        )
    out.print(tables)
    out.print(
        "quarantine by reason, first examples (file #record column = value):", highlight=False
    )
    for t in diagnosis.tables.values():
        for reason, count in t.reasons.items():
            shown = "; ".join(
                f"{e.file} #{e.record}" + (f" {e.column} = {e.value!r}" if e.column else "")
                for e in t.examples.get(reason, [])
            )
            out.print(
                f"  {t.table} {reason} {count:,}: {escape(shown)}", highlight=False, soft_wrap=True
            )
    if diagnosis.would_publish:
        out.print("[green]verdict: would publish[/]", highlight=False)
    else:
        out.print("[red]verdict: would block (nothing published)[/]", highlight=False)
        for line in diagnosis.blocking:
            out.print(f"  - {escape(line)}", highlight=False, soft_wrap=True)


@app.command()
def check(
    landing: Annotated[Path, typer.Option(help="Landing folder with the extracts.")] = (
        DEFAULT_LANDING
    ),
    timezone: Annotated[str, typer.Option(help="Local time zone of the academy.")] = (
        DEFAULT_TIMEZONE
    ),
    as_json: Annotated[bool, typer.Option("--json", help="Print the diagnosis as JSON.")] = False,
) -> None:
    """Check a landing folder without publishing: files, headers, quarantine, and the verdict
    (exit 0: a run would publish; 3: it would block)."""
    from pipelines.runner import RunFailed, check_landing, check_timezone

    try:
        check_timezone(timezone)
        check_landing(landing)
        from pipelines.core.diagnosis import diagnose

        diagnosis = diagnose(landing, timezone)
    except RunFailed as exc:
        fail(str(exc), exc.code)
    except Exception as exc:  # never a traceback to the user
        fail(one_line(exc), ExitCode.INTERNAL)
    if as_json:
        print_json(diagnosis.to_dict())
    else:
        print_diagnosis(diagnosis, console)
    if not diagnosis.would_publish:
        raise typer.Exit(int(ExitCode.BLOCKED))


def read_status(warehouse: Path, timezone: str) -> dict:
    """The last publication of `warehouse`, its freshness and any rejected build since."""
    import json
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    import duckdb

    from pipelines.timing import FAIL_AFTER, WARN_AFTER

    with duckdb.connect(str(warehouse), read_only=True) as con:
        row = con.execute(
            "SELECT run_id, published_at, as_of, marts_refreshed, table_rows "
            "FROM marts.publication ORDER BY published_at DESC LIMIT 1"
        ).fetchone()
    if row is None:
        raise RuntimeError(f"warehouse {warehouse} has no publication yet")
    run_id, published_utc, as_of, refreshed, table_rows = row
    published = published_utc.replace(tzinfo=UTC)
    now = datetime.now(UTC)
    age = now - published
    freshness = "FAIL" if age > FAIL_AFTER else "WARN" if age > WARN_AFTER else "OK"
    local = ZoneInfo(timezone)
    status = {
        "warehouse": str(warehouse),
        "run_id": run_id,
        "as_of": as_of.isoformat(sep=" ") if as_of else None,
        "published_at": published.astimezone(local)
        .replace(tzinfo=None)
        .isoformat(sep=" ", timespec="seconds"),
        "timezone": timezone,
        "marts_refreshed": refreshed,
        "age_hours": round(age.total_seconds() / 3600, 2),
        "freshness": freshness,
        "freshness_rule": f"WARN after {WARN_AFTER.total_seconds() / 3600:g} h, FAIL after "
        f"{FAIL_AFTER.total_seconds() / 3600:g} h (the daily schedule runs at 06:00 Asia/Seoul)",
        "table_rows": json.loads(table_rows or "{}"),
        "rejected_build": None,
    }
    from pipelines.cli_sql import rejected_locator

    locate = rejected_locator()
    rejected = Path(locate(warehouse)) if locate else None
    if rejected is not None and rejected.exists():
        built = datetime.fromtimestamp(rejected.stat().st_mtime, UTC)
        if built > published:
            status["rejected_build"] = {
                "path": str(rejected),
                "built_at": built.astimezone(local)
                .replace(tzinfo=None)
                .isoformat(sep=" ", timespec="seconds"),
                "query_with": f'progress sql --rejected --warehouse {warehouse} "..."',
            }
    return status


@app.command()
def status(
    warehouse: Annotated[Path, typer.Option(help="DuckDB warehouse file.")] = DEFAULT_WAREHOUSE,
    timezone: Annotated[str, typer.Option(help="Local time zone of the academy.")] = (
        DEFAULT_TIMEZONE
    ),
    as_json: Annotated[bool, typer.Option("--json", help="Print the status as JSON.")] = False,
) -> None:
    """The last publication (run, as-of, published at, rows per table), its freshness against
    the daily schedule, and any rejected build since."""
    from pipelines.runner import RunFailed, check_timezone

    if not warehouse.exists():
        fail(f"warehouse {warehouse} does not exist; run `progress run` first")
    try:
        check_timezone(timezone)
        found = read_status(warehouse, timezone)
    except RunFailed as exc:
        fail(str(exc), exc.code)
    except Exception as exc:  # never a traceback to the user
        fail(one_line(exc), ExitCode.INTERNAL)
    if as_json:
        print_json(found)
        return
    style = {"OK": "green", "WARN": "yellow", "FAIL": "red"}[found["freshness"]]
    console.print(
        f"last publication: run {found['run_id']}, as of {found['as_of']}, published "
        f"{found['published_at']} ({timezone})",
        highlight=False,
        soft_wrap=True,
    )
    console.print(
        f"freshness: [{style}]{found['freshness']}[/] ({found['age_hours']:g} h old; "
        f"{found['freshness_rule']})",
        highlight=False,
        soft_wrap=True,
    )
    rows = Table("table", "rows", title="rows per table at publication")
    for name, count in found["table_rows"].items():
        rows.add_row(name, f"{count:,}")
    console.print(rows)
    rejected = found["rejected_build"]
    if rejected:
        console.print(
            f"[red]rejected build since[/]: {rejected['path']} (built "
            f"{rejected['built_at']}); query it with {rejected['query_with']}",
            highlight=False,
            soft_wrap=True,
        )
    else:
        console.print("no rejected build since this publication", highlight=False)


def main() -> None:
    """The `progress` entry point: the app, with Ctrl-C and SIGTERM ending any command with
    exit 130 and one line (a run or backfill interrupted publishes nothing)."""
    install_interrupt_handlers()
    try:
        app()
    except Interrupted:
        err.print("[bold red]interrupted:[/] stopped; nothing was published", highlight=False)
        sys.exit(int(ExitCode.INTERRUPTED))


if __name__ == "__main__":
    main()
