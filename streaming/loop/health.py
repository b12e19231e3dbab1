"""``/metrics``, ``/healthz`` and ``/readyz`` for ``flagstream stream`` on ``metrics_host:metrics_port``.

- ``/healthz``: 200 ``ok`` while the process runs (liveness: restart me only if this fails).
- ``/readyz``: 200 when all five checks pass, else 503; the body is JSON naming each check:
  ``group_joined`` (the consumer is a member of a stable group generation), ``model_loaded``,
  ``broker_reachable`` (the background TCP probe of the bootstrap servers, :class:`BrokerProbe`, got an
  answer), ``delivering`` (the last checkpoint delivered its outputs; a rewound one clears it until the next success), and
  ``scoring`` (the failure-rate breaker is closed: the model scores most posts).
- ``/metrics``: the Prometheus text exposition of :class:`flagstream.streaming.loop.metrics.PipelineMetrics`.

The server is a daemon thread with a threading HTTP server from the standard library; it only reads
state that the pipeline's own thread writes into :class:`Health`.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST

from flagstream.streaming.loop.metrics import PipelineMetrics

log = logging.getLogger(__name__)


@dataclass
class Health:
    """Readiness inputs, written by the pipeline thread, read by the HTTP thread."""

    group_joined: bool = False
    model_loaded: bool = False
    broker_reachable: bool = False
    delivering: bool = True
    scoring_ok: bool = True
    detail: dict[str, str] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return (self.group_joined and self.model_loaded and self.broker_reachable and self.delivering
                and self.scoring_ok)

    def as_dict(self) -> dict[str, object]:
        return {"ready": self.ready, "checks": {"group_joined": self.group_joined, "model_loaded": self.model_loaded,
                                                "broker_reachable": self.broker_reachable,
                                                "delivering": self.delivering, "scoring": self.scoring_ok},
                **self.detail}


class HealthServer:
    """Serves /metrics, /healthz, /readyz until :meth:`stop`."""

    def __init__(self, host: str, port: int, health: Health, metrics: PipelineMetrics) -> None:
        self.health, self.metrics = health, metrics
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server API
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    server.metrics.ready.set(1 if server.health.ready else 0)
                    self._send(200, server.metrics.render(), CONTENT_TYPE_LATEST)
                elif path == "/healthz":
                    self._send(200, b"ok\n", "text/plain; charset=utf-8")
                elif path == "/readyz":
                    body = json.dumps(server.health.as_dict()).encode() + b"\n"
                    self._send(200 if server.health.ready else 503, body, "application/json")
                else:
                    self._send(404, b"not found; try /metrics, /healthz or /readyz\n", "text/plain; charset=utf-8")

            def _send(self, code: int, body: bytes, ctype: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - keep scrapes out of logs
                pass

        try:
            self._httpd = ThreadingHTTPServer((host, port), Handler)
        except OSError as exc:
            from flagstream.errors import UserError

            raise UserError(f"cannot serve metrics on {host}:{port} ({exc.strerror}); pick another --metrics-port") from None
        self._httpd.daemon_threads = True
        self.port = int(self._httpd.server_address[1])
        self.host = host
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="flagstream-health", daemon=True)

    def start(self) -> "HealthServer":
        self._thread.start()
        log.info("serving metrics and health", extra={"url": f"http://{self.host}:{self.port}/metrics"})
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


__all__ = ["Health", "HealthServer"]


class BrokerProbe:
    """Background TCP probe of the bootstrap servers: the ``broker_reachable`` readiness check.

    kafka-python keeps reconnecting on its own and exposes no public "connected" state, so every
    ``interval_s`` this thread opens (and closes) a TCP connection to each bootstrap server until one
    accepts. ``on_change(reachable)`` is called on every transition, from this thread.
    """

    def __init__(self, bootstrap_servers: str, interval_s: float = 2.0, timeout_s: float = 1.0,
                 on_change: "Callable[[bool], None] | None" = None) -> None:
        self.servers = []
        for part in bootstrap_servers.split(","):
            host, _, port = part.strip().rpartition(":")
            self.servers.append((host.strip("[]"), int(port)))
        self.interval_s, self.timeout_s = interval_s, timeout_s
        self.on_change = on_change
        self.reachable: bool | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="flagstream-broker-probe", daemon=True)

    def probe_once(self) -> bool:
        import socket

        for host, port in self.servers:
            try:
                with socket.create_connection((host, port), timeout=self.timeout_s):
                    return True
            except OSError:
                continue
        return False

    def _run(self) -> None:
        while not self._stop.is_set():
            ok = self.probe_once()
            if ok != self.reachable:
                self.reachable = ok
                if self.on_change is not None:
                    try:
                        self.on_change(ok)
                    except Exception:  # noqa: BLE001 - a callback bug must not kill the probe
                        log.exception("broker probe callback failed")
            self._stop.wait(self.interval_s)

    def start(self) -> "BrokerProbe":
        self.reachable = self.probe_once()
        if self.on_change is not None:
            self.on_change(self.reachable)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()


__all__ += ["BrokerProbe"]
