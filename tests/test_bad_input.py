"""Hostile input is a 4xx in the contract's error format, never a 500, and changes nothing.

Through the real functions-framework apps (and, for chunked bodies, a real
HTTP server, because only a server de-chunks a body the way production does).
"""

from __future__ import annotations

import base64
import http.client
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.serving import make_server

from shared.db.models import FileViewingSession, Material, UserTask
from tests.factories import make_material

VALID_TASK = {
    "title": "Read chapter 3",
    "date": "2026-12-01",
    "start_hour": 9,
    "duration": 1,
    "priority": "normal",
}


@pytest.fixture(scope="module")
def apps(function_client: Callable[[str], Any]) -> dict[str, Any]:
    return {name: function_client(name) for name in ("tasks", "catalog", "profile", "heartbeat")}


def _tasks_of(sessions: sessionmaker[Session], user_id: uuid.UUID) -> int:
    with sessions.begin() as session:
        return int(
            session.scalar(
                select(func.count()).select_from(UserTask).where(UserTask.user_id == user_id)
            )
            or 0
        )


def _error(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.data[:300]
    error: dict[str, Any] = response.json["error"]
    assert error["request_id"] == response.headers["X-Request-Id"]
    return error


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ('{"title": ' * 20_000 + "1" + "}" * 20_000, 400, None),  # Python's recursion
        (json.dumps({**VALID_TASK, "title": [[[[[[[[[[["deep"]]]]]]]]]]]}), 422, "title"),
        ('{"title": "x", "start_hour": ' + "9" * 5000 + "}", 400, None),  # > 4300 digits
        (json.dumps({**VALID_TASK, "duration": 2**60}), 422, "duration"),
        (
            json.dumps(VALID_TASK).replace('"start_hour": 9', '"start_hour": 1e400'),
            422,
            "start_hour",
        ),
        ('{"title": "x", "start_hour": NaN}', 400, None),
        (json.dumps({**VALID_TASK, "title": "nul\x00byte"}), 422, "title"),
        ('{"title": "lone \\ud800 surrogate", "date": "2026-12-01"}', 422, "title"),
        (json.dumps({**VALID_TASK, "x\x00": 1}), 422, "body"),
    ],
)
def test_hostile_json_is_a_clear_4xx_and_creates_nothing(
    body: str,
    status: int,
    field: str | None,
    apps: dict[str, Any],
    user_token: Callable[..., Any],
    sessions: sessionmaker[Session],
) -> None:
    user_id, headers = user_token()
    response = apps["tasks"].post("/", data=body, headers=headers, content_type="application/json")
    error = _error(response, status)
    if field is not None:
        assert any(name.split(".")[0] == field for name in error["fields"]), error
    assert _tasks_of(sessions, user_id) == 0


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/lecturers?q=%00", "q"),
        ("/courses?year=" + "1" * 5000, "year"),
        ("/materials?cursor=" + base64.urlsafe_b64encode(b"[" * 5000).decode(), "cursor"),
        ("/materials?cursor=" + "A" * 10_000, "cursor"),
    ],
)
def test_hostile_query_parameters_are_422_naming_them(
    path: str, field: str, apps: dict[str, Any], user_token: Callable[..., Any]
) -> None:
    _, headers = user_token()
    assert field in _error(apps["catalog"].get(path, headers=headers), 422)["fields"]


def test_a_nul_in_a_profile_url_is_422_and_the_row_is_unchanged(
    apps: dict[str, Any], user_token: Callable[..., Any]
) -> None:
    _, headers = user_token(bio="before")
    response = apps["profile"].patch(
        "/me", json={"avatar_url": "https://x.example/\x00.png", "bio": "after"}, headers=headers
    )
    assert "avatar_url" in _error(response, 422)["fields"]
    assert apps["profile"].get("/me", headers=headers).json["user"]["bio"] == "before"


def test_every_answer_carries_its_request_id_and_safe_headers(
    apps: dict[str, Any], user_token: Callable[..., Any]
) -> None:
    _, headers = user_token()
    mine = apps["profile"].get("/me", headers={**headers, "X-Request-Id": "trace-42"})
    assert mine.headers["X-Request-Id"] == "trace-42"
    hostile = apps["profile"].get("/me", headers={**headers, "X-Request-Id": "a\tb" + "x" * 300})
    assert hostile.headers["X-Request-Id"] != "a\tb" + "x" * 300
    anonymous = apps["profile"].get("/me")
    for response in (mine, hostile, anonymous):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Cache-Control"] == "no-store"
    assert _error(anonymous, 401)["code"] in {"missing_token", "unauthorized"}


@pytest.fixture(scope="module")
def server(function_client: Callable[[str], Any]) -> Iterator[int]:
    """The tasks function behind a real threaded HTTP server on loopback."""
    app = function_client("tasks").application
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_port
    httpd.shutdown()


