"""Real parts for the lake tests, started by the tests: a Postgres server from Debian's
packages (the DuckLake catalog, and the storage of a Dagster instance for multiprocess runs)
and moto's S3 server (the data path). The server helpers are `pipelines.bench.postgres`.

Postgres is skipped only when its binaries are absent locally; under `CI=true` their absence
fails the tests instead (`.ci/run` installs them). Every port is a free one and every folder a
fresh temporary one, so the two xdist workers each start their own server.
"""

from __future__ import annotations

import itertools
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

# The server helpers live outside the tests (the lake trials start their own server too).
from pipelines.bench.postgres import (  # noqa: F401 (re-exported for the lake tests)
    Postgres,
    dagster_home,
    free_port,
    postgres_bin,
    start_postgres,
    stop_postgres,
)


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


@pytest.fixture(scope="module")
def dagster_pg_home(postgres: Postgres, tmp_path_factory) -> Iterator[Path]:
    """DAGSTER_HOME of a Dagster instance of its own on the session's Postgres (a fresh
    database: runs, event logs, schedules; `pipelines.bench.postgres.dagster_home`), set in
    the environment for the test module, so the step processes of a multiprocess run and a
    re-execution from failure share it."""
    home = dagster_home(postgres, tmp_path_factory.mktemp("dagster_home"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DAGSTER_HOME", str(home))
        yield home


@pytest.fixture(scope="module")
def dagster_pg_instance(dagster_pg_home: Path):
    """The Dagster instance at `dagster_pg_home` (Postgres storage), open for the module."""
    import dagster as dg

    with dg.DagsterInstance.from_config(str(dagster_pg_home)) as instance:
        yield instance
