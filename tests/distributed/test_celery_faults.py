"""Faults under the CeleryExecutor: a worker killed while it holds a scoring shard, and the broker restarted
mid-run. Each run must end with the segments and history of an undisturbed run of the same data and model.

The deployment is the one of test_celery.py (an api-server, a scheduler, a dag-processor and two Celery
workers as separate processes), with a private ``redis-server`` on a free loopback port as the broker, so
that stopping it disturbs nobody else, and with Airflow's failure detection lowered to seconds
(``stack.FAST_FAILURE_DETECTION``). The undisturbed run is the same pipeline run in this process, task by
task, on a twin database made from the same template, and is shared by both tests.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis import Redis

from segmentation import tasks
from segmentation.config import DB_POOL_NAME
from segmentation.db import reset_url_cache
from segmentation.loading import load_customers, to_raw_text
from segmentation.migrations import migrate
from segmentation.synthetic import generate_customers
from tests.conftest import admin_url, create_database, drop_database
from tests.distributed.stack import (
    DAG_ID,
    FAST_FAILURE_DETECTION,
    AirflowStack,
    RedisServer,
    copy_database,
    deploy,
    fetch,
    segments,
    task_states,
    trigger_nightly,
    wait_for,
    wait_run,
)
from tests.helpers import db_url

pytestmark = [pytest.mark.airflow, pytest.mark.db]
log = logging.getLogger(__name__)

N_CUSTOMERS = 4000
SHARD_SIZE = 400  # 10 shards
# Small chunks stretch each shard over many round trips, so a kill lands between its first staged chunk
# and its commit; the result does not depend on the chunk size (tests/integration).
CHUNK_SIZE = 10
PIPELINE_ENV = {"SEGMENTATION_SHARD_SIZE": str(SHARD_SIZE), "SEGMENTATION_CHUNK_SIZE": str(CHUNK_SIZE)}
WORKERS = ("worker-1", "worker-2")
REDIS_DOWN_S = 5
WORKER_SLOTS = 2 * len(WORKERS)  # start_celery: two workers of two slots each


@pytest.fixture(scope="module", autouse=True)
def need_redis_server() -> None:
    if not RedisServer.installed():
        pytest.skip("redis-server is not installed; the Celery fault tests start a private one as their broker")


@pytest.fixture(scope="module")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Cleaned customers with features and a champion model, nothing scored: the template of every run."""
    url = create_database("seg_faults")
    home = tmp_path_factory.mktemp("prepare")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("SEGMENTATION_DATABASE_URL", url)
        env.setenv("SEGMENTATION_DATA_DIR", str(home / "data"))
        env.setenv("SEGMENTATION_MODELS_DIR", str(home / "models"))
        env.setenv("SEGMENTATION_CANDIDATES", "logistic_regression")
        env.setenv("SEGMENTATION_CV_FOLDS", "2")
        reset_url_cache()
        try:
            migrate(url)
            customers = generate_customers(N_CUSTOMERS, labelled_share=0.5, seed=11)
            load_customers(to_raw_text(customers), run_id="seed", url=db_url())
            tasks.clean("prepare")
            tasks.build_features("prepare")
            assert tasks.retrain_if_due("prepare")["promoted"]
        finally:
            reset_url_cache()
    try:
        yield url
    finally:
        drop_database(url)


def history(url: str) -> list[tuple]:
    """Every segment change logged, without the run id and time that differ between runs."""
    return fetch(
        url,
        """SELECT customer_id, previous_segment, segment, model_version FROM segmentation.segment_history
           ORDER BY customer_id, changed_at""",
    )


@pytest.fixture(scope="module")
def undisturbed(template_db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, list[tuple]]]:
    """The nightly pipeline run task by task in this process on a twin of the template, undisturbed."""
    url = copy_database(admin_url(), template_db)
    home = tmp_path_factory.mktemp("undisturbed")
    run_id = "undisturbed"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("SEGMENTATION_DATABASE_URL", url)
        env.setenv("SEGMENTATION_DATA_DIR", str(home / "data"))
        env.setenv("SEGMENTATION_MODELS_DIR", str(home / "models"))
        for name, value in PIPELINE_ENV.items():
            env.setenv(name, value)
        reset_url_cache()
        try:
            tasks.start_run(run_id, DAG_ID)
            tasks.clean(run_id)
            tasks.build_features(run_id)
            tasks.retrain_if_due(run_id)
            for shard in tasks.plan_scoring(run_id):
                tasks.score_shard(run_id, shard["shard"], shard["model_version"])
            tasks.finalise(run_id)
            result = {"segments": segments(url), "history": history(url)}
        finally:
            reset_url_cache()
            drop_database(url)
    assert len(result["segments"]) == N_CUSTOMERS
    yield result


