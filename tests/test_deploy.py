"""The production configuration (docs/deploy.md) loads: the definitions with the k8s executor
and its per-step resources, the in-process default, and the documented dagster.yaml against
Dagster's own schemas. No cluster is started: the executors are built, never run."""

from __future__ import annotations

import re
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._core.instance.config import dagster_instance_config_schema, validate_config

from pipelines import definitions, deploy

DOC = Path(__file__).resolve().parents[1] / "docs" / "deploy.md"


def jobs(defs: dg.Definitions) -> list[dg.JobDefinition]:
    found = defs.get_repository_def().get_all_jobs()
    assert found, "the definitions have no job"
    return [job for job in found if not job.name.startswith("__")]


def resolved_config(executor: dg.ExecutorDefinition) -> dict:
    """The executor's configuration after its `configured` mapping, validated by its schema."""
    result = executor.apply_config_mapping({})
    assert result.success, result.errors
    return result.value["config"]


def test_default_is_in_process(monkeypatch):
    monkeypatch.delenv(deploy.EXECUTOR_ENV, raising=False)
    for job in jobs(definitions.build()):
        assert job.executor_def is dg.in_process_executor, job.name
    # the module's own defs, loaded with the test environment (no PROGRESS_EXECUTOR in CI)
    for job in jobs(definitions.defs):
        assert job.executor_def is dg.in_process_executor, job.name


def test_k8s_executor_with_step_resources(monkeypatch):
    from dagster_k8s import k8s_job_executor

    monkeypatch.setenv(deploy.EXECUTOR_ENV, "k8s")
    monkeypatch.setenv(deploy.WORKERS_ENV, "6")
    defs = definitions.build()
    marts_ops = {  # the per-op resources name ops of the jobs that run them
        node.name for name in ("progress_job", "lake_job") for node in
        defs.resolve_job_def(name).graph.nodes
    }  # fmt: skip
    for job in jobs(defs):
        executor = job.executor_def
        assert executor.name == "k8s", job.name
        # built on dagster-k8s' executor (its config schema and creation function)
        assert executor.executor_creation_fn is k8s_job_executor.executor_creation_fn
        config = resolved_config(executor)
        assert config["max_concurrent"] == 6
        assert config["env_secrets"] == [deploy.LAKE_SECRET]
        step = config["step_k8s_config"]["container_config"]["resources"]
        assert step == {
            "requests": {"cpu": "1", "memory": "4Gi"},
            "limits": {"cpu": "2", "memory": "6Gi"},
        }
        per_step = config["per_step_k8s_config"]
        assert per_step["progress_marts"]["container_config"]["resources"] == {
            "requests": {"cpu": "2", "memory": "8Gi"},
            "limits": {"cpu": "4", "memory": "12Gi"},
        }
    # per-step entries are keyed by op name: each must name a real op, or it applies to nothing
    assert set(deploy.PER_STEP_RESOURCES) <= marts_ops


def test_multiprocess_and_refusals(monkeypatch):
    monkeypatch.setenv(deploy.EXECUTOR_ENV, "multiprocess")
    monkeypatch.setenv(deploy.WORKERS_ENV, "3")
    executor = definitions.build().resolve_job_def("daily_job").executor_def
    assert executor.executor_creation_fn is dg.multiprocess_executor.executor_creation_fn
    assert resolved_config(executor)["max_concurrent"] == 3

    monkeypatch.setenv(deploy.EXECUTOR_ENV, "celery")
    with pytest.raises(ValueError, match="PROGRESS_EXECUTOR='celery'"):
        deploy.executor()
    monkeypatch.setenv(deploy.EXECUTOR_ENV, "k8s")
    monkeypatch.setenv(deploy.WORKERS_ENV, "0")
    with pytest.raises(ValueError, match="PROGRESS_WORKERS='0'"):
        deploy.executor()


def documented_instance() -> dict:
    text = DOC.read_text(encoding="utf-8")
    match = re.search(r"<!-- dagster\.yaml -->\n```yaml\n(.*?)```", text, re.DOTALL)
    assert match, "docs/deploy.md has no dagster.yaml block"
    return yaml.safe_load(match.group(1))


def test_documented_dagster_yaml_validates(monkeypatch):
    from dagster_k8s import K8sRunLauncher
    from dagster_postgres import DagsterPostgresStorage

    monkeypatch.setenv("DAGSTER_PG_PASSWORD", "unused")
    instance = documented_instance()
    result = validate_config(dagster_instance_config_schema(), instance)
    assert result.success, result.errors

    launcher = instance["run_launcher"]
    assert (launcher["module"], launcher["class"]) == ("dagster_k8s", "K8sRunLauncher")
    result = validate_config(K8sRunLauncher.config_type(), launcher["config"])
    assert result.success, result.errors
    assert launcher["config"]["env_secrets"] == [deploy.LAKE_SECRET]

    postgres = instance["storage"]["postgres"]
    result = validate_config(DagsterPostgresStorage.config_type(), postgres)
    assert result.success, result.errors
    assert postgres["postgres_db"]["scheme"] == "postgresql+psycopg2"

    # the queue limits the local dagster.yaml has, too
    local = yaml.safe_load((DOC.parents[1] / "dagster.yaml").read_text(encoding="utf-8"))
    assert instance["concurrency"] == local["concurrency"]


def test_a_wrong_instance_block_fails_validation():
    """The schema check above can fail: a misspelt key is refused."""
    from dagster_k8s import K8sRunLauncher

    instance = documented_instance()
    config = dict(instance["run_launcher"]["config"], env_secret=["progress-lake"])
    assert not validate_config(K8sRunLauncher.config_type(), config).success
    instance["concurrency"] = {"pool": {"default_limit": 1}}
    assert not validate_config(dagster_instance_config_schema(), instance).success
