"""A throwaway Postgres server for the lake benchmark (the DuckLake catalog), from Debian's
packages: `initdb` into a folder, the server on a free loopback port, one database per
measurement. Standard library only (the benchmark's runner imports it).

The same way as `tests/lake_fixtures.py` (which needs pytest): initdb and the server refuse to
run as root, so as root they run as the `postgres` user (`runuser`); the server runs with
`fsync=off` (a benchmark's catalog need not survive a crash) and `lc_messages=C` (DuckLake
retries catalog errors by their English text, docs/lake.md).
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import socket
import subprocess
from dataclasses import dataclass, field
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


def _run(cmd: list, as_postgres: bool = False, timeout: float = 120) -> str:
    cmd = [str(c) for c in cmd]
    if as_postgres and os.geteuid() == 0:  # initdb and the server refuse to run as root
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed: {(done.stdout + done.stderr).strip()}")
    return done.stdout


@dataclass
class Postgres:
    bin: Path
    root: Path
    port: int
    _names: itertools.count = field(default_factory=lambda: itertools.count(1))

    @property
    def data(self) -> Path:
        return self.root / "data"

    def dsn(self, database: str) -> str:
        return f"dbname={database} host=127.0.0.1 port={self.port} user=postgres"

    def _client(self, tool: str, *args: str) -> str:
        return _run([self.bin / tool, "-h", "127.0.0.1", "-p", self.port, "-U", "postgres", *args])

    def create_database(self, prefix: str = "lake", template: str | None = None) -> str:
        """A new empty database (or a copy of `template`); its name."""
        name = f"{prefix}_{next(self._names)}"
        self._client("createdb", *(["-T", template] if template else []), name)
        return name

    def drop_database(self, name: str) -> None:
        self._client("dropdb", "--if-exists", name)


def start_postgres(root: Path) -> Postgres:
    """initdb in `root` (made anew) and start the server on a free loopback port."""
    bin_dir = postgres_bin()
    if bin_dir is None:
        raise FileNotFoundError(
            "no initdb under /usr/lib/postgresql/*/bin (apt-get install postgresql)"
        )
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    server = Postgres(bin_dir, root, free_port())
    _run([bin_dir / "initdb", "-D", server.data, "-U", "postgres", "-A", "trust", "--no-sync",
          "-E", "UTF8", "--locale", "C"], as_postgres=True)  # fmt: skip
    options = (
        f"-p {server.port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c lc_messages=C"
    )
    _run([bin_dir / "pg_ctl", "-D", server.data, "-o", options, "-l", root / "server.log", "-w",
          "start"], as_postgres=True)  # fmt: skip
    return server


def stop_postgres(server: Postgres, remove: bool = True) -> None:
    """Stop the server (fast shutdown) and remove its folder."""
    try:
        _run([server.bin / "pg_ctl", "-D", server.data, "-m", "fast", "-w", "stop"],
             as_postgres=True)  # fmt: skip
    finally:
        if remove:
            shutil.rmtree(server.root, ignore_errors=True)
