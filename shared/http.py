"""HTTP plumbing shared by every HTTP function.

A function builds one ``Router``, declares its routes on it, and hands each
request to it. The router owns the contract's conventions, so no handler
repeats them: CORS and preflight, 404/405, body size, JSON parsing, pydantic
validation mapped to 422 with the field named, request ids and security
headers, and the one place where the error tree becomes HTTP status and JSON.
A database outage or timeout is a 503 with ``Retry-After``; anything else
unexpected is logged with its traceback and answered with a bare 500.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import flask
from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import RequestEntityTooLarge

from shared.errors import (
    BadRequest,
    Forbidden,
    LecternError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    UnsupportedMediaType,
    ValidationFailed,
)
from shared.fields import checked_values
from shared.log import request_id as current_request_id

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from shared.auth import Authenticator
    from shared.config import Needs, Settings
    from shared.db.models import User

__all__ = ["Call", "Router", "build_router", "iso", "json_response", "no_content", "validate"]

log = logging.getLogger("lectern.http")

Model = TypeVar("Model", bound=BaseModel)
Handler = Callable[["Call"], flask.Response]

# JSON bodies are small; uploads are multipart and set their own cap.
MAX_JSON_BYTES = 1024 * 1024
_PARAM = re.compile(r"\{(\w+)\}")
# A caller's X-Request-Id is echoed only if it is this tame (it reaches logs and bodies).
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:/=+-]{1,128}$")
# Room for the form fields and boundaries around an upload's file.
MULTIPART_OVERHEAD = 256 * 1024
# Answers given before any handler reads the body.
_UNREAD_BODY_STATUSES = frozenset({401, 403, 404, 405, 413, 415})
# Every function's OpenAPI document (shared.openapi), public.
DOCUMENT_PATH = "/openapi.json"
# Marks a request whose body was refused unread (see ``Router.__call__``).
_REFUSED_BODY = "lectern.refused_body"


def iso(moment: datetime) -> str:
    """ISO-8601 in UTC with ``Z``, as the contract writes times."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _encode(value: object) -> object:
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def json_response(
    body: object, status: int = 200, *, location: str | None = None
) -> flask.Response:
    """``body`` (a route's declared response model) as JSON; ``location`` for a 201."""
    if isinstance(body, BaseModel):
        # A route's declared response model: the document describes exactly this.
        body = body.model_dump(mode="json")
    payload = json.dumps(body, default=_encode, ensure_ascii=False, separators=(",", ":"))
    response = flask.Response(payload, status=status, mimetype="application/json")
    if location is not None:
        response.headers["Location"] = location
    return response


def no_content() -> flask.Response:
    return flask.Response(status=204)


def _field_errors(error: ValidationError) -> dict[str, str]:
    fields: dict[str, str] = {}
    for item in error.errors():
        name = ".".join(str(part) for part in item["loc"])
        # pydantic prefixes custom errors with "Value error, "; users need only the reason.
        message = item["msg"].removeprefix("Value error, ")
        if not name:
            # A cross-field check names its field as "field: reason".
            name, _, rest = message.partition(": ")
            name, message = (name, rest) if rest and name.isidentifier() else ("body", message)
        fields.setdefault(name, message)
    return fields


def validate(model: type[Model], data: object) -> Model:
    """Validate ``data`` against ``model``; a failure is a 422 naming each field.

    Every body, form and query passes here, so this is where values no field
    may hold (NUL, lone surrogates, unsafe integers, deep nesting) are refused.
    """
    unusable = checked_values(data)
    if unusable:
        raise ValidationFailed(unusable)
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise ValidationFailed(_field_errors(error)) from None


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


def read_body(request: flask.Request, cap: int) -> bytes:
    """The whole body, at most ``cap`` bytes, with or without a Content-Length.

    Reads ``cap + 1`` at most, so an oversized body (chunked included) is
    refused after ``cap`` bytes, never cut to ``cap`` and processed, and never
    held whole in memory.
    """
    if (request.content_length or 0) > cap:
        refuse_body(request)
        raise PayloadTooLarge("the body is too large")
    # Werkzeug applies this to chunked bodies too (the server terminates them).
    request.max_content_length = cap + 1
    try:
        data = request.stream.read(cap + 1)
    except RequestEntityTooLarge:
        data = b"\0" * (cap + 1)
    if len(data) > cap:
        refuse_body(request)
        raise PayloadTooLarge("the body is too large")
    # Cached, so functions-framework's after-request read finds it done.
    request._cached_data = data
    return data


