"""The FastAPI application: the planning page (``/``) and its JSON API (``/api/...``).

Endpoints (every JSON answer leads with ``"schema_version"``; errors are
``{"schema_version": 1, "error": "<the message the CLI prints>"}`` with a 4xx status):

- ``GET  /api/profiles``: shipped models and hardware, and the launch artifacts on offer.
- ``POST /api/plan``: a scenario with ``traffic:`` -> ``hwsim plan --json``; the answer's
  ``X-Hwsim-Plan-Id`` header names the stored plan for the ``/api/plans/{id}/...`` files.
- ``GET  /api/plans/{id}``, ``.../summary`` (the first screen: SLO margins, cost, price,
  launch command), ``.../plots/{name}.png``, ``.../report.html|md|zip``,
  ``.../artifacts/{vllm|sglang|trtllm|k8s}?rank=1&engine=vllm``.
- ``POST /api/artifacts``: launch artifacts for a posted scenario (``hwsim plan --emit``).
- ``POST /api/estimate``: one deployment (``hwsim plan --json`` without ``traffic:``).
- ``POST /api/context``: ``hwsim context --json``; ``X-Hwsim-Context-Id`` names the sweep
  whose chart is ``GET /api/contexts/{id}/plot.png``.

A body is JSON (``application/json``): the scenario's fields, or ``{"scenario": <mapping or
YAML text>, <options>}``; a scenario YAML may be posted as it is (``application/yaml``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from hwsim.cli.common import MAX_MESSAGE_CHARS, SCHEMA_VERSION
from hwsim.errors import HwsimError
from hwsim.web.requests import RequestError, parse_body
from hwsim.web.service import Service

STATIC = Path(__file__).resolve().parent / "static"
LOOPBACK_HOSTS = ["127.0.0.1", "localhost", "::1", "[::1]"]
MEDIA = {
    ".html": "text/html; charset=utf-8",
    ".md": "text/markdown; charset=utf-8",
    ".zip": "application/zip",
    ".png": "image/png",
    ".sh": "text/x-shellscript; charset=utf-8",
    ".yaml": "application/yaml; charset=utf-8",
    ".json": "application/json",
}


def _error(status: int, message: str) -> JSONResponse:
    if len(message) > MAX_MESSAGE_CHARS:  # as the CLI cuts it
        message = message[: MAX_MESSAGE_CHARS - 40] + f" ... ({len(message):,} characters, cut)"
    return JSONResponse({"schema_version": SCHEMA_VERSION, "error": message}, status_code=status)


def _file(name: str, data: bytes | str, *, download: bool = True) -> Response:
    media = MEDIA.get(Path(name).suffix, "application/octet-stream")
    headers = {"Content-Disposition": f'attachment; filename="{name}"'} if download else {}
    return Response(data, media_type=media, headers=headers)


def create_app(
    service: Service | None = None, *, allowed_hosts: list[str] | None = None
) -> FastAPI:
    """The app. ``allowed_hosts``: Host header values to answer (``hwsim serve`` on a loopback
    address passes :data:`LOOPBACK_HOSTS`, so a web page elsewhere cannot reach it through
    DNS rebinding); None answers any."""
    from hwsim import __version__

    svc = service or Service()
    app = FastAPI(
        title="hwsim planning API",
        version=__version__,
        docs_url=None,  # the interactive docs load their scripts from a CDN
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    if allowed_hosts is not None:
        from starlette.middleware.trustedhost import TrustedHostMiddleware

        app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)
    app.state.service = svc

    @app.exception_handler(RequestError)
    async def _request_error(_request: Request, exc: RequestError) -> JSONResponse:
        return _error(exc.status, str(exc))

    @app.exception_handler(HwsimError)
    async def _hwsim_error(_request: Request, exc: HwsimError) -> JSONResponse:
        return _error(400, str(exc))

    @app.exception_handler(FileNotFoundError)
    async def _not_found(_request: Request, exc: FileNotFoundError) -> JSONResponse:
        return _error(400, f"file not found: {exc.filename}")

    @app.exception_handler(RequestValidationError)
    async def _bad_parameter(_request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = [
            f"{'.'.join(str(p) for p in e['loc'][1:]) or e['loc'][0]}: {e['msg']}"
            for e in exc.errors()[:5]
        ]
        return _error(400, "; ".join(parts))

    @app.exception_handler(Exception)
    async def _internal(_request: Request, exc: Exception) -> JSONResponse:
        return _error(500, f"internal error ({type(exc).__name__}): {exc}")

    async def body(request: Request) -> dict[str, Any]:
        return parse_body(await request.body(), request.headers.get("content-type"))

    async def work(func: Callable[..., Any], *args: Any) -> Any:
        return await run_in_threadpool(func, *args)  # plans take seconds: off the event loop

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type=MEDIA[".html"])

    @app.get("/api/profiles")
    async def profiles() -> JSONResponse:
        return JSONResponse(await work(svc.profiles))

    @app.post("/api/plan")
    async def plan(request: Request) -> JSONResponse:
        plan_id, data = await work(svc.plan, await body(request))
        return JSONResponse(data, headers={"X-Hwsim-Plan-Id": plan_id})

    @app.get("/api/plans/{plan_id}")
    async def stored_plan(plan_id: str) -> JSONResponse:
        entry = svc.plan_entry(plan_id)
        return JSONResponse(svc.plan_json(entry), headers={"X-Hwsim-Plan-Id": entry.id})

    @app.get("/api/plans/{plan_id}/summary")
    async def summary(plan_id: str) -> JSONResponse:
        return JSONResponse(await work(svc.summary, plan_id))

    @app.get("/api/plans/{plan_id}/plots/{name}.png")
    async def plot(plan_id: str, name: str) -> Response:
        return _file(f"{name}.png", await work(svc.plot, plan_id, name), download=False)

    @app.get("/api/plans/{plan_id}/report.{ext}")
    async def report(plan_id: str, ext: str) -> Response:
        name = f"report.{ext}"
        return _file(name, await work(svc.report, plan_id, name))

    @app.get("/api/plans/{plan_id}/artifacts/{artifact}")
    async def plan_artifact(
        plan_id: str, artifact: str, rank: int = 1, engine: str = "vllm"
    ) -> Response:
        name, text = await work(svc.plan_artifact, plan_id, artifact, rank, engine)
        return _file(name, text)

    @app.post("/api/artifacts")
    async def artifacts(request: Request) -> JSONResponse:
        return JSONResponse(await work(svc.artifacts, await body(request)))

    @app.post("/api/estimate")
    async def estimate(request: Request) -> JSONResponse:
        return JSONResponse(await work(svc.estimate, await body(request)))

    @app.post("/api/context")
    async def context(request: Request) -> JSONResponse:
        sweep_id, data = await work(svc.context, await body(request))
        return JSONResponse(data, headers={"X-Hwsim-Context-Id": sweep_id})

    @app.get("/api/contexts/{sweep_id}/plot.png")
    async def context_plot(sweep_id: str) -> Response:
        return _file("context.png", await work(svc.context_plot, sweep_id), download=False)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
