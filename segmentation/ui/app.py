"""The Segmentation web app: server-rendered pages and their JSON API, mounted by Airflow at ``/segmentation``.

Every handler reads through ``content`` (SQL in ``queries``, bound parameters only). Authentication and the read
permission are dependencies of the two routers (``security.page_reader`` for pages, ``security.reader`` for the
API), so that no route can be added without them; only the static files are public.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import psycopg2
import psycopg2.errors
from fastapi import APIRouter, Depends, FastAPI, Form, HTTPException, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, ConfigDict, Field

from segmentation import registry
from segmentation.cleaning import REASONS
from segmentation.columns import ALLOWED_CATEGORIES, ATTRIBUTE_COLUMNS, NUMERIC_COLUMNS, SEGMENTS
from segmentation.config import PROMOTE_DAG_ID, Settings, get_settings
from segmentation.db import connect
from segmentation.errors import ConfigError, DatabaseError, ModelError
from segmentation.identifiers import InvalidCustomerId, parse_customer_id
from segmentation.ui import airflow_api, alert_views, charts, content, insights, security
from segmentation.ui.security import Caller

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
UNPROCESSABLE = 422  # starlette renamed its constant; the code is what clients see

# The caller that the router's dependency authenticated and allowed to read, for the handlers that need it.
CurrentCaller = Annotated[Caller, Depends(security.current_caller)]


class CustomerValues(BaseModel):
    """One customer's attributes, by the ``customers`` table's field names; any may be empty."""

    model_config = ConfigDict(extra="forbid")

    gender: str | None = Field(None, examples=["Female"])
    ever_married: str | None = Field(None, examples=["Yes"])
    age: str | int | float | None = Field(None, examples=[38])
    graduated: str | None = Field(None, examples=["Yes"])
    profession: str | None = Field(None, examples=["Artist"])
    work_experience: str | int | float | None = Field(None, examples=[1])
    spending_score: str | None = Field(None, examples=["Average"])
    family_size: str | int | float | None = Field(None, examples=[3])
    var_1: str | None = Field(None, examples=["Cat_6"])

    def raw(self) -> dict[str, str | None]:
        return {c: None if getattr(self, c) is None else str(getattr(self, c)) for c in ATTRIBUTE_COLUMNS}


# ---- settings, read once per process at the edge ---------------------------------------------------------


def ui_settings() -> Settings:
    """The pages' settings: the customer database from ``SEGMENTATION_DATABASE_URL``, else Airflow's connection
    ``segmentation_db`` (a ConfigError naming it when missing); the signing key from the environment or the
    Airflow Variable. Resolved once per process and setting."""
    return _resolved(get_settings())


@lru_cache(maxsize=4)
def _resolved(settings: Settings) -> Settings:
    from segmentation.airflow_tasks import resolve

    return resolve(settings, require_key=False)


def request_promotion(request: Request, caller: Caller, version: int) -> tuple[int, dict[str, Any]]:
    """Ask Airflow to run ``segmentation_promote`` for ``version`` as the caller: (HTTP status, answer).

    202 with the run's id and its link in Airflow; 200 and no run when ``version`` already is the champion.
    """
    security.require_promoter(caller)
    with connect(ui_settings().database_url) as conn, conn.cursor() as cur:
        try:
            target = registry.get_version(cur, version)
        except ModelError as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no model version {version}") from exc
    if target.status == "champion":
        return status.HTTP_200_OK, {"version": version, "action": "none: already the champion", "run_id": None}
    transport = request.app.state.airflow_transport or airflow_api.own_server(request.scope)
    try:
        run = airflow_api.trigger_promotion(transport, security.token(request), version, caller.name)
    except airflow_api.AirflowApiError as exc:
        raise HTTPException(exc.status, exc.detail) from exc
    return status.HTTP_202_ACCEPTED, {
        "version": version,
        "action": "requested",
        "dag_id": PROMOTE_DAG_ID,
        "run_id": run["run_id"],
        "state": run["state"],
        "url": run_link(request, run["run_id"]),
    }


def run_link(request: Request, run_id: str) -> str:
    """The page of a ``segmentation_promote`` run in Airflow's UI."""
    airflow_base = f"{request.url.scheme}://{request.url.netloc}{_base(request).removesuffix('/segmentation')}"
    return f"{airflow_base}/dags/{PROMOTE_DAG_ID}/runs/{quote(run_id, safe='')}"


