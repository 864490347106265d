"""The FastAPI application of `serve`: the API routes, the dashboard's files, error answers, bounded
bodies, security headers, CORS only when an origin is configured, and the schedules' lifetime."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from importlib import metadata
from pathlib import Path
from typing import Any, AsyncIterator, Callable

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline

from ..mis import Mis
from ..settings import Settings
from .answers import install_error_answers
from .context import ServeContext
from .guards import BodyLimit, SecurityHeaders
from .routes import health_router, sync
from .schedule import timers

STATIC = Path(__file__).parent / "static"
DESCRIPTION = """The MIS web application's API and the finance dashboard of sync_invoices (SPEC s.10).

Every answer is `{"success", "data", "message"}`. Every path but `/api/v1/health` needs
`Authorization: Bearer <SYNC_API_TOKEN>`. Pushes are the command line's pushes: the same company lock,
audit and exactly-once guarantees."""


def _version() -> str:
    try:
        return metadata.version("sync_invoices")
    except metadata.PackageNotFoundError:
        return "0"


def create_app(settings: Settings, *, mis: Mis | None = None, qbo: Callable[[], Any] | None = None,
               push_every: float | None = None, verify_every: float | None = None,
               schedule_batch_size: int = 300) -> FastAPI:
    """The application; `mis` and `qbo` are injected by tests (None: from the settings)."""
    context = ServeContext(settings, mis=mis, qbo=qbo)
    scheduled = timers(context, push_every=push_every, verify_every=verify_every, batch_size=schedule_batch_size)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        for timer in scheduled:
            timer.start()
        yield
        # Stopping (SIGTERM reaches the runs earlier, through the server): no new runs, the running ones
        # stop gracefully and record themselves before the process ends.
        for timer in scheduled:
            timer.halt()
        context.runs.stop_all("shutdown", 143)
        await asyncio.to_thread(context.runs.join)
        context.close()

    # FastAPIOffline serves the /docs page's own files: no CDN (school networks block them).
    app = FastAPIOffline(title="sync_invoices", version=_version(), description=DESCRIPTION, lifespan=lifespan,
                         redoc_url=None)
    app.state.context = context
    install_error_answers(app)
    app.include_router(sync)
    app.include_router(health_router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def dashboard() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.add_middleware(SecurityHeaders)  # type: ignore[arg-type]
    app.add_middleware(BodyLimit)  # type: ignore[arg-type]
    if settings.api_cors_origin:
        from fastapi.middleware.cors import CORSMiddleware
        app.add_middleware(CORSMiddleware, allow_origins=[settings.api_cors_origin], allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"], max_age=600)
    return app