def start_celery(tmp_path: Path, name: str, metadata: str, customers: str, broker_url: str) -> AirflowStack:
    """A migrated CeleryExecutor deployment with two workers of two slots each, ready to run."""
    stack = deploy(tmp_path, name, metadata, customers, "CeleryExecutor", broker_url=broker_url)
    stack.env.update(FAST_FAILURE_DETECTION)
    stack.env.update(PIPELINE_ENV)
    stack.run("db", "migrate", timeout=600)
    stack.run("pools", "set", DB_POOL_NAME, "4", "segmentation scoring shards")
    stack.start_core()
    for worker in WORKERS:
        stack.start_worker(worker, concurrency=2)
    wait_for("the api-server", stack.api_ready, 120)
    return stack


def score_attempts(metadata: str, run_id: str, map_index: int) -> list[tuple[int, str, str | None]]:
    """(try number, state, hostname) of every attempt of one scoring shard, oldest first."""
    sql = """SELECT try_number, state, hostname FROM {table}
             WHERE dag_id = %s AND run_id = %s AND task_id = 'score' AND map_index = %s"""
    params = (DAG_ID, run_id, map_index)
    rows = fetch(metadata, sql.format(table="task_instance_history"), params)
    rows += fetch(metadata, sql.format(table="task_instance"), params)
    return sorted((int(t), str(s), h) for t, s, h in rows)


def shard_steps(customers: str, run_id: str) -> dict[str, dict[str, Any]]:
    steps = fetch(customers, "SELECT steps FROM segmentation.pipeline_runs WHERE run_id = %s", (run_id,))[0][0]
    return {name: figures for name, figures in steps.items() if name.startswith("score_shard_")}


def written_by_run(customers: str, run_id: str, shard: int) -> int:
    """Rows that run ``run_id`` has committed for one shard: into ``customer_segments`` (an increment) or
    into its full rescore's fresh table (``rebuild_shards``)."""
    return fetch(
        customers,
        """SELECT (SELECT count(*) FROM segmentation.customer_segments AS s
                   JOIN segmentation.score_queue AS q USING (customer_id)
                   WHERE s.run_id = %s AND q.run_id = %s AND q.shard = %s)
                + (SELECT coalesce(sum(r.rows), 0) FROM segmentation.rebuild_shards AS r
                   JOIN segmentation.scoring_plans AS p USING (rebuild_table)
                   WHERE p.run_id = %s AND r.shard = %s)""",
        (run_id, run_id, shard, run_id, shard),
    )[0][0]


def kill_worker_mid_shard(stack: AirflowStack, metadata: str, run_id: str) -> tuple[str, int, int]:
    """Wait until a worker's first attempt at a scoring shard has staged a chunk but not written the
    shard, then SIGKILL that worker's whole process tree; (worker, map index, planned shard)."""
    killed: list[tuple[str, int, int]] = []

    def holding_a_shard() -> bool:
        stack.check_alive()
        running = fetch(
            metadata,
            """SELECT map_index, pid FROM task_instance
               WHERE dag_id = %s AND run_id = %s AND task_id = 'score' AND state = 'running'
                 AND try_number = 1 AND pid IS NOT NULL""",
            (DAG_ID, run_id),
        )
        for map_index, pid in running:
            worker = stack.owner_of(pid)
            if worker not in WORKERS:
                continue
            task_log = stack.task_log(worker, run_id, "score", map_index, 1)
            text = task_log.read_text(errors="replace") if task_log.exists() else ""
            if "chunk of" in text and "rows scored" not in text:
                stack.kill(worker)
                shard = next(line for line in text.splitlines() if "chunk of" in line)
                killed.append((worker, map_index, int(shard.split("shard ", 1)[1].split(":", 1)[0])))
                return True
        return False

    wait_for(f"a worker in the middle of a shard of {run_id}", holding_a_shard, 600, every=0.1)
    return killed[0]


