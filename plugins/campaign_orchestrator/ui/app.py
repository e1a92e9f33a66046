"""The Campaigns FastAPI app: campaign list, run funnels and lift, failed-messages CSV, JSON twins.

Runs inside the Airflow api-server and uses its authentication: a request is identified by
Airflow's own ``get_user`` dependency (``Authorization: Bearer <JWT>``, or the ``_token``
cookie the Airflow UI keeps after login) and campaigns are filtered by the auth manager's
DAG permissions, a campaign being its DAG. A page requested without a valid login goes to
the login page; any other request gets Airflow's 401/403.
"""

from __future__ import annotations

from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from fastapi import FastAPI, HTTPException, Request, status
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, StreamingResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from starlette.exceptions import HTTPException as StarletteHTTPException

from airflow.api_fastapi.app import API_ROOT_PATH, get_auth_manager
from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails
from airflow.api_fastapi.common.db.common import SessionDep
from airflow.api_fastapi.core_api.security import GetUserDep
from campaign_orchestrator.config.loader import LoadResult, load_campaigns
from campaign_orchestrator.lift.format import duration_text
from campaign_orchestrator.paths import ProjectPaths
from campaign_orchestrator.store.connect import store_connection
from campaign_orchestrator.ui import data, freshness
from campaign_orchestrator.ui.schedule import Plan, plan

if TYPE_CHECKING:
    from collections.abc import Iterator

    import psycopg
    from sqlalchemy.orm import Session

    from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
    from campaign_orchestrator.config.campaign import CampaignConfig

TEMPLATES = Path(__file__).with_name("templates")
RUNS_PER_CAMPAIGN = 25


class AccessDenied(HTTPException):
    """The user is logged in but may not read this campaign's DAG."""

    def __init__(self, campaign_id: str) -> None:
        super().__init__(status.HTTP_403_FORBIDDEN, f"You may not read campaign {campaign_id!r} (its DAG)")


class StoreUnavailable(RuntimeError):
    """The campaign store could not be reached; pages say so instead of failing blank."""


