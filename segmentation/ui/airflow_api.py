"""Airflow's REST API, called on the logged-in user's behalf: promotion is a run of ``segmentation_promote``.

The user's own Airflow token goes with every call, so Airflow's auth manager decides what the user may do and
Airflow records who triggered a run. The api-server that serves these pages is called at the address it
listens on (the request's ``server``); tests hand the app another client.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

from segmentation.config import PROMOTE_DAG_ID

log = logging.getLogger(__name__)

RECENT_PROMOTIONS = 10
TIMEOUT_S = 30.0


class AirflowApiError(Exception):
    """Airflow answered a call with an error status (``status``), or could not be reached (status 503)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class Transport(Protocol):
    """Sends one request to Airflow's API: ``(status, JSON body)``."""

    def __call__(
        self, method: str, path: str, token: str, *, json: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
    ) -> tuple[int, Any]: ...  # fmt: skip


@dataclass(frozen=True)
class HttpTransport:
    """Calls the api-server at ``base`` (e.g. ``http://127.0.0.1:8080``) over HTTP."""

    base: str

    def __call__(
        self, method: str, path: str, token: str, *, json: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
    ) -> tuple[int, Any]:  # fmt: skip
        import httpx

        try:
            reply = httpx.request(
                method, f"{self.base}{path}", json=json, params=params, timeout=TIMEOUT_S,
                headers={"Authorization": f"Bearer {token}"},
            )  # fmt: skip
        except httpx.HTTPError as exc:
            log.error("Airflow's API at %s did not answer %s %s: %s", self.base, method, path, exc)
            raise AirflowApiError(503, "Airflow's API did not answer") from exc
        try:
            body = reply.json()
        except ValueError:
            body = None
        return reply.status_code, body


def own_server(scope: dict[str, Any]) -> HttpTransport:
    """The api-server this request reached, at the address it listens on."""
    host, port = (scope.get("server") or (None, None))[:2]
    if not host or port is None:
        raise AirflowApiError(503, "the address of Airflow's API is unknown to this server")
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    return HttpTransport(f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}")


def _detail(body: Any) -> str:
    detail = body.get("detail") if isinstance(body, dict) else None
    return detail if isinstance(detail, str) else "see the api-server log"


def trigger_promotion(transport: Transport, token: str, version: int, user: str) -> dict[str, Any]:
    """Trigger ``segmentation_promote`` for ``version``; the run's id and state. AirflowApiError on refusal."""
    status, body = transport(
        "POST",
        f"/api/v2/dags/{PROMOTE_DAG_ID}/dagRuns",
        token,
        json={"logical_date": None, "conf": {"version": version}, "note": f"requested by {user} in Segmentation"},
    )
    if status in (401, 403):
        raise AirflowApiError(403, f"Airflow does not let {user} trigger {PROMOTE_DAG_ID}, which promotion needs")
    if status == 404:
        raise AirflowApiError(503, f"the DAG {PROMOTE_DAG_ID} is not in Airflow yet; check its DAG import errors")
    if status >= 300 or not isinstance(body, dict):
        log.error("triggering %s for version %d: Airflow answered %d: %s", PROMOTE_DAG_ID, version, status, body)
        raise AirflowApiError(503, f"Airflow refused the promotion run ({status}: {_detail(body)})")
    log.info("%s asked for promotion of version %d: run %s", user, version, body.get("dag_run_id"))
    return {"run_id": body.get("dag_run_id"), "state": body.get("state")}


def recent_promotions(transport: Transport, token: str, limit: int = RECENT_PROMOTIONS) -> list[dict[str, Any]]:
    """The latest runs of ``segmentation_promote`` the user may see, newest first; [] when Airflow says no."""
    try:
        status, body = transport(
            "GET", f"/api/v2/dags/{PROMOTE_DAG_ID}/dagRuns", token, params={"order_by": "-run_after", "limit": limit}
        )
    except AirflowApiError:
        return []
    if status != 200 or not isinstance(body, dict):
        log.info("promotion runs not listed: Airflow answered %d", status)
        return []
    return [
        {
            "run_id": run.get("dag_run_id"),
            "version": (run.get("conf") or {}).get("version"),
            "state": run.get("state"),
            "triggered_by": run.get("triggering_user_name"),
            "requested_at": run.get("run_after") or run.get("queued_at"),
            "finished_at": run.get("end_date"),
        }
        for run in body.get("dag_runs") or []
    ]