def test_worker_killed_mid_shard_is_retried_on_the_other_worker(
    tmp_path: Path, template_db: str, undisturbed: dict[str, list[tuple]], metadata_db: str
) -> None:
    customers = copy_database(admin_url(), template_db)
    redis = RedisServer(tmp_path / "broker")
    redis.start()
    run_id = f"kill__{uuid.uuid4().hex[:8]}"
    stack = start_celery(tmp_path, "kill", metadata_db, customers, redis.url)
    try:
        trigger_nightly(stack, metadata_db, run_id)
        triggered = time.monotonic()
        victim, map_index, shard = kill_worker_mid_shard(stack, metadata_db, run_id)
        killed = time.monotonic()
        # Killed between its first staged chunk and its commit: nothing of the shard is written.
        assert written_by_run(customers, run_id, shard) == 0
        timeline: dict[str, float] = {}

        def retried() -> bool:
            stack.check_alive()
            attempts = score_attempts(metadata_db, run_id, map_index)
            if "detected" not in timeline and attempts[0][1] != "running":
                timeline["detected"] = time.monotonic()
            if len(attempts) > 1 and attempts[-1][1] in ("running", "success"):
                timeline["retried"] = time.monotonic()
            return "retried" in timeline

        wait_for(f"shard {map_index} retried", retried, 600, every=1)
        state = wait_run(stack, metadata_db, run_id)
        finished = time.monotonic()
        assert state == "success", (task_states(metadata_db, run_id), stack.tail(stack.root / "scheduler.log"))
    finally:
        stack.stop()
        redis.kill()

    try:
        survivor = next(worker for worker in WORKERS if worker != victim)
        attempts = score_attempts(metadata_db, run_id, map_index)
        # The first attempt was failed by the heartbeat timeout, the second succeeded.
        assert [t for t, _, _ in attempts] == [1, 2], attempts
        assert attempts[0][1] in ("failed", "up_for_retry") and attempts[1][1] == "success", attempts
        shards = shard_steps(customers, run_id)
        assert shards[f"score_shard_{shard}"]["worker"].startswith(f"{survivor}:")
        assert sum(figures["rows"] for figures in shards.values()) == N_CUSTOMERS
        assert task_states(metadata_db, run_id) == {"success": 7 + len(shards)}
        retried_tasks = fetch(
            metadata_db,
            "SELECT count(*) FROM task_instance WHERE dag_id = %s AND run_id = %s AND try_number > 1",
            (DAG_ID, run_id),
        )[0][0]
        assert segments(customers) == undisturbed["segments"]
        assert history(customers) == undisturbed["history"]  # one change per customer: no duplicate
    finally:
        drop_database(customers)
    log.info(
        "worker %s killed mid-shard %d (map index %d) %.0f s after the trigger; detected %.0f s and retried "
        "on %s %.0f s after the kill; %d task(s) retried in all; run succeeded %.0f s after the trigger; "
        "segments and history equal the undisturbed run on %d customers",
        victim,
        shard,
        map_index,
        killed - triggered,
        timeline["detected"] - killed,
        survivor,
        timeline["retried"] - killed,
        retried_tasks,
        finished - triggered,
        N_CUSTOMERS,
    )


