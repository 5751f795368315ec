"""Structural checks of docker-compose.yaml and the Dockerfile (no Docker engine needed)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from segmentation.config import DB_POOL_NAME, PROJECT_ROOT, TRAINING_CONN_ID, get_settings

COMPOSE = PROJECT_ROOT / "docker-compose.yaml"
DOCKERFILE = PROJECT_ROOT / "Dockerfile"
CONSTRAINTS = PROJECT_ROOT / "constraints.txt"
INITDB = PROJECT_ROOT / "docker" / "initdb"
ROLES_SQL = PROJECT_ROOT / "sql" / "roles.sql"

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

# What every Airflow component needs, whichever it is: set once, in x-airflow-common.
EVERY_SERVICE_NEEDS = {
    "AIRFLOW__CORE__EXECUTOR",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
    "AIRFLOW__CELERY__BROKER_URL",
    "AIRFLOW__CELERY__RESULT_BACKEND",
    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
    "AIRFLOW__API_AUTH__JWT_SECRET",
    "AIRFLOW__API__SECRET_KEY",
    "AIRFLOW__CORE__DAGS_FOLDER",
    "AIRFLOW__CORE__PLUGINS_FOLDER",
    "SEGMENTATION_MODEL_SIGNING_KEY",
}
CONN_VARIABLE = "AIRFLOW_CONN_SEGMENTATION_DB"
TRAINING_CONN_VARIABLE = f"AIRFLOW_CONN_{TRAINING_CONN_ID.upper()}"
OWNER_URL_VARIABLE = "SEGMENTATION_DATABASE_URL"
OWNER = "<owner>"  # in LEAST_LOGINS: the customer database's owner rather than a group role
# The customer-database logins of each Airflow service, by variable, each as the group role its login is in:
# exactly these, no more.
LEAST_LOGINS: dict[str, dict[str, str]] = {
    "airflow-worker": {CONN_VARIABLE: "segmentation_pipeline", TRAINING_CONN_VARIABLE: "segmentation_training"},
    "airflow-dag-processor": {CONN_VARIABLE: "segmentation_pipeline"},
    "airflow-apiserver": {CONN_VARIABLE: "segmentation_ui"},
    "airflow-scheduler": {},
    "airflow-triggerer": {},
    "airflow-init": {OWNER_URL_VARIABLE: OWNER},
}


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


def initdb_scripts() -> str:
    return " ".join(p.read_text() for p in sorted(INITDB.glob("*.sql")))


def login_groups(scripts: str) -> dict[str, set[str]]:
    """The group roles of each login the init scripts create (``CREATE ROLE x LOGIN ... IN ROLE g[, h];``)."""
    return {
        login: {group.strip() for group in groups.split(",")}
        for login, groups in re.findall(r"CREATE ROLE (\w+) LOGIN\b[^;]*?\bIN ROLE ([\w, ]+);", scripts)
    }


def customer_database(services: dict[str, dict[str, Any]]) -> str:
    """The customer database's name: the one airflow-init migrates."""
    return urlsplit(env(services["airflow-init"])[OWNER_URL_VARIABLE]).path.lstrip("/")


def customer_logins(service: dict[str, Any], customer_db: str) -> dict[str, str]:
    """The variables of ``service`` that log in to the customer database, each with its user name."""
    return {
        key: str(urlsplit(value).username)
        for key, value in env(service).items()
        if "://" in value and urlsplit(value).path.lstrip("/") == customer_db
    }


