"""A throwaway Postgres server from Debian's packages, for the lake tests and the lake trials
(`pipelines.bench.lake_trials`): the DuckLake catalog, and the Dagster instance's storage for
multiprocess runs. No pytest here (tests/lake_fixtures.py wraps these helpers in fixtures).

Every port is a free one and every folder a fresh one, so several can run at once. initdb and
the server refuse to run as root: as root they run as user `postgres`.
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def postgres_bin() -> Path | None:
    """The newest Debian Postgres bin folder holding `initdb`, or None."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parent.parent.name),
    )
    return Path(found[-1]).parent if found else None


@dataclass
class Postgres:
    bin: Path
    data: Path
    socket_dir: Path
    port: int
    _databases: itertools.count

    def dsn(self, database: str) -> str:
        return f"dbname={database} host=127.0.0.1 port={self.port} user=postgres"

    def create_database(self, prefix: str = "lake") -> str:
        name = f"{prefix}_{next(self._databases)}"
        _run([self.bin / "createdb", "-h", str(self.socket_dir), "-p", str(self.port),
              "-U", "postgres", name])  # fmt: skip
        return name


def _run(cmd: list, as_postgres: bool = False) -> None:
    cmd = [str(c) for c in cmd]
    if as_postgres and os.geteuid() == 0:  # initdb and the server refuse to run as root
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if done.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed: {done.stdout}{done.stderr}")


def start_postgres(root: Path, max_connections: int = 200) -> Postgres:
    """initdb in `root` and start the server on a free loopback port (a few seconds)."""
    bin_dir = postgres_bin()
    if bin_dir is None:
        raise FileNotFoundError("no initdb under /usr/lib/postgresql/*/bin")
    root.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    data = root / "data"
    _run([bin_dir / "initdb", "-D", data, "-U", "postgres", "-A", "trust", "--no-sync",
          "-E", "UTF8", "--locale", "C"], as_postgres=True)  # fmt: skip
    port = free_port()
    options = (
        f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
        f"-c max_connections={max_connections} "
        # DuckLake decides which catalog errors to retry from their English text (lake.py)
        "-c lc_messages=C"
    )
    _run([bin_dir / "pg_ctl", "-D", data, "-o", options, "-l", root / "server.log", "-w",
          "start"], as_postgres=True)  # fmt: skip
    return Postgres(bin_dir, data, root, port, itertools.count(1))


def stop_postgres(server: Postgres) -> None:
    _run([server.bin / "pg_ctl", "-D", server.data, "-m", "fast", "-w", "stop"], as_postgres=True)


def dagster_home(server: Postgres, home: Path) -> Path:
    """A DAGSTER_HOME folder whose dagster.yaml keeps runs, event logs and schedules in a
    fresh database of `server` (dagster-postgres), so the step processes of a multiprocess run
    and a later re-execution share one instance. `scheme: postgresql+psycopg2`: with
    SQLAlchemy 2.1 and psycopg 3 installed, plain `postgresql` picks a driver Dagster's
    storage does not work with."""
    database = server.create_database("dagster")
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(
        "storage:\n"
        "  postgres:\n"
        "    postgres_db:\n"
        "      username: postgres\n"
        "      hostname: 127.0.0.1\n"
        f"      port: {server.port}\n"
        f"      db_name: {database}\n"
        "      scheme: postgresql+psycopg2\n"
        "telemetry:\n"
        "  enabled: false\n"
    )
    return home
