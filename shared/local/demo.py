"""Demo data for the local stack: majors, courses, lecturers, material types.

Ids are derived from names (uuid5), so loading twice changes nothing and the
same course has the same id on every machine.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from shared.db.models import Course, Lecturer, Major, MaterialType, User

__all__ = ["MATERIAL_TYPES", "demo_id", "ensure_user", "load_demo_data"]

MATERIAL_TYPES = ("Slides", "Exam", "Lecture Notes", "Summary", "Homework")

MAJORS = {
    "software-engineering": "Software Engineering",
    "computer-science": "Computer Science",
    "electrical-engineering": "Electrical Engineering",
    "industrial-engineering": "Industrial Engineering and Management",
}

# (code, name, major slug, program year, semester)
COURSES = [
    ("10001", "Introduction to Computer Science", "software-engineering", 1, 1),
    ("10002", "Calculus 1", "software-engineering", 1, 1),
    ("10003", "Discrete Mathematics", "software-engineering", 1, 1),
    ("10004", "Linear Algebra", "software-engineering", 1, 2),
    ("10005", "Data Structures", "software-engineering", 1, 2),
    ("10006", "Object-Oriented Programming", "software-engineering", 1, 2),
    ("10011", "Algorithms", "software-engineering", 2, 1),
    ("10012", "Probability and Statistics", "software-engineering", 2, 1),
    ("10013", "Operating Systems", "software-engineering", 2, 2),
    ("10014", "Databases", "software-engineering", 2, 2),
    ("10021", "Software Engineering Methods", "software-engineering", 3, 1),
    ("10022", "Computer Networks", "software-engineering", 3, 1),
    ("10023", "Distributed Systems", "software-engineering", 3, 2),
    ("10031", "Final Project", "software-engineering", 4, 1),
    ("10032", "Software Quality and Testing", "software-engineering", 4, 2),
    ("20001", "Logic and Set Theory", "computer-science", 1, 1),
    ("20011", "Automata and Formal Languages", "computer-science", 2, 1),
    ("20021", "Computability and Complexity", "computer-science", 3, 2),
    ("20031", "Machine Learning", "computer-science", 4, 1),
    ("30001", "Physics 1: Mechanics", "electrical-engineering", 1, 1),
    ("30011", "Signals and Systems", "electrical-engineering", 2, 2),
    ("30021", "Digital Signal Processing", "electrical-engineering", 3, 1),
    ("40001", "Introduction to Economics", "industrial-engineering", 1, 2),
    ("40011", "Operations Research", "industrial-engineering", 2, 1),
]

LECTURERS = (
    "Dr. Miriam Katz",
    "Prof. Daniel Levi",
    "Dr. Sarah Cohen",
    "Dr. Yosef Mizrahi",
    "Prof. Rachel Green",
    "Dr. Omar Haddad",
)


def demo_id(kind: str, name: str) -> uuid.UUID:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"lectern:demo:{kind}:{name}")


def _insert_missing(session: Session, model: Any, rows: list[dict[str, Any]]) -> None:
    session.execute(insert(model).values(rows).on_conflict_do_nothing())


def load_demo_data(session: Session) -> None:
    _insert_missing(
        session,
        Major,
        [
            {"id": demo_id("major", slug), "name": name, "slug": slug}
            for slug, name in MAJORS.items()
        ],
    )
    _insert_missing(
        session,
        Course,
        [
            {
                "id": demo_id("course", code),
                "code": code,
                "name": name,
                "major_id": demo_id("major", slug),
                "year_id": year,
                "semester": semester,
            }
            for code, name, slug, year, semester in COURSES
        ],
    )
    _insert_missing(
        session,
        Lecturer,
        [{"id": demo_id("lecturer", name), "name": name} for name in LECTURERS],
    )
    _insert_missing(
        session,
        MaterialType,
        [{"id": demo_id("material_type", name), "display_name": name} for name in MATERIAL_TYPES],
    )


def ensure_user(session: Session, *, subject: str, email: str, name: str, role: str) -> User:
    """The user with this subject, created if new, with ``role`` set."""
    from shared.auth import get_or_create_user

    user = get_or_create_user(session, auth0_id=subject, email=email, name=name)
    user.role = role
    if name:
        user.name = name
    session.flush()
    return user