def create_app() -> FastAPI:
    app = FastAPI(
        title="Campaigns",
        description="Campaign runs of the campaign orchestrator, inside the Airflow UI",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    templates = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    templates.filters.update(num=_num, when=_when, pct=_pct, span=freshness.span, duration=duration_text)

    def render(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        context.setdefault("user", None)
        html = templates.get_template(name).render(base=_base(request), airflow=API_ROOT_PATH.rstrip("/"), **context)
        return HTMLResponse(html, status_code=status_code)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        wants_page = "text/html" in request.headers.get("accept", "")
        if wants_page and exc.status_code in (401, 403) and not isinstance(exc, AccessDenied):
            login = get_auth_manager().get_url_login(next_url=str(request.url))
            return RedirectResponse(login, status_code=status.HTTP_307_TEMPORARY_REDIRECT)
        if wants_page:
            return render(request, "error.html", exc.status_code, title=f"Error {exc.status_code}", message=exc.detail)
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(StoreUnavailable)
    async def _store_down(request: Request, exc: StoreUnavailable):
        return await _http_error(request, StarletteHTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)))

    @app.get("/", response_class=HTMLResponse, name="campaigns_page")
    def campaigns_page(request: Request, user: GetUserDep, session: SessionDep) -> HTMLResponse:
        return render(request, "campaigns.html", user=user.get_name(), now=datetime.now(timezone.utc),
                      **_campaigns(user, session))

    @app.get("/api/campaigns", name="campaigns_api")
    def campaigns_api(user: GetUserDep, session: SessionDep) -> dict[str, Any]:
        overview = _campaigns(user, session)
        return {
            "campaigns": [_campaign_json(row) for row in overview["campaigns"]],
            "invalid": [{"id": e.campaign_id, "errors": e.render()} for e in overview["invalid"]],
            "store_error": overview["store_error"],
            "data": [t.as_dict() for t in overview["tables"]],
        }

    @app.get("/campaign/{campaign_id}", response_class=HTMLResponse, name="campaign_page")
    def campaign_page(request: Request, campaign_id: str, user: GetUserDep, session: SessionDep) -> HTMLResponse:
        _require(user, campaign_id)
        loaded = _load()
        page: dict[str, Any] = {"campaign_id": campaign_id, "paused": _paused(session, [campaign_id]).get(campaign_id)}
        if campaign_id not in loaded.configs:
            error = next((e for e in loaded.errors if e.campaign_id == campaign_id), None)
            if error is None:
                raise HTTPException(status.HTTP_404_NOT_FOUND, f"No campaign file defines {campaign_id!r}")
            page.update(config=None, plan=None, error=error.render(), runs=[], store_error=None)
            return render(request, "campaign.html", **page)
        _, config = loaded.configs[campaign_id]
        page.update(config=config, plan=plan(config), error=None, runs=[], store_error=None)
        try:
            with _store() as conn:
                page["runs"] = data.campaign_runs(conn, campaign_id, RUNS_PER_CAMPAIGN)
        except StoreUnavailable as exc:
            page["store_error"] = str(exc)
        return render(request, "campaign.html", **page)

    @app.get("/run/{run_key}", response_class=HTMLResponse, name="run_page")
    def run_page(request: Request, run_key: int, user: GetUserDep) -> HTMLResponse:
        run, funnels, config, lift = _run(user, run_key)
        return render(request, "run.html", run=run, funnels=funnels, config=config, lift=lift)

    @app.get("/api/runs/{run_key}", name="run_api")
    def run_api(request: Request, run_key: int, user: GetUserDep) -> dict[str, Any]:
        run, funnels, _, lift = _run(user, run_key)
        return {
            "run": run.as_dict(),
            "feedback": funnels.feedback.state,
            "by_step": [f.as_dict() for f in funnels.by_step],
            "by_channel": [f.as_dict() for f in funnels.by_channel],
            "failed_messages": funnels.failed_messages,
            "failed_messages_csv": f"{_base(request)}/run/{run_key}/failed-messages.csv",
            "lift": lift.as_dict() if lift else None,
        }

    @app.get("/run/{run_key}/failed-messages.csv", name="failed_messages_csv")
    def failed_messages_csv(run_key: int, user: GetUserDep) -> StreamingResponse:
        with _store() as conn:
            run = data.get_run(conn, run_key)
        if run is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"No run {run_key}")
        _require(user, run.campaign_id, run_level=True)
        filename = quote(f"{run.campaign_id}-run-{run_key}-failed-messages.csv")
        return StreamingResponse(
            data.failed_messages_csv(store_connection, run_key),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f"attachment; filename*=UTF-8''{filename}", "Cache-Control": "no-store"},
        )

    return app


# ---------------------------------------------------------------------------------------
# What the routes share
# ---------------------------------------------------------------------------------------


def _base(request: Request) -> str:
    """The path the app is mounted at (``/campaigns``, under the api-server's base URL)."""
    return request.scope.get("root_path", "").rstrip("/")


def _load() -> LoadResult:
    paths = ProjectPaths.discover()
    return load_campaigns(paths.campaigns, paths)


@contextmanager
def _store() -> Iterator[psycopg.Connection]:
    """One store connection per request, closed with it."""
    import psycopg

    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        conn = store_connection()
    except AirflowNotFoundException as exc:
        raise StoreUnavailable(f"No campaign store is configured: {exc}") from exc
    except psycopg.OperationalError as exc:
        raise StoreUnavailable(f"The campaign store cannot be reached: {exc}") from exc
    try:
        yield conn
    finally:
        conn.close()


def _require(user: BaseUser, campaign_id: str, run_level: bool = False) -> None:
    allowed = get_auth_manager().is_authorized_dag(
        method="GET",
        access_entity=DagAccessEntity.RUN if run_level else None,
        details=DagDetails(id=campaign_id),
        user=user,
    )
    if not allowed:
        raise AccessDenied(campaign_id)


