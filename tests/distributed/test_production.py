"""The services of docker-compose.yaml as separate local processes, each with the environment compose gives it
(read from the file by ``compose_env``), and an operator's journey through Airflow's REST API and the
Segmentation UI.

The deployment: a private ``redis-server`` as the broker; on the test PostgreSQL server the logins and the
customer database of ``docker/initdb`` and the metadata login and database of compose's ``postgres`` service
(unique database names); ``airflow-init``'s command run as compose runs it; then an api-server, a scheduler, a
dag-processor, a triggerer and two Celery workers. What the harness adds to compose's environment is listed
in ``compose_env``'s docstring; the test checks that each process got nothing else. The journey:

1. the nightly run triggered through REST scores every clean customer and makes model version 1 the champion;
2. with approval required (``SEGMENTATION_PROMOTION_APPROVAL=required`` in the host environment, as an operator
   sets it for compose), a forced retrain (with Params) holds version 2 in its ``review`` task and raises the
   ``approval_pending`` alert; ``admin`` approves through Airflow's HITL REST API, so version 2 becomes the
   champion promoted and reviewed by ``admin``, and its Asset event rescores everyone with it;
3. an admin rolls back to version 1 in the Segmentation UI: a run of ``segmentation_promote`` triggered by
   ``admin``, version 1 the champion promoted by ``admin``, everyone rescored with it, and the run listed
   among the UI's promotions;
4. a viewer's promotion is refused (403) and starts no run;
5. the analyst login reads the views only and writes nothing;
6. the api-server holds no training credential;
7. no process started an embedded PostgreSQL under its data folder;
8. the CRM export, run by the workers on every segments Asset event, wrote each change of the feed exactly once
   into the workers' shared ``crm-exports`` volume, and its watermark stands at the last change;
9. the first nightly run missed its freshness deadline (``SEGMENTATION_FRESHNESS_DEADLINE_HOURS=0.001`` in the
   host environment): the scheduler queued the Deadline Alert's callback, a worker ran it, and the
   ``deadline_missed`` alert names the run and the step that was still running.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import psycopg2
import psycopg2.errors
import pytest
from psycopg2 import sql

from segmentation.config import REVIEW_TASK_ID
from segmentation.dictionary import ANALYST_VIEWS
from segmentation.feed import FILE_PREFIX
from segmentation.loading import load_customers, to_raw_text
from segmentation.synthetic import generate_customers
from segmentation.tasks.export import CRM_CONSUMER
from tests.conftest import admin_url, database_url, drop_database
from tests.distributed import compose_env as ce
from tests.distributed.stack import (
    AirflowStack,
    Api,
    RedisServer,
    fetch,
    free_port,
    generated_passwords,
    inherited_env,
    wait_for,
)

log = logging.getLogger(__name__)

N_CUSTOMERS = 3000
SEED = 23
RUN_TIMEOUT_S = 600
START_TIMEOUT_S = 300
WORKERS = ("worker-1", "worker-2")
CONCURRENCY = 2
NIGHTLY, RETRAIN, PROMOTE = "segmentation_nightly", "segmentation_retrain", "segmentation_promote"
EXPORT = "segmentation_crm_export"
# What an operator sets for compose (its .env): approval before promotion, and a freshness deadline of 3.6 s,
# which every nightly run of the journey misses.
OPERATOR_SETTINGS = {"SEGMENTATION_PROMOTION_APPROVAL": "required", "SEGMENTATION_FRESHNESS_DEADLINE_HOURS": "0.001"}
ASSET_TRIGGERED = "asset_triggered"
FORCED_RETRAIN = {"force_promote": True, "cv_folds": 2, "candidates": ["naive_bayes"], "row_cap": 0}
ANALYST = ("segmentation_reader", "segmentation_reader")
ANALYST_REFUSED = (
    "customers",
    "model_versions",
    "customer_rejects",
    "customer_labels",
    "label_outcomes",
    "feed_consumers",
)
# Started process -> its compose service.
SERVICES = {
    "api-server": "airflow-apiserver",
    "scheduler": "airflow-scheduler",
    "dag-processor": "airflow-dag-processor",
    "triggerer": "airflow-triggerer",
    **dict.fromkeys(WORKERS, "airflow-worker"),
}


# ---- the databases and logins ------------------------------------------------------------------------------


def execute_tolerant(cur: Any, statement: str | sql.Composable) -> None:
    """Run one statement; a role that already exists (roles are cluster-wide, CI's server is shared) is kept."""
    try:
        cur.execute(statement)
    except (psycopg2.errors.DuplicateObject, psycopg2.errors.UniqueViolation) as exc:
        log.info("kept an existing role: %s", str(exc).strip())


def create_logins_and_databases(admin: str, databases: Mapping[str, str], postgres_env: Mapping[str, str]) -> None:
    """What compose's ``postgres`` service sets up: its POSTGRES_USER login owning the metadata database, and
    the init script's logins and customer database (renamed to the test's)."""
    conn = psycopg2.connect(admin)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            user = sql.Identifier(postgres_env["POSTGRES_USER"])
            password = sql.Literal(postgres_env["POSTGRES_PASSWORD"])
            execute_tolerant(cur, sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(user, password))
            metadata = sql.Identifier(databases[postgres_env["POSTGRES_DB"]])
            cur.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(metadata, user))
            for statement in ce.initdb_statements():
                execute_tolerant(cur, ce.rename_database(statement, databases))
    finally:
        conn.close()