def grants_to(role: str, roles_sql: str) -> list[tuple[set[str], str, str]]:
    """(privileges, object, grantees) of each GRANT in ``roles_sql`` to ``role``; object "" for a role membership."""
    text = re.sub(r"--[^\n]*", "", roles_sql)
    found = []
    for body, grantees in re.findall(r"\bGRANT\s+(.+?)\s+TO\s+([^;]+);", text, re.IGNORECASE | re.DOTALL):
        if role not in {name.lower() for name in re.findall(r"\w+", grantees)}:
            continue
        privileges, *target = re.split(r"\s+ON\s+", body, maxsplit=1, flags=re.IGNORECASE)
        objects = " ".join(target[0].split()) if target else ""
        found.append(({p.strip().upper() for p in privileges.split(",")}, objects, " ".join(grantees.split())))
    return found


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
    assert variable == CONN_VARIABLE
    # Set per service, on those that reach the customer database: tasks (worker), failure callbacks
    # (dag-processor) and the Segmentation pages (api-server); the others have none.
    holders = {name for name, service in airflow_services(services).items() if variable in env(service)}
    assert holders == {"airflow-worker", "airflow-dag-processor", "airflow-apiserver"}
    for name in holders:
        assert urlsplit(env(services[name])[variable]).hostname == "postgres", name


