"""Fixtures: one embedded PostgreSQL per test session, a fresh database per module.

Every module gets its own database cloned from a migrated template, so tests
run against the real schema (triggers included) without sharing rows across
modules. Functions are built with functions-framework's real ``create_app``.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import socket
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from shared.db.engine import dispose_engine
from shared.embeddings import reset_embedder
from shared.local.issuer import LOCAL_AUDIENCE, LOCAL_ISSUER, LocalIssuer
from shared.local.postgres import create_database, start_postgres
from shared.migrate import upgrade
from shared.storage import reset_client
from tests.factories import make_user
from tests.faults import FaultProxy

REPO = Path(__file__).resolve().parents[1]
BUCKET = "lectern-test"
TEMPLATE = "lectern_template"
_database_numbers = itertools.count()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def bucket(function_env: dict[str, str]) -> Any:
    """The test bucket, read directly (not through the code under test)."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    os.environ["STORAGE_EMULATOR_HOST"] = function_env["STORAGE_EMULATOR_HOST"]
    client = storage.Client(project="test", credentials=AnonymousCredentials())
    return client.bucket(BUCKET)


@pytest.fixture(autouse=True)
def _restore_environment() -> Iterator[None]:
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    server = start_postgres(tmp_path_factory.mktemp("pg") / "data", delete_on_exit=True)
    template_url = create_database(server, TEMPLATE)
    engine = create_engine(template_url)
    with engine.begin() as connection:
        upgrade(connection)
    engine.dispose()
    yield server
    server.cleanup()


@pytest.fixture(scope="session")
def new_database(postgres: Any) -> Callable[..., str]:
    """Make a database: a copy of the migrated template, or empty."""

    def make(*, empty: bool = False) -> str:
        name = f"test_{next(_database_numbers)}"
        return create_database(postgres, name, template=None if empty else TEMPLATE)

    return make


@pytest.fixture(scope="module")
def database_url(new_database: Callable[..., str]) -> str:
    return new_database()


@pytest.fixture(scope="module")
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_engine(database_url, pool_size=10)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def sessions(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@pytest.fixture(scope="session")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> LocalIssuer:
    return LocalIssuer(tmp_path_factory.mktemp("issuer") / "key.pem")


@pytest.fixture(scope="session")
def jwks_url(issuer: LocalIssuer) -> Iterator[str]:
    """A real HTTP server on loopback serving the issuer's JWKS."""
    body = json.dumps(issuer.jwks()).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status = 200 if self.path == "/.well-known/jwks.json" else 404
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/.well-known/jwks.json"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def storage_emulator() -> Iterator[str]:
    """gcp-storage-emulator on loopback, in memory, with the test bucket."""
    from gcp_storage_emulator.server import create_server

    port = free_port()
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket=BUCKET)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture(scope="module")
def proxy(storage_emulator: str) -> Iterator[FaultProxy]:
    """A fault-injecting proxy in front of the emulator; a module opts in by
    overriding ``storage_host`` with ``proxy.url``."""
    proxy = FaultProxy(storage_emulator)
    yield proxy
    proxy.close()


@pytest.fixture(scope="module")
def storage_host(storage_emulator: str) -> str:
    """Where functions reach storage; a module may put a fault proxy in between."""
    return storage_emulator


@pytest.fixture(scope="module")
def function_env(database_url: str, jwks_url: str, storage_host: str) -> dict[str, str]:
    """The environment a deployed function would get, pointed at local parts."""
    return {
        "DATABASE_URL": database_url,
        "AUTH_ISSUER": LOCAL_ISSUER,
        "AUTH_AUDIENCE": LOCAL_AUDIENCE,
        "AUTH_JWKS_URL": jwks_url,
        "GCS_BUCKET": BUCKET,
        "STORAGE_EMULATOR_HOST": storage_host,
        "CORS_ORIGINS": "https://app.lectern.test",
        "EMBEDDINGS_PROVIDER": "local",
    }


# HTTP functions: those whose main.py builds a Router (ingest and sweep take events).
HTTP_FUNCTIONS = sorted(
    path.parent.name
    for path in (REPO / "functions").glob("*/main.py")
    if "build_router(" in path.read_text()
)


