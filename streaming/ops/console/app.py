"""The console's HTTP side (Starlette): a static page plus a small JSON API over :class:`ReviewState`.

Safety, because post text is hostile by assumption and a console holds a write path to the decisions topic:
- the page builds every piece of post text with ``textContent`` (never ``innerHTML``), and the CSP allows
  scripts from this origin only, so a ``<script>`` in a post is inert text twice over;
- ``/api/*`` needs the reviewer token when one is configured (header ``X-Flagstream-Token``); the command
  refuses to bind a non-loopback address without one; the comparison is constant-time;
- on loopback only ``Host: 127.0.0.1``/``localhost`` is served (a DNS-rebinding page can't reach the API),
  and a decision must be posted as ``application/json`` (a cross-site form can't send that without a
  CORS preflight, which is never granted).
"""

from __future__ import annotations

import hmac
import logging
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from flagstream.streaming.ops.console.state import AlreadyDecided, ReviewState

log = logging.getLogger(__name__)
STATIC_DIR = resources.files("flagstream.streaming.ops.console") / "static"
LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def is_loopback(host: str) -> bool:
    return host in LOOPBACK or host.startswith("127.")


def create_app(state: ReviewState, token: str | None = None, host: str = "127.0.0.1",
               reviewer: str = "console") -> Starlette:
    """The ASGI app. ``token`` None = no token (only allowed on loopback; the command enforces that)."""

    def authorised(request: Request) -> bool:
        if token is None:
            return True
        given = request.headers.get("x-flagstream-token", "")
        return hmac.compare_digest(given.encode(), token.encode())

    def denied() -> JSONResponse:
        return JSONResponse({"error": "reviewer token required (open the console URL printed at start)"},
                            status_code=401)

    async def index(request: Request) -> Response:
        return FileResponse(str(STATIC_DIR / "index.html"), media_type="text/html; charset=utf-8")

    async def config(request: Request) -> Response:
        if not authorised(request):
            return denied()
        return JSONResponse({"reviewer": reviewer, "token_required": token is not None})

    async def queue(request: Request) -> Response:
        if not authorised(request):
            return denied()
        q = request.query_params
        order = q.get("order", "score")
        if order not in ("score", "campaign"):
            return JSONResponse({"error": "order must be score or campaign"}, status_code=400)
        data = state.queue(order=order, label=q.get("label") or None, lang=q.get("lang") or None,
                           topic=q.get("topic") or None)
        return JSONResponse(data)

    async def item(request: Request) -> Response:
        if not authorised(request):
            return denied()
        found = state.item(request.query_params.get("key", ""), members=request.query_params.get("members") == "1")
        if found is None:
            return JSONResponse({"error": "decided or unknown"}, status_code=404)
        return JSONResponse(found)

    async def decide(request: Request) -> Response:
        if not authorised(request):
            return denied()
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return JSONResponse({"error": "post application/json"}, status_code=415)
        try:
            body: Any = await request.json()
        except ValueError:
            return JSONResponse({"error": "body is not JSON"}, status_code=400)
        if not isinstance(body, dict) or not isinstance(body.get("key"), str) or not isinstance(body.get("verdicts"), dict):
            return JSONResponse({"error": "expected {key, verdicts, reviewer?, policy?, note?}"}, status_code=400)
        who = body.get("reviewer") or reviewer
        if not isinstance(who, str) or not who.strip() or len(who) > 256:
            return JSONResponse({"error": "reviewer must be a short opaque id"}, status_code=400)
        try:
            decision = await run_in_threadpool(state.decide, body["key"], body["verdicts"], who,
                                               body.get("policy") or None, body.get("note") or None)
        except AlreadyDecided:
            return JSONResponse({"error": "already decided (by this or another console)"}, status_code=409)
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"decision_id": decision.decision_id, "ids": list(decision.ids)})

    async def stats(request: Request) -> Response:
        if not authorised(request):
            return denied()
        return JSONResponse(state.stats())

    async def metrics(request: Request) -> Response:
        """Prometheus text: time to decision (issue 33), behind the same token as the API."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        if not authorised(request):
            return denied()
        return Response(generate_latest(state.times.registry), media_type=CONTENT_TYPE_LATEST)

    async def headers(request: Request, call_next: Any) -> Response:
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Cache-Control"] = "no-store"
        return response

    middleware = [Middleware(BaseHTTPMiddleware, dispatch=headers)]
    if is_loopback(host):
        middleware.append(Middleware(TrustedHostMiddleware, allowed_hosts=["127.0.0.1", "localhost", "::1", "[::1]"]))
    app = Starlette(routes=[
        Route("/", index),
        Route("/api/config", config),
        Route("/api/queue", queue),
        Route("/api/item", item),
        Route("/api/decide", decide, methods=["POST"]),
        Route("/api/stats", stats),
        Route("/metrics", metrics),
        Mount("/static", app=StaticFiles(directory=str(STATIC_DIR)), name="static"),
    ], middleware=middleware)
    return app


__all__ = ["create_app", "is_loopback", "CSP"]