def refuse_body(request: flask.Request) -> None:
    """Answer without reading the rest of this request's body (see ``Router.__call__``)."""
    request.environ[_REFUSED_BODY] = True


@dataclass
class Call:
    """One request as a handler sees it."""

    request: flask.Request
    params: dict[str, str]
    router: Router
    claims: dict[str, Any] = field(default_factory=dict, repr=False)
    # The function's root as the caller addressed it: "/catalog" behind the load
    # balancer or under lectern dev, "" at the function's own URL.
    root: str = ""
    _user: User | None = field(default=None, repr=False)

    @property
    def settings(self) -> Settings:
        return self.router.settings

    def user(self, session: Session) -> User:
        """The signed-in user, created on first sight of the token's subject."""
        if self._user is None:
            from shared.auth import current_user

            self._user = current_user(
                session,
                self.claims,
                require_verified=self.settings.AUTH_REQUIRE_EMAIL_VERIFIED,
            )
        return self._user

    def subject(self) -> str:
        """The verified token's ``sub``, without touching the database.

        For hot paths that fold the user lookup into their own statement.
        """
        return str(self.claims["sub"])

    def admin(self, session: Session) -> User:
        """The signed-in user, who must be an admin (403 otherwise)."""
        user = self.user(session)
        if user.role != "ADMIN":
            raise Forbidden("this action needs an admin", code="admin_only")
        return user

    def location(self, path: str) -> str:
        """A ``Location`` for ``path`` (a route of this function), as the caller reaches it."""
        return self.root + path

    def path_id(self, name: str) -> uuid.UUID:
        """A UUID path parameter; a malformed one names nothing that exists (404)."""
        try:
            return uuid.UUID(self.params[name])
        except ValueError:
            raise NotFound("no such resource") from None

    def json(self, model: type[Model]) -> Model:
        """The JSON body validated against ``model``."""
        mimetype = self.request.mimetype
        if mimetype != "application/json" and not mimetype.endswith("+json"):
            raise UnsupportedMediaType("send the body as application/json")
        raw = read_body(self.request, MAX_JSON_BYTES)
        try:
            # NaN and Infinity are not JSON; a RecursionError is a hostile nesting
            # depth; a ValueError is also an integer of more than 4300 digits.
            data = json.loads(raw, parse_constant=_reject_constant)
        except (ValueError, RecursionError):
            raise BadRequest("the body is not valid JSON", code="malformed_json") from None
        if not isinstance(data, dict):
            raise BadRequest("the body must be a JSON object", code="malformed_json")
        return validate(model, data)

    def query(self, model: type[Model]) -> Model:
        """The query string validated against ``model``; repeated keys keep the first."""
        return validate(model, {key: self.request.args.get(key) for key in self.request.args})


@dataclass
class _Route:
    method: str
    path: str
    pattern: re.Pattern[str]
    handler: Handler
    # What the OpenAPI document says about the route (the handler still
    # validates with call.json/call.query; these name the same models).
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    errors: tuple[int, ...] = ()
    summary: str | None = None
    # A multipart body: its fields' model, and its files as (field, media type).
    form: type[BaseModel] | None = None
    files: tuple[tuple[str, str], ...] = ()
    # "json", or the media type of a body that is not JSON (text/calendar).
    content_type: str = "json"
    response_description: str | None = None


