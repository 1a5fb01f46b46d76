"""The OpenAPI 3.1 document of a function, generated from its router.

Nothing here is written by hand per route: paths and methods come from the
router, parameters, bodies and responses from the pydantic models each route
declares (``router.get(path, query=..., response=..., errors=...)``), and the
error responses from what the router itself can answer around every handler
(``shared.http``). Imported only when a document is asked for, never at a
function's start.

``merge`` joins the functions' documents into the one ``lectern dev`` serves,
each path under its ``/<function>`` prefix as the load balancer routes it.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from shared.http import DOCUMENT_PATH

if TYPE_CHECKING:
    from shared.http import _Route

__all__ = ["DOCUMENT_PATH", "document", "merge", "undeclared"]

OPENAPI_VERSION = "3.1.0"
API_VERSION = "2"
REF = "#/components/schemas/{model}"
_PARAM = re.compile(r"\{(\w+)\}")

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Every error: one object under `error`.",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "request_id"],
            "properties": {
                "code": {"type": "string", "description": "For programs: stable, snake_case."},
                "message": {"type": "string", "description": "For people."},
                "request_id": {
                    "type": "string",
                    "description": "The response's X-Request-Id, to quote when reporting.",
                },
                "fields": {
                    "type": "object",
                    "description": "422 only: each invalid field (dotted for nested) and why.",
                    "additionalProperties": {"type": "string"},
                },
            },
            # Some errors add facts beside code and message (409 not_enough_time:
            # shortfall_minutes, earliest_exam_date).
            "additionalProperties": True,
        }
    },
}

STATUS_TEXT = {
    200: "OK",
    201: "Created",
    202: "Accepted",
    204: "No content",
    400: "Malformed JSON, or a body that is not a JSON object (`malformed_json`).",
    401: "No token, or a token that is invalid or expired "
    "(`missing_token`, `invalid_token`, `token_expired`).",
    403: "The signed-in user may not do this (`admin_only`, or a first-sight token "
    "without a verified email).",
    404: "No such resource, or one the caller may not see (another user's private rows "
    "answer 404, never 403). A malformed id in the path is a 404 too.",
    409: "Conflicting state. Any route may answer `email_in_use` the first time a token's "
    "subject is seen with an email another account holds.",
    413: "The body is larger than the route accepts (`payload_too_large`).",
    415: "The body is not in the media type the route reads (`unsupported_media_type`).",
    422: "Invalid values; `error.fields` names each field and why (`validation_failed`).",
    429: "Too many requests of this kind; `Retry-After` says when to try again.",
    500: "An unexpected error (`internal_error`); nothing internal is shown.",
    503: "A dependency (database, storage, the token issuer's keys) is unavailable; "
    "`Retry-After` says when to try again.",
}

_REQUEST_ID_HEADER = {
    "description": "The caller's X-Request-Id if it was tame, or a new one.",
    "schema": {"type": "string"},
}
_RETRY_AFTER_HEADER = {
    "description": "Seconds to wait before trying again.",
    "required": True,
    "schema": {"type": "string", "pattern": "^[0-9]+$"},
}
_LOCATION_HEADER = {
    "description": "The URL of what was created.",
    "required": True,
    "schema": {"type": "string"},
}


def _strip_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query or form field is absent or a string, never null: drop the null branch."""
    options = schema.get("anyOf")
    if not options:
        return schema
    kept = [option for option in options if option != {"type": "null"}]
    rest = {key: value for key, value in schema.items() if key != "anyOf"}
    if rest.get("default", ...) is None:
        del rest["default"]
    if len(kept) == 1:
        return {**kept[0], **rest}
    return {"anyOf": kept, **rest}


def _declared(route: _Route) -> bool:
    """Whether the route says what its success answer is."""
    return route.response is not None or route.status == 204 or route.content_type != "json"


def undeclared(routes: Iterable[_Route]) -> list[str]:
    """``METHOD path`` of each route whose success response has no model yet."""
    return [f"{route.method} {route.path}" for route in routes if not _declared(route)]


def _error_statuses(route: _Route) -> set[int]:
    """Every status the router and the route's handler can answer with an error body."""
    statuses = {401, 413, 500, 503, *route.errors}
    # A first-sight token whose email another account holds (shared.auth.current_user).
    statuses.add(409)
    if route.body is not None or route.form is not None:
        statuses |= {415, 422}
    if route.body is not None:
        statuses.add(400)
    if route.query is not None:
        statuses.add(422)
    if _PARAM.search(route.path):
        statuses.add(404)
    return statuses


