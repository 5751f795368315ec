"""The environment docker-compose.yaml gives each Airflow service, read from the file, for local processes.

``yaml.safe_load`` resolves the anchors and merge keys; compose's variable interpolation (``$$``, ``$VAR``,
``${VAR}``, ``${VAR-default}``, ``${VAR:-default}``, ``${VAR?message}``, ``${VAR:?message}``, ``${VAR+alt}``,
``${VAR:+alt}``; no nesting) is applied to every string of the file from a given "host environment", and a
missing ``:?`` variable raises :class:`ComposeError` with compose's message. Each service's ``environment``
(falling back to ``x-airflow-common.environment``) is then mapped onto this machine, changing only:

* host ``postgres`` (port 5432) -> the test PostgreSQL server, its host and port, or the socket directory of
  the embedded server; an ``AIRFLOW_CONN_*`` value then becomes Airflow's JSON form (a URI cannot carry a
  socket directory as its host), any other URL gets ``?host=<dir>&port=<port>``;
* database names: ``segmentation`` and ``airflow`` -> the unique names the test created;
* ``redis:6379`` -> the private ``redis-server`` on 127.0.0.1:<port>;
* ``airflow-apiserver:8080`` -> 127.0.0.1:<api port>;
* paths under ``/opt/segmentation`` (where the image holds the checkout) -> this checkout, e.g. the DAGs and
  plugins folders;
* paths under the mount point of a named volume that the service mounts (``crm-exports:/opt/airflow/crm-exports``
  on the workers) -> one local folder per volume (``Endpoints.volumes / <volume>``), shared, as the volume is, by
  every process of every service that mounts it.

Logins, passwords and every other value stay as compose gives them.

What the test adds on top of compose (:data:`HARNESS_KEYS`; harness things only):

* every process: ``PATH`` with the virtualenv's bin first (the image has ``airflow`` and ``segmentation`` on
  its PATH), and the test process's own environment without any ``AIRFLOW*`` or ``SEGMENTATION_*`` key;
* every process: ``AIRFLOW_HOME``, ``SEGMENTATION_DATA_DIR`` and ``SEGMENTATION_MODELS_DIR`` of its own
  (a container's own disk; the image sets the latter two as container-local folders);
* api-server: ``--port <free port> --workers 1`` on its command line, and
  ``AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE`` (where SimpleAuthManager writes the generated
  passwords, read by the test to log in);
* scheduler: ``AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT`` (compose enables the health check
  server; each container has port 8974 to itself, local processes do not);
* triggerer: ``AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT``, for the same reason;
* Celery workers: ``--celery-hostname <name>@%h`` and ``--concurrency 2`` on the command line (on Celery's
  default queue: the Redis server is private); ``AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT`` (two workers on
  one host) and ``SEGMENTATION_WORKER_NAME`` (what a container records as its host name); and the cheap
  training of :data:`CHEAP_TRAINING` (``SEGMENTATION_CANDIDATES``, ``SEGMENTATION_CV_FOLDS``,
  ``SEGMENTATION_TUNE_CANDIDATES``), so that the nightly retrain_if_due trains fast.

``AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE=False`` is deliberately *not* added: it stops the scheduler from
creating asset-triggered runs too, and the journey checks that a promotion triggers the nightly rescore.
So unpausing ``segmentation_nightly`` starts its most recent missed 02:00 run (a CronTriggerTimetable
without catchup does that), and the test lets it run like any other nightly run.

Not mirrored: in the ``postgres`` image POSTGRES_USER (``airflow``) is a superuser; here it is a plain login
that owns the metadata database. Roles are cluster-wide: the test keeps existing ones and leaves them behind.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlencode, urlsplit, urlunsplit

import yaml
from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yaml"
INITDB_SQL = ROOT / "docker" / "initdb" / "10-segmentation.sql"
IMAGE_CHECKOUT = "/opt/segmentation"
AIRFLOW_SERVICES = (
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
    "airflow-init",
)
POSTGRES_SERVICE, REDIS_SERVICE, API_SERVICE = "postgres", "redis", "airflow-apiserver"
POSTGRES_PORT, REDIS_PORT, API_PORT = 5432, 6379, 8080

# Fast training for the worker (the nightly retrain_if_due and the retrain DAG's defaults).
CHEAP_TRAINING = {
    "SEGMENTATION_CANDIDATES": "logistic_regression",
    "SEGMENTATION_CV_FOLDS": "2",
    "SEGMENTATION_TUNE_CANDIDATES": "2",
}
HARNESS_KEYS = frozenset(
    {
        "PATH",
        "AIRFLOW_HOME",
        "SEGMENTATION_DATA_DIR",
        "SEGMENTATION_MODELS_DIR",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT",
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT",
        "SEGMENTATION_WORKER_NAME",
        *CHEAP_TRAINING,
    }
)

_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<word>[^}]*))?\}"
    r"|(?P<named>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<invalid>\{[^}]*\}?))"
)
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")


class ComposeError(ValueError):
    """docker-compose.yaml cannot be read the way compose would, or names something the test cannot map."""


# ---- interpolation -----------------------------------------------------------------------------------------


def interpolate(text: str, host_env: Mapping[str, str]) -> str:
    """``text`` with compose's variables substituted from ``host_env``."""

    def substitute(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        if match["invalid"] is not None:
            raise ComposeError(f"invalid interpolation format in {text!r}: ${match['invalid']}")
        name = match["braced"] or match["named"]
        value = host_env.get(name)
        op, word = match["op"] or "", match["word"] or ""
        present = value is not None and (value != "" or not op.startswith(":"))
        if op.endswith("-"):
            return value if present else interpolate(word, host_env)
        if op.endswith("?"):
            if not present:
                raise ComposeError(f"required variable {name} is missing a value: {word}")
            return value or ""
        if op.endswith("+"):
            return interpolate(word, host_env) if present else ""
        return value or ""

    return _VARIABLE.sub(substitute, text)


def interpolate_all(node: Any, host_env: Mapping[str, str]) -> Any:
    """Every string in a loaded compose document interpolated, as compose does before using it."""
    if isinstance(node, str):
        return interpolate(node, host_env)
    if isinstance(node, dict):
        return {key: interpolate_all(value, host_env) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolate_all(item, host_env) for item in node]
    return node


def load_compose(host_env: Mapping[str, str], path: Path = COMPOSE_FILE) -> dict[str, Any]:
    """docker-compose.yaml with anchors and merge keys resolved and its variables interpolated."""
    document = yaml.safe_load(path.read_text())
    return interpolate_all(document, host_env)


# ---- services ----------------------------------------------------------------------------------------------


def _as_dict(environment: Any, host_env: Mapping[str, str]) -> dict[str, str]:
    """A compose ``environment`` (mapping or ``KEY=VALUE`` list) as strings; a bare key takes the host's value."""
    if isinstance(environment, list):
        pairs = [item.split("=", 1) if "=" in item else [item, None] for item in environment]
        environment = dict(pairs)
    result: dict[str, str] = {}
    for key, value in (environment or {}).items():
        if value is None:
            if key in host_env:
                result[key] = host_env[key]
        elif isinstance(value, bool):
            result[key] = "true" if value else "false"
        else:
            result[key] = str(value)
    return result


def raw_environment(compose: Mapping[str, Any], service: str, host_env: Mapping[str, str]) -> dict[str, str]:
    """A service's environment as compose gives it (no mapping), else ``x-airflow-common``'s."""
    try:
        definition = compose["services"][service]
    except KeyError as exc:
        raise ComposeError(f"docker-compose.yaml has no service {service!r}") from exc
    environment = definition.get("environment")
    if environment is None:
        environment = compose.get("x-airflow-common", {}).get("environment")
    return _as_dict(environment, host_env)


def command(compose: Mapping[str, Any], service: str) -> list[str]:
    """A service's command as an argument list (a string command split on white space, as compose does)."""
    value = compose["services"][service].get("command")
    if value is None:
        raise ComposeError(f"service {service!r} has no command")
    return [str(arg) for arg in value] if isinstance(value, list) else str(value).split()


def initdb_statements(path: Path = INITDB_SQL) -> list[str]:
    """The statements of an init script, comments removed."""
    text = "\n".join(line.split("--", 1)[0] for line in path.read_text().splitlines())
    return [statement.strip() for statement in text.split(";") if statement.strip()]


def initdb_database(statements: list[str]) -> str:
    """The database an init script creates."""
    for statement in statements:
        found = re.match(r"CREATE\s+DATABASE\s+(\w+)", statement, re.IGNORECASE)
        if found:
            return found.group(1)
    raise ComposeError("the init script creates no database")


def rename_database(statement: str, databases: Mapping[str, str]) -> str:
    """``statement`` with the database of a ``CREATE DATABASE`` renamed by ``databases``."""
    found = re.match(r"(CREATE\s+DATABASE\s+)(\w+)", statement, re.IGNORECASE)
    if not found:
        return statement
    if found.group(2) not in databases:
        raise ComposeError(f"no test database for {found.group(2)!r}")
    return found.group(1) + databases[found.group(2)] + statement[found.end() :]


# ---- mapping onto this machine -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoints:
    """Where the compose services' host names, ports and database names are on this machine."""

    pg_host: str  # a host name, or the socket directory of a local server
    pg_port: int
    databases: Mapping[str, str]  # compose's database name -> the test's
    redis_port: int
    api_port: int
    checkout: Path = field(default=ROOT)
    volumes: Path | None = None  # where the named volumes' local folders are; None: no volume path mapped

    @classmethod
    def for_server(
        cls,
        admin_url: str,
        databases: Mapping[str, str],
        redis_port: int,
        api_port: int,
        volumes: Path | None = None,
    ) -> Endpoints:
        """Endpoints on the PostgreSQL server of ``admin_url`` (TCP, or a socket directory in ``?host=``)."""
        url = make_url(admin_url)
        host = url.host or url.query.get("host")
        if not isinstance(host, str) or not host:
            raise ComposeError(f"no host in the admin URL of the test server: {url!r}")
        port = url.port or int(url.query.get("port", POSTGRES_PORT))  # type: ignore[arg-type]
        return cls(host, port, dict(databases), redis_port, api_port, volumes=volumes)

    @property
    def socket(self) -> bool:
        return self.pg_host.startswith("/")

    def database(self, name: str) -> str:
        if name not in self.databases:
            raise ComposeError(f"docker-compose.yaml names database {name!r}, which the test did not create")
        return self.databases[name]

    def connect_kwargs(self, login: str, password: str, database: str) -> dict[str, Any]:
        """psycopg2.connect arguments for a compose login on one of compose's databases."""
        return {
            "host": self.pg_host,
            "port": self.pg_port,
            "user": login,
            "password": password,
            "dbname": self.database(database),
        }


def _split_netloc(netloc: str) -> tuple[str | None, str, int | None]:
    userinfo, at, hostport = netloc.rpartition("@")
    host, colon, port = hostport.rpartition(":") if ":" in hostport else (hostport, "", "")
    return (userinfo if at else None), host, (int(port) if colon and port else None)


def _postgres_url(key: str, url: str, endpoints: Endpoints) -> str:
    parts = urlsplit(url)
    userinfo, _, port = _split_netloc(parts.netloc)
    if port not in (None, POSTGRES_PORT):
        raise ComposeError(f"{key}: postgres on port {port}, expected {POSTGRES_PORT}")
    database = endpoints.database(unquote(parts.path.lstrip("/")))
    if not endpoints.socket:
        netloc = f"{userinfo}@" if userinfo is not None else ""
        netloc += f"{endpoints.pg_host}:{endpoints.pg_port}"
        return urlunsplit((parts.scheme, netloc, "/" + database, parts.query, parts.fragment))
    login, _, password = (userinfo or "").partition(":")
    if key.startswith("AIRFLOW_CONN_"):
        return json.dumps(
            {
                "conn_type": parts.scheme,
                "host": endpoints.pg_host,
                "port": endpoints.pg_port,
                "login": unquote(login) or None,
                "password": unquote(password) or None,
                "schema": database,
            }
        )
    query = "&".join(q for q in (parts.query, urlencode({"host": endpoints.pg_host, "port": endpoints.pg_port})) if q)
    netloc = f"{userinfo}@" if userinfo is not None else ""
    return urlunsplit((parts.scheme, netloc, "/" + quote(database), query, parts.fragment))


def _service_url(key: str, url: str, host: str, port: int | None, expected: int, local: int) -> str:
    if port not in (None, expected):
        raise ComposeError(f"{key}: {host} on port {port}, expected {expected}")
    parts = urlsplit(url)
    userinfo, _, _ = _split_netloc(parts.netloc)
    netloc = (f"{userinfo}@" if userinfo is not None else "") + f"127.0.0.1:{local}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def map_url(key: str, url: str, endpoints: Endpoints) -> str:
    """A URL of a compose service mapped onto this machine; other URLs unchanged."""
    _, host, port = _split_netloc(urlsplit(url).netloc)
    if host == POSTGRES_SERVICE:
        return _postgres_url(key, url, endpoints)
    if host == REDIS_SERVICE:
        return _service_url(key, url, host, port, REDIS_PORT, endpoints.redis_port)
    if host == API_SERVICE:
        return _service_url(key, url, host, port, API_PORT, endpoints.api_port)
    return url


def volume_mounts(compose: Mapping[str, Any], service: str) -> dict[str, str]:
    """The named volumes a service mounts: mount point -> volume name (bind mounts are not mapped)."""
    named = set((compose.get("volumes") or {}).keys())
    mounts = {}
    for entry in compose["services"][service].get("volumes") or []:
        if not isinstance(entry, str):
            raise ComposeError(f"{service}: only short volume syntax is mapped, not {entry!r}")
        source, _, rest = entry.partition(":")
        if source in named:
            mounts[rest.split(":")[0]] = source
    return mounts


def _under(value: str, prefix: str) -> str | None:
    """``value`` relative to the path ``prefix`` ('' for the prefix itself), or None when not under it."""
    if value == prefix:
        return ""
    return value[len(prefix) + 1 :] if value.startswith(prefix + "/") else None


def map_value(key: str, value: str, endpoints: Endpoints, mounts: Mapping[str, str] | None = None) -> str:
    """One environment value mapped onto this machine: URLs, image paths and volume paths; the rest unchanged."""
    if _URL.match(value):
        return map_url(key, value, endpoints)
    relative = _under(value, IMAGE_CHECKOUT)
    if relative is not None:
        return str(endpoints.checkout / relative)
    for mount, volume in (mounts or {}).items():
        relative = _under(value, mount)
        if relative is not None:
            if endpoints.volumes is None:
                raise ComposeError(f"{key}: {value} is on volume {volume!r}, and no local folder holds volumes")
            return str(endpoints.volumes / volume / relative)
    return value


def service_environments(
    compose: Mapping[str, Any], endpoints: Endpoints, host_env: Mapping[str, str]
) -> dict[str, dict[str, str]]:
    """The mapped environment of every Airflow service, by compose service name."""
    environments = {}
    for service in AIRFLOW_SERVICES:
        raw = raw_environment(compose, service, host_env)
        mounts = volume_mounts(compose, service)
        environments[service] = {key: map_value(key, value, endpoints, mounts) for key, value in raw.items()}
    return environments
