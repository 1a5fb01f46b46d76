"""One origin: behind the load balancer (infra/loadbalancer.tf) every request
keeps its ``/<function>`` prefix, and the function still finds its route.

Direct calls (the function's own run.app URL, the push subscription, the
Scheduler) keep working without the prefix. Tested through the functions'
real functions-framework apps.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

FUNCTIONS = Path(__file__).resolve().parents[1] / "functions"
ALLOWED_ORIGIN = "https://app.lectern.test"


@pytest.fixture
def headers(user_token: Callable[..., Any]) -> dict[str, str]:
    return user_token()[1]


@pytest.mark.parametrize(
    ("function", "route"),
    [("catalog", "/majors"), ("profile", "/me"), ("tasks", "/"), ("submit", "/")],
)
def test_a_route_answers_with_and_without_its_function_prefix(
    function_client: Callable[[str], Any], headers: dict[str, str], function: str, route: str
) -> None:
    client = function_client(function)
    direct = client.get(route, headers=headers)
    assert direct.status_code == 200, direct.json
    for prefixed in (f"/{function}{route}", f"/{function}{route}".rstrip("/")):
        through_the_balancer = client.get(prefixed, headers=headers)
        assert through_the_balancer.status_code == 200, (prefixed, through_the_balancer.json)
        assert through_the_balancer.json == direct.json


def test_path_parameters_and_preflight_behind_the_prefix(
    function_client: Callable[[str], Any], headers: dict[str, str]
) -> None:
    client = function_client("catalog")
    missing = "/catalog/courses/00000000-0000-0000-0000-000000000000"
    assert client.get(missing, headers=headers).status_code == 404
    preflight = client.options(
        "/catalog/majors",
        headers={"Origin": ALLOWED_ORIGIN, "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 204
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]


def test_only_the_functions_own_name_is_stripped(
    function_client: Callable[[str], Any], headers: dict[str, str]
) -> None:
    client = function_client("catalog")
    for path in ("/catalogue/majors", "/profile/majors", "/catalog/catalog/majors"):
        response = client.get(path, headers=headers)
        assert response.status_code == 404, path


def test_no_route_starts_with_its_own_function_name() -> None:
    # Such a route would be shadowed by the prefix the router strips.
    for main in sorted(FUNCTIONS.glob("*/main.py")):
        name = main.parent.name
        for node in ast.walk(ast.parse(main.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "router"
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                route = node.args[0].value
                assert not re.match(rf"^/{re.escape(name)}(/|$)", route), (name, route)


def test_locations_and_the_document_behind_the_prefix(
    function_client: Callable[[str], Any], headers: dict[str, str]
) -> None:
    """A 201's Location keeps the prefix the caller used; /openapi.json is there too."""
    client = function_client("tasks")
    task = {
        "title": "Behind the balancer",
        "date": "2026-05-04",
        "start_hour": 9.0,
        "duration": 1.0,
    }
    through = client.post("/tasks/", json=task, headers=headers)
    assert through.status_code == 201
    assert through.headers["Location"] == f"/tasks/{through.json['task']['id']}"
    assert client.get(through.headers["Location"], headers=headers).status_code == 200
    direct = client.post("/", json=task, headers=headers)
    assert direct.headers["Location"] == f"/{direct.json['task']['id']}"
    document = client.get("/tasks/openapi.json")
    assert document.status_code == 200
    assert document.json["servers"][0]["url"] == "/tasks"
