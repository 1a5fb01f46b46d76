"""A loopback TCP proxy in front of the embedded PostgreSQL that can freeze or drop.

The embedded server listens only on a Unix socket; this proxy accepts TCP on
127.0.0.1 and forwards each connection to that socket, so the code under test
talks real pg8000 over real TCP and meets an outage where it would meet one
in production:

- ``passing()``: bytes flow both ways (the start state, and recovery).
- ``freeze()``: the server "stops answering": existing connections stop
  forwarding in both directions and new connections are accepted (the kernel
  completes the handshake, as for a SIGSTOPped server) but get no answer.
  Thawing lets held bytes flow again.
- ``drop()``: the server "is gone": every connection is reset (RST) and the
  listening socket is closed, so new connections are refused until
  ``passing()`` listens again on the same port.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
from dataclasses import dataclass, field

from sqlalchemy.engine import make_url

__all__ = ["PostgresProxy"]

_CHUNK = 65536


@dataclass
class _Pair:
    client: socket.socket
    upstream: socket.socket | None = None
    closed: threading.Event = field(default_factory=threading.Event)


class PostgresProxy:
    def __init__(self, unix_socket: str) -> None:
        self.unix_socket = unix_socket
        self.mode = "pass"
        self.accepted = 0
        self._lock = threading.Lock()
        self._flowing = threading.Event()
        self._flowing.set()
        self._pairs: list[_Pair] = []
        self._listener: socket.socket | None = None
        self.port = 0
        self._listen()

    # Modes -----------------------------------------------------------------

    def passing(self) -> None:
        """Forward again: thaw frozen connections, listen again after a drop."""
        with self._lock:
            self.mode = "pass"
            if self._listener is None:
                self._listen()
        self._flowing.set()

    def freeze(self) -> None:
        """Stop forwarding on every connection, old and new; keep them open."""
        with self._lock:
            self.mode = "freeze"
            self._flowing.clear()

    def drop(self) -> None:
        """Reset every connection and refuse new ones."""
        with self._lock:
            self.mode = "drop"
            listener, self._listener = self._listener, None
            pairs, self._pairs = self._pairs, []
        self._flowing.set()  # wake frozen pumps so they notice their sockets closing
        if listener is not None:
            listener.close()
        for pair in pairs:
            _reset(pair)

    def url(self, database_url: str) -> str:
        """``database_url`` (a Unix-socket pg8000 URL) rewritten to go through the proxy."""
        url = make_url(database_url)
        return url.set(host="127.0.0.1", port=self.port, query={}).render_as_string(
            hide_password=False
        )

    def close(self) -> None:
        self.drop()

    # Plumbing --------------------------------------------------------------

    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed by drop()
            pair = _Pair(client)
            with self._lock:
                if self.mode == "drop":
                    _reset(pair)
                    continue
                self.accepted += 1
                self._pairs.append(pair)
            threading.Thread(target=self._pump, args=(pair,), daemon=True).start()

    def _pump(self, pair: _Pair) -> None:
        try:
            # A connection accepted while frozen is not answered until thawed.
            self._flowing.wait()
            if pair.closed.is_set():
                return
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(self.unix_socket)
            pair.upstream = upstream
            if pair.closed.is_set():  # dropped while connecting
                return
            peers = {pair.client: upstream, upstream: pair.client}
            while not pair.closed.is_set():
                self._flowing.wait()
                readable, _, _ = select.select(list(peers), [], [], 0.05)
                if not self._flowing.is_set():
                    continue  # frozen after select: hold the bytes in the kernel
                for source in readable:
                    data = source.recv(_CHUNK)
                    if not data:
                        return
                    peers[source].sendall(data)
        except (OSError, ValueError):  # ValueError: select() on a socket drop() closed
            return
        finally:
            with self._lock:
                if pair in self._pairs:
                    self._pairs.remove(pair)
            _close(pair)


def _reset(pair: _Pair) -> None:
    """Close the client side with RST (SO_LINGER 0), as a vanished server would."""
    pair.closed.set()
    with contextlib.suppress(OSError):
        pair.client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    _close(pair)


def _close(pair: _Pair) -> None:
    pair.closed.set()
    for sock in (pair.client, pair.upstream):
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()
