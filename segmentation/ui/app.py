"""The Segmentation web app: server-rendered pages and their JSON API, mounted by Airflow at ``/segmentation``.

Every handler reads through ``queries`` (bound parameters only) and is guarded by ``security``.
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import psycopg2
import psycopg2.errors
from fastapi import Depends, FastAPI, Form, HTTPException, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, ConfigDict, Field

from segmentation import explain, registry, signing
from segmentation.cleaning import REASONS
from segmentation.columns import ALLOWED_CATEGORIES, ATTRIBUTE_COLUMNS, NUMERIC_COLUMNS, SEGMENTS
from segmentation.config import Settings, get_settings
from segmentation.db import connect
from segmentation.errors import ConfigError, DatabaseError, ModelError, NotFoundError
from segmentation.ui import airflow_api, champion, charts, queries, security
from segmentation.ui.security import Caller

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
MAX_ID = 2**63 - 1
ID_PATTERN = re.compile(r"[0-9]{1,19}")
UNPROCESSABLE = 422  # starlette renamed its constant; the code is what clients see
ID_RULE = f"the customer id must be a positive whole number (1 to {MAX_ID})"

Reader = Annotated[Caller, Depends(security.reader)]
PageReader = Annotated[Caller, Depends(security.page_reader)]


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


def parse_customer_id(text: str) -> int:
    """A customer id from a URL; 422 naming the rule (never echoing the value) when it is not one."""
    if not ID_PATTERN.fullmatch(text or "") or not 0 < int(text) <= MAX_ID:
        raise HTTPException(UNPROCESSABLE, ID_RULE)
    return int(text)


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


# ---- data assembly, shared by pages and the API -------------------------------------------------------


def summary_data(settings: Settings) -> dict[str, Any]:
    with connect(settings.database_url) as conn, conn.cursor() as cur:
        latest = queries.latest_distribution_run(cur)
        dist = queries.distributions(cur, latest["run_id"]) if latest else {}
        totals = queries.segment_totals(dist)
        customers = sum(totals.values())
        data = {
            "run_id": latest["run_id"] if latest else None,
            "customers_scored": customers,
            "segments": [
                {"segment": s, "customers": n, "share": round(n / customers, 4) if customers else 0.0}
                for s, n in totals.items()
            ],
            "share_history": queries.share_history(cur),
            "freshness": queries.freshness(cur),
            "last_nightly_run": queries.last_nightly_run(cur),
            "quarantine": queries.quarantine(cur),
            "champion": None,
            "distributions": {k: v for k, v in dist.items() if k != charts.TOTAL_ATTRIBUTE},
        }
        row = queries.champion_row(cur)
    if row:
        data["champion"] = {
            "version": row["version"],
            "model": row["model_name"],
            "descriptions": {s: (row["profiles"].get(s) or {}).get("description") for s in SEGMENTS},
        }
    return data


def models_data(settings: Settings, promotions: list[dict[str, Any]]) -> dict[str, Any]:
    with connect(settings.database_url) as conn, conn.cursor() as cur:
        versions = queries.model_versions(cur)
        row = queries.champion_row(cur)
    current = None
    if row:
        metrics = row["metrics"] or {}
        current = {
            "version": row["version"],
            "model": row["model_name"],
            "confusion_labels": metrics.get("confusion_labels", list(SEGMENTS)),
            "confusion_matrix": metrics.get("confusion_matrix"),
            "ece_per_class": metrics.get("ece_per_class"),
            "reliability": metrics.get("reliability"),
        }
    return {"versions": versions, "champion": current, "promotions": promotions}


def quality_data(settings: Settings) -> dict[str, Any]:
    with connect(settings.database_url) as conn, conn.cursor() as cur:
        rows = queries.quality(cur)
    return {"drift_threshold": settings.drift_threshold, "figures": rows}


def customer_data(settings: Settings, customer_id: int) -> dict[str, Any]:
    with connect(settings.database_url) as conn, conn.cursor() as cur:
        row = queries.customer(cur, customer_id)
        if row is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no customer with id {customer_id}")
        history = queries.customer_history(cur, customer_id)
        description = None
        if row["segment"]:
            description = (queries.profiles(cur, row["model_version"]).get(row["segment"]) or {}).get("description")
        reasons = _customer_reasons(cur, customer_id, settings) if row["segment"] else None
    probabilities = (
        {s: round(float(row[f"p_{s.lower()}"]), 4) for s in SEGMENTS} if row["segment"] is not None else None
    )
    return {
        "customer_id": customer_id,
        "attributes": {c: row[c] for c in ATTRIBUTE_COLUMNS},
        "updated_at": row["updated_at"],
        "segment": row["segment"],
        "probabilities": probabilities,
        "model_version": row["model_version"],
        "scored_at": row["scored_at"],
        "description": description,
        "history": history,
        "reasons": reasons,
        "quarantine": row["quarantine"],
    }


def _customer_reasons(cur: Any, customer_id: int, settings: Settings) -> list[dict[str, Any]] | None:
    """The reasons of ``explain.explain_customer`` (the model version that scored the customer, against its
    stored background), with the per-process cached champion when that version scored it; None when that
    version can no longer explain it (for example the customer's features are gone)."""

    cache_dir, key = settings.model_cache_dir, signing.signing_key(settings)

    def load(cur: Any, version: int) -> Any:
        current = champion.current(cur, cache_dir, key=key)
        return current.model if current.version == version else registry.load_model(cur, version, cache_dir, key=key)

    try:
        with champion.one_thread():
            return explain.explain_customer(cur, customer_id, cache_dir=cache_dir, load_model=load)["reasons"]
    except (NotFoundError, ModelError) as exc:
        log.warning("no reasons for customer %d: %s", customer_id, exc)
        return None


def predict_data(settings: Settings, values: dict[str, str | None]) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """(result, field errors): the what-if for raw attribute values."""
    clean, errors = champion.check(values)
    if clean is None:
        return None, errors
    with connect(settings.database_url) as conn, conn.cursor() as cur:
        model = champion.current(cur, settings.model_cache_dir, key=signing.signing_key(settings))
    return champion.score(model, clean), {}


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
        "dag_id": airflow_api.PROMOTE_DAG_ID,
        "run_id": run["run_id"],
        "state": run["state"],
        "url": run_link(request, run["run_id"]),
    }


