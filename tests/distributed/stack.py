"""Start and stop a real Airflow deployment (api-server, scheduler, dag-processor, Celery workers) as
separate processes, each with its own AIRFLOW_HOME and working directory, so nothing is shared on disk.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379


def redis_answers(host: str = REDIS_HOST, port: int = REDIS_PORT) -> bool:
    """Whether a Redis server answers PING at host:port."""
    try:
        with socket.create_connection((host, port), timeout=2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


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


class AirflowStack:
    """Airflow processes sharing one metadata database and nothing on disk."""

    def __init__(self, root: Path, metadata_url: str, *, executor: str, customer_url: str, queue: str) -> None:
        self.root = root
        self.api_port = free_port()
        sqlalchemy_url = make_url(metadata_url).set(drivername="postgresql+psycopg2")
        rendered = sqlalchemy_url.render_as_string(hide_password=False)
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "SEGMENTATION_"))}
        self.env = {
            **inherited,
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "AIRFLOW__CORE__EXECUTOR": executor,
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.api_port}/execution/",
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(16),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": rendered,
            "AIRFLOW__CELERY__BROKER_URL": f"redis://{REDIS_HOST}:{REDIS_PORT}/0",
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + rendered,
            # A queue of its own, so that concurrent test runs sharing the Redis server never meet.
            "AIRFLOW__OPERATORS__DEFAULT_QUEUE": queue,
            # Only the runs this test triggers: no scheduled run of the nightly DAG joins in.
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "AIRFLOW_CONN_SEGMENTATION_DB": airflow_connection(customer_url),
            "SEGMENTATION_THREADS": "1",
        }
        self.queue = queue
        self.processes: list[tuple[str, subprocess.Popen, Path]] = []

    def _home(self, name: str) -> dict[str, str]:
        home = self.root / name
        (home / "work").mkdir(parents=True, exist_ok=True)
        return {
            "AIRFLOW_HOME": str(home / "airflow"),
            "SEGMENTATION_DATA_DIR": str(home / "data"),
            "SEGMENTATION_MODELS_DIR": str(home / "models"),
        }

    def run(self, *args: str, timeout: float = 300) -> str:
        """Run an airflow CLI command to completion; its output, or CalledProcessError with it."""
        env = {**self.env, **self._home("cli")}
        done = subprocess.run(
            ["airflow", *args],
            env=env,
            cwd=self.root / "cli" / "work",
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            raise subprocess.CalledProcessError(done.returncode, done.args, done.stdout, done.stderr)
        return done.stdout

    def start(self, name: str, *args: str, env: dict[str, str] | None = None) -> None:
        """Start ``airflow *args`` in its own process group, working directory and AIRFLOW_HOME."""
        home = self._home(name)
        logfile = self.root / f"{name}.log"
        with logfile.open("wb") as out:
            process = subprocess.Popen(
                ["airflow", *args],
                env={**self.env, **home, **(env or {})},
                cwd=Path(home["AIRFLOW_HOME"]).parent / "work",
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

    def start_worker(self, name: str, concurrency: int) -> None:
        self.start(
            name,
            "celery",
            "worker",
            "--queues",
            self.queue,
            "--concurrency",
            str(concurrency),
            "--celery-hostname",
            f"{name}@%h",
            env={
                "SEGMENTATION_WORKER_NAME": name,
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            },
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