ERROR_NAMES = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    413: "PayloadTooLarge",
    415: "UnsupportedMediaType",
    422: "ValidationFailed",
    429: "RateLimited",
    500: "InternalError",
    503: "ServiceUnavailable",
}


def _error_response(status: int) -> dict[str, Any]:
    headers: dict[str, Any] = {"X-Request-Id": {"$ref": "#/components/headers/X-Request-Id"}}
    if status in (429, 503):
        headers["Retry-After"] = {"$ref": "#/components/headers/Retry-After"}
    if status == 405:
        headers["Allow"] = {"schema": {"type": "string"}}
    return {
        "description": STATUS_TEXT.get(status, "Error"),
        "headers": headers,
        "content": {"application/json": {"schema": {"$ref": REF.format(model="Error")}}},
    }


def _operation_id(route: _Route) -> str:
    handler = route.handler
    return str(getattr(handler, "__name__", f"{route.method.lower()}_{route.path}"))


def _operation(route: _Route, names: Mapping[tuple[Any, JsonSchemaMode], Any]) -> dict[str, Any]:
    def ref(model: type[BaseModel], mode: JsonSchemaMode) -> dict[str, Any]:
        return dict(names[(model, mode)])

    operation: dict[str, Any] = {"operationId": _operation_id(route)}
    doc = (route.handler.__doc__ or "").strip()
    summary = route.summary or (doc.splitlines()[0] if doc else None)
    if summary:
        operation["summary"] = summary
    if doc and doc != summary:
        operation["description"] = doc
    parameters: list[dict[str, Any]] = []
    for name in _PARAM.findall(route.path):
        parameters.append(
            {
                "name": name,
                "in": "path",
                "required": True,
                "schema": {"type": "string", "format": "uuid"},
            }
        )
    if route.query is not None:
        parameters.extend(_query_parameters(route.query))
    if parameters:
        operation["parameters"] = parameters
    if route.body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": ref(route.body, "validation")}},
        }
    elif route.form is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"multipart/form-data": _form_content(route)},
        }
    operation["responses"] = _responses(route, ref)
    if not _declared(route):
        operation["x-lectern-undeclared"] = True
    return operation


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    # Inlined (a parameter's schema cannot be the model): one per field, by its alias.
    schema = model.model_json_schema(ref_template=REF, mode="validation")
    required = set(schema.get("required", ()))
    parameters = []
    for name, field_schema in schema.get("properties", {}).items():
        field_schema = _strip_null(dict(field_schema))
        field_schema.pop("title", None)
        parameter: dict[str, Any] = {
            "name": name,
            "in": "query",
            "required": name in required,
            "schema": field_schema,
        }
        if "description" in field_schema:
            parameter["description"] = field_schema.pop("description")
        parameters.append(parameter)
    return parameters


def _form_content(route: _Route) -> dict[str, Any]:
    assert route.form is not None
    schema = route.form.model_json_schema(ref_template=REF, mode="validation")
    properties = {
        name: _strip_null({k: v for k, v in value.items() if k != "title"})
        for name, value in schema.get("properties", {}).items()
    }
    required = list(schema.get("required", ()))
    encoding = {}
    for name, media_type in route.files:
        properties[name] = {"type": "string", "format": "binary", "contentMediaType": media_type}
        required.append(name)
        encoding[name] = {"contentType": media_type}
    body_schema: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "required": required,
    }
    if schema.get("description"):
        body_schema["description"] = schema["description"]
    return {"schema": body_schema, "encoding": encoding}


def _responses(route: _Route, ref: Any) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    headers: dict[str, Any] = {"X-Request-Id": {"$ref": "#/components/headers/X-Request-Id"}}
    if route.status == 201:
        headers["Location"] = {"$ref": "#/components/headers/Location"}
    success: dict[str, Any] = {
        "description": route.response_description or STATUS_TEXT.get(route.status, "Success"),
        "headers": headers,
    }
    if route.status != 204:
        if route.response is not None:
            success["content"] = {
                "application/json": {"schema": ref(route.response, "serialization")}
            }
        elif route.content_type != "json":
            # Not JSON: the media type says what it is (an iCalendar file).
            success["content"] = {route.content_type: {}}
        else:
            # Not declared yet: any JSON object (tests skip validating these).
            success["content"] = {"application/json": {"schema": {"type": "object"}}}
    responses[str(route.status)] = success
    for status in sorted(_error_statuses(route)):
        name = ERROR_NAMES.get(status)
        responses[str(status)] = (
            {"$ref": f"#/components/responses/{name}"} if name else _error_response(status)
        )
    return responses


