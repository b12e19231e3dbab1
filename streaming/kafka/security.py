"""Fail fast, in one line, when transport security or authentication is misconfigured.

kafka-python treats every connection failure as retriable: an untrusted broker certificate, a
SASL mechanism the broker doesn't offer, or a wrong password all end, after
``request_timeout_ms``, in ``KafkaTimeoutError: Unable to bootstrap`` (or a silent reconnect loop)
with the real cause only in DEBUG logs. Measured against the embedded broker behind stunnel:
an untrusted CA took 30 s to surface as that timeout; a wrong SCRAM user made kafka-python loop
forever on ``KeyError('v')`` (the broker's ``e=unknown-user`` server-final message is not handled).

So before the pipeline builds its clients it calls :func:`ensure_transport`, which opens one
connection to a bootstrap server the way kafka-python will (same TLS settings, same SASL
mechanism and credentials), runs the TLS handshake and the SASL exchange itself, and turns a
*permanent* failure into :class:`TransportSecurityError` with a one-line, actionable message.
An unreachable broker is not permanent (it may still be starting): that is reported as
"retriable" and left to the pipeline's normal retry with backoff.

Only the Kafka protocol is spoken (SaslHandshake v1, SaslAuthenticate v1, Metadata v4), so this works
against any Kafka-compatible cluster, not just the embedded test broker.
"""

from __future__ import annotations

import socket
import ssl
import struct
from dataclasses import dataclass
from typing import Any, Mapping

from flagstream.errors import UserError

__all__ = ["TransportSecurityError", "TransportCheck", "check_transport", "ensure_transport"]

_METADATA = 3
_SASL_HANDSHAKE = 17
_SASL_AUTHENTICATE = 36
_UNSUPPORTED_SASL_MECHANISM = 33
_ILLEGAL_SASL_STATE = 34
_SASL_AUTHENTICATION_FAILED = 58
_MAX_FRAME = 1 << 20


class TransportSecurityError(UserError):
    """TLS or SASL will never succeed with this configuration; retrying would only hide it."""


@dataclass(frozen=True)
class TransportCheck:
    """Outcome of one probe: ``ok``; or ``fatal`` (config is wrong); or ``retriable`` (not reachable yet)."""

    server: str
    ok: bool
    fatal: str | None = None
    retriable: str | None = None


class _Closed(Exception):
    pass


def _kafka_kwargs(settings: Any) -> Mapping[str, Any]:
    if isinstance(settings, Mapping):
        return settings
    return settings.kafka_common()


def _servers(kw: Mapping[str, Any]) -> list[tuple[str, int]]:
    raw = kw.get("bootstrap_servers") or []
    items = raw.split(",") if isinstance(raw, str) else list(raw)
    out = []
    for item in items:
        host, _, port = str(item).strip().rpartition(":")
        out.append((host.strip("[]"), int(port)))
    return out