def test_redis_restarted_mid_run(
    tmp_path: Path, template_db: str, undisturbed: dict[str, list[tuple]], metadata_db: str
) -> None:
    """The broker dies (SIGKILL, no persistence) while both workers run shards and one more shard's message
    waits in it, and comes back empty. The running shards finish in their first try; the shard whose message
    died with the broker stays queued until ``task_queued_timeout``, when the scheduler requeues it, once; no
    shard that reached a worker fails (one the scheduler sends during the outage fails to publish and is
    retried, its failed try never started), and the first run succeeds, with the segments and history of the
    undisturbed run."""
    customers = copy_database(admin_url(), template_db)
    redis = RedisServer(tmp_path / "broker")
    redis.start()
    run_id = f"redis__{uuid.uuid4().hex[:8]}"
    stack = start_celery(tmp_path, "redis", metadata_db, customers, redis.url)
    at_kill: dict[int, str] = {}  # each scoring shard's state (by map index) when the broker died
    backlog: list[int] = []  # messages waiting in the broker, undelivered, when it died
    try:
        # One pool slot more than the workers' slots: the shard queued last finds no free worker, and as Celery
        # (task_acks_late, prefetch multiplier 1) fetches no more than a worker's concurrency, its message waits
        # in the broker, so that killing the broker surely loses a message.
        stack.run("pools", "set", DB_POOL_NAME, str(WORKER_SLOTS + 1), "segmentation scoring shards")
        trigger_nightly(stack, metadata_db, run_id)
        triggered = time.monotonic()

        def a_message_waits_in_the_broker() -> bool:
            stack.check_alive()
            states = score_states(metadata_db, run_id)
            if list(states.values()).count("running") < WORKER_SLOTS or "queued" not in states.values():
                return False
            at_kill.clear()
            at_kill.update(states)
            backlog[:] = [broker_backlog(redis, stack.queue)]
            return backlog[0] > 0

        wait_for("all worker slots scoring, a message in the broker", a_message_waits_in_the_broker, 600, every=0.2)
        down = time.monotonic()
        redis.kill()
        time.sleep(REDIS_DOWN_S)
        redis.start()
        # Back to as many slots as the workers have: no message waits in the broker from now on (one that did
        # could outwait task_queued_timeout behind a running shard).
        stack.run("pools", "set", DB_POOL_NAME, str(WORKER_SLOTS), "segmentation scoring shards")
        state = wait_run(stack, metadata_db, run_id)
        finished = time.monotonic()
        # The first run recovers by itself: no re-run is needed.
        assert state == "success", (task_states(metadata_db, run_id), stack.tail(stack.root / "scheduler.log"))
    finally:
        stack.stop()
        redis.kill()

    for worker in WORKERS:  # the restart reached the workers: each lost its broker connection
        assert "Connection to broker lost" in (stack.root / f"{worker}.log").read_text(errors="replace"), worker
    running = sorted(index for index, shard_state in at_kill.items() if shard_state == "running")
    queued = sorted(index for index, shard_state in at_kill.items() if shard_state == "queued")
    try:
        assert segments(customers) == undisturbed["segments"]
        assert history(customers) == undisturbed["history"]  # one change per customer: no duplicate
        tries = score_tries(metadata_db, run_id)
        requeued = requeues(metadata_db, run_id)
        retried = fetch(
            metadata_db,
            """SELECT task_id, map_index, try_number FROM task_instance
               WHERE dag_id = %s AND run_id = %s AND try_number > 1""",
            (DAG_ID, run_id),
        )
        # A message lost with the broker leaves its task queued until [scheduler] task_queued_timeout; the
        # scheduler then requeues it, once: each lost message was a shard queued at the kill, and every
        # message waiting in the broker was lost.
        assert requeued, f"no shard requeued, though {backlog[0]} message(s) died with the broker: {at_kill}"
        assert set(requeued) <= set(queued), (requeued, at_kill)
        assert len(requeued) >= backlog[0], (requeued, backlog, at_kill)
        assert set(requeued.values()) == {1}, requeued
        # The shards running at the kill need no broker to finish: each did in its first try, never requeued.
        assert all(tries[index] == 1 for index in running) and not set(running) & set(requeued), (tries, requeued)
        # No shard that reached a worker failed for the restart: a lost message is requeued, not failed and
        # retried. Only a shard the scheduler sent while the broker was down (a running shard finished during
        # the outage and freed its pool slot) fails to publish and takes one retry; that failed try never started.
        assert all(task == "score" and tries == 2 for task, _, tries in retried), retried
        sent_in_outage = {index for _, index, _ in retried}
        assert not sent_in_outage & (set(running) | set(queued)), (retried, at_kill)
        for index in sent_in_outage:  # its first try reached no worker; its retry ran on one
            attempts = {
                attempt: [w for w in WORKERS if stack.task_log(w, run_id, "score", index, attempt).exists()]
                for attempt in (1, 2)
            }
            assert not attempts[1] and len(attempts[2]) == 1, (index, attempts)
        assert task_states(metadata_db, run_id) == {"success": 7 + len(tries)}
    finally:
        drop_database(customers)
    log.info(
        "Redis killed %.0f s after the trigger with shards %s running and %s queued (%d message(s) waiting in "
        "it), restarted after %d s; shard(s) %s requeued after being stuck in queued, %d task(s) retried; "
        "run %s succeeded %.0f s after the trigger; segments and history equal the undisturbed run on %d "
        "customers",
        down - triggered,
        running,
        queued,
        backlog[0],
        REDIS_DOWN_S,
        sorted(requeued),
        len(retried),
        run_id,
        finished - triggered,
        N_CUSTOMERS,
    )


def score_states(metadata: str, run_id: str) -> dict[int, str]:
    """The state of every scoring shard's task instance, by map index."""
    rows = fetch(
        metadata,
        "SELECT map_index, state FROM task_instance WHERE dag_id = %s AND run_id = %s AND task_id = 'score'",
        (DAG_ID, run_id),
    )
    return {int(index): str(state) for index, state in rows}


def score_tries(metadata: str, run_id: str) -> dict[int, int]:
    """The try number of every scoring shard's task instance, by map index."""
    rows = fetch(
        metadata,
        "SELECT map_index, try_number FROM task_instance WHERE dag_id = %s AND run_id = %s AND task_id = 'score'",
        (DAG_ID, run_id),
    )
    return {int(index): int(tries) for index, tries in rows}


def requeues(metadata: str, run_id: str) -> dict[int, int]:
    """How often the scheduler requeued each scoring shard found stuck in queued, by map index."""
    rows = fetch(
        metadata,
        """SELECT map_index, count(*) FROM log WHERE dag_id = %s AND run_id = %s AND task_id = 'score'
           AND event = 'stuck in queued reschedule' GROUP BY map_index""",
        (DAG_ID, run_id),
    )
    return {int(index): int(n) for index, n in rows}


def broker_backlog(broker: RedisServer, queue: str) -> int:
    """Messages for ``queue`` waiting in the broker, not yet delivered to a worker (kombu keeps one list per
    priority step: the queue's name, then the name, a separator and the step)."""
    client = Redis.from_url(broker.url, socket_timeout=5)
    try:
        return sum(int(client.llen(key)) for key in (queue, *(f"{queue}\x06\x16{step}" for step in (3, 6, 9))))
    finally:
        client.close()