def _document_operation() -> dict[str, Any]:
    return {
        "operationId": "openapi_document",
        "summary": "This document (public, cacheable)",
        "security": [],
        "responses": {
            "200": {
                "description": "The function's OpenAPI 3.1 document.",
                "headers": {
                    "ETag": {"schema": {"type": "string"}},
                    "X-Request-Id": {"$ref": "#/components/headers/X-Request-Id"},
                },
                "content": {"application/json": {"schema": {"type": "object"}}},
            },
            "304": {"description": "Not modified (If-None-Match named the current ETag)."},
        },
    }


def document(routes: list[_Route], *, name: str, description: str | None = None) -> dict[str, Any]:
    """The OpenAPI 3.1 document of one function's routes; ``name`` is its function name."""
    models: list[tuple[type[BaseModel], JsonSchemaMode]] = []
    seen: set[tuple[type[BaseModel], JsonSchemaMode]] = set()

    def want(model: type[BaseModel] | None, mode: JsonSchemaMode) -> None:
        if model is not None and (model, mode) not in seen:
            seen.add((model, mode))
            models.append((model, mode))

    for route in routes:
        want(route.body, "validation")
        want(route.query, "validation")
        want(route.form, "validation")
        want(route.response, "serialization")
    names, definitions = models_json_schema(models, ref_template=REF)
    components = dict(definitions.get("$defs", {}))
    components["Error"] = copy.deepcopy(ERROR_SCHEMA)
    paths: dict[str, dict[str, Any]] = {DOCUMENT_PATH: {"get": _document_operation()}}
    for route in routes:
        path = route.path if route.path == "/" else route.path.rstrip("/")
        paths.setdefault(path, {})[route.method.lower()] = _operation(route, names)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": f"Lectern {name}",
            "version": API_VERSION,
            **({"description": description} if description else {}),
        },
        "servers": [
            {"url": f"/{name}", "description": "Behind the one-origin load balancer"},
            {"url": "/", "description": "The function's own URL"},
        ],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": components,
            "responses": {name: _error_response(status) for status, name in ERROR_NAMES.items()},
            "headers": {
                "X-Request-Id": _REQUEST_ID_HEADER,
                "Retry-After": _RETRY_AFTER_HEADER,
                "Location": _LOCATION_HEADER,
            },
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT (RS256, the configured issuer and audience)",
                }
            },
        },
    }


def merge(documents: Mapping[str, dict[str, Any]], *, server: str = "/") -> dict[str, Any]:
    """One document for the whole API: each function's paths under ``/<function>``.

    Components that two functions name alike but define differently are
    renamed ``<function>_<Name>`` in the function that holds the second one.
    """
    schemas: dict[str, Any] = {}
    paths: dict[str, Any] = {}
    security_schemes: dict[str, Any] = {}
    shared_responses: dict[str, Any] = {}
    headers: dict[str, Any] = {}
    for name, original in sorted(documents.items()):
        doc = copy.deepcopy(original)
        renames: dict[str, str] = {}
        for schema_name, schema in doc["components"]["schemas"].items():
            if schema_name in schemas and schemas[schema_name] != schema:
                renames[schema_name] = f"{name}_{schema_name}"
        if renames:
            text = json.dumps(doc)
            for old, new in renames.items():
                text = text.replace(f'"{REF.format(model=old)}"', f'"{REF.format(model=new)}"')
            doc = json.loads(text)
            doc["components"]["schemas"] = {
                renames.get(key, key): value for key, value in doc["components"]["schemas"].items()
            }
        for schema_name, schema in doc["components"]["schemas"].items():
            schemas.setdefault(schema_name, schema)
        security_schemes.update(doc["components"].get("securitySchemes", {}))
        shared_responses.update(doc["components"].get("responses", {}))
        headers.update(doc["components"].get("headers", {}))
        for path, item in doc["paths"].items():
            full = f"/{name}" if path == "/" else f"/{name}{path}"
            for operation in item.values():
                operation["operationId"] = f"{name}.{operation['operationId']}"
                operation.setdefault("tags", [name])
            paths[full] = item
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": "Lectern", "version": API_VERSION},
        "servers": [{"url": server}],
        "security": [{"bearer": []}],
        "tags": [{"name": name} for name in sorted(documents)],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "responses": shared_responses,
            "headers": headers,
            "securitySchemes": security_schemes,
        },
    }