def promotions(request: Request) -> list[dict[str, Any]]:
    """The latest promotion runs, with their links; [] when Airflow does not list them for this user."""
    try:
        transport = request.app.state.airflow_transport or airflow_api.own_server(request.scope)
    except airflow_api.AirflowApiError:
        return []
    runs = airflow_api.recent_promotions(transport, security.token(request))
    return [{**run, "url": run_link(request, run["run_id"])} for run in runs if run["run_id"]]


# ---- the app -------------------------------------------------------------------------------------------


def _base(request: Request) -> str:
    return request.scope.get("root_path", "").rstrip("/")


def render(request: Request, name: str, caller: Caller, **context: Any) -> HTMLResponse:
    token = security.csrf_token(request)
    response = templates.TemplateResponse(
        request,
        name,
        {
            "base": _base(request),
            "airflow_base": _base(request).removesuffix("/segmentation"),
            "user": caller.name,
            "csrf_token": token,
            "segments": SEGMENTS,
            **context,
        },
    )
    response.set_cookie(
        security.CSRF_COOKIE, token, httponly=True, samesite="strict", path=_base(request) or "/",
        secure=request.url.scheme == "https",
    )  # fmt: skip
    response.headers["Cache-Control"] = "no-store"
    return response


def create_app(airflow_transport: airflow_api.Transport | None = None) -> FastAPI:
    """The FastAPI app that the Airflow plugin mounts at ``/segmentation``.

    ``airflow_transport`` reaches Airflow's REST API; by default the api-server that serves the request.
    """
    app = FastAPI(
        title="Segmentation",
        description="Customer segments, the model registry, data quality and the what-if form. Every endpoint "
        "needs an Airflow login (the `_token` cookie of the Airflow UI, or `Authorization: Bearer <JWT>` from "
        "Airflow's `POST /auth/token`).",
        version="1",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.airflow_transport = airflow_transport
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    _handlers(app)
    _pages(app)
    _api(app)
    return app


def _is_api(request: Request) -> bool:
    return request.url.path.startswith(f"{_base(request)}/api/")


def _handlers(app: FastAPI) -> None:
    @app.exception_handler(security.LoginRequired)
    async def to_login(request: Request, exc: security.LoginRequired) -> Response:
        return RedirectResponse(security.login_url(request), status_code=status.HTTP_303_SEE_OTHER)

    @app.exception_handler(InvalidCustomerId)
    async def bad_customer_id(request: Request, exc: InvalidCustomerId) -> Response:
        return _error(request, UNPROCESSABLE, str(exc))  # names the rule, never the value

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        # The messages name the field and the rule, never the submitted value.
        detail = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "invalid")} for e in exc.errors()]
        return JSONResponse({"detail": detail}, status_code=UNPROCESSABLE)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        if _is_api(request) or exc.status_code == status.HTTP_401_UNAUTHORIZED:
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)
        return templates.TemplateResponse(
            request, "error.html", {"base": _base(request), "status": exc.status_code, "detail": exc.detail},
            status_code=exc.status_code,
        )  # fmt: skip

    @app.exception_handler(ModelError)
    async def no_model(request: Request, exc: ModelError) -> Response:
        log.warning("segmentation UI: %s", exc)
        return _error(request, status.HTTP_503_SERVICE_UNAVAILABLE, f"no usable model: {exc}")

    @app.exception_handler(ConfigError)
    async def not_configured(request: Request, exc: ConfigError) -> Response:
        log.error("segmentation UI is not configured: %s", exc)
        return _error(request, status.HTTP_503_SERVICE_UNAVAILABLE, NOT_CONFIGURED)

    @app.exception_handler(DatabaseError)
    async def unavailable(request: Request, exc: DatabaseError) -> Response:
        log.error("segmentation UI: %s", exc)
        return _error(request, status.HTTP_503_SERVICE_UNAVAILABLE, UNAVAILABLE)

    @app.exception_handler(psycopg2.Error)
    async def database_refused(request: Request, exc: psycopg2.Error) -> Response:
        log.error("segmentation UI: %s %s", type(exc).__name__, str(exc).strip())
        if isinstance(exc, psycopg2.errors.InsufficientPrivilege):
            return _error(request, status.HTTP_403_FORBIDDEN, NOT_PERMITTED)
        return _error(request, status.HTTP_503_SERVICE_UNAVAILABLE, UNAVAILABLE)


