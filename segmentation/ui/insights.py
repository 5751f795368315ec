"""Segment transitions and realised quality: what the overview and quality pages show about them, and their
JSON API (``/api/transitions``, ``/api/realised-quality``) on a router guarded like every other API route.

A run's matrix comes from ``segment_transitions`` (pre-counted per run, so the page reads a few rows); a
period's matrix is computed over ``segment_history`` on request only (``insight_queries.period_transitions``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, status
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse

from segmentation.config import Settings
from segmentation.db import connect
from segmentation.ui import charts, security
from segmentation.ui import insight_queries as q

log = logging.getLogger(__name__)

DEFAULT_PERIOD_DAYS = 7
NO_LABELS = "no late labels yet: realised accuracy appears once labels arrive for scored customers"
NOT_MIGRATED = (
    "these figures need tables that the customer database does not have yet: apply the migrations "
    "(segmentation init-db)"
)
UNPROCESSABLE = 422


class BadRequest(ValueError):
    """A request value that the views refuse, with a message that names the field and what is allowed."""


class NotMigrated(Exception):
    """The customer database lacks a relation these views read (the UI is newer than its migrations)."""


@contextmanager
def _reading(settings: Settings) -> Iterator[Any]:
    """A cursor on the customer database; a missing relation becomes :class:`NotMigrated` (logged)."""
    import psycopg2.errors

    try:
        with connect(settings.database_url) as conn, conn.cursor() as cur:
            yield cur
    except psycopg2.errors.UndefinedTable as exc:
        log.warning("segmentation UI: %s", str(exc).strip())
        raise NotMigrated(NOT_MIGRATED) from exc


def today() -> date:
    """Today in UTC, the calendar of the period form."""
    return datetime.now(UTC).date()


def default_period(now: date) -> tuple[date, date]:
    """The period the form offers: the last ``DEFAULT_PERIOD_DAYS`` days up to today."""
    return now - timedelta(days=DEFAULT_PERIOD_DAYS), now


def parse_period(start: str | None, end: str | None, now: date) -> tuple[date, date]:
    """The period of a request: dates as YYYY-MM-DD, a missing one from :func:`default_period`; BadRequest
    when a date is not one or the end is before the start."""
    default_start, default_end = default_period(now)
    first = _date("start", start, default_start)
    last = _date("end", end, default_end)
    if last < first:
        raise BadRequest(f"the end date ({last}) is before the start date ({first}): choose an end on or after it")
    return first, last


def _date(field: str, raw: str | None, default: date) -> date:
    if raw is None or not raw.strip():
        return default
    try:
        return date.fromisoformat(raw.strip())
    except ValueError:
        raise BadRequest(f"the {field} date is not a date: use YYYY-MM-DD, for example {default}") from None


def parse_cause(raw: str | None) -> str | None:
    """The cause to show (None: all); BadRequest naming the allowed ones."""
    if raw is None or not raw.strip():
        return None
    if raw.strip() not in charts.CAUSES:
        raise BadRequest(f"the cause must be one of {', '.join(charts.CAUSES)} (or empty for all)")
    return raw.strip()


def _end_of(day: date) -> datetime:
    """The first moment after ``day`` (UTC): a segment as of a date is the last change before it."""
    return datetime.combine(day + timedelta(days=1), time(), tzinfo=UTC)


def run_matrix(settings: Settings, run_id: str | None = None, cause: str | None = None) -> dict[str, Any]:
    """A run's transition matrix (default: the last finished scoring run); 404 for an unknown ``run_id``."""
    with _reading(settings) as cur:
        run = q.last_scoring_run(cur) if run_id is None else q.run(cur, run_id)
        if run is None and run_id is not None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no pipeline run with that run_id")
        rows = q.run_transitions(cur, run["run_id"]) if run else []
    matrix = charts.transition_matrix(rows, first_scorings=True, cause=cause)
    return {"mode": "run", "run": run, **matrix}


