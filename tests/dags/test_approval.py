"""Approval before promotion, driven through Airflow: with SEGMENTATION_PROMOTION_APPROVAL=required the retrain
run waits in its ``review`` task (AWAITING_INPUT) and a person answers through Airflow's HITL REST API, the API
behind the Required actions page; a timeout is resolved by the scheduler's own timeout sweep.

``dag.test()`` keeps a run alive while a task awaits input, so each run goes on in a thread while the test
answers; ``dag.test()`` does not raise when a task fails, so every run's state is asserted.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import unquote

import pytest

from segmentation import tasks
from segmentation.config import PROMOTE_DAG_ID, REVIEW_TASK_ID, get_settings
from segmentation.loading import load_customers, to_raw_text
from segmentation.synthetic import generate_customers
from segmentation.ui import content
from tests.airflow_setup import DAGS
from tests.dags.test_promote_and_config_faults import champion, champion_events, task_tries
from tests.helpers import db_url, scalar
from tests.retrain_child import RETRAIN, Background, awaiting_review

pytestmark = [pytest.mark.airflow, pytest.mark.db]

SIMPLE_AUTH = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"


@pytest.fixture(scope="module")
def hitl_api(airflow_db) -> Iterator[Callable[..., tuple[int, Any]]]:
    """Airflow's REST API in this process, as user ``admin`` (SimpleAuthManager), as the UI calls it."""
    from tests.ui.conftest import JWT_SECRET, USERS, _set_env

    _set_env(
        {
            "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH,
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": USERS,
            "AIRFLOW__API_AUTH__JWT_SECRET": JWT_SECRET,
        }
    )
    from airflow.api_fastapi.app import create_app, init_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from fastapi.testclient import TestClient

    token = init_auth_manager().generate_jwt(SimpleAuthManagerUser(username="admin", role="admin"))
    with TestClient(create_app(apps="core")) as client:

        def call(method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
            reply = client.request(method, path, headers={"Authorization": f"Bearer {token}"}, **kwargs)
            return reply.status_code, reply.json()

        yield call


@pytest.fixture
def seeded(airflow_db, fresh_db: str, monkeypatch: pytest.MonkeyPatch) -> int:
    """A scored database with champion v1 (trained with approval off); returns the champion's version."""
    monkeypatch.setenv("SEGMENTATION_CANDIDATES", "logistic_regression")
    monkeypatch.setenv("SEGMENTATION_CV_FOLDS", "2")
    monkeypatch.delenv("SEGMENTATION_PROMOTION_APPROVAL", raising=False)
    load_customers(to_raw_text(generate_customers(800, labelled_share=0.6, seed=21)), run_id="seed", url=db_url())
    tasks.run_nightly("approval-seed")
    return champion()


def retrain_dag(monkeypatch: pytest.MonkeyPatch, **env: str):
    """segmentation_retrain parsed with approval required (and ``env``), as the DAG processor parses it."""
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("SEGMENTATION_PROMOTION_APPROVAL", "required")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    bag = DagBag(dag_folder=str(DAGS))
    assert not bag.import_errors, bag.import_errors
    return bag.dags[RETRAIN]


@pytest.fixture
def background(tmp_path: Path) -> Iterator[Callable[[dict[str, Any]], Background]]:
    started: list[Background] = []

    def start(run_conf: dict[str, Any]) -> Background:
        started.append(Background(run_conf, tmp_path / f"retrain-{len(started)}.log"))
        return started[-1]

    yield start
    for run in started:
        run.stop()


def pending_review(api, started: Background) -> tuple[str, dict[str, Any]]:
    """Wait until the run's review task awaits input; returns (run_id, its HITL detail from the REST API)."""
    run_id = awaiting_review(started)
    code, detail = api("GET", f"/api/v2/dags/{RETRAIN}/dagRuns/{run_id}/taskInstances/{REVIEW_TASK_ID}/-1/hitlDetails")
    assert code == 200, detail
    return run_id, detail


def respond(api, run_id: str, option: str, comment: str) -> dict[str, Any]:
    code, reply = api(
        "PATCH",
        f"/api/v2/dags/{RETRAIN}/dagRuns/{run_id}/taskInstances/{REVIEW_TASK_ID}/-1/hitlDetails",
        json={"chosen_options": [option], "params_input": {"comment": comment}},
    )
    assert code == 200, reply
    return reply


def required_actions_path(run_id: str) -> str:
    """The path of the review task's Required actions page, as Airflow's HITL operator links to it."""
    from urllib.parse import urlparse

    from airflow.providers.standard.operators.hitl import HITLOperator

    ti = SimpleNamespace(dag_id=RETRAIN, run_id=run_id, task_id=REVIEW_TASK_ID, map_index=-1)
    x = HITLOperator(task_id="x", subject="x", options=["Approve"])
    return urlparse(x.generate_link_to_ui(task_instance=ti, base_url="http://airflow")).path


def review_row(version: int) -> tuple:
    return tuple(
        scalar(f"SELECT {column} FROM segmentation.model_versions WHERE version = %s", (version,))
        for column in ("status", "reviewed_by", "review_comment", "promoted_by", "review_run_id")
    )


def newest_version() -> int:
    return int(scalar("SELECT max(version) FROM segmentation.model_versions"))


FORCED = {"force_promote": True}  # force overrides the metric rule only: the approval still holds the challenger


def test_approval_off_has_no_review_task(airflow_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.delenv("SEGMENTATION_PROMOTION_APPROVAL", raising=False)
    off = DagBag(dag_folder=str(DAGS)).dags[RETRAIN]
    assert set(off.task_dict) == {"train", "promote", "promoted", "announce_champion"}
    on = retrain_dag(monkeypatch)
    assert {REVIEW_TASK_ID, "awaiting_review", "record_review"} <= set(on.task_dict)
    assert on.task_dict[REVIEW_TASK_ID].response_timeout.total_seconds() == 72 * 3600
    assert on.task_dict[REVIEW_TASK_ID].defaults == ["Reject"]


def test_bad_approval_settings_are_import_errors_naming_them(airflow_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.dag_processing.dagbag import DagBag

    for name, value in (("SEGMENTATION_PROMOTION_APPROVAL", "maybe"), ("SEGMENTATION_APPROVAL_TIMEOUT_HOURS", "0")):
        with monkeypatch.context() as patched:
            patched.setenv(name, value)
            bag = DagBag(dag_folder=str(DAGS))
            assert RETRAIN not in bag.dags
            assert any(name in message for message in bag.import_errors.values()), bag.import_errors


def test_approve_promotes_as_the_approver_while_a_promotion_dag_run_is_not_blocked(
    dagbag, seeded: int, hitl_api, background, monkeypatch: pytest.MonkeyPatch
) -> None:
    tasks.start_run("approval-other", RETRAIN)
    other = tasks.train("approval-other", trigger="manual")["version"]  # a candidate the promotion DAG promotes
    assert REVIEW_TASK_ID in retrain_dag(monkeypatch).task_dict
    events = champion_events()
    started = background(FORCED)
    run_id, detail = pending_review(hitl_api, started)
    version = newest_version()
    assert version > other
    assert review_row(version)[0] == "candidate" and review_row(version)[4] == run_id  # held, not promoted
    assert f"Model version {version}" in detail["body"] and "Macro-F1" in detail["body"]
    assert "Segment shares" in detail["body"]
    alert = scalar("SELECT message FROM segmentation.alerts WHERE kind = 'approval_pending' AND run_id = %s", (run_id,))
    assert f"model version {version}" in alert and run_id in alert
    # The models page marks it and links to Airflow's Required actions page of the task, as Airflow builds it.
    shown = next(v for v in content.models_data(get_settings(), [])["versions"] if v["version"] == version)
    assert shown["awaiting_approval"] and unquote(shown["review_path"]) == required_actions_path(run_id)

    # While the approval is pending, the promotion DAG promotes another version: nothing it needs is held.
    promoted = dagbag.dags[PROMOTE_DAG_ID].test(run_conf={"version": other})
    assert promoted.state == "success" and champion() == other

    respond(hitl_api, run_id, "Approve", "better on segment D")
    run = started.result()
    assert run.state == "success"
    assert task_tries(run)["announce_champion"][0] == "success"
    assert champion() == version
    status, reviewed_by, comment, promoted_by, _ = review_row(version)
    assert (status, reviewed_by, comment, promoted_by) == ("champion", "admin", "better on segment D", "admin")
    assert champion_events() == events + 2  # the promotion DAG's and the approval's
    shown = next(v for v in content.models_data(get_settings(), [])["versions"] if v["version"] == version)
    assert not shown["awaiting_approval"] and shown["review_path"] is None


def test_reject_leaves_a_candidate_and_records_the_reviewer(seeded: int, hitl_api, background, monkeypatch) -> None:
    assert REVIEW_TASK_ID in retrain_dag(monkeypatch).task_dict
    events = champion_events()
    started = background(FORCED)
    run_id, _ = pending_review(hitl_api, started)
    version = newest_version()
    respond(hitl_api, run_id, "Reject", "shares move too much")
    run = started.result()
    assert run.state == "success"
    assert task_tries(run)["announce_champion"][0] == "skipped"
    assert champion() == seeded and champion_events() == events
    assert review_row(version)[:4] == ("candidate", "admin", "shares move too much", None)


def test_no_answer_in_time_rejects_as_timeout(seeded: int, hitl_api, background, monkeypatch) -> None:
    from airflow.jobs.job import Job
    from airflow.jobs.scheduler_job_runner import SchedulerJobRunner

    assert REVIEW_TASK_ID in retrain_dag(monkeypatch, SEGMENTATION_APPROVAL_TIMEOUT_HOURS="0.001").task_dict  # 3.6 s
    started = background(FORCED)
    run_id, _ = pending_review(hitl_api, started)
    version = newest_version()
    time.sleep(4.0)
    SchedulerJobRunner(job=Job()).check_awaiting_input_timeouts()  # the scheduler's sweep takes the default
    run = started.result()
    assert run.state == "success"
    assert task_tries(run)["announce_champion"][0] == "skipped"
    assert champion() == seeded
    assert review_row(version)[:4] == ("candidate", "timeout", None, None)
    notes = scalar("SELECT notes FROM segmentation.model_versions WHERE version = %s", (version,))
    assert f"run {run_id}: review not approved in time by timeout" in notes