def seed_customers(owner_url: str) -> None:
    """Synthetic customers, half of them labelled, loaded as the customer database's owner."""
    customers = generate_customers(N_CUSTOMERS, labelled_share=0.5, seed=SEED)
    load_customers(to_raw_text(customers), run_id="seed", url=owner_url)


# ---- Airflow's REST API and the Segmentation API -----------------------------------------------------------


def run_path(dag_id: str, run_id: str) -> str:
    return f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}"


# ---- the deployment ----------------------------------------------------------------------------------------


@dataclass
class Deployment:
    """The running stack, what it was given, and the logins of the journey."""

    stack: AirflowStack
    services: dict[str, dict[str, str]]
    endpoints: ce.Endpoints
    customers: str  # admin URL of the customer database
    metadata: str  # admin URL of the metadata database
    api: Api
    tokens: dict[str, str]

    def logs(self, *names: str, lines: int = 40) -> str:
        """The end of the named processes' logs (all of them by default)."""
        wanted = names or tuple(name for name, _, _ in self.stack.processes)
        parts = [
            f"--- {name} ---\n{self.stack.tail(logfile, lines)}"
            for name, _, logfile in self.stack.processes
            if name in wanted
        ]
        return "\n".join(parts)

    def run_report(self, dag_id: str, run_id: str) -> str:
        """Task states of a run, the end of the logs of its unfinished or failed tasks, and the service logs."""
        rows = fetch(
            self.metadata,
            "SELECT task_id, map_index, state, try_number FROM task_instance WHERE dag_id = %s AND run_id = %s",
            (dag_id, run_id),
        )
        states = {f"{task}[{index}]": f"{state} (try {tries})" for task, index, state, tries in rows}
        bad = {task for task, _, state, _ in rows if state != "success"}
        task_logs = [
            f"--- {path.relative_to(self.stack.root)} ---\n{self.stack.tail(path, 30)}"
            for path in sorted(self.stack.root.glob(f"*/airflow/logs/dag_id={dag_id}/run_id={run_id}/**/*.log"))
            if any(f"task_id={task}" in path.parts for task in bad)
        ]
        return "\n".join([f"{dag_id} {run_id}: {json.dumps(states)}", *task_logs, self.logs("scheduler", *WORKERS)])

    def get_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        status, body = self.api.call("GET", run_path(dag_id, run_id), self.tokens["admin"])
        assert status == 200, (dag_id, run_id, status, body)
        return body

    def runs(self, dag_id: str, **filters: Any) -> list[dict[str, Any]]:
        """Every run of a DAG (REST), filtered by e.g. run_type or state."""
        params = {"limit": 100, "order_by": "run_after", **filters}
        status, body = self.api.call("GET", f"/api/v2/dags/{dag_id}/dagRuns", self.tokens["admin"], params=params)
        assert status == 200, (dag_id, status, body)
        return list(body["dag_runs"])

    def trigger(self, dag_id: str, conf: Mapping[str, Any] | None = None) -> str:
        body = {"logical_date": None, **({"conf": dict(conf)} if conf else {})}
        status, reply = self.api.call("POST", f"/api/v2/dags/{dag_id}/dagRuns", self.tokens["admin"], body)
        assert status in (200, 201), (dag_id, status, reply)
        log.info("triggered %s: %s", dag_id, reply["dag_run_id"])
        return str(reply["dag_run_id"])

    def wait_run(self, dag_id: str, run_id: str, timeout: float = RUN_TIMEOUT_S) -> dict[str, Any]:
        """Wait for a run to finish, every process alive meanwhile; it must succeed. The run's REST record."""
        run: dict[str, Any] = {}

        def finished() -> bool:
            self.stack.check_alive()
            run.update(self.get_run(dag_id, run_id))
            return run["state"] in ("success", "failed")

        started = time.monotonic()
        try:
            wait_for(f"{dag_id} run {run_id} finished", finished, timeout, every=3)
        except TimeoutError as exc:
            raise AssertionError(f"{exc}\n{self.run_report(dag_id, run_id)}") from exc
        assert run["state"] == "success", self.run_report(dag_id, run_id)
        log.info("%s run %s: success in %.0f s", dag_id, run_id, time.monotonic() - started)
        return run

    def wait_new_run(self, dag_id: str, run_type: str, known: set[str], timeout: float = RUN_TIMEOUT_S) -> str:
        """The id of the first run of ``run_type`` not in ``known`` once it appears."""
        new: list[str] = []

        def appeared() -> bool:
            self.stack.check_alive()
            new[:] = [
                run["dag_run_id"] for run in self.runs(dag_id, run_type=run_type) if run["dag_run_id"] not in known
            ]
            return bool(new)

        try:
            wait_for(f"a new {run_type} run of {dag_id}", appeared, timeout, every=3)
        except TimeoutError as exc:
            raise AssertionError(f"{exc}\n{self.logs('scheduler', *WORKERS)}") from exc
        return new[0]

    def wait_idle(self, dag_id: str, timeout: float = RUN_TIMEOUT_S) -> list[dict[str, Any]]:
        """Wait until no run of the DAG is queued or running; every run must have succeeded. All its runs."""

        def idle() -> bool:
            self.stack.check_alive()
            return not self.runs(dag_id, state=["queued", "running"])

        try:
            wait_for(f"{dag_id} idle", idle, timeout, every=3)
        except TimeoutError as exc:
            raise AssertionError(f"{exc}\n{self.logs('scheduler', *WORKERS)}") from exc
        runs = self.runs(dag_id)
        failed = [run["dag_run_id"] for run in runs if run["state"] != "success"]
        assert not failed, "\n".join(self.run_report(dag_id, run_id) for run_id in failed)
        return runs

    def asset_runs(self) -> set[str]:
        return {run["dag_run_id"] for run in self.runs(NIGHTLY, run_type=ASSET_TRIGGERED)}

    def rescored_with(self, version: int, known: set[str]) -> None:
        """The champion's Asset event triggered a nightly run that rescored every customer with ``version``."""
        run_id = self.wait_new_run(NIGHTLY, ASSET_TRIGGERED, known)
        self.wait_run(NIGHTLY, run_id)
        self.wait_idle(NIGHTLY)
        versions = fetch(
            self.customers, "SELECT model_version, count(*) FROM segmentation.customer_segments GROUP BY 1"
        )
        assert dict(versions) == {version: clean_count(self.customers)}, (versions, self.run_report(NIGHTLY, run_id))

    def champion(self) -> list[tuple]:
        return fetch(
            self.customers, "SELECT version, promoted_by FROM segmentation.model_versions WHERE status = 'champion'"
        )


