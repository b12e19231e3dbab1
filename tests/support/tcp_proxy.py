"""A small loopback TCP proxy that can cut, stall and slow connections on command.

It sits between Kafka clients and the embedded broker (the broker advertises the proxy's
address, so every connection a client opens, bootstrap or not, goes through it). Faults are
real socket behaviour, not mocks:

- :meth:`cut` closes every open connection at once (RST-like: both sides see EOF/reset);
  with ``refuse_for_s`` new connections are accepted and closed immediately for a while,
  like a broker that is briefly gone.
- :meth:`stall` stops forwarding bytes in both directions while keeping the sockets open:
  the client sees a silent peer until request timeouts fire.
- :meth:`slow` forwards in small chunks with a delay per chunk.
- :meth:`heal` returns to normal forwarding.

Threads: one acceptor plus two pumps per connection; everything is daemonic and
:meth:`close` stops it all.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field


@dataclass
class ProxyStats:
    connections: int = 0
    cuts: int = 0
    bytes_up: int = 0
    bytes_down: int = 0


@dataclass
class TcpProxy:
    upstream_port: int
    upstream_host: str = "127.0.0.1"
    port: int = 0
    host: str = "127.0.0.1"
    stats: ProxyStats = field(default_factory=ProxyStats)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._flowing = threading.Event()
        self._flowing.set()
        self._delay_s = 0.0
        self._chunk = 65536
        self._refuse_until = 0.0
        self._closed = threading.Event()
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------------------------
    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> "TcpProxy":
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind((self.host, self.port))
        srv.listen(128)
        srv.settimeout(0.2)
        self.port = srv.getsockname()[1]
        self._listener = srv
        self._acceptor = threading.Thread(target=self._accept_loop, name=f"proxy-{self.port}", daemon=True)
        self._acceptor.start()
        return self

    def close(self) -> None:
        self._closed.set()
        self._flowing.set()
        if self._listener is not None:
            self._listener.close()
        self._close_all()
        if self._acceptor is not None:
            self._acceptor.join(2)

    def __enter__(self) -> "TcpProxy":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- faults ------------------------------------------------------------------------------
    def cut(self, refuse_for_s: float = 0.0) -> int:
        """Close all open connections; optionally refuse new ones for ``refuse_for_s``."""
        with self._lock:
            self._refuse_until = time.monotonic() + refuse_for_s
            self.stats.cuts += 1
        return self._close_all()

    def stall(self) -> None:
        self._flowing.clear()

    def slow(self, delay_s: float = 0.05, chunk: int = 1024) -> None:
        with self._lock:
            self._delay_s, self._chunk = delay_s, chunk
        self._flowing.set()

    def heal(self) -> None:
        with self._lock:
            self._delay_s, self._chunk, self._refuse_until = 0.0, 65536, 0.0
        self._flowing.set()

    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._conns) // 2

    # --- internals ---------------------------------------------------------------------------
    def _close_all(self) -> int:
        with self._lock:
            conns, self._conns = list(self._conns), set()
        for s in conns:
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            except OSError:
                pass
            try:
                s.shutdown(socket.SHUT_RDWR)  # wakes the pump blocked in recv()
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass
        return len(conns) // 2

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            if time.monotonic() < self._refuse_until:
                client.close()
                continue
            try:
                upstream = socket.create_connection((self.upstream_host, self.upstream_port), timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            client.settimeout(None)
            with self._lock:
                self._conns.update((client, upstream))
                self.stats.connections += 1
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, up: bool) -> None:
        try:
            while not self._closed.is_set():
                data = src.recv(65536)
                if not data:
                    break
                while data:
                    while not self._flowing.wait(0.1):
                        if self._closed.is_set() or src.fileno() < 0:
                            return
                    with self._lock:
                        delay, chunk = self._delay_s, self._chunk
                    part, data = data[:chunk], data[chunk:]
                    if delay:
                        time.sleep(delay)
                    dst.sendall(part)
                    with self._lock:
                        if up:
                            self.stats.bytes_up += len(part)
                        else:
                            self.stats.bytes_down += len(part)
        except OSError:
            pass
        finally:
            with self._lock:
                self._conns.discard(src)
                self._conns.discard(dst)
            for s in (src, dst):
                try:
                    s.close()
                except OSError:
                    pass