def run_link(request: Request, run_id: str) -> str:
    """The page of a ``segmentation_promote`` run in Airflow's UI."""
    airflow_base = f"{request.url.scheme}://{request.url.netloc}{_base(request).removesuffix('/segmentation')}"
    return f"{airflow_base}/dags/{airflow_api.PROMOTE_DAG_ID}/runs/{quote(run_id, safe='')}"


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
    @app.get("/", response_class=HTMLResponse, summary="Overview page")
    def overview(request: Request, caller: PageReader) -> HTMLResponse:
        data = summary_data(ui_settings())
        return render(
            request, "overview.html", caller, data=data,
            history_chart=charts.share_history(data["share_history"]),
            distribution_charts=charts.attribute_distributions(data["distributions"]),
        )  # fmt: skip

    @app.get("/models", response_class=HTMLResponse, summary="Model registry page")
    def models_page(request: Request, caller: PageReader, done: str | None = None) -> HTMLResponse:
        data = models_data(ui_settings(), promotions(request))
        calibration = None
        if data["champion"] and data["champion"]["reliability"]:
            calibration = charts.calibration({"reliability": data["champion"]["reliability"]})
        return render(
            request, "models.html", caller, data=data, calibration_chart=calibration,
            may_promote=security.may_promote(caller), done=done,
        )  # fmt: skip

    @app.post("/models/{version}/promote", summary="Promote or roll back (form)", include_in_schema=False)
    def promote_form(
        request: Request,
        version: int,
        caller: PageReader,
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

    @app.get("/quality", response_class=HTMLResponse, summary="Data quality and drift page")
    def quality_page(request: Request, caller: PageReader) -> HTMLResponse:
        data = quality_data(ui_settings())
        quality_charts = charts.quality(data["figures"], data["drift_threshold"])
        return render(request, "quality.html", caller, charts_data=quality_charts)

    @app.get("/customers", response_class=HTMLResponse, summary="Customer lookup", include_in_schema=False)
    def customer_lookup(request: Request, caller: PageReader, id: str = "") -> Response:
        customer_id = parse_customer_id(id.strip())
        return RedirectResponse(f"{_base(request)}/customers/{customer_id}", status_code=status.HTTP_303_SEE_OTHER)

    @app.get("/customers/{customer_id}", response_class=HTMLResponse, summary="One customer page")
    def customer_page(request: Request, customer_id: str, caller: PageReader) -> HTMLResponse:
        data = customer_data(ui_settings(), parse_customer_id(customer_id))
        return render(request, "customer.html", caller, data=data)

    @app.get("/what-if", response_class=HTMLResponse, summary="What-if form")
    def what_if(request: Request, caller: PageReader) -> HTMLResponse:
        return _what_if_page(request, caller, {}, None, {})

    @app.post("/what-if", response_class=HTMLResponse, summary="What-if form submitted")
    async def what_if_post(request: Request, caller: PageReader) -> HTMLResponse:
        form = await request.form()
        values = {c: (str(form.get(c)) if form.get(c) not in (None, "") else None) for c in ATTRIBUTE_COLUMNS}
        result, errors = predict_data(ui_settings(), values)
        page = _what_if_page(request, caller, values, result, errors)
        if errors:
            page.status_code = UNPROCESSABLE
        return page

    @app.get("/api/docs", response_class=HTMLResponse, summary="API documentation")
    def api_docs(request: Request, caller: PageReader) -> HTMLResponse:
        schema = app.openapi()
        endpoints = [
            {"method": method.upper(), "path": f"{_base(request)}{path}", "summary": op.get("summary", "")}
            for path, ops in schema["paths"].items()
            for method, op in ops.items()
        ]
        return render(request, "docs.html", caller, endpoints=endpoints)


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
    @app.get("/api/openapi.json", summary="This API's OpenAPI schema")
    def openapi(caller: Reader) -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/api/summary", summary="Overview: shares, history, freshness, last run, quarantine, distributions")
    def api_summary(caller: Reader) -> JSONResponse:
        return JSONResponse(jsonable_encoder(summary_data(ui_settings())))

    @app.get("/api/models", summary="The model registry and the champion's confusion matrix and calibration")
    def api_models(request: Request, caller: Reader) -> JSONResponse:
        return JSONResponse(jsonable_encoder(models_data(ui_settings(), promotions(request))))

    @app.post(
        "/api/models/{version}/promote",
        summary="Promote or roll back to a version: a run of segmentation_promote, as you (202, its id and link)",
        status_code=status.HTTP_202_ACCEPTED,
    )
    def api_promote(request: Request, version: int, caller: Reader) -> JSONResponse:
        security.check_csrf(request, caller, request.headers.get(security.CSRF_HEADER))
        code, result = request_promotion(request, caller, version)
        return JSONResponse(jsonable_encoder(result), status_code=code)

    @app.get("/api/quality", summary="PSI, missing-value rates and reject share over the last runs")
    def api_quality(caller: Reader) -> JSONResponse:
        return JSONResponse(jsonable_encoder(quality_data(ui_settings())))

    @app.get(
        "/api/customers/{customer_id}", summary="One customer: attributes, segment, probabilities, history, reasons"
    )
    def api_customer(customer_id: str, caller: Reader) -> JSONResponse:
        return JSONResponse(jsonable_encoder(customer_data(ui_settings(), parse_customer_id(customer_id))))

    @app.post("/api/predict", summary="What-if: segment, probabilities, description, imputed attributes, reasons")
    def api_predict(body: CustomerValues, caller: Reader) -> JSONResponse:
        result, errors = predict_data(ui_settings(), body.raw())
        if errors:
            return JSONResponse(
                {"detail": "invalid customer: " + ", ".join(e["rule"] for v in errors.values() for e in v),
                 "errors": errors},
                status_code=UNPROCESSABLE,
            )  # fmt: skip
        return JSONResponse(jsonable_encoder(result))
