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

import json
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

from flagstream.streaming.ops.console.identity import Identity
from flagstream.streaming.ops.console.state import AlreadyDecided, ReviewState

log = logging.getLogger(__name__)
STATIC_DIR = resources.files("flagstream.streaming.ops.console") / "static"
LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def is_loopback(host: str) -> bool:
    return host in LOOPBACK or host.startswith("127.")


class TooLarge(Exception):
    """The request body is over the console's limit."""


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refusing early (Content-Length) or as soon as the stream passes ``limit`` bytes.

    Raises:
        TooLarge: more than ``limit`` bytes declared or sent.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLarge()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge()
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(state: ReviewState, token: str | None = None, host: str = "127.0.0.1",
               reviewer: str = "console", identity: Identity | None = None,
               max_body_bytes: int = 65_536) -> Starlette:
    """The ASGI app. ``token`` None = no token (only allowed on loopback; the command enforces that).

    ``identity`` says who decides (:mod:`flagstream.streaming.ops.console.identity`); without one, the shared ``token`` and
    the start-time ``reviewer``. A reviewer id sent in a request is never used.
    """
    ident = identity or Identity(reviewer, token=token)

    def authorised(request: Request) -> bool:
        return ident.principal(request.headers) is not None

    def denied() -> JSONResponse:
        return JSONResponse({"error": "reviewer token required (open the console URL printed at start)"},
                            status_code=401)

    async def index(request: Request) -> Response:
        return FileResponse(str(STATIC_DIR / "index.html"), media_type="text/html; charset=utf-8")

    async def config(request: Request) -> Response:
        if not authorised(request):
            return denied()
        return JSONResponse({"reviewer": ident.principal(request.headers), "token_required": ident.token_required,
                             "identity": ident.mode})

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
            raw = await read_body(request, max_body_bytes)
        except TooLarge:
            return JSONResponse({"error": f"request body over {max_body_bytes} bytes"}, status_code=413)
        try:
            body: Any = json.loads(raw)
        except (ValueError, RecursionError):
            return JSONResponse({"error": "body is not JSON"}, status_code=400)
        if not isinstance(body, dict) or not isinstance(body.get("key"), str) or not isinstance(body.get("verdicts"), dict):
            return JSONResponse({"error": "expected {key, verdicts, policy?, note?}"}, status_code=400)
        who = ident.principal(request.headers)  # the server's idea of the reviewer; body["reviewer"] is ignored
        if who is None:
            return denied()
        try:
            decisions = await run_in_threadpool(state.decide, body["key"], body["verdicts"], who,
                                                body.get("policy") or None, body.get("note") or None)
        except AlreadyDecided:
            return JSONResponse({"error": "already decided (by this or another console)"}, status_code=409)
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"decision_id": decisions[0].decision_id, "decision_ids": [d.decision_id for d in decisions],
                             "ids": [pid for d in decisions for pid in d.ids], "reviewer": who})

    async def stats(request: Request) -> Response:
        if not authorised(request):
            return denied()
        return JSONResponse(state.stats())

    async def readyz(request: Request) -> Response:
        """Unauthenticated probe (no data): 503 while the reader thread is dead or has not read for a while."""
        health = state.health()
        return JSONResponse(health, status_code=200 if health["ready"] else 503)
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
        Route("/readyz", readyz),
        Route("/metrics", metrics),
        Mount("/static", app=StaticFiles(directory=str(STATIC_DIR)), name="static"),
    ], middleware=middleware)
    return app


__all__ = ["create_app", "is_loopback", "CSP"]
