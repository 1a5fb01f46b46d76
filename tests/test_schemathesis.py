"""schemathesis against every operation of every HTTP function.

Each function's own document (``GET /openapi.json``) drives generated
requests into the real functions-framework app and the real database, signed
in as a student or an admin from the test issuer. Checks: no 5xx, the status
is one the operation declares, the content type and headers it declares, and
the body matches its schema. A bounded, derandomized number of examples per
operation keeps it deterministic and inside ``make test``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.conftest import HTTP_FUNCTIONS

# Per operation; a function has up to ~20 operations, and there are seven.
EXAMPLES = 10
# Statuses seen, printed with -s (what the examples reached).
STATUSES: dict[int, int] = {}

pytest.importorskip("schemathesis")


def _checks() -> list[Any]:
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_headers_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    return [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_headers_conformance,
        response_schema_conformance,
    ]


@pytest.fixture(scope="module")
def apps(function_client: Callable[[str], Any]) -> dict[str, Any]:
    """One app per function for the module (building one twice confuses Flask's root path)."""
    return {name: function_client(name) for name in HTTP_FUNCTIONS}


def _exercise(
    operation: Any, tokens: list[dict[str, str]], checks: list[Any], failures: list[str]
) -> list[int]:
    """Up to EXAMPLES generated requests to one operation; the statuses answered."""
    from schemathesis.core.failures import FailureGroup

    seen: list[int] = []

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(), auth=st.sampled_from(tokens))
    def exercise(case: Any, auth: dict[str, str]) -> None:
        response = case.call(headers=auth)
        seen.append(response.status_code)
        STATUSES[response.status_code] = STATUSES.get(response.status_code, 0) + 1
        try:
            case.validate_response(response, checks=checks)
        except FailureGroup as error:
            failures.append(f"{operation.label}: {str(error)[:1500]}")

    exercise()
    return seen


@pytest.mark.parametrize("name", HTTP_FUNCTIONS)
def test_every_operation_holds_to_its_document(
    name: str,
    apps: dict[str, Any],
    user_token: Callable[..., tuple[uuid.UUID, dict[str, str]]],
) -> None:
    import schemathesis

    client = apps[name]
    document = client.get("/openapi.json").get_json()
    # Requests go to the function's own root (the prefix is the load balancer's).
    document["servers"] = [{"url": "/"}]
    schema = schemathesis.openapi.from_dict(document)
    schema.app = client.application
    _, student = user_token("STUDENT")
    _, admin = user_token("ADMIN")
    checks = _checks()
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == sum(len(item) for item in document["paths"].values())
    started = time.monotonic()
    exercised = 0
    for operation in operations:
        seen = _exercise(operation, [student, admin], checks, failures)
        assert seen, operation.label
        exercised += len(seen)
    elapsed = time.monotonic() - started
    assert not failures, "\n\n".join(failures[:10])
    assert exercised >= len(operations)
    print(
        f"{name}: {len(operations)} operations, {exercised} requests in {elapsed:.1f} s", STATUSES
    )


def test_the_checks_catch_a_body_off_its_schema(
    apps: dict[str, Any],
    user_token: Callable[..., tuple[uuid.UUID, dict[str, str]]],
) -> None:
    """The same checks fail when the document asks for a field the body lacks."""
    import schemathesis

    client = apps["catalog"]
    document = client.get("/openapi.json").get_json()
    document["servers"] = [{"url": "/"}]
    document["components"]["schemas"]["MajorList"]["required"].append("missing_field")
    schema = schemathesis.openapi.from_dict(document)
    schema.app = client.application
    operation = schema.find_operation_by_label("GET /majors")
    _, student = user_token("STUDENT")
    case = operation.Case()
    response = case.call(headers=student)
    assert response.status_code == 200
    from schemathesis.core.failures import FailureGroup

    with pytest.raises(FailureGroup, match="missing_field"):
        case.validate_response(response, checks=_checks())
