"""The OpenAPI documents: valid, complete, served publicly, generated lazily.

Every response the suite receives through ``function_client`` is validated
against these documents (``tests/conftest.py``); here the documents themselves.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from openapi_spec_validator import validate

from shared.http import Router
from shared.openapi import merge, undeclared
from tests.conftest import HTTP_FUNCTIONS, REPO, RESPONSE_CHECKER


@pytest.fixture(scope="module")
def apps(function_client: Callable[[str], Any]) -> dict[str, Any]:
    return {name: function_client(name) for name in HTTP_FUNCTIONS}


@pytest.fixture(scope="module")
def documents(apps: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: client.get("/openapi.json").get_json() for name, client in apps.items()}


@pytest.fixture(scope="module")
def routers(function_env: dict[str, str]) -> Iterator[dict[str, Router]]:
    """Each function's Router, from its main.py loaded as functions-framework would."""
    saved = dict(os.environ)
    os.environ.update(function_env)
    found = {}
    for name in HTTP_FUNCTIONS:
        spec = importlib.util.spec_from_file_location(
            f"openapi_{name}", REPO / "functions" / name / "main.py"
        )
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        found[name] = module.router
    yield found
    os.environ.clear()
    os.environ.update(saved)


def test_every_function_serves_a_valid_document(documents: dict[str, dict[str, Any]]) -> None:
    assert set(documents) == {
        "catalog",
        "heartbeat",
        "moderate",
        "profile",
        "search",
        "submit",
        "tasks",
    }
    for name, document in documents.items():
        validate(document)
        assert document["openapi"].startswith("3.1")
        assert {"url": f"/{name}", "description": "Behind the one-origin load balancer"} in (
            document["servers"]
        )
        assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


def test_the_merged_document_is_valid(documents: dict[str, dict[str, Any]]) -> None:
    merged = merge(documents)
    validate(merged)
    assert "/catalog/majors" in merged["paths"]
    assert "/submit" in merged["paths"]
    ids = [
        operation["operationId"] for item in merged["paths"].values() for operation in item.values()
    ]
    assert len(ids) == len(set(ids))


def test_every_route_is_in_the_document(
    routers: dict[str, Router], documents: dict[str, dict[str, Any]]
) -> None:
    for name, router in routers.items():
        paths = documents[name]["paths"]
        for route in router.routes:
            path = route.path if route.path == "/" else route.path.rstrip("/")
            assert route.method.lower() in paths.get(path, {}), f"{name}: {route.method} {path}"


def test_every_route_declares_its_response(routers: dict[str, Router]) -> None:
    missing = {name: undeclared(router.routes) for name, router in routers.items()}
    assert {name: routes for name, routes in missing.items() if routes} == {}


def test_every_operation_names_the_statuses_the_router_answers(
    documents: dict[str, dict[str, Any]],
) -> None:
    for name, document in documents.items():
        for path, item in document["paths"].items():
            for method, operation in item.items():
                responses = operation["responses"]
                where = f"{name} {method.upper()} {path}"
                if path == "/openapi.json":
                    assert operation["security"] == []
                    continue
                assert {"401", "413", "500", "503"} <= set(responses), where
                if "{" in path:
                    assert "404" in responses, where
                body = operation.get("requestBody", {}).get("content", {})
                if "application/json" in body:
                    assert {"400", "415", "422"} <= set(responses), where
                if any(p["in"] == "query" for p in operation.get("parameters", ())):
                    assert "422" in responses, where
                if "201" in responses:
                    assert "Location" in responses["201"]["headers"], where
    unavailable = documents["catalog"]["components"]["responses"]["ServiceUnavailable"]
    assert unavailable["headers"]["Retry-After"]["$ref"] == "#/components/headers/Retry-After"


def test_parameters_bodies_and_the_upload_form(documents: dict[str, dict[str, Any]]) -> None:
    material = documents["catalog"]["paths"]["/materials/{material_id}"]["get"]
    assert material["parameters"] == [
        {
            "name": "material_id",
            "in": "path",
            "required": True,
            "schema": {"type": "string", "format": "uuid"},
        }
    ]
    listing = documents["catalog"]["paths"]["/materials"]["get"]
    names = {p["name"]: p for p in listing["parameters"]}
    assert set(names) == {"course_id", "type_id", "lecturer_id", "material_year", "limit", "cursor"}
    assert names["limit"]["schema"]["maximum"] == 100
    # A query value is absent or a string: no null branch.
    assert "anyOf" not in names["course_id"]["schema"]
    tasks = documents["tasks"]["paths"]["/"]["get"]
    assert {p["name"] for p in tasks["parameters"]} == {"from", "to", "tz"}
    form = documents["submit"]["paths"]["/"]["post"]["requestBody"]["content"]
    schema = form["multipart/form-data"]["schema"]
    assert schema["properties"]["file"]["format"] == "binary"
    assert {"file", "course_id", "type_id", "title"} <= set(schema["required"])
    assert form["multipart/form-data"]["encoding"]["file"]["contentType"] == "application/pdf"
    ics = documents["tasks"]["paths"]["/calendar.ics"]["get"]["responses"]["200"]["content"]
    assert list(ics) == ["text/calendar"]