class ResponseChecker:
    """Validates a response against its function's OpenAPI document (openapi-core).

    The document is the one the function itself serves at ``/openapi.json``,
    fetched once per function. Checked: the status is one the operation
    declares, declared headers (Location on 201, Retry-After on 503...) and
    the body against the schema. Routes whose success response has no model
    yet (``x-lectern-undeclared``) and requests no route matches (404/405 of
    the router) are not checked.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._documents: dict[str, tuple[Any, list[tuple[re.Pattern[str], dict[str, Any]]]]] = {}
        self.checked = 0

    def _document(self, app: Any) -> tuple[Any, list[tuple[re.Pattern[str], dict[str, Any]]]]:
        from flask.testing import FlaskClient
        from openapi_core import OpenAPI

        with self._lock:
            if app.name not in self._documents:
                answer = FlaskClient(app).get("/openapi.json")
                assert answer.status_code == 200, answer.data
                document = answer.get_json()
                # Fewer parameters first: /calendar.ics before /{task_id}.
                ordered = sorted(document["paths"].items(), key=lambda item: item[0].count("{"))
                patterns = [
                    (re.compile("^" + re.sub(r"\{\w+\}", "[^/]+", path.rstrip("/")) + "/?$"), item)
                    for path, item in ordered
                ]
                self._documents[app.name] = (OpenAPI.from_dict(document), patterns)
            return self._documents[app.name]

    def check(self, app: Any, request: Any, response: Any) -> None:
        if app.name not in HTTP_FUNCTIONS or request.method in ("OPTIONS", "HEAD"):
            return
        openapi, patterns = self._document(app)
        path = request.path
        prefix = f"/{app.name}"
        if path == prefix or path.startswith(prefix + "/"):
            # Through the load balancer's /<function> prefix (tests/test_one_origin.py).
            path = path[len(prefix) :] or "/"
        item = next((item for pattern, item in patterns if pattern.match(path)), None)
        operation = item.get(request.method.lower()) if item is not None else None
        if operation is None:
            # No route: the router's own 404/405, which no operation describes.
            assert response.status_code in (404, 405), (request.method, path, response.status)
            return
        if operation.get("x-lectern-undeclared"):
            return
        from openapi_core.contrib.werkzeug import WerkzeugOpenAPIResponse

        try:
            openapi.validate_response(
                _CheckedRequest(request, path), WerkzeugOpenAPIResponse(response)
            )
        except Exception as error:
            causes = getattr(error, "schema_errors", None) or [error.__cause__ or error]
            detail = "; ".join(str(cause)[:500] for cause in causes)
            raise AssertionError(
                f"{request.method} {path} -> {response.status_code} does not match "
                f"{app.name}'s OpenAPI document: {type(error).__name__}: {detail}\n"
                f"body: {response.get_data()[:1000]!r}"
            ) from error
        self.checked += 1


class _CheckedRequest:
    """The request as openapi-core needs it to find the operation (the body is not read)."""

    def __init__(self, request: Any, path: str) -> None:
        from openapi_core.datatypes import RequestParameters
        from werkzeug.datastructures import Headers, ImmutableMultiDict

        self.host_url = "http://localhost"
        self.path = path
        self.method = request.method.lower()
        self.body = b""
        self.content_type = request.content_type or "application/octet-stream"
        self.parameters = RequestParameters(
            query=ImmutableMultiDict(request.args), header=Headers(request.headers), cookie={}
        )


RESPONSE_CHECKER = ResponseChecker()


def checked_client_class() -> type:
    from flask.testing import FlaskClient

    class CheckedClient(FlaskClient):
        """A test client whose every response is validated against the OpenAPI document."""

        def open(self, *args: Any, **kwargs: Any) -> Any:
            response = super().open(*args, **kwargs)
            RESPONSE_CHECKER.check(self.application, response.request, response)
            return response

    return CheckedClient


@pytest.fixture(scope="module")
def function_client(function_env: dict[str, str]) -> Iterator[Callable[[str], Any]]:
    """Build a function's real functions-framework app with the module's environment.

    Its test clients validate every response against the function's OpenAPI document.
    """
    from functions_framework import create_app

    saved = dict(os.environ)
    os.environ.update(function_env)
    dispose_engine()
    reset_client()
    reset_embedder()

    def build(name: str) -> Any:
        # Flask finds an app's root through a module of the target's name; the repo's
        # catalog/ folder is a namespace package of that name once anything has
        # imported it, and a namespace package has no file to root at.
        imported = sys.modules.get(name)
        if imported is not None and getattr(imported, "__file__", None) is None:
            del sys.modules[name]
        app = create_app(name, str(REPO / "functions" / name / "main.py"))
        app.test_client_class = checked_client_class()
        return app.test_client()

    yield build
    dispose_engine()
    reset_client()
    reset_embedder()
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def user_token(
    sessions: sessionmaker[Session], issuer: LocalIssuer
) -> Callable[..., tuple[uuid.UUID, dict[str, str]]]:
    """Create a user and return (id, Authorization header) for them."""

    def make(role: str = "STUDENT", **fields: Any) -> tuple[uuid.UUID, dict[str, str]]:
        with sessions.begin() as session:
            user = make_user(session, role=role, **fields)
            subject, email, name = user.auth0_id, user.email, user.name
            user_id = user.id
        token = issuer.token(subject=subject, email=email, name=name)
        return user_id, {"Authorization": f"Bearer {token}"}

    return make


@pytest.fixture
def sweep_at_commit(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """A submit that stalls past the sweep's cut-off just before its row commits.

    The next calls to ``submissions.drop_intent`` (made as the row commits) first
    run the sweep, in its own transactions, with a cut-off of now: it counts the
    call's intent as abandoned, claims it and deletes the object. Returns what
    each sweep deleted, one list per call.
    """
    from datetime import timedelta

    from shared import submissions
    from shared.config import load_settings
    from shared.storage import Bucket
    from shared.sweep import sweep_objects

    settings = load_settings()
    original = submissions.drop_intent
    deleted: list[list[str]] = []

    def stalled(session: Session, intent_id: uuid.UUID) -> bool:
        deleted.append(sweep_objects(settings, Bucket(settings), older_than=timedelta(0)).deleted)
        return original(session, intent_id)

    monkeypatch.setattr(submissions, "drop_intent", stalled)
    return deleted