def clean_count(customers: str) -> int:
    return int(fetch(customers, "SELECT count(*) FROM segmentation.clean_customers")[0][0])


def run_init(stack: AirflowStack, compose: Mapping[str, Any]) -> None:
    """compose's airflow-init command, as compose runs it, with airflow-init's environment."""
    argv = ce.command(compose, "airflow-init")
    try:
        output = stack.execute(argv, service="airflow-init", timeout=900)
    except Exception as exc:
        detail = "\n".join(str(getattr(exc, name, "") or "")[-4000:] for name in ("stdout", "stderr"))
        raise AssertionError(f"airflow-init failed: {exc}\n{detail}") from exc
    log.info("airflow-init done: %s", output.strip().splitlines()[-1:] or "")


def start_services(stack: AirflowStack, compose: Mapping[str, Any]) -> None:
    """Every long-running Airflow service of compose as a process, with compose's command and environment."""
    assert ce.command(compose, "airflow-worker") == ["celery", "worker"], ce.command(compose, "airflow-worker")
    passwords = stack.root / "api-server" / "passwords.json"
    stack.start(
        "api-server",
        *ce.command(compose, "airflow-apiserver"),
        *("--port", str(stack.api_port), "--workers", "1"),
        service="airflow-apiserver",
        env={"AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords)},
    )
    stack.start(
        "scheduler",
        *ce.command(compose, "airflow-scheduler"),
        service="airflow-scheduler",
        env={"AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(free_port())},
    )
    stack.start("dag-processor", *ce.command(compose, "airflow-dag-processor"), service="airflow-dag-processor")
    stack.start(
        "triggerer",
        *ce.command(compose, "airflow-triggerer"),
        service="airflow-triggerer",
        env={"AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port())},
    )
    for name in WORKERS:
        stack.start_worker(name, CONCURRENCY, service="airflow-worker", env=ce.CHEAP_TRAINING)


def log_in(stack: AirflowStack, api: Api, users_setting: str) -> dict[str, str]:
    """A token for each of compose's Airflow users, with the passwords SimpleAuthManager generated."""
    passwords = generated_passwords(stack.root / "api-server" / "passwords.json")
    users = [entry.split(":")[0] for entry in users_setting.split(",")]
    return {user: api.login(user, passwords[user]) for user in users}


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    """The compose services as local processes on fresh databases with seeded customers; torn down after."""
    assert RedisServer.installed(), "redis-server is not installed; this test starts a private one as its broker"
    started = time.monotonic()
    suffix = uuid.uuid4().hex[:10]
    host_env = {"SEGMENTATION_MODEL_SIGNING_KEY": os.environ["SEGMENTATION_MODEL_SIGNING_KEY"], **OPERATOR_SETTINGS}
    compose = ce.load_compose(host_env)
    postgres_env = ce.raw_environment(compose, "postgres", host_env)
    customer_db = ce.initdb_database(ce.initdb_statements())
    databases = {customer_db: f"seg_prod_{suffix}", postgres_env["POSTGRES_DB"]: f"seg_prod_meta_{suffix}"}
    admin = admin_url()
    customers, metadata = (database_url(admin, databases[name]) for name in (customer_db, postgres_env["POSTGRES_DB"]))

    redis = RedisServer(tmp_path / "redis")
    endpoints = ce.Endpoints.for_server(admin, databases, redis.port, free_port(), volumes=tmp_path / "volumes")
    services = ce.service_environments(compose, endpoints, host_env)
    stack = AirflowStack.for_services(tmp_path / "stack", endpoints.api_port, services)
    try:
        redis.start()
        create_logins_and_databases(admin, databases, postgres_env)
        run_init(stack, compose)
        seed_customers(services["airflow-init"]["SEGMENTATION_DATABASE_URL"])
        start_services(stack, compose)
        api = Api(f"http://127.0.0.1:{endpoints.api_port}")
        try:
            wait_for("the api-server", stack.api_ready, START_TIMEOUT_S)
        except TimeoutError as exc:
            raise AssertionError(f"{exc}\n{stack.tail(stack.root / 'api-server.log')}") from exc
        tokens = log_in(stack, api, services["airflow-apiserver"]["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"])
        log.info("the compose services are up after %.0f s", time.monotonic() - started)
        yield Deployment(stack, services, endpoints, customers, metadata, api, tokens)
    finally:
        stack.stop()
        redis.kill()
        for url in (customers, metadata):
            drop_database(url)
        log.info("deployment, journey and teardown: %.0f s in all", time.monotonic() - started)


# ---- the journey -------------------------------------------------------------------------------------------


def check_environments(deployment: Deployment) -> None:
    """Each process runs with exactly its compose service's environment, plus only the declared harness keys."""
    inherited = inherited_env()
    for name, actual in deployment.stack.environments.items():
        compose = deployment.services[SERVICES[name]]
        added = set(actual) - set(compose) - set(inherited)
        changed = {key for key in compose if actual.get(key) != compose[key]}
        assert added <= ce.HARNESS_KEYS, (name, sorted(added - ce.HARNESS_KEYS))
        assert changed <= ce.HARNESS_KEYS, (name, sorted(changed - ce.HARNESS_KEYS))


def unpause(deployment: Deployment, *dag_ids: str) -> None:
    """Wait for the DAGs to be parsed, then unpause them through REST as an operator would."""
    admin = deployment.tokens["admin"]

    def parsed() -> bool:
        deployment.stack.check_alive()
        return all(deployment.api.call("GET", f"/api/v2/dags/{dag_id}", admin)[0] == 200 for dag_id in dag_ids)

    try:
        wait_for(f"{dag_ids} parsed", parsed, START_TIMEOUT_S, every=2)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\n{deployment.logs('dag-processor')}") from exc
    for dag_id in dag_ids:
        status, body = deployment.api.call("PATCH", f"/api/v2/dags/{dag_id}", admin, {"is_paused": False})
        assert status == 200 and body["is_paused"] is False, (dag_id, status, body)


def first_nightly(deployment: Deployment) -> None:
    """Step 1: the nightly run triggered through REST scores every clean customer with champion version 1.
    Unpausing also starts the most recent missed 02:00 run (see compose_env); every run must succeed."""
    run_id = deployment.trigger(NIGHTLY)
    deployment.wait_run(NIGHTLY, run_id)
    runs = deployment.wait_idle(NIGHTLY)
    log.info("nightly runs after step 1: %s", [(run["dag_run_id"], run["run_type"]) for run in runs])
    segments = fetch(deployment.customers, "SELECT count(*) FROM segmentation.customer_segments")[0][0]
    clean = clean_count(deployment.customers)
    assert segments == clean > 0.9 * N_CUSTOMERS, (segments, clean, deployment.run_report(NIGHTLY, run_id))
    assert [version for version, _ in deployment.champion()] == [1], (
        deployment.champion(),
        deployment.run_report(NIGHTLY, run_id),
    )


def forced_retrain_approved(deployment: Deployment) -> None:
    """Step 2: a forced retrain holds version 2 for approval; the admin approves it in Airflow, and its Asset
    event rescores all."""
    admin = deployment.tokens["admin"]
    known = deployment.asset_runs()
    run_id = deployment.trigger(RETRAIN, FORCED_RETRAIN)
    review = f"{run_path(RETRAIN, run_id)}/taskInstances/{REVIEW_TASK_ID}"

    def awaiting() -> bool:
        deployment.stack.check_alive()
        status, body = deployment.api.call("GET", review, admin)
        assert deployment.get_run(RETRAIN, run_id)["state"] != "failed", deployment.run_report(RETRAIN, run_id)
        return status == 200 and body["state"] == "awaiting_input"

    try:
        wait_for(f"{RETRAIN} {run_id} awaiting review", awaiting, RUN_TIMEOUT_S, every=3)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\n{deployment.run_report(RETRAIN, run_id)}") from exc
    assert deployment.champion() == [(1, None)], deployment.champion()
    held = fetch(
        deployment.customers,
        "SELECT status, review_run_id FROM segmentation.model_versions WHERE version = 2",
    )
    assert held == [("candidate", run_id)], held
    pending = fetch(
        deployment.customers,
        "SELECT dag_id, run_id FROM segmentation.alerts WHERE kind = 'approval_pending' AND run_id = %s",
        (run_id,),
    )
    assert pending == [(RETRAIN, run_id)], pending
    status, detail = deployment.api.call("GET", f"{review}/-1/hitlDetails", admin)
    assert status == 200 and "Approve" in detail["options"] and "Macro-F1" in detail["body"], (status, detail)
    answer = {"chosen_options": ["Approve"], "params_input": {"comment": "checked on the compose stack"}}
    status, reply = deployment.api.call("PATCH", f"{review}/-1/hitlDetails", admin, answer)
    assert status == 200, (status, reply)
    deployment.wait_run(RETRAIN, run_id)
    assert deployment.champion() == [(2, "admin")], (deployment.champion(), deployment.run_report(RETRAIN, run_id))
    reviewed = fetch(
        deployment.customers,
        "SELECT reviewed_by, review_comment FROM segmentation.model_versions WHERE version = 2",
    )
    assert reviewed == [("admin", "checked on the compose stack")], reviewed
    deployment.rescored_with(2, known)


def rollback_in_ui(deployment: Deployment) -> None:
    """Step 3: the admin promotes version 1 back in the Segmentation UI: a segmentation_promote run."""
    admin = deployment.tokens["admin"]
    known = deployment.asset_runs()
    status, body = deployment.api.call("POST", "/segmentation/api/models/1/promote", admin)
    assert status == 202, (status, body, deployment.logs("api-server"))
    assert {"run_id", "url"} <= set(body), body
    run_id = body["run_id"]
    assert PROMOTE in unquote(body["url"]) and run_id in unquote(body["url"]), body
    run = deployment.wait_run(PROMOTE, run_id)
    assert run["conf"] == {"version": 1}, run["conf"]
    assert run["triggering_user_name"] == "admin", run
    assert deployment.champion() == [(1, "admin")], (deployment.champion(), deployment.run_report(PROMOTE, run_id))
    deployment.rescored_with(1, known)
    status, models = deployment.api.call("GET", "/segmentation/api/models", admin)
    assert status == 200, (status, models)
    promotions = models.get("promotions")
    assert isinstance(promotions, list) and promotions, models.keys()
    assert all({"run_id", "version", "state", "url"} <= set(item) for item in promotions), promotions
    assert any(item["run_id"] == run_id and item["version"] == 1 for item in promotions), promotions


def viewer_refused(deployment: Deployment) -> None:
    """Step 4: a viewer may not promote, and the refusal starts no run."""
    count = "SELECT count(*) FROM dag_run WHERE dag_id = %s"
    before = fetch(deployment.metadata, count, (PROMOTE,))[0][0]
    status, body = deployment.api.call("POST", "/segmentation/api/models/2/promote", deployment.tokens["viewer"])
    assert status == 403, (status, body, deployment.logs("api-server"))
    assert fetch(deployment.metadata, count, (PROMOTE,))[0][0] == before, deployment.logs("api-server")
    assert [version for version, _ in deployment.champion()] == [1], deployment.champion()


def analyst_reads_views_only(deployment: Deployment) -> None:
    """Step 5: the analyst login reads every analyst view, nothing raw, and writes nowhere."""
    tables = [
        row[0]
        for row in fetch(deployment.customers, "SELECT tablename FROM pg_tables WHERE schemaname = 'segmentation'")
    ]
    conn = psycopg2.connect(**deployment.endpoints.connect_kwargs(*ANALYST, "segmentation"))
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            for view in ANALYST_VIEWS:
                cur.execute(sql.SQL("SELECT * FROM segmentation.{} LIMIT 5").format(sql.Identifier(view)))
                cur.fetchall()
            for table in ANALYST_REFUSED:
                with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                    cur.execute(sql.SQL("SELECT * FROM segmentation.{} LIMIT 1").format(sql.Identifier(table)))
            assert tables
            for table in tables:
                with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                    cur.execute(sql.SQL("INSERT INTO segmentation.{} DEFAULT VALUES").format(sql.Identifier(table)))
    finally:
        conn.close()


def api_server_without_training_login(deployment: Deployment) -> None:
    """Step 6: the api-server was started without the training credential."""
    env = deployment.stack.environments["api-server"]
    assert not [key for key in env if "TRAINING" in key], sorted(env)
    assert not [key for key, value in env.items() if "segmentation_trainer" in value]


def crm_export_exactly_once(deployment: Deployment) -> None:
    """Step 8: the export files in the workers' volume hold every feed change exactly once, up to the watermark."""
    last = "SELECT max(change_id) FROM segmentation.segment_feed"
    mark = "SELECT last_change_id FROM segmentation.feed_consumers WHERE consumer = %s"

    def caught_up() -> bool:
        deployment.stack.check_alive()
        return fetch(deployment.customers, mark, (CRM_CONSUMER,)) == fetch(deployment.customers, last)

    try:
        wait_for("the CRM export caught up with the feed", caught_up, RUN_TIMEOUT_S, every=3)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\n{deployment.logs('scheduler', *WORKERS)}") from exc
    runs = deployment.wait_idle(EXPORT)
    folder = Path(deployment.services["airflow-worker"]["SEGMENTATION_EXPORT_DIR"])
    files = sorted(folder.glob(f"{FILE_PREFIX}*.csv"))
    exported = [row["change_id"] for path in files for row in csv.DictReader(path.open())]
    feed = [row[0] for row in fetch(deployment.customers, "SELECT change_id FROM segmentation.segment_feed ORDER BY 1")]
    assert len(runs) >= 2 and len(files) >= 2, (len(runs), [path.name for path in files])
    assert [int(change) for change in exported] == feed, ([path.name for path in files], len(exported), len(feed))
    assert not [path.name for path in folder.iterdir() if path not in files], sorted(folder.iterdir())
    log.info("%d export runs wrote %d changes in %s", len(runs), len(exported), [path.name for path in files])


def deadline_missed(deployment: Deployment) -> None:
    """Step 9: the first nightly run missed its freshness deadline, and a worker stored the alert naming it."""
    ((run,),) = [[run["dag_run_id"]] for run in deployment.runs(NIGHTLY, run_type="manual")]
    query = "SELECT dag_id, task_id, message FROM segmentation.alerts WHERE kind = 'deadline_missed' AND run_id = %s"

    alerts: list[tuple] = []

    def alerted() -> bool:
        deployment.stack.check_alive()
        alerts[:] = fetch(deployment.customers, query, (run,))
        return bool(alerts)

    try:
        wait_for(f"the deadline_missed alert of {run}", alerted, 120, every=2)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\n{deployment.logs('scheduler', *WORKERS)}") from exc
    ((dag_id, task_id, message),) = alerts
    assert dag_id == NIGHTLY and task_id, (dag_id, task_id)
    assert run in message and f"step still running: {task_id}" in message, message
    log.info("deadline_missed alert: %s", message)


def no_embedded_server(deployment: Deployment) -> None:
    """Step 7: no process fell back to an embedded PostgreSQL under its SEGMENTATION_DATA_DIR."""
    data_dirs = [deployment.stack.root / name / "data" for name in (*SERVICES, "cli")]
    found = [str(path) for folder in data_dirs if folder.exists() for path in folder.rglob("pgdata")]
    assert not found, found


def test_compose_env_maps_hosts_ports_and_databases_only() -> None:
    """The mapping changes only compose's host names, ports, database names, image paths and volume paths."""
    host_env = {"SEGMENTATION_MODEL_SIGNING_KEY": "x" * 32}
    with pytest.raises(ce.ComposeError, match="SEGMENTATION_MODEL_SIGNING_KEY"):
        ce.load_compose({})
    compose = ce.load_compose(host_env)
    databases = {"segmentation": "seg_c", "airflow": "seg_m"}
    no_volumes = ce.Endpoints.for_server("postgresql://root@127.0.0.1:5433/postgres", databases, 7001, 9001)
    with pytest.raises(ce.ComposeError, match="crm-exports"):
        ce.service_environments(compose, no_volumes, host_env)
    tcp = ce.Endpoints.for_server(
        "postgresql://root@127.0.0.1:5433/postgres", databases, 7001, 9001, volumes=Path("/tmp/v")
    )
    environments = ce.service_environments(compose, tcp, host_env)
    worker = environments["airflow-worker"]
    assert (
        worker["AIRFLOW_CONN_SEGMENTATION_DB"]
        == "postgres://segmentation_worker:segmentation_worker@127.0.0.1:5433/seg_c"
    )
    assert worker["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == "postgresql+psycopg2://airflow:airflow@127.0.0.1:5433/seg_m"
    assert worker["AIRFLOW__CELERY__BROKER_URL"] == "redis://:@127.0.0.1:7001/0"
    assert worker["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:9001/execution/"
    assert worker["AIRFLOW__CORE__DAGS_FOLDER"] == str(ce.ROOT / "dags")
    assert worker["SEGMENTATION_EXPORT_DIR"] == "/tmp/v/crm-exports"
    assert "SEGMENTATION_EXPORT_DIR" not in environments["airflow-scheduler"]
    assert worker["SEGMENTATION_MODEL_SIGNING_KEY"] == "x" * 32
    socket = ce.Endpoints.for_server(
        "postgresql://postgres:@/postgres?host=/tmp/pg", databases, 7001, 9001, volumes=Path("/tmp/v")
    )
    worker = ce.service_environments(compose, socket, host_env)["airflow-worker"]
    assert json.loads(worker["AIRFLOW_CONN_SEGMENTATION_DB_TRAINING"]) == {
        "conn_type": "postgres",
        "host": "/tmp/pg",
        "port": 5432,
        "login": "segmentation_trainer",
        "password": "segmentation_trainer",
        "schema": "seg_c",
    }
    assert (
        worker["AIRFLOW__CELERY__RESULT_BACKEND"] == "db+postgresql://airflow:airflow@/seg_m?host=%2Ftmp%2Fpg&port=5432"
    )
    assert ce.interpolate("$${A} ${B:-b} ${C-c} ${D:+d}", {"C": "", "D": "1"}) == "${A} b  d"


@pytest.mark.airflow
@pytest.mark.db
@pytest.mark.slow
def test_operator_journey_on_the_compose_services(deployment: Deployment) -> None:
    started = time.monotonic()
    steps = (
        check_environments,
        first_nightly,
        forced_retrain_approved,
        rollback_in_ui,
        viewer_refused,
        analyst_reads_views_only,
        api_server_without_training_login,
        no_embedded_server,
        crm_export_exactly_once,
        deadline_missed,
    )
    try:
        unpause(deployment, NIGHTLY, RETRAIN, EXPORT)
        for step in steps:
            step(deployment)
            log.info(
                "passed after %.0f s: %s", time.monotonic() - started, (step.__doc__ or step.__name__).splitlines()[0]
            )
    finally:
        log.info("the operator journey on the compose services took %.0f s", time.monotonic() - started)
