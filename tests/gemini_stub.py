"""A loopback HTTP server speaking the two Gemini API methods Lectern calls.

The real google-genai client is pointed at it (``GEMINI_BASE_URL``), so tests
exercise the SDK's own request building, response parsing and retries. It
answers what the Gemini Developer API answers:

    POST /{version}/models/{model}:batchEmbedContents
        {"requests": [{"model": "models/{model}", "content": {"parts": [{"text": ...}]},
                       "taskType": ..., "outputDimensionality": ...}, ...]}
        -> {"embeddings": [{"values": [...]}, ...]}
    POST /{version}/models/{model}:generateContent
        {"contents": [...], "systemInstruction"?: ..., "generationConfig"?: ...}
        -> {"candidates": [{"content": {"role": "model", "parts": [{"text": ...}]}, ...}]}

The SDK sends ``v1`` as the version by default (``v1beta`` when asked); any
version is accepted and recorded. Every request is recorded (path, parsed JSON
body, headers). Vectors are deterministic functions of the text, with a norm
far from 1, so a caller's normalisation is observable. Failures are injected
with ``fail_next`` and are real HTTP errors with Google's error body.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["MAX_BATCH", "GeminiStub", "StubRequest", "stub_vector"]

# The Gemini API refuses a batchEmbedContents call with more requests than this.
MAX_BATCH = 100
# What gemini-embedding-001 returns when outputDimensionality is not given.
DEFAULT_DIMENSIONS = 3072

_PATH = re.compile(
    r"^/(?P<version>[^/]+)/(?:projects/[^/]+/locations/[^/]+/publishers/[^/]+/)?"
    r"models/(?P<model>[^/:]+):(?P<method>[A-Za-z]+)$"
)

# Google's canonical status names for the HTTP codes tests inject.
_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    408: "DEADLINE_EXCEEDED",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def stub_vector(text: str, dimensions: int) -> list[float]:
    """The stub's raw embedding of ``text``: deterministic, not unit length.

    Components are in [-3.5, 4.5), so the norm is far from 1 (about 90 at
    1536 dimensions) and depends on the text.
    """
    values: list[float] = []
    counter = 0
    while len(values) < dimensions:
        digest = hashlib.blake2b(
            f"{counter}:{text}".encode(), digest_size=64, person=b"gemini-stub"
        ).digest()
        for (word,) in struct.iter_unpack("<H", digest):
            values.append(word / 8192.0 - 3.5)
        counter += 1
    return values[:dimensions]


@dataclass(frozen=True)
class StubRequest:
    """One request the stub received."""

    method: str  # the HTTP method, always POST for the API
    path: str
    version: str | None  # "v1", "v1beta", ... (None when the path did not match)
    model: str | None
    rpc: str | None  # "batchEmbedContents", "generateContent", ...
    body: Any  # the parsed JSON body (None when it was not JSON)
    headers: dict[str, str]  # header names lower-cased


@dataclass
class _Failure:
    remaining: int
    status: int
    rpc: str | None
    message: str


@dataclass
class _State:
    requests: list[StubRequest] = field(default_factory=list)
    failures: list[_Failure] = field(default_factory=list)


class GeminiStub:
    """A Gemini API on ``127.0.0.1``; use as a context manager or call ``close()``.

    ``url`` is the base URL for ``GEMINI_BASE_URL``. With ``api_key`` set, a
    request without that ``x-goog-api-key`` header is refused with 400, as the
    real API refuses a bad key.

    Attributes a test may set at any time:
        answer: the text generateContent returns, or a function of the request body.
        force_dimensions: return vectors of this length whatever was asked.
        missing_embeddings: leave this many embeddings off the end of each answer.
        delay_seconds: wait this long before answering (to provoke client timeouts).
    """

    def __init__(self, *, api_key: str | None = None) -> None:
        self.api_key = api_key
        self.answer: str | Callable[[Any], str] = "This is the stub's answer."
        self.force_dimensions: int | None = None
        self.missing_embeddings = 0
        self.delay_seconds = 0.0
        self._state = _State()
        self._lock = threading.Lock()
        self._closing = threading.Event()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                status, payload = stub._respond(self.command, self.path, raw, self.headers)
                self._send(status, payload)

            def do_GET(self) -> None:
                status, payload = stub._respond(self.command, self.path, b"", self.headers)
                self._send(status, payload)

            def _send(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json; charset=UTF-8")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test); nothing to tell it

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )
        self._thread.start()

    # -- control -----------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def fail_next(
        self,
        times: int = 1,
        *,
        status: int = 429,
        rpc: str | None = None,
        message: str | None = None,
    ) -> None:
        """Answer the next ``times`` requests (of ``rpc`` only, when given) with ``status``."""
        text = message or f"injected failure ({HTTPStatus(status).phrase})"
        with self._lock:
            self._state.failures.append(_Failure(times, status, rpc, text))

    def reset(self) -> None:
        """Forget recorded requests, pending failures and every override."""
        with self._lock:
            self._state = _State()
        self.answer = "This is the stub's answer."
        self.force_dimensions = None
        self.missing_embeddings = 0
        self.delay_seconds = 0.0

    @property
    def requests(self) -> list[StubRequest]:
        """Every request received, oldest first (a copy)."""
        with self._lock:
            return list(self._state.requests)

    def requests_for(self, rpc: str) -> list[StubRequest]:
        """The requests to one method, e.g. ``"batchEmbedContents"``."""
        return [request for request in self.requests if request.rpc == rpc]

    @property
    def embed_requests(self) -> list[StubRequest]:
        return self.requests_for("batchEmbedContents")

    @property
    def generate_requests(self) -> list[StubRequest]:
        return self.requests_for("generateContent")

    def close(self) -> None:
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> GeminiStub:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- serving -----------------------------------------------------------

    def _respond(
        self, method: str, path: str, raw: bytes, headers: Any
    ) -> tuple[int, dict[str, Any]]:
        match = _PATH.match(path.split("?", 1)[0])
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = None
        request = StubRequest(
            method=method,
            path=path,
            version=match["version"] if match else None,
            model=match["model"] if match else None,
            rpc=match["method"] if match else None,
            body=body,
            headers={name.lower(): value for name, value in headers.items()},
        )
        with self._lock:
            self._state.requests.append(request)
            failure = self._take_failure(request.rpc)
        if self.delay_seconds:
            self._closing.wait(self.delay_seconds)
        if failure is not None:
            return _error(failure.status, failure.message)
        if self.api_key is not None and request.headers.get("x-goog-api-key") != self.api_key:
            return _error(400, "API key not valid. Please pass a valid API key.")
        if method != "POST" or match is None:
            return _error(404, f"The requested URL {path} was not found on this server.")
        if not isinstance(body, dict):
            return _error(400, "Invalid JSON payload received.")
        if request.rpc == "batchEmbedContents":
            return self._batch_embed(match["model"], body)
        if request.rpc == "generateContent":
            return self._generate(match["model"], body)
        return _error(404, f"Method {request.rpc} is not served by the stub.")

    def _take_failure(self, rpc: str | None) -> _Failure | None:
        for failure in self._state.failures:
            if failure.remaining > 0 and failure.rpc in (None, rpc):
                failure.remaining -= 1
                return failure
        return None

    def _batch_embed(self, model: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        items = body.get("requests")
        if not isinstance(items, list) or not items:
            return _error(400, "* BatchEmbedContentsRequest.requests: contents is not specified")
        if len(items) > MAX_BATCH:
            return _error(
                400,
                f"* BatchEmbedContentsRequest.requests: at most {MAX_BATCH} requests "
                "can be in one batch",
            )
        embeddings: list[dict[str, Any]] = []
        for index, item in enumerate(items):
            if item.get("model") != f"models/{model}":
                return _error(
                    400,
                    f"* BatchEmbedContentsRequest.requests[{index}].model: model "
                    f"{item.get('model')!r} does not match the URL's models/{model}",
                )
            parts = (item.get("content") or {}).get("parts") or []
            text = "".join(str(part.get("text", "")) for part in parts)
            if not text:
                return _error(
                    400, f"* BatchEmbedContentsRequest.requests[{index}].content: empty text"
                )
            dimensions = (
                self.force_dimensions or item.get("outputDimensionality") or DEFAULT_DIMENSIONS
            )
            embeddings.append({"values": stub_vector(text, int(dimensions))})
        if self.missing_embeddings:
            embeddings = embeddings[: max(0, len(embeddings) - self.missing_embeddings)]
        return 200, {"embeddings": embeddings}

    def _generate(self, model: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if not body.get("contents"):
            return _error(400, "* GenerateContentRequest.contents: contents is not specified")
        text = self.answer(body) if callable(self.answer) else self.answer
        prompt_tokens = len(json.dumps(body.get("contents"))) // 4
        answer_tokens = max(1, len(text) // 4)
        return 200, {
            "candidates": [
                {
                    "content": {"role": "model", "parts": [{"text": text}]},
                    "finishReason": "STOP",
                    "index": 0,
                }
            ],
            "usageMetadata": {
                "promptTokenCount": prompt_tokens,
                "candidatesTokenCount": answer_tokens,
                "totalTokenCount": prompt_tokens + answer_tokens,
            },
            "modelVersion": model,
            "responseId": "stub-response",
        }


def _error(status: int, message: str) -> tuple[int, dict[str, Any]]:
    name = _STATUS_NAMES.get(status, "UNKNOWN")
    return status, {"error": {"code": status, "message": message, "status": name}}
