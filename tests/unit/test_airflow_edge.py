"""Which faults fail an Airflow task at once and which keep its retries (segmentation.airflow_tasks)."""

from __future__ import annotations

import psycopg2
import psycopg2.errors
import pytest

from segmentation.errors import ConfigError, DatabaseError, DataError, NotFoundError

pytestmark = pytest.mark.airflow


@pytest.mark.parametrize(
    "fault",
    [
        ConfigError("SEGMENTATION_MODEL_SIGNING_KEY is not set"),
        DataError("segmentation.customers lacks columns ['age']"),
        NotFoundError("model version 999 does not exist"),
    ],
)
def test_a_fault_no_retry_can_mend_fails_the_task_at_once(airflow_env: str, fault: Exception) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    from segmentation.airflow_tasks import fail_fast

    with pytest.raises(AirflowFailException) as raised, fail_fast():
        raise fault
    assert raised.value.__cause__ is fault
    assert str(fault) in str(raised.value) and type(fault).__name__ in str(raised.value)


@pytest.mark.parametrize(
    "fault",
    [
        DatabaseError("cannot connect: connection refused"),
        psycopg2.OperationalError("connection refused"),
        psycopg2.errors.SerializationFailure("could not serialize access"),
        KeyboardInterrupt(),
    ],
)
def test_transient_faults_keep_their_retries(airflow_env: str, fault: BaseException) -> None:
    from segmentation.airflow_tasks import fail_fast

    with pytest.raises(type(fault)) as raised, fail_fast():
        raise fault
    assert raised.value is fault
