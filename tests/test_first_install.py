"""A fresh production install, from an empty database to a search hit.

Only what an operator and the frontend have: the `lectern` command (run as a
real process) and the functions' HTTP APIs. The bucket's notification, which
the cloud delivers, is the one CloudEvent the test posts to ingest itself.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from shared.local.issuer import LocalIssuer
from tests.events import deliver, pubsub_event, resource_of
from tests.pdfs import make_pdf
from tests.test_bootstrap import lectern

CATALOG = """\
majors:
  - name: Marine Biology
lecturers:
  - Dr. Sylvia Earle
courses:
  - {code: "MB101", name: Ocean Ecosystems, major: Marine Biology, year: 1, semester: 1}
"""


@pytest.fixture(scope="module")
def database_url(new_database: Callable[..., str]) -> str:
    """An empty database, migrated by `lectern migrate`, for every fixture of this module."""
    url = new_database(empty=True)
    migrated = lectern(url, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    return url


def bearer(issuer: LocalIssuer, subject: str, email: str, name: str) -> dict[str, str]:
    token = issuer.token(subject=subject, email=email, name=name, email_verified=True)
    return {"Authorization": f"Bearer {token}"}


def test_an_empty_install_gets_an_admin_a_catalog_and_a_searchable_upload(
    database_url: str,
    function_client: Callable[[str], Any],
    issuer: LocalIssuer,
    bucket: Any,
    tmp_path: Path,
) -> None:
    apps = {
        name: function_client(name)
        for name in ("profile", "catalog", "submit", "moderate", "ingest", "search")
    }
    admin = bearer(issuer, "auth0|operator", "Operator@Uni.Example", "Operator")
    student = bearer(issuer, "auth0|student", "student@uni.example", "Student")

    # A student's first request: signed in as a STUDENT, and moderation is not theirs.
    assert apps["moderate"].get("/requests", headers=student).status_code == 403

    # The operator's first hour: an admin (not signed in yet) and the catalog.
    granted = lectern(database_url, "admin", "grant", "--email", "operator@uni.example")
    assert granted.returncode == 0, granted.stderr
    assert "has not signed in yet" in granted.stdout
    catalog_file = tmp_path / "catalog.yaml"
    catalog_file.write_text(CATALOG)
    imported = lectern(database_url, "catalog", "import", str(catalog_file))
    assert imported.returncode == 0, imported.stderr
    assert "  courses: 1 created, 0 changed, 0 unchanged" in imported.stdout

    # The student picks the course, a seeded type and the lecturer from the catalog.
    courses = apps["catalog"].get("/courses", headers=student).json["courses"]
    assert [(c["code"], c["name"]) for c in courses] == [("MB101", "Ocean Ecosystems")]
    types = apps["catalog"].get("/material-types", headers=student).json["material_types"]
    type_id = next(t["id"] for t in types if t["display_name"] == "Lecture Notes")
    lecturers = apps["catalog"].get("/lecturers", headers=student).json["lecturers"]
    assert [lecturer["name"] for lecturer in lecturers] == ["Dr. Sylvia Earle"]

    submitted = apps["submit"].post(
        "/",
        data={
            "course_id": courses[0]["id"],
            "type_id": type_id,
            "lecturer_id": lecturers[0]["id"],
            "title": "Kelp forests",
            "academic_year": "1",
            "material_year": "2025",
            "file": (
                io.BytesIO(
                    make_pdf(
                        [
                            "Kelp forests grow in cold coastal water and shelter sea otters.",
                            "Sea urchins graze kelp; otters eat urchins and keep the forest.",
                        ]
                    )
                ),
                "kelp.pdf",
                "application/pdf",
            ),
        },
        headers=student,
    )
    assert submitted.status_code == 201, submitted.json
    request_id = submitted.json["request"]["id"]

    # The operator signs in for the first time: an ADMIN, as granted.
    me = apps["profile"].get("/me", headers=admin).json["user"]
    assert (me["email"], me["role"]) == ("operator@uni.example", "ADMIN")
    pending = apps["moderate"].get("/requests?status=pending", headers=admin).json["requests"]
    assert [entry["id"] for entry in pending] == [request_id]
    approved = apps["moderate"].post(
        "/actions", json={"action": "approve", "request_ids": [request_id]}, headers=admin
    )
    assert approved.json["results"][0]["ok"] is True, approved.json

    # The bucket announces the published object (in its course's folder); ingest takes it.
    (published,) = [blob.name for blob in bucket.list_blobs(prefix="Ocean Ecosystems/")]
    assert deliver(apps, pubsub_event(resource_of(bucket, published))) == 200
    material = apps["catalog"].get(f"/materials/{request_id}", headers=student).json["material"]
    assert (material["ingest_status"], material["chunk_count"]) == ("ready", 2)

    found = apps["search"].post("/", json={"query": "sea otters eat urchins"}, headers=student)
    assert found.status_code == 200, found.json
    results = found.json["results"]
    assert results[0]["material_id"] == request_id
    assert results[0]["course_id"] == courses[0]["id"]

    # The operator's commands are in the admins' audit log.
    entries = apps["moderate"].get("/audit", headers=admin).json["entries"]
    actions = [(entry["action"], entry["actor_id"], entry["actor_name"]) for entry in entries]
    assert ("grant_admin", None, "cli: lectern admin grant") in actions
    assert ("import_catalog", None, "cli: lectern catalog import") in actions
