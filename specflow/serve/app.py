"""The HTTP API and dashboard of ``specflow serve`` (Starlette, served by uvicorn).

Every submitted spec becomes a normal run under the server's run root, driven by its own
``specflow run`` process, so the server adds no way of running code that the command line
does not have: it passes on only the opt-ins it was itself started with.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import importlib
import ipaddress
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from specflow.execution.checkpoint import TASK_STATUSES
from specflow.serve.runs import Refused, RunManager, read_events

#: the largest request body accepted (a spec's text and a few settings)
MAX_BODY = 1 << 20


@dataclass
class ServeConfig:
    host: str = "127.0.0.1"
    port: int = 8765
    token: str | None = None
    root: Path = Path(".specflow/runs")
    opt_ins: frozenset[str] = frozenset()
    max_runs: int = 4


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def create_app(config: ServeConfig) -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

    from specflow.serve.dashboard import DASHBOARD

    runs = RunManager(config.root, config.opt_ins, config.max_runs)

    def error(status: int, message: str) -> Response:
        return JSONResponse({"error": message}, status_code=status)

    def guarded(fn: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        async def handler(request: Request) -> Response:
            if config.token is not None and not _authorized(request, config.token):
                return error(401, "missing or wrong token (send Authorization: Bearer TOKEN)")
            try:
                return await fn(request)
            except Refused as exc:
                return error(exc.status, exc.message)

        return handler

    async def body_of(request: Request) -> dict[str, Any]:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > MAX_BODY:
            raise Refused(413, f"request body over {MAX_BODY} bytes")
        chunks = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY:
                raise Refused(413, f"request body over {MAX_BODY} bytes")
            chunks.append(chunk)
        try:
            data = json.loads(b"".join(chunks) or b"{}")
        except ValueError:
            raise Refused(400, "the request body is not JSON") from None
        if not isinstance(data, dict):
            raise Refused(400, "the request body must be a JSON object")
        return data

    async def post_runs(request: Request) -> Response:
        body = await body_of(request)
        run_id = await asyncio.to_thread(runs.submit, body)
        return JSONResponse({"run_id": run_id}, status_code=201)

    async def get_runs(request: Request) -> Response:
        return JSONResponse(await asyncio.to_thread(runs.all_runs))

    async def get_run(request: Request) -> Response:
        rid = request.path_params["run_id"]
        return JSONResponse(await asyncio.to_thread(runs.summary, rid))

    async def get_tasks(request: Request) -> Response:
        rid = request.path_params["run_id"]
        status = request.query_params.get("status") or None
        if status is not None and status not in TASK_STATUSES:
            raise Refused(400, f"status must be one of {', '.join(TASK_STATUSES)}")
        raw = request.query_params.get("limit", "1000")
        if not raw.isdigit():
            raise Refused(400, "limit must be a whole number")
        return JSONResponse(await asyncio.to_thread(runs.tasks, rid, status, int(raw)))

    async def get_report(request: Request) -> Response:
        rid = request.path_params["run_id"]
        d = runs.run_dir(rid)
        try:
            render = importlib.import_module("specflow.report").render_report
        except (ImportError, AttributeError):
            raise Refused(501, "this specflow has no HTML report") from None
        html = await asyncio.to_thread(render, d)
        return HTMLResponse(html)

    async def get_events(request: Request) -> Response:
        rid = request.path_params["run_id"]
        path = runs.events_path(rid)

        async def stream() -> AsyncIterator[bytes]:
            offset = 0
            idle = 0
            while True:
                events, offset = read_events(path, offset)
                for ev in events:
                    yield f"event: {ev.get('kind')}\ndata: {json.dumps(ev)}\n\n".encode()
                    if ev.get("kind") == "run_finished":
                        return
                if await request.is_disconnected():
                    return
                idle = 0 if events else idle + 1
                if idle and idle % 50 == 0:
                    yield b": keep-alive\n\n"
                await asyncio.sleep(0.2)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store"})

    async def cancel(request: Request) -> Response:
        rid = request.path_params["run_id"]
        return JSONResponse(await asyncio.to_thread(runs.cancel, rid))

    async def resume(request: Request) -> Response:
        rid = request.path_params["run_id"]
        return JSONResponse(await asyncio.to_thread(runs.resume, rid), status_code=202)

    async def dashboard(request: Request) -> Response:
        return HTMLResponse(DASHBOARD)

    async def not_allowed(request: Request) -> Response:
        return error(405, f"{request.method} is not allowed here")

    routes = [
        Route("/", guarded(dashboard), methods=["GET"]),
        Route("/api/runs", guarded(post_runs), methods=["POST"]),
        Route("/api/runs", guarded(get_runs), methods=["GET"]),
        Route("/api/runs/{run_id}", guarded(get_run), methods=["GET"]),
        Route("/api/runs/{run_id}/tasks", guarded(get_tasks), methods=["GET"]),
        Route("/api/runs/{run_id}/report", guarded(get_report), methods=["GET"]),
        Route("/api/runs/{run_id}/events", guarded(get_events), methods=["GET"]),
        Route("/api/runs/{run_id}/cancel", guarded(cancel), methods=["POST"]),
        Route("/api/runs/{run_id}/resume", guarded(resume), methods=["POST"]),
    ]
    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await asyncio.to_thread(runs.shutdown)

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.runs = runs
    return app


def _authorized(request: Any, token: str) -> bool:
    header = request.headers.get("authorization", "")
    given = header[7:] if header.lower().startswith("bearer ") else ""
    if not given and request.method == "GET":
        # pages and event streams opened by a browser cannot set headers
        given = request.query_params.get("token", "")
    return bool(given) and hmac.compare_digest(given.encode(), token.encode())


def serve(config: ServeConfig) -> None:
    import uvicorn

    uvicorn.run(create_app(config), host=config.host, port=config.port, log_level="warning",
                limit_concurrency=64, timeout_keep_alive=5)