def test_the_document_is_public_and_cacheable(apps: dict[str, Any]) -> None:
    client = apps["catalog"]
    first = client.get("/openapi.json")
    assert first.status_code == 200
    assert first.mimetype == "application/json"
    assert "public" in first.headers["Cache-Control"]
    etag = first.headers["ETag"]
    again = client.get("/openapi.json", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.data == b""
    # Not taken by a /{id} route, and not writable.
    assert apps["submit"].get("/openapi.json").get_json()["info"]["title"] == "Lectern submit"
    refused = client.post("/openapi.json", json={})
    assert refused.status_code == 405
    assert "GET" in refused.headers["Allow"]


def test_the_document_is_not_made_at_start(function_env: dict[str, str]) -> None:
    """Cold start: importing a function neither imports shared.openapi nor builds a document."""
    script = (
        "import importlib.util, sys\n"
        "spec = importlib.util.spec_from_file_location('main', 'functions/catalog/main.py')\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(module)\n"
        "assert 'shared.openapi' not in sys.modules\n"
        "assert 'openapi_core' not in sys.modules\n"
        "assert module.router._document is None\n"
    )
    subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        env={**os.environ, **function_env},
        check=True,
        timeout=60,
    )


def test_responses_are_checked_and_a_wrong_one_is_caught(apps: dict[str, Any]) -> None:
    """The conftest's checker really validates: a body missing a field fails it."""
    import flask

    before = RESPONSE_CHECKER.checked
    client = apps["catalog"]
    answer = client.get("/majors")
    assert answer.status_code == 401
    assert RESPONSE_CHECKER.checked == before + 1
    app = client.application
    forged = flask.Response(
        json.dumps({"majors": [{"id": str(uuid.uuid4()), "name": "x"}]}),
        status=200,
        mimetype="application/json",
    )
    request = answer.request
    request.environ["PATH_INFO"] = "/majors"
    with pytest.raises(AssertionError, match="slug"):
        RESPONSE_CHECKER.check(app, request, forged)
    undeclared_status = flask.Response(
        json.dumps({"error": {"code": "x", "message": "y"}}),
        status=418,
        mimetype="application/json",
    )
    with pytest.raises(AssertionError, match="418"):
        RESPONSE_CHECKER.check(app, request, undeclared_status)


def test_a_toy_router_is_described_from_its_declarations() -> None:
    """The generator alone: what each declaration turns into."""
    from pydantic import BaseModel

    from shared.http import json_response, no_content
    from shared.openapi import document
    from shared.responses import Shape

    class Query(BaseModel):
        q: str | None = None

    class Body(BaseModel):
        name: str

    class Answer(Shape):
        name: str
        note: str | None

    router = Router.__new__(Router)
    router._routes = []

    @router.get("/things", query=Query, response=Answer)
    def list_things(call: Any) -> Any:
        """Things, by name."""
        return json_response({})

    @router.post("/things", body=Body, response=Answer, status=201, errors=(403, 429))
    def make_thing(call: Any) -> Any:
        return json_response({})

    @router.delete("/things/{thing_id}", status=204)
    def remove_thing(call: Any) -> Any:
        return no_content()

    @router.get("/loose")
    def loose(call: Any) -> Any:
        return json_response({})

    doc = document(router.routes, name="toy")
    validate(doc)
    listing = doc["paths"]["/things"]["get"]
    assert (listing["operationId"], listing["summary"]) == ("list_things", "Things, by name.")
    assert set(listing["responses"]) == {"200", "401", "409", "413", "422", "500", "503"}
    created = doc["paths"]["/things"]["post"]
    assert set(created["responses"]) == {
        "201",
        "400",
        "401",
        "403",
        "409",
        "413",
        "415",
        "422",
        "429",
        "500",
        "503",
    }
    assert created["responses"]["429"] == {"$ref": "#/components/responses/RateLimited"}
    assert doc["components"]["responses"]["RateLimited"]["headers"]["Retry-After"]
    answer = doc["components"]["schemas"]["Answer"]
    # Always sent, null allowed: required and nullable.
    assert set(answer["required"]) == {"name", "note"}
    removed = doc["paths"]["/things/{thing_id}"]["delete"]["responses"]
    assert "content" not in removed["204"]
    assert "404" in removed
    assert undeclared(router.routes) == ["GET /loose"]
    assert doc["paths"]["/loose"]["get"]["x-lectern-undeclared"] is True


def test_schema_names_are_unique_across_functions(documents: dict[str, dict[str, Any]]) -> None:
    # The merged document would rename a clash to <function>_<Name>: a name the
    # frontend's generated types should not have to know.
    seen: dict[str, tuple[str, Any]] = {}
    for function, document in documents.items():
        for name, schema in document["components"]["schemas"].items():
            if name in seen:
                other, first = seen[name]
                assert schema == first, f"{name}: {other} and {function} declare different shapes"
            seen[name] = (function, schema)
    assert "AnswerQuote" in documents["search"]["components"]["schemas"]
