"""Structural checks of docker-compose.yaml and the Dockerfile (no Docker engine needed)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from segmentation.config import DB_POOL_NAME, PROJECT_ROOT, get_settings

COMPOSE = PROJECT_ROOT / "docker-compose.yaml"
DOCKERFILE = PROJECT_ROOT / "Dockerfile"
CONSTRAINTS = PROJECT_ROOT / "constraints.txt"
INITDB = PROJECT_ROOT / "docker" / "initdb"

REQUIRED = {
    "postgres",
    "redis",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-worker",
    "airflow-triggerer",
    "airflow-init",
}
ONE_OFF = {"airflow-init"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def env(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment as a dict, whichever of the two compose forms it uses."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        return dict(item.split("=", 1) for item in raw)
    return {key: str(value) for key, value in raw.items()}


def airflow_services(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in services.items() if name.startswith("airflow-")}


def command_text(service: dict[str, Any]) -> str:
    command = service.get("command", "")
    return "\n".join(command) if isinstance(command, list) else str(command)


def test_required_services_exist(services):
    assert REQUIRED <= set(services), REQUIRED - set(services)


def test_airflow_services_use_the_common_image_and_build(compose, services):
    common = compose["x-airflow-common"]
    assert common["build"] == "."
    for name, service in airflow_services(services).items():
        assert service.get("image") == common["image"], name
        assert service.get("build") == common["build"], name


def test_airflow_services_merge_the_anchors():
    text = COMPOSE.read_text()
    assert "&airflow-common-env" in text and "&airflow-common-depends-on" in text
    for name in REQUIRED - {"postgres", "redis"}:
        block = re.search(rf"^  {name}:\n((?:    .*\n|\n)*)", text, re.MULTILINE)
        assert block and "<<: *airflow-common\n" in block.group(1), name


def test_executor_is_celery(services):
    for name, service in airflow_services(services).items():
        assert env(service)["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name


def test_broker_is_the_redis_service(services):
    broker = urlsplit(env(services["airflow-worker"])["AIRFLOW__CELERY__BROKER_URL"])
    assert broker.scheme == "redis"
    assert broker.hostname == "redis" and "redis" in services


def test_result_backend_is_the_metadata_database(services):
    common = env(services["airflow-worker"])
    backend = urlsplit(common["AIRFLOW__CELERY__RESULT_BACKEND"].removeprefix("db+"))
    metadata = urlsplit(common["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    assert backend.scheme.startswith("postgresql")
    assert backend.hostname == "postgres" and "postgres" in services
    assert backend.path == metadata.path == "/airflow"


def test_worker_is_scalable(services):
    worker = services["airflow-worker"]
    assert command_text(worker) == "celery worker"
    assert "container_name" not in worker
    assert not worker.get("ports")
    assert env(worker)["DUMB_INIT_SETSID"] == "0"


def test_long_running_services_have_healthchecks(services):
    for name in set(services) - ONE_OFF:
        check = services[name].get("healthcheck") or {}
        assert check.get("test") and not check.get("disable"), name


def test_scheduler_health_server_is_enabled(services):
    scheduler = services["airflow-scheduler"]
    assert "8974/health" in " ".join(scheduler["healthcheck"]["test"])
    assert env(scheduler)["AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK"].lower() == "true"


def test_init_migrates_both_databases_and_creates_the_pool(services):
    init = services["airflow-init"]
    script = command_text(init)
    assert "set -e" in script  # a failed step must fail the service
    assert "airflow db migrate" in script and "segmentation init-db" in script
    assert f"airflow pools set {DB_POOL_NAME} " in script
    # Pools live in the metadata database, so it must be migrated first.
    assert script.index("airflow db migrate") < script.index("airflow pools set")
    assert init["restart"] == "no"


def test_segmentation_connection_is_set_by_environment(services, monkeypatch):
    monkeypatch.delenv("SEGMENTATION_AIRFLOW_CONN_ID", raising=False)
    variable = f"AIRFLOW_CONN_{get_settings().airflow_conn_id.upper()}"
    for name, service in airflow_services(services).items():
        assert urlsplit(env(service)[variable]).hostname == "postgres", name


def test_customer_and_metadata_databases_differ(services):
    settings = env(services["airflow-init"])
    customer = urlsplit(settings["AIRFLOW_CONN_SEGMENTATION_DB"])
    metadata = urlsplit(settings["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    assert customer.hostname == metadata.hostname == "postgres"
    assert customer.path != metadata.path
    # The CLI in airflow-init migrates the same customer database the tasks use.
    cli = urlsplit(settings["SEGMENTATION_DATABASE_URL"])
    assert (cli.hostname, cli.port, cli.path) == (customer.hostname, customer.port, customer.path)


def test_postgres_init_script_creates_the_customer_database(services):
    customer_db = urlsplit(env(services["airflow-init"])["AIRFLOW_CONN_SEGMENTATION_DB"]).path.lstrip("/")
    assert any(v.startswith("./docker/initdb:/docker-entrypoint-initdb.d") for v in services["postgres"]["volumes"])
    scripts = " ".join(p.read_text() for p in sorted(INITDB.glob("*.sql")))
    assert re.search(rf"CREATE DATABASE {customer_db}\b", scripts)


def test_no_shared_models_or_data_volume(compose, services):
    for name, service in airflow_services(services).items():
        assert not service.get("volumes"), f"{name} mounts {service.get('volumes')}"
    named = set(compose.get("volumes") or {})
    for name, service in services.items():
        for volume in service.get("volumes") or []:
            source = str(volume).split(":", 1)[0]
            if source in named:
                assert name == "postgres", f"{name} mounts the named volume {source}"


def dockerfile_image() -> tuple[str, str]:
    match = re.search(r"^FROM\s+apache/airflow:(\d+\.\d+\.\d+)-python(\d+\.\d+)\s*$", DOCKERFILE.read_text(), re.M)
    assert match, "Dockerfile must start FROM apache/airflow:<version>-python<version>"
    return match.group(1), match.group(2)


def test_image_airflow_version_matches_constraints():
    pinned = re.search(r"^apache-airflow==(\S+)\s*$", CONSTRAINTS.read_text(), re.M)
    assert pinned
    assert dockerfile_image()[0] == pinned.group(1)


def test_image_python_is_311():
    assert dockerfile_image()[1] == "3.11"


def test_dockerfile_installs_with_constraints():
    installs = [line for line in DOCKERFILE.read_text().splitlines() if "pip install" in line]
    assert installs
    assert all(re.search(r"-c\s+constraints\.txt\b", line) for line in installs)
    assert any('-e ".[airflow]"' in line for line in installs)


# The PostgreSQL major version CI runs the integration tests against (the server on 127.0.0.1:5432).
CI_POSTGRES_MAJOR = "15"


def _owner(customer_db: str) -> str:
    scripts = " ".join(p.read_text() for p in sorted(INITDB.glob("*.sql")))
    match = re.search(rf"CREATE DATABASE {customer_db} OWNER (\w+)", scripts)
    assert match, "the init script must name the customer database's owner"
    return match.group(1)


def test_postgres_is_the_major_version_ci_tests(services):
    assert services["postgres"]["image"].split(":", 1)[1].split(".")[0] == CI_POSTGRES_MAJOR


def test_no_long_running_service_logs_in_as_the_database_owner(services):
    customer_db = urlsplit(env(services["airflow-init"])["AIRFLOW_CONN_SEGMENTATION_DB"]).path.lstrip("/")
    owner = _owner(customer_db)
    for name, service in airflow_services(services).items():
        for key, value in env(service).items():
            if "://" not in value or urlsplit(value).path.lstrip("/") != customer_db:
                continue
            if name == "airflow-init" and key == "SEGMENTATION_DATABASE_URL":
                assert urlsplit(value).username == owner  # migrations and roles need the owner
                continue
            assert urlsplit(value).username != owner, f"{name} {key} logs in as the owner {owner}"


def test_task_logins_are_the_scoring_and_training_roles(services):
    scripts = " ".join(p.read_text() for p in sorted(INITDB.glob("*.sql")))
    roles = (PROJECT_ROOT / "sql" / "roles.sql").read_text()
    worker = env(services["airflow-worker"])
    expected = {
        "AIRFLOW_CONN_SEGMENTATION_DB": "segmentation_pipeline",
        "AIRFLOW_CONN_SEGMENTATION_DB_TRAINING": "segmentation_training",
    }
    for variable, group in expected.items():
        login = urlsplit(worker[variable]).username
        assert re.search(rf"CREATE ROLE {login} LOGIN .* IN ROLE {group};", scripts), (variable, login)
        assert f"TO {group}" in roles
    assert "REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON segmentation.model_versions FROM segmentation_pipeline" in roles


def test_init_applies_the_roles(services):
    assert re.search(r"segmentation init-db --roles\b", command_text(services["airflow-init"]))


def test_the_signing_key_is_required(services):
    for name, service in airflow_services(services).items():
        value = env(service)["SEGMENTATION_MODEL_SIGNING_KEY"]
        assert value.startswith("${SEGMENTATION_MODEL_SIGNING_KEY:?"), name
