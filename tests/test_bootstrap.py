"""`lectern admin grant|revoke` and `lectern catalog import`, run as real processes,
and migration 0008 (the seeded material types, role_grants)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from shared.db.models import AuditLog, Course, Lecturer, Major, MaterialType, RoleGrant, User
from shared.local.demo import DEMO_CATALOG, MATERIAL_TYPES
from shared.local.issuer import LocalIssuer
from shared.migrate import downgrade, upgrade
from tests.factories import make_material, make_user

REPO = Path(__file__).resolve().parents[1]


def lectern(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The installed command's code in its own process, configured by DATABASE_URL alone."""
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("DB_", "CLOUD_SQL_", "DATABASE_"))
    }
    return subprocess.run(
        [sys.executable, "-m", "shared.cli", *args],
        cwd=REPO,
        env={**environment, "DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def snapshot(engine: Engine) -> dict[str, Any]:
    """Every row import and grants can touch, to prove a refusal changed nothing."""
    with engine.connect() as connection:
        return {
            table: connection.execute(text(f"SELECT * FROM {table} ORDER BY 1")).all()
            for table in (
                "majors",
                "courses",
                "lecturers",
                "material_types",
                "users",
                "role_grants",
                "audit_logs",
            )
        }


@dataclass
class Fresh:
    url: str
    engine: Engine
    sessions: sessionmaker[Session]


@pytest.fixture
def fresh(new_database: Callable[..., str]) -> Iterator[Fresh]:
    """A migrated database of this test alone (a clone of the migrated template)."""
    url = new_database()
    engine = create_engine(url)
    yield Fresh(url, engine, sessionmaker(engine, expire_on_commit=False))
    engine.dispose()


def audit_rows(sessions: sessionmaker[Session], action: str) -> list[AuditLog]:
    with sessions.begin() as session:
        return list(
            session.scalars(
                select(AuditLog).where(AuditLog.action == action).order_by(AuditLog.timestamp)
            )
        )


# -- migration 0008 ------------------------------------------------------------------


def test_migrate_seeds_the_material_types_on_an_empty_database_and_downgrade_keeps_used_ones(
    new_database: Callable[..., str],
) -> None:
    url = new_database(empty=True)
    migrated = lectern(url, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    engine = create_engine(url)
    sessions = sessionmaker(engine, expire_on_commit=False)
    try:
        with sessions.begin() as session:
            seeded = {t.display_name: t.id for t in session.scalars(select(MaterialType))}
            assert sorted(seeded) == sorted(MATERIAL_TYPES)
            # One file of type Exam: that row must survive the downgrade.
            make_material(session, material_type=session.get(MaterialType, seeded["Exam"]))
        with engine.begin() as connection:
            downgrade(connection, "0007")
        with sessions.begin() as session:
            left = [t.display_name for t in session.scalars(select(MaterialType))]
        assert left == ["Exam"]
        with engine.begin() as connection:
            upgrade(connection)
        with sessions.begin() as session:
            # Not empty any more: nothing is added to a table that has rows.
            assert [t.display_name for t in session.scalars(select(MaterialType))] == ["Exam"]
            assert session.scalars(select(RoleGrant)).all() == []
    finally:
        engine.dispose()


def test_a_database_with_its_own_types_is_not_given_the_seeded_ones(
    new_database: Callable[..., str],
) -> None:
    engine = create_engine(new_database(empty=True))
    try:
        with engine.begin() as connection:
            upgrade(connection, "0007")
            connection.execute(
                text("INSERT INTO material_types (id, display_name) VALUES (:id, 'Past papers')"),
                {"id": uuid.uuid4()},
            )
            upgrade(connection)
            names = connection.scalars(text("SELECT display_name FROM material_types")).all()
        assert names == ["Past papers"]
    finally:
        engine.dispose()


# -- lectern admin -------------------------------------------------------------------


def test_grant_makes_an_existing_user_admin_once_and_audits_it(
    fresh: Fresh,
) -> None:
    url, sessions = fresh.url, fresh.sessions
    with sessions.begin() as session:
        user_id = make_user(session, email="dana@uni.example").id
    granted = lectern(url, "admin", "grant", "--email", "  Dana@Uni.Example ")
    assert granted.returncode == 0, granted.stderr
    assert granted.stdout == "dana@uni.example is now an ADMIN (was STUDENT)\n"
    again = lectern(url, "admin", "grant", "--email", "dana@uni.example")
    assert (again.returncode, again.stdout) == (
        0,
        "dana@uni.example is already an ADMIN; nothing changed\n",
    )
    with sessions.begin() as session:
        user = session.get(User, user_id)
        assert user is not None
        assert user.role == "ADMIN"
    (row,) = audit_rows(sessions, "grant_admin")
    assert (row.actor_id, row.actor_name, row.target_type, row.target_ids) == (
        None,
        "cli: lectern admin grant",
        "user",
        [str(user_id)],
    )
    assert row.meta_data == {"email": "dana@uni.example", "previous_role": "STUDENT"}


def test_grant_to_an_unseen_email_applies_on_first_sight_through_profile(
    database_url: str,
    sessions: sessionmaker[Session],
    function_client: Callable[[str], Any],
    issuer: LocalIssuer,
) -> None:
    granted = lectern(database_url, "admin", "grant", "--email", "New.Admin@Uni.Example")
    assert granted.returncode == 0, granted.stderr
    assert granted.stdout == (
        "new.admin@uni.example has not signed in yet: "
        "they become an ADMIN when they first sign in\n"
    )
    repeated = lectern(database_url, "admin", "grant", "--email", "new.admin@uni.example")
    assert "already has a pending ADMIN grant" in repeated.stdout
    with sessions.begin() as session:
        assert [(g.email, g.role) for g in session.scalars(select(RoleGrant))] == [
            ("new.admin@uni.example", "ADMIN")
        ]
    (row,) = audit_rows(sessions, "grant_admin")
    assert (row.target_ids, row.meta_data) == (
        [],
        {"email": "new.admin@uni.example", "pending": True},
    )

    # The profile function (on the module's database) sees them for the first time.
    profile = function_client("profile")
    token = issuer.token(
        subject="auth0|new-admin",
        email="NEW.ADMIN@uni.example",
        name="New Admin",
        email_verified=True,
    )
    me = profile.get("/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200, me.json
    assert (me.json["user"]["role"], me.json["user"]["email"]) == (
        "ADMIN",
        "new.admin@uni.example",
    )
    someone = issuer.token(
        subject="auth0|someone", email="someone@uni.example", name="S", email_verified=True
    )
    other = profile.get("/me", headers={"Authorization": f"Bearer {someone}"})
    assert other.json["user"]["role"] == "STUDENT"
    with sessions.begin() as session:
        # The grant is used up: users.role alone decides from now on.
        assert session.scalars(select(RoleGrant)).all() == []


def test_revoke_demotes_removes_pending_grants_and_never_the_last_admin(
    fresh: Fresh,
) -> None:
    url, sessions = fresh.url, fresh.sessions
    with sessions.begin() as session:
        first = make_user(session, email="first@uni.example", role="ADMIN").id
        second = make_user(session, email="second@uni.example", role="ADMIN").id
    assert lectern(url, "admin", "grant", "--email", "later@uni.example").returncode == 0

    pending = lectern(url, "admin", "revoke", "--email", "later@uni.example")
    assert (pending.returncode, pending.stdout) == (
        0,
        "removed the pending ADMIN grant of later@uni.example\n",
    )
    demoted = lectern(url, "admin", "revoke", "--email", "second@uni.example")
    assert (demoted.returncode, demoted.stdout) == (
        0,
        "second@uni.example is now a STUDENT (was ADMIN)\n",
    )
    before = snapshot(fresh.engine)
    last = lectern(url, "admin", "revoke", "--email", "first@uni.example")
    assert last.returncode == 1
    assert last.stdout == ""
    assert last.stderr == (
        "lectern admin revoke: first@uni.example is the last admin; "
        "make another user an admin first (nothing changed)\n"
    )
    assert snapshot(fresh.engine) == before
    student = lectern(url, "admin", "revoke", "--email", "second@uni.example")
    assert student.stdout == "second@uni.example is not an admin (STUDENT); nothing changed\n"
    unknown = lectern(url, "admin", "revoke", "--email", "nobody@uni.example")
    assert (
        unknown.stdout == "no user and no pending grant for nobody@uni.example; nothing changed\n"
    )

    with sessions.begin() as session:
        roles = {u.id: u.role for u in session.scalars(select(User))}
        assert session.scalars(select(RoleGrant)).all() == []
    assert (roles[first], roles[second]) == ("ADMIN", "STUDENT")
    revokes = audit_rows(sessions, "revoke_admin")
    assert [(r.target_ids, r.meta_data.get("pending")) for r in revokes] == [
        ([], True),
        ([str(second)], None),
    ]


def test_a_bad_email_or_no_database_is_one_line_and_changes_nothing(
    fresh: Fresh,
) -> None:
    url = fresh.url
    before = snapshot(fresh.engine)
    bad = lectern(url, "admin", "grant", "--email", "not-an-email")
    assert bad.returncode == 2
    assert bad.stderr == "lectern admin grant: --email: 'not-an-email' is not an email address\n"
    down = lectern(
        "postgresql+pg8000://nobody@127.0.0.1:1/none", "admin", "grant", "--email", "a@b.example"
    )
    assert down.returncode == 1
    assert down.stderr.startswith("lectern admin grant: database error: ")
    assert down.stderr.count("\n") == 1
    assert snapshot(fresh.engine) == before


# -- lectern catalog import ------------------------------------------------------------


CATALOG = """\
majors:
  - name: Biology
  - name: Chemistry
    slug: chem
lecturers:
  - Dr. Ada Lovelace
  - name: Prof. Alan Turing
material_types:
  - Slides
  - Lab report
courses:
  - {code: "B100", name: Cell Biology, major: Biology, year: 1, semester: 1}
  - {code: "C200", name: Organic Chemistry, major: Chemistry, year: 2, semester: 2}
"""


def write(directory: Path, name: str, content: str) -> Path:
    path = directory / name
    path.write_text(content, encoding="utf-8")
    return path


def catalog_rows(sessions: sessionmaker[Session]) -> dict[str, Any]:
    with sessions.begin() as session:
        return {
            "majors": {m.name: m.slug for m in session.scalars(select(Major))},
            "courses": {
                c.code: (c.name, c.year_id, c.semester) for c in session.scalars(select(Course))
            },
            "lecturers": sorted(lecturer.name for lecturer in session.scalars(select(Lecturer))),
            "types": sorted(t.display_name for t in session.scalars(select(MaterialType))),
        }


def test_import_creates_then_leaves_alone_then_changes(fresh: Fresh, tmp_path: Path) -> None:
    url, sessions = fresh.url, fresh.sessions
    path = write(tmp_path, "catalog.yaml", CATALOG)
    created = lectern(url, "catalog", "import", str(path))
    assert created.returncode == 0, created.stderr
    assert created.stdout.splitlines() == [
        f"{path}: imported",
        "  material types: 1 created, 0 changed, 1 unchanged",
        "    created: Lab report",
        "  majors: 2 created, 0 changed, 0 unchanged",
        "    created: Biology; Chemistry",
        "  lecturers: 2 created, 0 changed, 0 unchanged",
        "    created: Dr. Ada Lovelace; Prof. Alan Turing",
        "  courses: 2 created, 0 changed, 0 unchanged",
        "    created: B100 Cell Biology; C200 Organic Chemistry",
    ]
    rows = catalog_rows(sessions)
    assert rows["majors"] == {"Biology": "biology", "Chemistry": "chem"}
    assert rows["courses"] == {
        "B100": ("Cell Biology", 1, 1),
        "C200": ("Organic Chemistry", 2, 2),
    }
    assert rows["types"] == sorted([*MATERIAL_TYPES, "Lab report"])

    again = lectern(url, "catalog", "import", str(path))
    assert again.returncode == 0, again.stderr
    assert "0 created, 0 changed, 2 unchanged" in again.stdout
    assert " created: " not in again.stdout
    assert catalog_rows(sessions) == rows

    changed = CATALOG.replace("slug: chem", "slug: chemistry").replace(
        "Organic Chemistry, major: Chemistry, year: 2",
        "Organic Chemistry I, major: Chemistry, year: 3",
    )
    # A lecturer named again in another case is the same person, spelt as the file says.
    changed = changed.replace("Dr. Ada Lovelace", "DR. ADA LOVELACE")
    result = lectern(url, "catalog", "import", str(write(tmp_path, "catalog.yaml", changed)))
    assert result.returncode == 0, result.stderr
    assert "    changed: Chemistry (slug)" in result.stdout
    assert "    changed: C200 Organic Chemistry I (name, year)" in result.stdout
    assert "    changed: DR. ADA LOVELACE (name)" in result.stdout
    rows = catalog_rows(sessions)
    assert rows["majors"]["Chemistry"] == "chemistry"
    assert rows["courses"]["C200"] == ("Organic Chemistry I", 3, 2)
    assert rows["lecturers"] == ["DR. ADA LOVELACE", "Prof. Alan Turing"]

    imports = audit_rows(sessions, "import_catalog")
    # Two imports changed something; the one that changed nothing wrote no row.
    assert len(imports) == 2
    assert imports[0].actor_id is None
    assert imports[0].actor_name == "cli: lectern catalog import"
    assert imports[0].meta_data["counts"]["courses"] == {
        "created": 2,
        "changed": 0,
        "unchanged": 0,
    }
    assert imports[1].meta_data["counts"]["majors"] == {"created": 0, "changed": 1, "unchanged": 1}
    assert len(imports[0].target_ids) == 7  # 1 type + 2 majors + 2 lecturers + 2 courses


def test_a_dry_run_reports_and_writes_nothing(fresh: Fresh, tmp_path: Path) -> None:
    url = fresh.url
    before = snapshot(fresh.engine)
    dry = lectern(url, "catalog", "import", "--dry-run", str(write(tmp_path, "c.yml", CATALOG)))
    assert dry.returncode == 0, dry.stderr
    assert "dry run, nothing was written" in dry.stdout
    assert "  courses: 2 created, 0 changed, 0 unchanged" in dry.stdout
    assert snapshot(fresh.engine) == before


def test_json_works_the_same_way(fresh: Fresh, tmp_path: Path) -> None:
    url, sessions = fresh.url, fresh.sessions
    document = {
        "majors": [{"name": "Physics", "slug": "physics"}],
        "courses": [
            {"code": "P1", "name": "Mechanics", "major": "Physics", "year": 1, "semester": 1}
        ],
        "lecturers": ["Dr. Emmy Noether"],
    }
    # No extension: the content says JSON.
    path = write(tmp_path, "catalog.txt", json.dumps(document, indent=2))
    result = lectern(url, "catalog", "import", str(path))
    assert result.returncode == 0, result.stderr
    rows = catalog_rows(sessions)
    assert rows["courses"] == {"P1": ("Mechanics", 1, 1)}
    assert rows["lecturers"] == ["Dr. Emmy Noether"]


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        (
            "catalog.yaml",
            CATALOG.replace("year: 2, semester: 2", "year: 7, semester: 2"),
            ["catalog.yaml:13: courses[1].year: must be 1-4"],
        ),
        (
            "catalog.yaml",
            CATALOG.replace('code: "B100"', "code: 100").replace("slug: chem", "slug: Chem!"),
            [
                "catalog.yaml:4: majors[1].slug: must be lower-case letters a-z, digits and "
                "single hyphens",
                'catalog.yaml:12: courses[0].code: must be text: write it in quotes ("100")',
            ],
        ),
        (
            "catalog.yaml",
            CATALOG + "  - {name: Genetics, major: Biology, year: 1, semester: 1, room: 4}\n",
            ["catalog.yaml:14: courses[2].room: is not a field of this entry (misspelt?)"],
        ),
        (
            "catalog.yaml",
            CATALOG + "  - {code: B100, name: Again, major: Biology, year: 1, semester: 1}\n",
            ["catalog.yaml:14: courses[2].code: the same course as courses[0] (line 12)"],
        ),
        (
            "catalog.yaml",
            CATALOG + "  - {code: X1, name: Astro, major: Astronomy, year: 1, semester: 1}\n",
            [
                "catalog.yaml:14: courses[2].major: no major named 'Astronomy' in the file or the "
                "database"
            ],
        ),
        (
            "catalog.yaml",
            CATALOG + "  - {name: Genetics, major: Biology, year: 1, semester: 1}\n",
            ["catalog.yaml:14: courses[2].name: a new course needs a code"],
        ),
        (
            "catalog.yaml",
            CATALOG.replace("courses:\n", "courses:\n  - [unclosed\n"),
            ["catalog.yaml:13: not valid YAML: expected ',' or ']', but got '{'"],
        ),
        (
            "catalog.yaml",
            "majors:\n  - name: A\nmajors: []\n",
            ["catalog.yaml:3: the key 'majors' appears twice"],
        ),
        (
            "catalog.json",
            '{"majors": [{"name": "A"}],\n "courses": [}',
            ["catalog.json:2: not valid JSON: Expecting value"],
        ),
        (
            "catalog.json",
            '{\n  "majors": [\n    {"name": "A", "slug": 5}\n  ]\n}',
            ["catalog.json:3: majors[0].slug: Input should be a valid string"],
        ),
        (
            "catalog.json",
            '{"lecturers": ["A"],\n "lecturers": ["B"]}',
            ["catalog.json:2: the key 'lecturers' appears twice"],
        ),
        (
            "catalog.yaml",
            "- just\n- a list\n",
            [
                "catalog.yaml:1: the file must be a mapping of majors, courses, lecturers "
                "and material_types"
            ],
        ),
    ],
)
def test_a_bad_file_is_refused_with_its_line_and_reason_and_nothing_changes(
    fresh: Fresh,
    tmp_path: Path,
    name: str,
    content: str,
    expected: list[str],
) -> None:
    url = fresh.url
    before = snapshot(fresh.engine)
    path = write(tmp_path, name, content)
    result = lectern(url, "catalog", "import", str(path))
    assert result.returncode == 1
    assert result.stdout == ""
    heading, *problems = result.stderr.splitlines()
    assert heading == "lectern catalog import: refused, nothing changed:"
    problems = [problem.removeprefix(str(tmp_path) + "/") for problem in problems]
    assert problems == expected
    assert snapshot(fresh.engine) == before


def test_the_demo_catalog_is_a_valid_import_file(
    fresh: Fresh,
) -> None:
    url = fresh.url
    result = lectern(url, "catalog", "import", "--dry-run", str(DEMO_CATALOG))
    assert result.returncode == 0, result.stderr
    assert "  courses: 24 created, 0 changed, 0 unchanged" in result.stdout
    # The seeded types are the demo's: the migration already made them.
    assert "  material types: 0 created, 0 changed, 5 unchanged" in result.stdout
