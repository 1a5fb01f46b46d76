"""schemathesis against every operation of every HTTP function.

Each function's own document (``GET /openapi.json``) drives generated
requests into the real functions-framework app and the real database, signed
in as a student or an admin from the test issuer. Checks: no 5xx, the status
is one the operation declares, the content type and headers it declares, and
the body matches its schema. A bounded, derandomized number of examples per
operation keeps it deterministic and inside ``make test``.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session, sessionmaker

from tests.conftest import HTTP_FUNCTIONS
from tests.factories import make_major, make_material, make_user

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


def _rows(sessions: sessionmaker[Session], student_id: uuid.UUID) -> dict[str, str]:
    """Rows that exist, by the path parameter names that address them.

    Random UUIDs reach only 404s; these let the examples read, change and
    delete real rows (the student owns the task and the request).
    """
    from datetime import UTC, date, datetime

    from shared.db.models import User, UserTask

    with sessions.begin() as session:
        student = session.get(User, student_id)
        material = make_material(session, uploader=student)
        other = make_user(session)
        now = datetime.now(UTC)
        task = UserTask(
            user_id=student_id,
            title="Fuzzed",
            date=date.today(),
            start_hour=9.0,
            duration=1.0,
            created_at=now,
            updated_at=now,
        )
        session.add(task)
        session.flush()
        return {
            "major_id": str(make_major(session).id),
            "course_id": str(material.course_id),
            "type_id": str(material.type_id),
            "lecturer_id": str(material.lecturer_id),
            "material_id": str(material.id),
            "file_id": str(material.id),
            "request_id": str(material.id),
            "user_id": str(other.id),
            "task_id": str(task.id),
        }


def _exercise(
    operation: Any,
    tokens: list[dict[str, str]],
    checks: list[Any],
    failures: list[str],
    path_parameters: dict[str, str] | None = None,
) -> list[int]:
    """Up to EXAMPLES generated requests to one operation; the statuses answered."""
    from schemathesis.core.failures import FailureGroup

    seen: list[int] = []
    strategy = (
        operation.as_strategy(path_parameters=path_parameters)
        if path_parameters
        else operation.as_strategy()
    )

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy, auth=st.sampled_from(tokens))
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
    sessions: sessionmaker[Session],
    user_token: Callable[..., tuple[uuid.UUID, dict[str, str]]],
) -> None:
    import schemathesis

    client = apps[name]
    document = client.get("/openapi.json").get_json()
    # Requests go to the function's own root (the prefix is the load balancer's).
    document["servers"] = [{"url": "/"}]
    schema = schemathesis.openapi.from_dict(document)
    schema.app = client.application
    student_id, student = user_token("STUDENT")
    _, admin = user_token("ADMIN")
    rows = _rows(sessions, student_id)
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
        names = re.findall(r"\{(\w+)\}", operation.path)
        if names and all(name in rows for name in names):
            # Again on rows that exist: reads, changes and deletes that succeed.
            known = {name: rows[name] for name in names}
            exercised += len(_exercise(operation, [student, admin], checks, failures, known))
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
