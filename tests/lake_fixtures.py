"""Real parts for the lake tests, started by the tests: a Postgres server from Debian's
packages (the DuckLake catalog) and moto's S3 server (the data path).

Postgres is skipped only when its binaries are absent locally; under `CI=true` their absence
fails the tests instead (`.ci/run` installs them). Every port is a free one and every folder a
fresh temporary one, so the two xdist workers each start their own server.
"""

from __future__ import annotations

import glob
import itertools
import logging
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


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

    def create_database(self) -> str:
        name = f"lake_{next(self._databases)}"
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


def start_postgres(root: Path) -> Postgres:
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
        # DuckLake decides which catalog errors to retry from their English text (lake.py)
        "-c lc_messages=C"
    )
    _run([bin_dir / "pg_ctl", "-D", data, "-o", options, "-l", root / "server.log", "-w",
          "start"], as_postgres=True)  # fmt: skip
    return Postgres(bin_dir, data, root, port, itertools.count(1))


def stop_postgres(server: Postgres) -> None:
    _run([server.bin / "pg_ctl", "-D", server.data, "-m", "fast", "-w", "stop"], as_postgres=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    if postgres_bin() is None:
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail("CI=true but Postgres is not installed (.ci/run installs it)")
        pytest.skip("Postgres binaries not installed (apt-get install postgresql)")
    root = Path(tempfile.mkdtemp(prefix="lake-pg-"))
    server = start_postgres(root)
    try:
        yield server
    finally:
        stop_postgres(server)
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class S3:
    endpoint: str  # host:port
    bucket: str
    key: str = "testing"
    secret: str = "testing"
    region: str = "us-east-1"


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3]:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield S3(endpoint=f"127.0.0.1:{port}", bucket="")
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(s3_server: S3) -> S3:
    """A fresh bucket on the session's moto server."""
    import boto3

    name = f"lake-{next(_BUCKETS)}"
    boto3.client(
        "s3",
        endpoint_url=f"http://{s3_server.endpoint}",
        aws_access_key_id=s3_server.key,
        aws_secret_access_key=s3_server.secret,
        region_name=s3_server.region,
    ).create_bucket(Bucket=name)
    return S3(s3_server.endpoint, name, s3_server.key, s3_server.secret, s3_server.region)


_BUCKETS = itertools.count(1)


@pytest.fixture
def local_lake(postgres: Postgres, tmp_path: Path):
    """A lake of its own: a fresh catalog database and a data folder."""
    from pipelines.core import lake

    return lake.LakeConfig(postgres.dsn(postgres.create_database()), str(tmp_path / "lake"))


@pytest.fixture
def s3_lake(postgres: Postgres, s3_bucket: S3):
    """A lake of its own whose data path is a fresh bucket on moto's S3 server."""
    from pipelines.core import lake

    return lake.LakeConfig(
        postgres.dsn(postgres.create_database()),
        f"s3://{s3_bucket.bucket}/academy",
        s3_endpoint=f"http://{s3_bucket.endpoint}",
        s3_key_id=s3_bucket.key,
        s3_secret=s3_bucket.secret,
        s3_region=s3_bucket.region,
    )