# What a failure says in the pages and the API; the details (login, host, driver text) go to the api-server log.
UNAVAILABLE = "the customer database is unavailable; the details are in the api-server's log"
NOT_CONFIGURED = "the customer database is not configured for the Segmentation pages; see the api-server's log"
NOT_PERMITTED = "this login may not do that in the customer database; the details are in the api-server's log"


def _error(request: Request, code: int, detail: str) -> Response:
    """An error answer: JSON for the API, an HTML page for pages."""
    if _is_api(request):
        return JSONResponse({"detail": detail}, status_code=code)
    return templates.TemplateResponse(
        request, "error.html", {"base": _base(request), "status": code, "detail": detail}, status_code=code
    )


def _pages(app: FastAPI) -> None:
    """The pages: an anonymous visitor is sent to Airflow's login, a user without read permission gets 403."""
    pages = APIRouter(dependencies=[Depends(security.page_reader)])

    @pages.get("/", response_class=HTMLResponse, summary="Overview page")
    def overview(
        request: Request, caller: CurrentCaller, start: str | None = None, end: str | None = None,
        cause: str | None = None,
    ) -> HTMLResponse:  # fmt: skip
        data = content.summary_data(ui_settings())
        transitions = insights.overview_context(ui_settings(), start, end, cause, insights.today())
        page = render(
            request, "overview.html", caller, data=data, transitions=transitions,
            history_chart=charts.share_history(data["share_history"]),
            distribution_charts=charts.attribute_distributions(data["distributions"]),
        )  # fmt: skip
        if transitions["errors"]:
            page.status_code = UNPROCESSABLE
        return page

    @pages.get("/models", response_class=HTMLResponse, summary="Model registry page")
    def models_page(request: Request, caller: CurrentCaller, done: str | None = None) -> HTMLResponse:
        data = content.models_data(ui_settings(), promotions(request))
        calibration = None
        if data["champion"] and data["champion"]["reliability"]:
            calibration = charts.calibration({"reliability": data["champion"]["reliability"]})
        return render(
            request, "models.html", caller, data=data, calibration_chart=calibration,
            may_promote=security.may_promote(caller), done=done,
        )  # fmt: skip

    @pages.post("/models/{version}/promote", summary="Promote or roll back (form)", include_in_schema=False)
    def promote_form(
        request: Request,
        version: int,
        caller: CurrentCaller,
        csrf_token: Annotated[str | None, Form()] = None,
        confirm: Annotated[str | None, Form()] = None,
    ) -> Response:
        security.check_csrf(request, caller, csrf_token)
        security.require_promoter(caller)
        if confirm != "yes":
            raise HTTPException(UNPROCESSABLE, "tick the confirmation box to promote")
        _, result = request_promotion(request, caller, version)
        done = f"v{version} is already the champion" if result["run_id"] is None else (
            f"promotion of v{version} requested as run {result['run_id']}")  # fmt: skip
        return RedirectResponse(f"{_base(request)}/models?done={quote(done)}", status_code=status.HTTP_303_SEE_OTHER)

    @pages.get("/quality", response_class=HTMLResponse, summary="Data quality and drift page")
    def quality_page(request: Request, caller: CurrentCaller) -> HTMLResponse:
        data = content.quality_data(ui_settings())
        quality_charts = charts.quality(data["figures"], data["drift_threshold"])
        realised = insights.realised(ui_settings())
        return render(request, "quality.html", caller, charts_data=quality_charts, realised=realised)

    @pages.get("/customers", response_class=HTMLResponse, summary="Customer lookup", include_in_schema=False)
    def customer_lookup(request: Request, id: str = "") -> Response:
        customer_id = parse_customer_id(id.strip())
        return RedirectResponse(f"{_base(request)}/customers/{customer_id}", status_code=status.HTTP_303_SEE_OTHER)

    @pages.get("/customers/{customer_id}", response_class=HTMLResponse, summary="One customer page")
    def customer_page(request: Request, customer_id: str, caller: CurrentCaller) -> HTMLResponse:
        data = content.customer_data(ui_settings(), parse_customer_id(customer_id))
        return render(request, "customer.html", caller, data=data)

    @pages.get("/what-if", response_class=HTMLResponse, summary="What-if form")
    def what_if(request: Request, caller: CurrentCaller) -> HTMLResponse:
        return _what_if_page(request, caller, {}, None, {})

    @pages.post("/what-if", response_class=HTMLResponse, summary="What-if form submitted")
    async def what_if_post(request: Request, caller: CurrentCaller) -> HTMLResponse:
        form = await request.form()
        values = {c: (str(form.get(c)) if form.get(c) not in (None, "") else None) for c in ATTRIBUTE_COLUMNS}
        result, errors = content.predict_data(ui_settings(), values)
        page = _what_if_page(request, caller, values, result, errors)
        if errors:
            page.status_code = UNPROCESSABLE
        return page

    @pages.get("/api/docs", response_class=HTMLResponse, summary="API documentation")
    def api_docs(request: Request, caller: CurrentCaller) -> HTMLResponse:
        schema = app.openapi()
        endpoints = [
            {"method": method.upper(), "path": f"{_base(request)}{path}", "summary": op.get("summary", "")}
            for path, ops in schema["paths"].items()
            for method, op in ops.items()
        ]
        return render(request, "docs.html", caller, endpoints=endpoints)

    app.include_router(pages)
    app.include_router(alert_views.page_router(ui_settings, render))