def _chunked_post(
    port: int,
    headers: dict[str, str],
    chunks: Iterator[bytes],
    content_type: str = "application/json",
) -> tuple[int, Any]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.putrequest("POST", "/")
    for key, value in {**headers, "Content-Type": content_type}.items():
        connection.putheader(key, value)
    connection.putheader("Transfer-Encoding", "chunked")
    connection.endheaders()
    try:
        for chunk in chunks:
            connection.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        connection.send(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server may stop reading once it has refused the body
    response = connection.getresponse()
    body = json.loads(response.read())
    connection.close()
    return response.status, body


def test_a_chunked_body_over_the_cap_is_413_not_cut_and_processed(
    server: int, user_token: Callable[..., Any], sessions: sessionmaker[Session]
) -> None:
    user_id, headers = user_token()
    valid = json.dumps(VALID_TASK).encode()
    padding = (b" " * 65536 for _ in range(32))  # 2 MiB of spaces after a valid task
    status, body = _chunked_post(server, headers, iter([valid, *padding]))
    assert status == 413
    assert body["error"]["code"] == "payload_too_large"
    assert _tasks_of(sessions, user_id) == 0
    # A small chunked body is read whole and works.
    status, body = _chunked_post(server, headers, iter([valid[:10], valid[10:]]))
    assert status == 201
    assert _tasks_of(sessions, user_id) == 1


def test_a_session_on_a_file_unpublished_meanwhile_is_404_not_500(
    apps: dict[str, Any],
    user_token: Callable[..., Any],
    sessions: sessionmaker[Session],
    engine: Any,
) -> None:
    """The material is deleted while the request runs: its foreign-key check
    waits for the deleting transaction and then fails; that is a 404."""
    with sessions.begin() as session:
        material_id = make_material(session).id
    _, headers = user_token()
    answers: list[Any] = []
    with engine.connect() as connection:
        transaction = connection.begin()
        connection.execute(
            delete(FileViewingSession).where(FileViewingSession.file_id == material_id)
        )
        connection.execute(delete(Material).where(Material.id == material_id))
        opener = threading.Thread(
            target=lambda: answers.append(
                apps["heartbeat"].post(
                    "/sessions", json={"file_id": str(material_id)}, headers=headers
                )
            )
        )
        opener.start()
        time.sleep(0.5)  # the request has read the material and waits on its row lock
        transaction.commit()
        opener.join(30)
    assert _error(answers[0], 404)["code"] == "not_found"


@pytest.fixture(scope="module")
def upload_server(function_client: Callable[[str], Any]) -> Iterator[int]:
    """submit behind a real server, with a 1 MB upload cap."""
    import os

    os.environ["MAX_UPLOAD_MB"] = "1"
    app = function_client("submit").application
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_port
    httpd.shutdown()


def test_a_chunked_upload_over_the_cap_is_a_json_413(
    upload_server: int, user_token: Callable[..., Any]
) -> None:
    _, headers = user_token()
    boundary = b"lecternboundary"
    head = (
        b"--" + boundary + b'\r\nContent-Disposition: form-data; name="title"\r\n\r\nBig\r\n'
        b"--" + boundary + b'\r\nContent-Disposition: form-data; name="file"; filename="big.pdf"'
        b"\r\nContent-Type: application/pdf\r\n\r\n%PDF-1.4\n"
    )
    filler = (b"0" * 65536 for _ in range(40))  # 2.5 MiB, over 1 MB + 256 KiB
    status, body = _chunked_post(
        upload_server,
        headers,
        iter([head, *filler, b"\r\n--" + boundary + b"--\r\n"]),
        content_type="multipart/form-data; boundary=lecternboundary",
    )
    assert status == 413
    assert body["error"]["code"] == "payload_too_large"


def test_times_the_driver_cannot_convert_are_422_and_poison_no_connection(
    apps: dict[str, Any], function_client: Callable[[str], Any], user_token: Callable[..., Any]
) -> None:
    _, headers = user_token()
    _, admin = user_token(role="ADMIN")
    edge = base64.urlsafe_b64encode(
        json.dumps(["0001-01-01T00:00:00+14:00", str(uuid.uuid4())]).encode()
    ).decode()
    naive = base64.urlsafe_b64encode(
        json.dumps(["2026-01-01T00:00:00", str(uuid.uuid4())]).encode()
    ).decode()
    for cursor in (edge, naive):
        response = apps["catalog"].get(
            "/materials", query_string={"cursor": cursor}, headers=headers
        )
        assert "cursor" in _error(response, 422)["fields"]
    moderate = function_client("moderate")
    for before in ("0001-01-01T00:00:00+14:00", "2026-01-01T00:00:00"):
        response = moderate.get("/audit", query_string={"before": before}, headers=admin)
        assert "before" in _error(response, 422)["fields"]
    for path in ("/?from=9999-12-30", "/calendar.ics?from=0001-01-01&tz=Etc/GMT-14"):
        assert _error(apps["tasks"].get(path, headers=headers), 422)["fields"]
    # Every connection in the pool still answers correctly.
    for _ in range(6):
        assert apps["profile"].get("/me", headers=headers).status_code == 200


def test_an_anonymous_body_is_refused_unread_whatever_its_type(server: int) -> None:
    """No token: 401 at once, and the body (here 2.5 MiB of multipart) is never read."""
    filler = (b"0" * 65536 for _ in range(40))
    status, body = _chunked_post(
        server, {}, filler, content_type="multipart/form-data; boundary=lecternboundary"
    )
    assert status == 401
    assert body["error"]["code"] in {"missing_token", "unauthorized"}
