"""Start and stop a real Airflow deployment (api-server, scheduler, dag-processor, triggerer, Celery workers)
as separate processes, each with its own AIRFLOW_HOME and working directory, so nothing is shared on disk;
a private Redis server to break; and the queries the distributed tests make of the databases.

A stack either builds one environment for every process from its arguments (``AirflowStack(...)``), or
gives each process the environment of a named service, e.g. read from docker-compose.yaml
(``AirflowStack.for_services(...)``).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import psycopg2
from psycopg2 import sql
from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
DAG_ID = "segmentation_nightly"
RUN_TIMEOUT_S = 900

# Failure detection in minutes, not the defaults' quarter hour: a task whose supervisor stops
# heartbeating is failed (and so retried) after 30 s instead of 300 s, checked every 5 s; a task
# whose broker message was lost leaves `queued` after 90 s instead of 600 s. Celery keeps the
# provider's defaults: task_acks_late on, and a visibility timeout of a day, so a message held by a
# killed worker is not handed out a second time; Airflow's retry is what reruns the task.
FAST_FAILURE_DETECTION = {
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "30",
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
    "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "3",
    "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "90",
    "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT_CHECK_INTERVAL": "15",
    "AIRFLOW__CELERY__TASK_ACKS_LATE": "True",
    "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": "86400",
}


def redis_answers(host: str = REDIS_HOST, port: int = REDIS_PORT) -> bool:
    """Whether a Redis server answers PING at host:port."""
    try:
        with socket.create_connection((host, port), timeout=2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def inherited_env() -> dict[str, str]:
    """This process's environment without Airflow's or the project's settings, the virtualenv first on PATH."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "SEGMENTATION_"))}
    return {**inherited, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def airflow_connection(url: str) -> str:
    """A database URL as an AIRFLOW_CONN_* JSON value; a socket directory stays the host."""
    parsed = make_url(url)
    host = parsed.host or parsed.query.get("host")
    return json.dumps(
        {
            "conn_type": "postgres",
            "host": host,
            "port": parsed.port,
            "login": parsed.username,
            "password": parsed.password,
            "schema": parsed.database,
        }
    )


def wait_for(what: str, check: Callable[[], bool], timeout: float, every: float = 1.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not reached within {timeout:.0f} s")
        time.sleep(every)


def fetch(url: str, sql: str, params: tuple = ()) -> list[tuple]:
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall()
    finally:
        conn.close()


def copy_database(admin: str, source: str) -> str:
    """A new database on the server of ``admin`` made from ``source`` as its template; its URL.
    Nobody may be connected to ``source`` meanwhile."""
    name = f"seg_twin_{uuid.uuid4().hex[:10]}"
    conn = psycopg2.connect(admin)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            names = sql.Identifier(name), sql.Identifier(make_url(source).database)
            cur.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(*names))
    finally:
        conn.close()
    return make_url(source).set(database=name).render_as_string(hide_password=False)


class RedisServer:
    """A private ``redis-server`` on a free loopback port, without persistence, that a test may stop and
    restart on the same port; the machine's shared Redis is never touched."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @staticmethod
    def installed() -> bool:
        return shutil.which("redis-server") is not None

    @property
    def url(self) -> str:
        return f"redis://{REDIS_HOST}:{self.port}/0"

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / "redis.log").open("ab") as out:
            self.process = subprocess.Popen(
                [
                    *("redis-server", "--bind", REDIS_HOST, "--port", str(self.port)),
                    *("--save", "", "--appendonly", "no", "--dir", str(self.root)),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for(f"redis-server on port {self.port}", lambda: redis_answers(REDIS_HOST, self.port), 30, every=0.2)
        log.info("redis-server (pid %d) on port %d", self.process.pid, self.port)

    def kill(self) -> None:
        """SIGKILL: queued and unacknowledged messages are gone with it (no persistence)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None


def process_tree_groups(pid: int) -> set[int]:
    """The process groups of ``pid`` and of all its descendants (a task runner has a group of its own)."""
    groups = set()
    try:
        root = psutil.Process(pid)
        members = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return groups
    for member in members:
        try:
            groups.add(os.getpgid(member.pid))
        except ProcessLookupError:
            pass
    return groups


class AirflowStack:
    """Airflow processes sharing one metadata database and nothing on disk."""

    def __init__(
        self,
        root: Path,
        metadata_url: str,
        *,
        executor: str,
        customer_url: str,
        queue: str,
        broker_url: str = f"redis://{REDIS_HOST}:{REDIS_PORT}/0",
    ) -> None:
        self._setup(root, free_port(), queue)
        sqlalchemy_url = make_url(metadata_url).set(drivername="postgresql+psycopg2")
        rendered = sqlalchemy_url.render_as_string(hide_password=False)
        self.env = {
            **inherited_env(),
            "AIRFLOW__CORE__EXECUTOR": executor,
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.api_port}/execution/",
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(16),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": rendered,
            "AIRFLOW__CELERY__BROKER_URL": broker_url,
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + rendered,
            # A queue of its own, so that concurrent test runs sharing the Redis server never meet.
            "AIRFLOW__OPERATORS__DEFAULT_QUEUE": queue,
            # Only the runs this test triggers: no scheduled run of the nightly DAG joins in.
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "AIRFLOW_CONN_SEGMENTATION_DB": airflow_connection(customer_url),
            "SEGMENTATION_THREADS": "1",
            "SEGMENTATION_MODEL_SIGNING_KEY": os.environ.get("SEGMENTATION_MODEL_SIGNING_KEY", ""),
        }

    def _setup(self, root: Path, api_port: int, queue: str | None) -> None:
        self.root = root
        self.api_port = api_port
        self.queue = queue
        self.env: dict[str, str] = {}
        self.service_env: dict[str, dict[str, str]] = {}
        self.processes: list[tuple[str, subprocess.Popen, Path]] = []
        # The environment each process was started with (Airflow's setproctitle hides /proc/<pid>/environ).
        self.environments: dict[str, dict[str, str]] = {}

    @classmethod
    def for_services(cls, root: Path, api_port: int, service_env: Mapping[str, Mapping[str, str]]) -> AirflowStack:
        """A stack whose processes get :func:`inherited_env` and the whole environment of one named service
        each (``service=`` of :meth:`start` and :meth:`execute`), with nothing of this module's own settings;
        the api-server is to listen on ``api_port``. Workers take the default Celery queue."""
        stack = cls.__new__(cls)
        stack._setup(root, api_port, None)
        stack.env = inherited_env()
        stack.service_env = {name: dict(env) for name, env in service_env.items()}
        return stack

    def _env(self, name: str, service: str | None, extra: Mapping[str, str] | None) -> dict[str, str]:
        if service is not None and service not in self.service_env:
            raise KeyError(f"no environment for service {service!r}")
        return {**self.env, **self.service_env.get(service or "", {}), **self._home(name), **(extra or {})}

    def _home(self, name: str) -> dict[str, str]:
        home = self.root / name
        (home / "work").mkdir(parents=True, exist_ok=True)
        return {
            "AIRFLOW_HOME": str(home / "airflow"),
            "SEGMENTATION_DATA_DIR": str(home / "data"),
            "SEGMENTATION_MODELS_DIR": str(home / "models"),
        }

    def run(self, *args: str, timeout: float = 300, service: str | None = None) -> str:
        """Run an airflow CLI command to completion; its output, or CalledProcessError with it."""
        return self.execute(["airflow", *args], timeout=timeout, service=service)

    def execute(self, argv: Sequence[str], *, timeout: float = 300, service: str | None = None) -> str:
        """Run a command to completion in the CLI's home (with ``service``'s environment if given); its
        output, or CalledProcessError with it."""
        done = subprocess.run(
            list(argv),
            env=self._env("cli", service, None),
            cwd=self.root / "cli" / "work",
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            raise subprocess.CalledProcessError(done.returncode, done.args, done.stdout, done.stderr)
        return done.stdout

    def start(self, name: str, *args: str, env: Mapping[str, str] | None = None, service: str | None = None) -> None:
        """Start ``airflow *args`` in its own process group, working directory and AIRFLOW_HOME, with the
        environment of ``service`` when given, and ``env`` on top."""
        logfile = self.root / f"{name}.log"
        self.environments[name] = self._env(name, service, env)
        with logfile.open("wb") as out:
            process = subprocess.Popen(
                ["airflow", *args],
                env=self.environments[name],
                cwd=self.root / name / "work",
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes.append((name, process, logfile))
        log.info("started %s (pid %d): airflow %s", name, process.pid, " ".join(args))

    def start_core(self) -> None:
        self.start("api-server", "api-server", "--port", str(self.api_port), "--workers", "1")
        self.start("scheduler", "scheduler")
        self.start("dag-processor", "dag-processor")

    def start_worker(
        self, name: str, concurrency: int, *, service: str | None = None, env: Mapping[str, str] | None = None
    ) -> None:
        """A Celery worker on the stack's queue (or Celery's default queue when it has none)."""
        queues = ("--queues", self.queue) if self.queue else ()
        self.start(
            name,
            *("celery", "worker", *queues, "--concurrency", str(concurrency), "--celery-hostname", f"{name}@%h"),
            env={
                "SEGMENTATION_WORKER_NAME": name,
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
                **(env or {}),
            },
            service=service,
        )

    def process(self, name: str) -> subprocess.Popen:
        return next(process for started, process, _ in self.processes if started == name)

    def owner_of(self, pid: int) -> str | None:
        """The name of the started process whose tree holds ``pid``, if any."""
        try:
            chain = [psutil.Process(pid), *psutil.Process(pid).parents()]
        except psutil.NoSuchProcess:
            return None
        pids = {member.pid for member in chain}
        return next((name for name, process, _ in self.processes if process.pid in pids), None)

    def kill(self, name: str) -> None:
        """SIGKILL the whole tree of a started process: its own process group and the groups of its
        descendants (each task runner forked by a worker has one), then forget it."""
        process = self.process(name)
        groups = process_tree_groups(process.pid) | {process.pid}
        for group in groups:
            try:
                os.killpg(group, signal.SIGKILL)
            except ProcessLookupError:
                pass
        process.wait(timeout=10)
        self.processes = [entry for entry in self.processes if entry[0] != name]
        log.info("killed %s: process groups %s", name, sorted(groups))

    def task_log(self, name: str, run_id: str, task_id: str, map_index: int, attempt: int) -> Path:
        """Where the worker ``name`` writes the log of one attempt of a task instance."""
        return (
            self.root
            / name
            / "airflow"
            / "logs"
            / f"dag_id={DAG_ID}"
            / f"run_id={run_id}"
            / f"task_id={task_id}"
            / f"map_index={map_index}"
            / f"attempt={attempt}.log"
        )

    def api_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.api_port}/api/v2/version", timeout=2) as reply:
                return reply.status == 200
        except OSError:
            return False

    def segmentation_plugin_served(self) -> bool:
        """Whether the api-server mounted the Segmentation plugin (its API refuses an anonymous caller: 401)."""
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{self.api_port}/segmentation/api/summary", timeout=5)
        except urllib.error.HTTPError as exc:
            return exc.code == 401
        except OSError:
            return False
        return False

    def check_alive(self) -> None:
        """AssertionError naming any process that has exited, with the end of its log."""
        for name, process, logfile in self.processes:
            if process.poll() is not None:
                raise AssertionError(f"{name} exited with {process.returncode}:\n{self.tail(logfile)}")

    @staticmethod
    def tail(logfile: Path, lines: int = 40) -> str:
        return "\n".join(logfile.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, grace: float = 20) -> None:
        """SIGTERM every process group, then SIGKILL what is left after ``grace`` seconds."""
        for _, process, _ in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for name, process, _ in self.processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0f s; killing it", name, grace)
            try:
                os.killpg(process.pid, signal.SIGKILL)  # also children left behind by a clean exit
            except ProcessLookupError:
                pass
            process.wait(timeout=10)
        self.processes.clear()


def deploy(tmp_path: Path, name: str, metadata: str, customers: str, executor: str, **options: str) -> AirflowStack:
    """An AirflowStack under ``tmp_path / name`` with a Celery queue of its own."""
    return AirflowStack(
        tmp_path / name,
        metadata,
        executor=executor,
        customer_url=customers,
        queue=f"seg_{uuid.uuid4().hex[:12]}",
        **options,
    )


def trigger_nightly(stack: AirflowStack, metadata: str, run_id: str) -> None:
    """Wait for the DAG to be parsed, unpause it and trigger one run."""
    wait_for("the DAG parsed", lambda: bool(fetch(metadata, "SELECT 1 FROM dag WHERE dag_id = %s", (DAG_ID,))), 180)
    stack.run("dags", "unpause", DAG_ID)
    stack.run("dags", "trigger", DAG_ID, "--run-id", run_id)


def wait_run(stack: AirflowStack, metadata: str, run_id: str, timeout: float = RUN_TIMEOUT_S) -> str:
    """Wait for a triggered run to finish, checking that every process is still alive; its final state."""
    state: list[str] = []

    def finished() -> bool:
        stack.check_alive()
        rows = fetch(metadata, "SELECT state FROM dag_run WHERE dag_id = %s AND run_id = %s", (DAG_ID, run_id))
        state[:] = [rows[0][0]] if rows else []
        return bool(state) and state[0] in ("success", "failed")

    wait_for(f"run {run_id} finished", finished, timeout, every=2)
    return state[0]


def run_nightly(stack: AirflowStack, metadata: str, run_id: str) -> str:
    """Trigger the nightly DAG and wait for the run to finish; its final state."""
    trigger_nightly(stack, metadata, run_id)
    return wait_run(stack, metadata, run_id)


def task_states(metadata: str, run_id: str) -> dict[str, int]:
    rows = fetch(
        metadata,
        "SELECT state, count(*) FROM task_instance WHERE dag_id = %s AND run_id = %s GROUP BY state",
        (DAG_ID, run_id),
    )
    return {str(state): int(n) for state, n in rows}


def segments(url: str) -> list[tuple]:
    """Every customer's segment, probabilities, model version and source time, by customer id."""
    return fetch(
        url,
        """SELECT customer_id, segment, p_a, p_b, p_c, p_d, model_version, source_updated_at
           FROM segmentation.customer_segments ORDER BY customer_id""",
    )


@dataclass(frozen=True)
class Api:
    """The api-server at ``base``, called with a user's Bearer token."""

    base: str

    def login(self, username: str, password: str) -> str:
        reply = httpx.post(f"{self.base}/auth/token", json={"username": username, "password": password}, timeout=30)
        assert reply.status_code in (200, 201), (username, reply.status_code, reply.text)
        return str(reply.json()["access_token"])

    def call(
        self, method: str, path: str, token: str, body: Any = None, params: Mapping[str, Any] | None = None
    ) -> tuple[int, Any]:
        """The status and JSON body (or text) of one request."""
        reply = httpx.request(
            method,
            f"{self.base}{path}",
            json=body,
            params=params,
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
        )
        try:
            return reply.status_code, reply.json()
        except ValueError:
            return reply.status_code, reply.text


def generated_passwords(path: Path) -> dict[str, str]:
    """The passwords SimpleAuthManager generated for its users, once the api-server has written them."""
    wait_for("the generated passwords", lambda: path.exists() and path.stat().st_size > 2, 60)
    return dict(json.loads(path.read_text()))
