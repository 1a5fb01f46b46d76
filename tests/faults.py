"""A loopback HTTP proxy in front of the storage emulator that fails chosen requests.

Failures are real HTTP errors on a real connection, so the code under test
meets them exactly where it would meet a storage outage. 403 is used because
the storage client does not retry it, which keeps the tests fast.

Two outage modes besides: ``freeze()`` accepts requests and never answers
(until ``thaw()``), as a hung backend does; ``drop()`` closes every
connection without a response, as a crashed one does.
"""

from __future__ import annotations

import http.client
import re
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit


@dataclass
class Rule:
    method: str
    path: re.Pattern[str]
    remaining: int
    status: int = 403


class FaultProxy:
    def __init__(self, target: str) -> None:
        parts = urlsplit(target)
        self.target_host = parts.hostname or "127.0.0.1"
        self.target_port = parts.port or 80
        self.rules: list[Rule] = []
        self.seen: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._thawed = threading.Event()
        self._thawed.set()
        self.dropping = False
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if proxy.dropping:
                    self.close_connection = True
                    return
                if not proxy._thawed.is_set():
                    # Hung: answer nothing until thawed (or a minute has passed).
                    proxy._thawed.wait(60)
                    self.close_connection = True
                    return
                status = proxy._should_fail(self.command, self.path)
                if status:
                    payload = b'{"error": {"code": %d, "message": "injected failure"}}' % status
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                connection = http.client.HTTPConnection(
                    proxy.target_host, proxy.target_port, timeout=30
                )
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                connection.request(self.command, self.path, body=body, headers=headers)
                response = connection.getresponse()
                data = response.read()
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in {"transfer-encoding", "content-length", "connection"}:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                connection.close()

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle  # noqa: N815

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def fail(self, method: str, path_pattern: str, times: int = 1, status: int = 403) -> None:
        with self._lock:
            self.rules.append(Rule(method, re.compile(path_pattern), times, status))

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()
        self.thaw()
        self.dropping = False

    def freeze(self) -> None:
        self._thawed.clear()

    def thaw(self) -> None:
        self._thawed.set()

    def drop(self) -> None:
        self.dropping = True

    def _should_fail(self, method: str, path: str) -> int:
        """The status to fail this request with, or 0 to pass it on."""
        with self._lock:
            self.seen.append((method, path))
            for rule in self.rules:
                if rule.remaining > 0 and rule.method == method and rule.path.search(path):
                    rule.remaining -= 1
                    return rule.status
        return 0

    def close(self) -> None:
        self.thaw()
        self._server.shutdown()
        self._server.server_close()