def test_customer_and_metadata_databases_differ(compose, services):
    metadata = urlsplit(env(compose["x-airflow-common"])["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    cli = urlsplit(env(services["airflow-init"])[OWNER_URL_VARIABLE])
    assert cli.hostname == metadata.hostname == "postgres"
    assert cli.path != metadata.path
    # The CLI in airflow-init migrates the same customer database every service's connection uses.
    connections = [
        (name, key, urlsplit(value))
        for name, service in airflow_services(services).items()
        for key, value in env(service).items()
        if key.startswith(CONN_VARIABLE)
    ]
    assert connections
    for name, key, customer in connections:
        assert (customer.hostname, customer.port, customer.path) == (cli.hostname, cli.port, cli.path), (name, key)


def test_postgres_init_script_creates_the_customer_database(services):
    customer_db = customer_database(services)
    assert any(v.startswith("./docker/initdb:/docker-entrypoint-initdb.d") for v in services["postgres"]["volumes"])
    assert re.search(rf"CREATE DATABASE {customer_db}\b", initdb_scripts())


# The only volume of an Airflow service: the workers' CRM export files, at SEGMENTATION_EXPORT_DIR.
EXPORT_VOLUME = "crm-exports:/opt/airflow/crm-exports"


def test_no_shared_models_or_data_volume(compose, services):
    for name, service in airflow_services(services).items():
        allowed = [EXPORT_VOLUME] if name == "airflow-worker" else []
        assert (service.get("volumes") or []) == allowed, f"{name} mounts {service.get('volumes')}"
    named = set(compose.get("volumes") or {})
    for name, service in services.items():
        for volume in service.get("volumes") or []:
            source = str(volume).split(":", 1)[0]
            if source in named:
                assert (name, volume) in {("postgres", v) for v in services["postgres"]["volumes"]} | {
                    ("airflow-worker", EXPORT_VOLUME)
                }, f"{name} mounts the named volume {source}"


def test_the_worker_exports_to_its_volume(services):
    worker = services["airflow-worker"]
    assert worker["environment"]["SEGMENTATION_EXPORT_DIR"] == EXPORT_VOLUME.split(":", 1)[1]
    assert f"mkdir -p {EXPORT_VOLUME.split(':', 1)[1]}" in DOCKERFILE.read_text()


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
    match = re.search(rf"CREATE DATABASE {customer_db} OWNER (\w+)", initdb_scripts())
    assert match, "the init script must name the customer database's owner"
    return match.group(1)


def test_postgres_is_the_major_version_ci_tests(services):
    assert services["postgres"]["image"].split(":", 1)[1].split(".")[0] == CI_POSTGRES_MAJOR


def test_no_long_running_service_logs_in_as_the_database_owner(services):
    customer_db = customer_database(services)
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
    scripts = initdb_scripts()
    roles = ROLES_SQL.read_text()
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


def test_the_signing_key_is_required(compose, services):
    required = "${SEGMENTATION_MODEL_SIGNING_KEY:?"
    assert env(compose["x-airflow-common"])["SEGMENTATION_MODEL_SIGNING_KEY"].startswith(required)
    for name, service in airflow_services(services).items():
        assert env(service)["SEGMENTATION_MODEL_SIGNING_KEY"].startswith(required), name


# Settings every service needs come from x-airflow-common; credentials only some need are on those alone.


def test_every_airflow_service_has_the_common_environment_unchanged(compose, services):
    common = env(compose["x-airflow-common"])
    assert common
    for name, service in airflow_services(services).items():
        settings = env(service)
        missing = sorted(set(common) - set(settings))
        changed = sorted(key for key in set(common) & set(settings) if settings[key] != common[key])
        assert not missing, f"{name} lacks the common {missing}"
        assert not changed, f"{name} changes the common {changed}"


def test_what_every_airflow_service_needs_is_in_the_common_environment(compose):
    common = env(compose["x-airflow-common"])
    assert EVERY_SERVICE_NEEDS <= set(common), sorted(EVERY_SERVICE_NEEDS - set(common))
    assert all(common[key].strip() for key in EVERY_SERVICE_NEEDS)


def test_the_common_environment_holds_no_customer_database_login(compose, services):
    common = env(compose["x-airflow-common"])
    assert not [key for key in common if key.startswith("AIRFLOW_CONN_SEGMENTATION") or key == OWNER_URL_VARIABLE]
    assert not customer_logins(compose["x-airflow-common"], customer_database(services))


def test_every_airflow_service_has_its_least_logins_listed(services):
    assert set(airflow_services(services)) == set(LEAST_LOGINS)


@pytest.mark.parametrize("name", sorted(LEAST_LOGINS))
def test_each_service_logs_in_to_the_customer_database_with_the_least_login_it_needs(services, name):
    customer_db = customer_database(services)
    groups = login_groups(initdb_scripts())
    logins = customer_logins(services[name], customer_db)
    assert set(logins) == set(LEAST_LOGINS[name]), name
    for key, user in logins.items():
        expected = LEAST_LOGINS[name][key]
        if expected == OWNER:
            assert user == _owner(customer_db), (name, key)
        else:
            # In that group and no other: the login has the group's privileges and no more.
            assert groups.get(user) == {expected}, (name, key, user, groups.get(user))


def test_only_the_worker_holds_the_training_connection(services):
    holders = {name for name, service in airflow_services(services).items() if TRAINING_CONN_VARIABLE in env(service)}
    assert holders == {"airflow-worker"}


def test_scheduler_and_triggerer_have_no_customer_login(services):
    customer_db = customer_database(services)
    for name in ("airflow-scheduler", "airflow-triggerer"):
        settings = env(services[name])
        assert not [key for key in settings if key.startswith("AIRFLOW_CONN_SEGMENTATION")], name
        assert OWNER_URL_VARIABLE not in settings, name
        assert not customer_logins(services[name], customer_db), name


def test_the_owner_url_is_on_airflow_init_only(services):
    holders = {name for name, service in airflow_services(services).items() if OWNER_URL_VARIABLE in env(service)}
    assert holders == {"airflow-init"}
    owner_url = urlsplit(env(services["airflow-init"])[OWNER_URL_VARIABLE])
    assert owner_url.username == _owner(owner_url.path.lstrip("/"))


def test_the_api_server_holds_no_training_credential(services):
    trainer = urlsplit(env(services["airflow-worker"])[TRAINING_CONN_VARIABLE]).username
    trainers = {login for login, groups in login_groups(initdb_scripts()).items() if "segmentation_training" in groups}
    assert trainer in trainers
    for key, value in env(services["airflow-apiserver"]).items():
        assert "TRAINING" not in key.upper(), key
        assert not [login for login in trainers if login in value], key


def test_the_ui_group_may_only_read():
    roles = ROLES_SQL.read_text()
    grants = grants_to("segmentation_ui", roles)
    assert ({"SELECT"}, "ALL TABLES IN SCHEMA segmentation", "segmentation_ui") in grants
    for privileges, objects, grantees in grants:
        assert objects, f"segmentation_ui is granted a role: {grantees}"
        assert "WITH" not in grantees.upper(), grantees
        if objects.upper().startswith("SCHEMA "):
            assert privileges == {"USAGE"}, (privileges, objects)
        else:
            assert privileges == {"SELECT"}, (privileges, objects)
    # Re-applying the roles takes back anything granted to it before.
    assert "REVOKE ALL ON ALL TABLES IN SCHEMA segmentation FROM segmentation_ui;" in roles