def _paused(session: Session, dag_ids: list[str]) -> dict[str, bool]:
    """Whether Airflow has each DAG paused; a DAG it has not parsed yet is missing."""
    from sqlalchemy import select

    from airflow.models.dag import DagModel

    rows = session.execute(select(DagModel.dag_id, DagModel.is_paused).where(DagModel.dag_id.in_(dag_ids)))
    return {dag_id: bool(paused) for dag_id, paused in rows}


def _campaigns(user: BaseUser, session: Session) -> dict[str, Any]:
    loaded = _load()
    ids = set(loaded.configs) | {e.campaign_id for e in loaded.errors if not e.campaign_id.startswith("_")}
    readable = get_auth_manager().filter_authorized_dag_ids(dag_ids=ids, user=user, method="GET")
    configs = {cid: cfg for cid, (_, cfg) in sorted(loaded.configs.items()) if cid in readable}
    latest: dict[str, data.RunSummary] = {}
    tables: list[freshness.TableData] = []
    latency: dict[str, freshness.Latency] = {}
    store_error = None
    try:
        with _store() as conn:
            latest = data.latest_runs(conn, sorted(configs))
            tables, latency = freshness.table_data(conn), freshness.landing_latency(conn, configs)
    except StoreUnavailable as exc:
        store_error = str(exc)
    paused = _paused(session, sorted(ids))
    rows = [
        {"id": cid, "config": cfg, "plan": plan(cfg), "paused": paused.get(cid), "last_run": latest.get(cid),
         "latency": latency.get(cid)}
        for cid, cfg in configs.items()
    ]
    invalid = [e for e in loaded.errors if e.campaign_id in readable or e.campaign_id.startswith("_")]  # shared files: everyone sees them
    return {"campaigns": rows, "invalid": invalid, "store_error": store_error, "tables": tables}


def _campaign_json(row: dict[str, Any]) -> dict[str, Any]:
    config: CampaignConfig = row["config"]
    schedule: Plan = row["plan"]
    return {
        "id": row["id"],
        "description": config.description,
        "schedule": schedule.summary,
        "schedule_description": schedule.description,
        "timezone": config.timezone,
        "next_runs": [moment.isoformat() for moment in schedule.next_runs],
        "paused": row["paused"],
        "dag_url": f"{API_ROOT_PATH}dags/{row['id']}",
        "steps": [{"id": s.id, "channel": s.channel} for s in config.message_steps],
        "last_run": row["last_run"].as_dict() if row["last_run"] else None,
        "data_tables": freshness.data_tables(config),
        "data_latency": row["latency"].as_dict() if row["latency"] else None,
    }


def _run(
    user: BaseUser, run_key: int
) -> tuple[data.RunInfo, data.RunFunnels, CampaignConfig | None, data.LiftView | None]:
    loaded = _load()
    with _store() as conn:
        run = data.get_run(conn, run_key)
        if run is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"No run {run_key}")
        _require(user, run.campaign_id, run_level=True)
        config = loaded.configs[run.campaign_id][1] if run.campaign_id in loaded.configs else None
        steps = [(s.id, s.channel) for s in config.message_steps] if config else []
        funnels = data.run_funnels(conn, run_key, steps)
        lift = data.run_lift(conn, run_key, config) if config else None
    return run, funnels, config, lift


def _num(value: int | None) -> str:
    return "–" if value is None else f"{value:,}"


def _pct(part: int | None, whole: int | None) -> str:
    if part is None or not whole:
        return ""
    return f"{100 * part / whole:.1f}%"


def _when(value: datetime | None, tz: str | None = None) -> str:
    if value is None:
        return "–"
    if tz is None:
        return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    from zoneinfo import ZoneInfo

    return value.astimezone(ZoneInfo(tz)).strftime("%a %Y-%m-%d %H:%M %Z")


__all__ = ["create_app"]