def period_matrix(settings: Settings, start: date, end: date) -> dict[str, Any]:
    """Each customer's segment at the end of ``start`` against the one at the end of ``end`` (customers with a
    segment at both)."""
    with _reading(settings) as cur:
        rows = q.period_transitions(cur, _end_of(start), _end_of(end))
    matrix = charts.transition_matrix(rows, first_scorings=False)
    return {"mode": "period", "start": start, "end": end, **matrix}


def overview_context(
    settings: Settings, start: str | None, end: str | None, cause: str | None, now: date
) -> dict[str, Any]:
    """What the overview shows about transitions: the last run's matrix (by cause), and the period's matrix
    when the form asked for one; a bad value becomes a message of its section (``errors``)."""
    errors: dict[str, str] = {}
    try:
        chosen = parse_cause(cause)
    except BadRequest as exc:
        chosen, errors["cause"] = None, str(exc)
    form = {"start": start or default_period(now)[0].isoformat(), "end": end or default_period(now)[1].isoformat()}
    period = last_run = None
    try:
        last_run = run_matrix(settings, cause=chosen)
        if start is not None or end is not None:
            try:
                period = period_matrix(settings, *parse_period(start, end, now))
            except BadRequest as exc:
                errors["period"] = str(exc)
    except NotMigrated as exc:
        return {"missing": str(exc), "errors": {}}
    return {
        "missing": None,
        "last_run": last_run,
        "period": period,
        "period_form": form,
        "errors": errors,
        "causes": charts.CAUSES,
    }


def realised(settings: Settings) -> dict[str, Any]:
    """Realised quality per version and per day, each version's holdout accuracy, and the chart's geometry;
    ``missing`` says so when the database has no such tables yet."""
    try:
        return _realised(settings)
    except NotMigrated as exc:
        return {"missing": str(exc), "versions": [], "daily": [], "holdout_accuracy": {}, "chart": None,
                "empty": None}  # fmt: skip


def _realised(settings: Settings) -> dict[str, Any]:
    with _reading(settings) as cur:
        versions = q.realised_quality(cur)
        daily = q.realised_quality_daily(cur)
        holdout = q.holdout_accuracy(cur, sorted({int(r["model_version"]) for r in daily}))
    return {
        "missing": None,
        "versions": versions,
        "daily": daily,
        "holdout_accuracy": holdout,
        "chart": charts.realised_accuracy(daily, holdout),
        "empty": None if versions or daily else NO_LABELS,
    }


def api_router(settings: Callable[[], Settings]) -> APIRouter:
    """The JSON API of these views: 401 without a valid Airflow token, 403 without read permission."""
    api = APIRouter(dependencies=[Depends(security.reader)])

    @api.get(
        "/api/transitions",
        summary="Segment transitions: of a run (run_id, default the last finished scoring run; cause filters) or "
        "of a period (start, end as YYYY-MM-DD: segment at the end of start against the end of end)",
    )
    def api_transitions(
        run_id: str | None = None, start: str | None = None, end: str | None = None, cause: str | None = None
    ) -> JSONResponse:
        try:
            if start is None and end is None:
                data = run_matrix(settings(), run_id, parse_cause(cause))
            elif run_id is not None or cause is not None:
                raise BadRequest("give run_id (and cause) or start and end, not both")
            else:
                data = period_matrix(settings(), *parse_period(start, end, today()))
        except BadRequest as exc:
            return JSONResponse({"detail": str(exc)}, status_code=UNPROCESSABLE)
        except NotMigrated as exc:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from exc
        data["cells"] = [[{k: c[k] for k in ("from", "to", "customers")} for c in line] for line in data["cells"]]
        return JSONResponse(jsonable_encoder(data))

    @api.get(
        "/api/realised-quality",
        summary="Realised quality from late labels: per model version (with its holdout accuracy) and per day",
    )
    def api_realised_quality() -> JSONResponse:
        data = realised(settings())
        if data.pop("missing"):
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, NOT_MIGRATED)
        data.pop("chart")
        data["holdout_accuracy"] = {str(k): v for k, v in data["holdout_accuracy"].items()}
        return JSONResponse(jsonable_encoder(data))

    return api