def _what_if_page(
    request: Request, caller: Caller, values: dict[str, Any], result: dict[str, Any] | None, errors: dict[str, Any]
) -> HTMLResponse:
    fields = [
        {"name": c, "numeric": c in NUMERIC_COLUMNS, "choices": ALLOWED_CATEGORIES.get(c, ()),
         "value": values.get(c) or "", "errors": errors.get(c, [])}
        for c in ATTRIBUTE_COLUMNS
    ]  # fmt: skip
    return render(request, "what_if.html", caller, fields=fields, result=result, rules=REASONS)


def _api(app: FastAPI) -> None:
    """The JSON API: 401 without a valid Airflow token, 403 without read permission."""
    api = APIRouter(dependencies=[Depends(security.reader)])

    @api.get("/api/openapi.json", summary="This API's OpenAPI schema")
    def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @api.get("/api/summary", summary="Overview: shares, history, freshness, last run, quarantine, distributions")
    def api_summary() -> JSONResponse:
        return JSONResponse(jsonable_encoder(content.summary_data(ui_settings())))

    @api.get("/api/models", summary="The model registry and the champion's confusion matrix and calibration")
    def api_models(request: Request) -> JSONResponse:
        return JSONResponse(jsonable_encoder(content.models_data(ui_settings(), promotions(request))))

    @api.post(
        "/api/models/{version}/promote",
        summary="Promote or roll back to a version: a run of segmentation_promote, as you (202, its id and link)",
        status_code=status.HTTP_202_ACCEPTED,
    )
    def api_promote(request: Request, version: int, caller: CurrentCaller) -> JSONResponse:
        security.check_csrf(request, caller, request.headers.get(security.CSRF_HEADER))
        code, result = request_promotion(request, caller, version)
        return JSONResponse(jsonable_encoder(result), status_code=code)

    @api.get("/api/quality", summary="PSI, missing-value rates and reject share over the last runs")
    def api_quality() -> JSONResponse:
        return JSONResponse(jsonable_encoder(content.quality_data(ui_settings())))

    @api.get(
        "/api/customers/{customer_id}", summary="One customer: attributes, segment, probabilities, history, reasons"
    )
    def api_customer(customer_id: str) -> JSONResponse:
        return JSONResponse(jsonable_encoder(content.customer_data(ui_settings(), parse_customer_id(customer_id))))

    @api.post("/api/predict", summary="What-if: segment, probabilities, description, imputed attributes, reasons")
    def api_predict(body: CustomerValues) -> JSONResponse:
        result, errors = content.predict_data(ui_settings(), body.raw())
        if errors:
            return JSONResponse(
                {"detail": "invalid customer: " + ", ".join(e["rule"] for v in errors.values() for e in v),
                 "errors": errors},
                status_code=UNPROCESSABLE,
            )  # fmt: skip
        return JSONResponse(jsonable_encoder(result))

    app.include_router(api)
    app.include_router(insights.api_router(ui_settings))
    app.include_router(alert_views.api_router(ui_settings))
