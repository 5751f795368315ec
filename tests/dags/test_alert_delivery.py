"""Alert delivery through Airflow's SmtpNotifier and an SMTP connection, to a local SMTP sink on 127.0.0.1.

Here, under tests/dags, because delivery imports Airflow, whose environment this folder's fixtures set first.
The failed-run alert of a real DAG run is delivered in test_failures.py.
"""

from __future__ import annotations

import pytest

from segmentation import alerts, tasks
from segmentation.config import get_settings
from tests.helpers import current_settings, db_url, query
from tests.smtp_sink import smtp_sink

pytestmark = [pytest.mark.airflow, pytest.mark.db]


def _alerts(kind: str) -> list[tuple]:
    return query("SELECT delivered, delivery FROM segmentation.alerts WHERE kind = %s", (kind,))


def test_an_alert_is_delivered_through_the_smtp_connection(
    airflow_env: str, fresh_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    tasks.start_run("night-x", "segmentation_nightly")
    monkeypatch.setenv("SEGMENTATION_ALERTS_TO", "oncall@example.com,data@example.com")
    with smtp_sink() as sink:
        monkeypatch.setenv("AIRFLOW_CONN_SEGMENTATION_ALERTS", sink.airflow_connection())
        alerts.raise_alert(
            "drift_retrain",
            "retraining: input drift",
            run_id="night-x",
            task_id="retrain_if_due",
            url=db_url(),
            settings=current_settings(),
        )
    [message] = sink.messages
    assert sorted(message.recipients) == ["data@example.com", "oncall@example.com"]
    assert message.subject == "[segmentation] drift_retrain: DAG segmentation_nightly, run night-x"
    for needle in ("DAG: segmentation_nightly", "run: night-x", "task: retrain_if_due", "reason: retraining"):
        assert needle in message.body
    [(delivered, delivery)] = _alerts("drift_retrain")
    assert delivered is True and delivery.startswith("sent to")


def test_an_unreachable_mail_server_loses_no_alert(
    airflow_env: str, fresh_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with smtp_sink() as sink:
        closed = sink.airflow_connection()  # the sink stops: nothing listens on its port any more
    monkeypatch.setenv("AIRFLOW_CONN_SEGMENTATION_ALERTS", closed)
    monkeypatch.setenv("SEGMENTATION_ALERTS_TO", "oncall@example.com")
    alerts.raise_alert(
        "failed_run", "task x failed: boom", run_id="r", task_id="x", settings=get_settings(), url=db_url()
    )
    [(delivered, delivery)] = _alerts("failed_run")
    assert delivered is False and delivery.startswith("failed:")