def _ssl_context(kw: Mapping[str, Any]) -> ssl.SSLContext:
    """The context kafka-python would build from the same keyword arguments."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ctx.check_hostname = bool(kw.get("ssl_check_hostname", True))
    if kw.get("ssl_cafile"):
        try:
            ctx.load_verify_locations(cafile=kw["ssl_cafile"])
        except (OSError, ssl.SSLError) as exc:
            raise TransportSecurityError(
                f"ssl_cafile {kw['ssl_cafile']} cannot be used as a CA bundle ({_reason(exc)}); "
                "point it at a PEM file with the CA that signed the broker certificate") from None
    if kw.get("ssl_certfile"):
        try:
            ctx.load_cert_chain(kw["ssl_certfile"], kw.get("ssl_keyfile"), kw.get("ssl_password"))
        except (OSError, ssl.SSLError) as exc:
            raise TransportSecurityError(
                f"client certificate {kw['ssl_certfile']} / key {kw.get('ssl_keyfile')} cannot be loaded "
                f"({_reason(exc)}); check ssl_certfile, ssl_keyfile and ssl_password") from None
    return ctx


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return getattr(exc, "verify_message", None) or str(exc)
    if isinstance(exc, ssl.SSLError):
        return getattr(exc, "reason", None) or str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise _Closed()
        buf += chunk
    return bytes(buf)


def _call(sock: socket.socket, api_key: int, version: int, corr: int, client_id: str, body: bytes) -> bytes:
    cid = client_id.encode()
    header = struct.pack(">hhih", api_key, version, corr, len(cid)) + cid
    frame = header + body
    sock.sendall(struct.pack(">i", len(frame)) + frame)
    size = struct.unpack(">i", _recv_exact(sock, 4))[0]
    if not 4 <= size <= _MAX_FRAME:
        raise _Closed()
    payload = _recv_exact(sock, size)
    if struct.unpack(">i", payload[:4])[0] != corr:
        raise _Closed()
    return payload[4:]


def _str(s: str) -> bytes:
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def _handshake(sock: socket.socket, mechanism: str, client_id: str) -> tuple[int, list[str]]:
    resp = _call(sock, _SASL_HANDSHAKE, 1, 1, client_id, _str(mechanism))
    err, count = struct.unpack(">hi", resp[:6])
    pos, mechs = 6, []
    for _ in range(max(count, 0)):
        ln = struct.unpack(">h", resp[pos:pos + 2])[0]
        mechs.append(resp[pos + 2:pos + 2 + ln].decode(errors="replace"))
        pos += 2 + ln
    return err, mechs


def _authenticate(sock: socket.socket, corr: int, client_id: str, token: bytes) -> tuple[int, str, bytes]:
    resp = _call(sock, _SASL_AUTHENTICATE, 1, corr, client_id, struct.pack(">i", len(token)) + token)
    err, ln = struct.unpack(">hh", resp[:4])
    pos = 4
    msg = ""
    if ln >= 0:
        msg = resp[pos:pos + ln].decode(errors="replace")
        pos += ln
    blen = struct.unpack(">i", resp[pos:pos + 4])[0]
    data = resp[pos + 4:pos + 4 + max(blen, 0)]
    return err, msg, data


def _scram_client(user: str, password: str, mechanism: str) -> Any:
    try:
        from kafka.net.sasl.scram import ScramClient  # kafka-python 3.x
    except ImportError:  # pragma: no cover - kafka-python 2.x layout
        from kafka.sasl.scram import ScramClient
    return ScramClient(user, password, mechanism)


def _sasl(sock: socket.socket, kw: Mapping[str, Any], where: str) -> str | None:
    """Run the SASL exchange; return a one-line fatal reason, or None when authenticated."""
    mechanism = kw.get("sasl_mechanism") or "PLAIN"
    user = kw.get("sasl_plain_username") or ""
    password = kw.get("sasl_plain_password") or ""
    client_id = str(kw.get("client_id") or "flagstream")
    if not user or not password:
        return (f"SASL {mechanism} needs a username and a password; set FLAGSTREAM_SASL_USERNAME and "
                "FLAGSTREAM_SASL_PASSWORD (or sasl_password_file)")
    try:
        err, mechs = _handshake(sock, mechanism, client_id)
    except _Closed:
        return (f"broker {where} closed the connection when asked for SASL mechanism {mechanism}: "
                "the mechanism is not enabled there (or SASL is off); check sasl_mechanism and security_protocol")
    if err == _UNSUPPORTED_SASL_MECHANISM:
        # Some brokers (Tansu among them) answer with the *requested* mechanism in the list rather
        # than the enabled ones, so "does not offer X (it offers: X)" would be nonsense: name only
        # mechanisms other than the one refused.
        others = [m for m in mechs if m != mechanism]
        if others:
            return (f"broker {where} does not offer SASL mechanism {mechanism}; it offers {', '.join(others)}: "
                    "set sasl_mechanism to one of them")
        return (f"broker {where} refused SASL mechanism {mechanism!r} (UNSUPPORTED_SASL_MECHANISM) without naming "
                "one it offers; check sasl_mechanism (upper case: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512) and the "
                "mechanisms enabled on that listener")
    if err == _ILLEGAL_SASL_STATE:
        return f"broker {where} refused the SASL handshake (illegal SASL state); is the listener SASL-enabled?"
    if err:
        return f"broker {where} rejected the SASL handshake for {mechanism} (Kafka error code {err})"
    fail = (f"SASL {mechanism} authentication failed for user {user!r} at {where}: wrong username or password "
            "(or the user has no credentials for this mechanism)")
    try:
        if mechanism == "PLAIN":
            err, msg, _ = _authenticate(sock, 2, client_id, b"\0" + user.encode() + b"\0" + password.encode())
            return f"{fail} [{msg}]" if err else None
        scram = _scram_client(user, password, mechanism)
        err, msg, server_first = _authenticate(sock, 2, client_id, scram.first_message())
        if err:
            return f"{fail} [{msg}]" if msg and msg != "NONE" else fail
        if server_first.startswith(b"e="):
            return f"{fail} [{server_first[2:].decode(errors='replace')}]"
        scram.process_server_first_message(server_first)
        err, msg, server_final = _authenticate(sock, 3, client_id, scram.final_message())
        if err:
            return f"{fail} [{msg}]" if msg and msg != "NONE" else fail
        if server_final.startswith(b"e="):
            return f"{fail} [{server_final[2:].decode(errors='replace')}]"
        try:
            scram.process_server_final_message(server_final)
        except (KeyError, ValueError):
            return (f"broker {where} could not prove it knows the SCRAM credentials of {user!r} "
                    "(bad server signature): wrong broker or a man in the middle")
        return None
    except _Closed:
        return fail + " [connection closed by broker]"
    except (ValueError, KeyError, struct.error) as exc:
        return f"{fail} [unexpected SASL reply: {exc!r}]"


def _probe_one(host: str, port: int, kw: Mapping[str, Any], timeout_s: float) -> TransportCheck:
    where = f"{host}:{port}"
    protocol = str(kw.get("security_protocol") or "PLAINTEXT")
    ctx = _ssl_context(kw) if protocol in ("SSL", "SASL_SSL") else None
    try:
        raw = socket.create_connection((host, port), timeout=timeout_s)
    except OSError as exc:
        return TransportCheck(where, False, retriable=f"cannot connect to {where} ({_reason(exc)})")
    sock: socket.socket = raw
    try:
        if ctx is not None:
            try:
                sock = ctx.wrap_socket(raw, server_hostname=host)
            except ssl.SSLCertVerificationError as exc:
                hint = ("the certificate does not name this host; connect by a name it carries or set "
                        "ssl_check_hostname: false" if "match" in _reason(exc).lower() or
                        "mismatch" in _reason(exc).lower() else
                        "set ssl_cafile to the CA that signed the broker certificate")
                return TransportCheck(where, False, fatal=(
                    f"TLS: broker certificate at {where} is not trusted ({_reason(exc)}); {hint}"))
            except ssl.SSLError as exc:
                return TransportCheck(where, False, fatal=(
                    f"TLS handshake with {where} failed ({_reason(exc)}); is it a TLS listener? "
                    "check security_protocol and the port"))
            except (socket.timeout, ConnectionError) as exc:
                return TransportCheck(where, False, fatal=(
                    f"TLS handshake with {where} got no TLS answer ({_reason(exc)}); the port is probably "
                    "plaintext: check security_protocol and the port"))
        if protocol.startswith("SASL"):
            reason = _sasl(sock, kw, where)
            if reason:
                return TransportCheck(where, False, fatal=reason)
        try:  # one ordinary request: a SASL-only listener closes the connection here
            # Metadata v4 (Kafka >= 0.11 and still in 4.x after KIP-896), no topics, no auto-creation.
            _call(sock, _METADATA, 4, 9, str(kw.get("client_id") or "flagstream"), struct.pack(">ib", 0, 0))
        except _Closed:
            if protocol.startswith("SASL"):
                return TransportCheck(where, False, fatal=(
                    f"broker {where} accepted SASL authentication but closed the connection on the first "
                    "request; check the user's permissions and the broker log"))
            return TransportCheck(where, False, fatal=(
                f"broker {where} closed the connection on an unauthenticated request: it requires "
                "authentication; set security_protocol to SASL_PLAINTEXT or SASL_SSL with sasl_mechanism, "
                "FLAGSTREAM_SASL_USERNAME and FLAGSTREAM_SASL_PASSWORD"))
        return TransportCheck(where, True)
    except (socket.timeout, TimeoutError):
        return TransportCheck(where, False, retriable=f"{where} did not answer within {timeout_s:.0f}s")
    except OSError as exc:
        return TransportCheck(where, False, retriable=f"connection to {where} failed ({_reason(exc)})")
    finally:
        try:
            sock.close()
        except OSError:
            pass


def check_transport(settings: Any, timeout_s: float = 10.0) -> TransportCheck:
    """Probe the bootstrap servers in order with the client's TLS/SASL settings.

    ``settings`` is a :class:`flagstream.config.Settings` or a kafka-python kwargs mapping.
    Returns the first ``ok`` or ``fatal`` outcome; if no server is reachable, the last
    ``retriable`` one. PLAINTEXT needs no probe beyond reachability.
    """
    kw = _kafka_kwargs(settings)
    last = TransportCheck("", False, retriable="no bootstrap servers configured")
    for host, port in _servers(kw):
        result = _probe_one(host, port, kw, timeout_s)
        if result.ok or result.fatal:
            return result
        last = result
    return last


def ensure_transport(settings: Any, timeout_s: float = 10.0) -> TransportCheck:
    """Raise :class:`TransportSecurityError` on a permanent TLS/SASL failure; else return the check.

    Call it once before creating kafka-python clients. A ``retriable`` result (broker not
    reachable yet) is returned, not raised: retrying that is the caller's job.
    """
    result = check_transport(settings, timeout_s)
    if result.fatal:
        raise TransportSecurityError(result.fatal)
    return result
