"""Authentication and permissions through Airflow's own auth manager, and protection against cross-site writes.

Requests carry the JWT that the Airflow UI uses: the ``_token`` cookie set at Airflow's login, or an
``Authorization: Bearer`` header for API clients. Pages redirect an unauthenticated visitor to Airflow's login;
the API answers 401. Reading needs read access to the ``segmentation_nightly`` DAG; promoting or rolling back
is a run of ``segmentation_promote`` that Airflow triggers as the user, so it needs the right to trigger that
DAG (Airflow checks it again when the run is asked for). Writes authenticated by the cookie must also carry the
double-submit CSRF token (cookie ``segmentation_csrf`` equal to the form field or ``X-CSRF-Token`` header) and,
when the browser sends one, an Origin of this server.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from fastapi import HTTPException, Request, status

from segmentation.config import PROMOTE_DAG_ID

READ_DAG_ID = "segmentation_nightly"
CSRF_COOKIE = "segmentation_csrf"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"


@dataclass(frozen=True)
class Caller:
    """An authenticated Airflow user and how the request proved it."""

    user: Any
    name: str
    via_cookie: bool


class LoginRequired(Exception):
    """A page was requested without a valid Airflow session: redirect to Airflow's login."""


def auth_manager() -> Any:
    from airflow.api_fastapi.app import get_auth_manager

    return get_auth_manager()


def token(request: Request) -> str:
    """The caller's Airflow token, to call Airflow's API on their behalf (authentication has checked it)."""
    return _token(request)[0] or ""


def _token(request: Request) -> tuple[str | None, bool]:
    header = request.headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip(), False
    from airflow.api_fastapi.auth.managers.base_auth_manager import COOKIE_NAME_JWT_TOKEN

    return request.cookies.get(COOKIE_NAME_JWT_TOKEN), True


async def authenticate(request: Request) -> Caller:
    """The Airflow user of the request; 401 without a valid token."""
    from jwt import InvalidTokenError

    token, via_cookie = _token(request)
    if not token:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "Not authenticated: log in to Airflow first")
    try:
        user = await auth_manager().get_user_from_token(token)
    except InvalidTokenError as exc:  # includes an expired signature
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "Invalid or expired Airflow token") from exc
    return Caller(user=user, name=str(user.get_name()), via_cookie=via_cookie)


def can(caller: Caller, method: str, dag_id: str, *, runs: bool = False) -> bool:
    """Whether Airflow's auth manager lets ``caller`` use ``method`` on DAG ``dag_id`` (on its runs if ``runs``)."""
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails

    return bool(
        auth_manager().is_authorized_dag(
            method=method,
            access_entity=DagAccessEntity.RUN if runs else None,
            details=DagDetails(id=dag_id),
            user=caller.user,
        )
    )


async def reader(request: Request) -> Caller:
    """The API router's dependency: an authenticated user who may read the segmentation DAGs (401, 403
    otherwise), kept on ``request.state.caller`` for the handlers (:func:`current_caller`)."""
    caller = await authenticate(request)
    if not can(caller, "GET", READ_DAG_ID):
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"Airflow does not let {caller.name} read {READ_DAG_ID}")
    request.state.caller = caller
    return caller


async def page_reader(request: Request) -> Caller:
    """The page router's dependency: as :func:`reader`, but an unauthenticated visitor goes to Airflow's login."""
    try:
        return await reader(request)
    except HTTPException as exc:
        if exc.status_code == status.HTTP_401_UNAUTHORIZED:
            raise LoginRequired from exc
        raise


async def current_caller(request: Request) -> Caller:
    """A handler's dependency: the caller that its router's :func:`reader` or :func:`page_reader` let in.

    A handler outside the guarded routers has none and is refused (401), never served anonymously.
    """
    caller = getattr(request.state, "caller", None)
    if not isinstance(caller, Caller):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "Not authenticated: log in to Airflow first")
    return caller


def login_url(request: Request) -> str:
    """Airflow's login page, returning to the requested page afterwards."""
    return auth_manager().get_url_login(next_url=str(request.url))


def may_promote(caller: Caller) -> bool:
    """Promotion and rollback are runs of the promotion DAG: the caller must be allowed to trigger it."""
    return can(caller, "POST", PROMOTE_DAG_ID, runs=True)


def require_promoter(caller: Caller) -> None:
    if not may_promote(caller):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"Airflow does not let {caller.name} trigger {PROMOTE_DAG_ID}, which promotion and rollback are",
        )


def csrf_token(request: Request) -> str:
    """The request's CSRF token (from its cookie), or a new one for the page to set."""
    existing = request.cookies.get(CSRF_COOKIE)
    return existing if existing and len(existing) >= 32 else secrets.token_urlsafe(32)


def check_csrf(request: Request, caller: Caller, submitted: str | None) -> None:
    """Refuse a cookie-authenticated write from another site: Origin mismatch or a missing/wrong token."""
    origin = request.headers.get("origin") or request.headers.get("referer")
    if origin:
        sent = urlparse(origin)
        if sent.netloc and sent.netloc != request.headers.get("host", request.url.netloc):
            raise HTTPException(status.HTTP_403_FORBIDDEN, "cross-site request refused (origin does not match)")
    if not caller.via_cookie:
        return  # a Bearer header is never sent by a browser on its own
    cookie = request.cookies.get(CSRF_COOKIE) or ""
    if not cookie or not submitted or not hmac.compare_digest(cookie, submitted):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "missing or wrong CSRF token; reload the page and try again")
