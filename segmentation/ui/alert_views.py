"""The alerts page (``/alerts``) and its JSON API (``/api/alerts``): the latest rows of ``segmentation.alerts``,
on routers guarded like every other page and API route. An ``approval_pending`` alert whose version still
awaits approval links to Airflow's Required actions page of its review (``content.review_path``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import HTMLResponse, JSONResponse

from segmentation.alerts import KINDS
from segmentation.config import Settings
from segmentation.db import connect
from segmentation.ui import alert_queries, content, security
from segmentation.ui.security import Caller

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
UNPROCESSABLE = 422

Render = Callable[..., HTMLResponse]
CurrentCaller = Annotated[Caller, Depends(security.current_caller)]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="how many alerts, newest first")]


class UnknownKind(ValueError):
    """An alert kind that the alerts table does not allow."""


def parse_kind(kind: str | None) -> str | None:
    """The kind filter of a request: None (every kind) when empty; UnknownKind naming the allowed kinds."""
    if kind is None or not kind.strip():
        return None
    if kind.strip() not in KINDS:
        raise UnknownKind(f"unknown alert kind {kind.strip()[:40]!r}: choose one of {', '.join(KINDS)}")
    return kind.strip()


def alerts_data(settings: Settings, kind: str | None, limit: int = DEFAULT_LIMIT) -> dict[str, Any]:
    """The latest alerts (of ``kind``), each with ``review_path`` when its approval is still pending."""
    with connect(settings.database_url) as conn, conn.cursor() as cur:
        rows = alert_queries.latest_alerts(cur, kind, limit)
    alerts = []
    for row in rows:
        path = content.review_path(row) if row["kind"] == "approval_pending" else None
        alerts.append({**row, "review_path": path})
    return {"kind": kind, "kinds": list(KINDS), "limit": limit, "alerts": alerts}


def _public(alert: dict[str, Any]) -> dict[str, Any]:
    hidden = {"review_run_id", "review_dag_id"}
    return {k: v for k, v in alert.items() if k not in hidden}


def page_router(settings: Callable[[], Settings], render: Render) -> APIRouter:
    """The alerts page: anonymous visitors go to Airflow's login, users without read permission get 403."""
    pages = APIRouter(dependencies=[Depends(security.page_reader)])

    @pages.get("/alerts", response_class=HTMLResponse, summary="Alerts page")
    def alerts_page(request: Request, caller: CurrentCaller, kind: str | None = None) -> HTMLResponse:
        try:
            data = alerts_data(settings(), parse_kind(kind))
        except UnknownKind as exc:
            data = {**alerts_data(settings(), None), "error": str(exc)}
            page = render(request, "alerts.html", caller, data=data)
            page.status_code = UNPROCESSABLE
            return page
        return render(request, "alerts.html", caller, data=data)

    return pages


def api_router(settings: Callable[[], Settings]) -> APIRouter:
    """The JSON API of the alerts: 401 without a valid Airflow token, 403 without read permission."""
    api = APIRouter(dependencies=[Depends(security.reader)])

    @api.get(
        "/api/alerts",
        summary="The latest alerts (kind filters; limit, default 100): time, kind, DAG, run, task, message, "
        "delivered, and the Required actions path of a pending approval",
    )
    def api_alerts(kind: str | None = None, limit: Limit = DEFAULT_LIMIT) -> JSONResponse:
        try:
            data = alerts_data(settings(), parse_kind(kind), limit)
        except UnknownKind as exc:
            return JSONResponse({"detail": str(exc)}, status_code=UNPROCESSABLE)
        data["alerts"] = [_public(a) for a in data["alerts"]]
        return JSONResponse(jsonable_encoder(data))

    return api