class Router:
    """Routes of one function, and the contract's HTTP conventions around them."""

    def __init__(self, settings: Settings, authenticator: Authenticator | None = None) -> None:
        self.settings = settings
        self.authenticator = authenticator
        self._routes: list[_Route] = []
        # GET /openapi.json: generated on first request (never at start), then kept.
        self._document: tuple[bytes, str] | None = None
        # Behind the load balancer (infra/loadbalancer.tf) a request keeps its
        # /<function> prefix; FUNCTION_TARGET is the entry point, which is the
        # function's name (functions-framework sets it before loading main.py).
        target = os.environ.get("FUNCTION_TARGET", "").strip("/")
        self._prefix = f"/{target}" if target else None

    def route(self, method: str, path: str, **declared: Any) -> Callable[[Handler], Handler]:
        """Register a handler; ``declared`` describes it for the OpenAPI document:
        ``body``/``query`` (request models), ``response`` (the model the handler
        returns through ``json_response``), ``status`` (its success status),
        ``errors`` (the route's own error statuses beyond the router's: 403,
        409, 429...), ``summary``, ``form``/``files`` (a multipart body) and
        ``content_type`` (a success body that is not JSON)."""
        regex = "^" + _PARAM.sub(lambda m: f"(?P<{m.group(1)}>[^/]+)", path.rstrip("/")) + "/?$"

        def register(handler: Handler) -> Handler:
            route = _Route(method.upper(), path, re.compile(regex), handler, **declared)
            self._routes.append(route)
            return handler

        return register

    def get(self, path: str, **declared: Any) -> Callable[[Handler], Handler]:
        return self.route("GET", path, **declared)

    def post(self, path: str, **declared: Any) -> Callable[[Handler], Handler]:
        return self.route("POST", path, **declared)

    def put(self, path: str, **declared: Any) -> Callable[[Handler], Handler]:
        return self.route("PUT", path, **declared)

    def patch(self, path: str, **declared: Any) -> Callable[[Handler], Handler]:
        return self.route("PATCH", path, **declared)

    def delete(self, path: str, **declared: Any) -> Callable[[Handler], Handler]:
        return self.route("DELETE", path, **declared)

    def __call__(self, request: flask.Request) -> flask.Response:
        given = request.headers.get("X-Request-Id", "")
        request_id = given if _REQUEST_ID.match(given) else secrets.token_hex(16)
        token = current_request_id.set(request_id)
        try:
            response = self._dispatch(request, request_id)
        finally:
            current_request_id.reset(token)
        response.headers.extend(self._cors_headers(request))
        response.headers["X-Request-Id"] = request_id
        response.headers["X-Content-Type-Options"] = "nosniff"
        if "Cache-Control" not in response.headers:
            # Every route answers per user (and errors are never worth caching).
            response.headers["Cache-Control"] = "no-store"
        if response.status_code in _UNREAD_BODY_STATUSES and request.content_length != 0:
            # Answered before the body mattered (no token, wrong role, no route):
            # don't let functions-framework read whatever was sent.
            refuse_body(request)
        if request.environ.get(_REFUSED_BODY):
            # functions-framework reads the whole request body after every
            # non-streamed response; a streamed one skips that, so a refused
            # body is never read into memory, and the connection is closed
            # instead of draining it.
            payload = response.get_data()
            response.response = iter([payload])
            response.headers["Connection"] = "close"
        return response

    def _cors_headers(self, request: flask.Request) -> dict[str, str]:
        origin = request.headers.get("Origin")
        allowed = self.settings.CORS_ORIGINS
        if not origin or not allowed:
            return {}
        # Retry-After (on 429 and 503) must be readable by the browser app.
        expose = {"Access-Control-Expose-Headers": "Retry-After, X-Request-Id"}
        if "*" in allowed:
            return {"Access-Control-Allow-Origin": "*", **expose}
        if origin.rstrip("/") in allowed:
            return {"Access-Control-Allow-Origin": origin, "Vary": "Origin", **expose}
        return {}

    def _dispatch(self, request: flask.Request, request_id: str) -> flask.Response:
        path = request.path or "/"
        # Mounted under a prefix (lectern dev's dispatcher sets SCRIPT_NAME).
        root = request.script_root
        if self._prefix and (path == self._prefix or path.startswith(self._prefix + "/")):
            path = path[len(self._prefix) :] or "/"
            root += self._prefix
        if path == DOCUMENT_PATH and request.method in ("GET", "HEAD"):
            # Public and before the routes: /{id} patterns would take it.
            return self._document_response(request)
        matches = [(r, m) for r in self._routes if (m := r.pattern.match(path))]
        allowed = sorted({route.method for route, _ in matches})
        if path == DOCUMENT_PATH:
            allowed = ["GET", "HEAD"]
        try:
            if request.method == "OPTIONS":
                return self._preflight(request, allowed)
            if path == DOCUMENT_PATH:
                raise MethodNotAllowed(
                    f"{request.method} is not allowed here",
                    headers={"Allow": "GET, HEAD, OPTIONS"},
                )
            if not matches:
                raise NotFound(f"no route for {path}")
            chosen = next(((r, m) for r, m in matches if r.method == request.method), None)
            if chosen is None:
                raise MethodNotAllowed(
                    f"{request.method} is not allowed here",
                    headers={"Allow": ", ".join([*allowed, "OPTIONS"])},
                )
            if request.mimetype != "multipart/form-data":
                if (request.content_length or 0) > MAX_JSON_BYTES:
                    refuse_body(request)
                    raise PayloadTooLarge("the body is too large")
                # A chunked body has no length to check: Werkzeug stops reading here.
                request.max_content_length = MAX_JSON_BYTES + 1
            else:
                # Multipart is the upload's; its handler may lower this, never raise it.
                request.max_content_length = self.settings.max_upload_bytes + MULTIPART_OVERHEAD
            route, match = chosen
            # Every route needs a signed-in user: the token is checked before
            # the body is read, so an anonymous caller learns nothing but 401.
            claims = self._verify(request)
            return route.handler(Call(request, match.groupdict(), self, claims, root=root))
        except LecternError as error:
            return self._error_response(request, error, request_id)
        except RequestEntityTooLarge:
            # A handler read past max_content_length (a chunked body).
            refuse_body(request)
            return self._error_response(
                request, PayloadTooLarge("the body is too large"), request_id
            )
        except Exception as error:
            from shared.db.outage import FOREIGN_KEY_VIOLATION, is_unavailable, sqlstate

            if sqlstate(error) == FOREIGN_KEY_VIOLATION:
                # What the row refers to went away meanwhile (a material unpublished
                # while a student opened it): as if it had never been there.
                gone = NotFound("it no longer exists", code="not_found")
                return self._error_response(request, gone, request_id)
            if is_unavailable(error):
                # The type only: a driver's message can carry SQL and user data.
                log.error(
                    "database unavailable: %s",
                    type(error).__name__,
                    extra={"method": request.method, "path": path},
                )
                unavailable = ServiceUnavailable(
                    "the database is unavailable; try again shortly",
                    code="database_unavailable",
                )
                return self._error_response(request, unavailable, request_id)
            log.exception("unhandled error", extra={"method": request.method, "path": path})
            body = {
                "error": {
                    "code": "internal_error",
                    "message": "internal error",
                    "request_id": request_id,
                }
            }
            return json_response(body, 500)

    @property
    def routes(self) -> list[_Route]:
        return list(self._routes)

    def openapi(self, name: str) -> dict[str, Any]:
        """This function's OpenAPI document (``shared.openapi``), ``name`` its function."""
        from shared.openapi import document

        return document(self._routes, name=name)

    def _document_response(self, request: flask.Request) -> flask.Response:
        if self._document is None:
            # The entry point's name: functions-framework names the Flask app after it.
            name = self._prefix.strip("/") if self._prefix else flask.current_app.name
            payload = json.dumps(self.openapi(name), ensure_ascii=False, separators=(",", ":"))
            data = payload.encode()
            self._document = (data, hashlib.sha256(data).hexdigest()[:32])
        data, etag = self._document
        if request.if_none_match.contains(etag):
            response = flask.Response(status=304)
        else:
            response = flask.Response(data, status=200, mimetype="application/json")
        response.set_etag(etag)
        # The same for everyone and changed only by a deploy.
        response.headers["Cache-Control"] = "public, max-age=300"
        return response

    def _verify(self, request: flask.Request) -> dict[str, Any]:
        from shared.auth import verified_claims

        if self.authenticator is None:
            raise RuntimeError("this router was built without an authenticator")
        return verified_claims(self.authenticator, request)

    def _preflight(self, request: flask.Request, allowed: list[str]) -> flask.Response:
        if not allowed:
            raise NotFound(f"no route for {request.path}")
        response = no_content()
        if self._cors_headers(request):
            response.headers["Access-Control-Allow-Methods"] = ", ".join([*allowed, "OPTIONS"])
            response.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
            response.headers["Access-Control-Max-Age"] = "3600"
        return response

    def _error_response(
        self, request: flask.Request, error: LecternError, request_id: str
    ) -> flask.Response:
        if error.status >= 500:
            log.error(
                "dependency failure: %s",
                error.detail or error.message,
                extra={"path": request.path},
            )
        response = json_response(error.to_body(request_id), error.status)
        response.headers.extend(error.headers)
        return response


def build_router(needs: Needs) -> Router:
    """Settings (exiting with one line if bad), logging and auth for an HTTP function."""
    from shared.auth import Authenticator
    from shared.config import Needs, load_settings_or_exit
    from shared.log import configure_logging

    settings = load_settings_or_exit(needs | Needs.DATABASE | Needs.AUTH)
    configure_logging(settings.LOG_LEVEL)
    return Router(settings, Authenticator(settings))
