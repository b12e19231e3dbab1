"""A real TLS peer for the client's SSL path: test-generated certificates + Debian's stunnel4.

Tansu's own ``--cert/--key`` flags did not produce a working TLS listener for kafka-python, so
the tests put ``stunnel`` in front of the plaintext embedded broker and make the broker advertise
stunnel's address. kafka-python then speaks TLS to every broker it learns about from metadata,
which is the same code path a production TLS cluster exercises.

Certificates are made with the ``openssl`` CLI (the ``cryptography`` package is not a project
dependency): a throw-away CA, a server certificate for 127.0.0.1/localhost signed by it, and a
second unrelated CA used to prove that an untrusted server certificate is refused.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import pytest

from flagstream.streaming.kafka.broker import BrokerError, EmbeddedBroker, free_port, wait_for_kafka


@dataclass(frozen=True)
class CertBundle:
    ca_cert: Path
    server_cert: Path
    server_key: Path
    other_ca_cert: Path  # a CA that did NOT sign the server certificate


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE, timeout=60)


def make_certs(root: Path) -> CertBundle:
    """Create a CA and a server certificate (SAN 127.0.0.1, localhost) under ``root``."""
    if shutil.which("openssl") is None:
        raise RuntimeError("openssl CLI not found")
    root.mkdir(parents=True, exist_ok=True)
    for name in ("ca", "other-ca"):
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                 "-subj", f"/CN=flagstream test {name}", "-keyout", f"{name}.key", "-out", f"{name}.pem",
                 "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                 cwd=root)
    (root / "server.ext").write_text(
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n", encoding="ascii")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
             "-keyout", "server.key", "-out", "server.csr", cwd=root)
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-days", "2", "-extfile", "server.ext", "-out", "server.pem", cwd=root)
    return CertBundle(root / "ca.pem", root / "server.pem", root / "server.key", root / "other-ca.pem")


def stunnel_binary() -> str | None:
    return shutil.which("stunnel4") or shutil.which("stunnel")


def running_in_ci() -> bool:
    """CI sets ``CI`` (``true``); ``FLAGSTREAM_REQUIRE_TLS_TESTS=1`` asks for the same strictness locally."""
    return any(os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")
               for name in ("CI", "FLAGSTREAM_REQUIRE_TLS_TESTS"))


def missing_tool(reason: str) -> NoReturn:
    """A TLS test's tool is absent: skip on a developer's machine, fail in CI (the TLS suite must run there)."""
    if running_in_ci():
        pytest.fail(f"{reason}; in CI the TLS suite must run: scripts/install-test-deps.sh installs it", pytrace=False)
    pytest.skip(f"{reason} (run scripts/install-test-deps.sh as root)")


def require_stunnel() -> str:
    binary = stunnel_binary()
    if binary is None:
        missing_tool("stunnel4 is not installed")
    return binary


def require_certs(root: Path) -> CertBundle:
    try:
        return make_certs(root)
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        missing_tool(f"cannot create test certificates with the openssl CLI ({exc})")


@pytest.fixture()
def stunnel_present() -> str:
    """Use through :data:`needs_stunnel`."""
    return require_stunnel()


needs_stunnel = pytest.mark.usefixtures("stunnel_present")


def wait_for_port(host: str, port: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise BrokerError(f"nothing listening on {host}:{port} after {timeout_s:.0f}s")


@dataclass
class Stunnel:
    """stunnel in server mode: TLS on ``accept_port`` -> plaintext ``connect_host:connect_port``."""

    certs: CertBundle
    connect_port: int
    workdir: Path
    connect_host: str = "127.0.0.1"
    accept_port: int = 0
    _proc: subprocess.Popen | None = field(default=None, init=False, repr=False)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.accept_port}"

    def start(self) -> "Stunnel":
        binary = stunnel_binary()
        if binary is None:
            raise RuntimeError("stunnel4 is not installed (run scripts/install-test-deps.sh as root)")
        if not self.accept_port:
            self.accept_port = free_port()
        conf = self.workdir / f"stunnel-{self.accept_port}.conf"
        conf.write_text(
            "foreground = yes\npid =\ndebug = 4\n"
            f"output = {self.workdir / f'stunnel-{self.accept_port}.log'}\n"
            "[kafka]\n"
            f"accept = 127.0.0.1:{self.accept_port}\n"
            f"connect = {self.connect_host}:{self.connect_port}\n"
            f"cert = {self.certs.server_cert}\nkey = {self.certs.server_key}\n", encoding="ascii")
        self._proc = subprocess.Popen([binary, str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                      start_new_session=True)
        try:
            wait_for_port("127.0.0.1", self.accept_port)
        except RuntimeError:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def __enter__(self) -> "Stunnel":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class TlsFrontedBroker(EmbeddedBroker):
    """An embedded broker that advertises a TLS terminator's address.

    :meth:`EmbeddedBroker.wait_ready` probes readiness with a plaintext client, which follows the
    advertised (TLS) address and never succeeds; this variant probes through the terminator with
    the client's TLS settings instead, so readiness means "reachable the way clients reach it".
    """

    ready_bootstrap: str = ""
    ready_kwargs: dict = field(default_factory=dict)

    def wait_ready(self) -> None:
        if self.ready_bootstrap:
            wait_for_kafka(self.ready_bootstrap, self.ready_timeout_s, **self.ready_kwargs)
        else:  # e.g. --authentication: no unauthenticated probe can succeed; wait for the port only
            wait_for_port(self.host, self.port, self.ready_timeout_s)
