"""Demo data for the local stack: majors, courses, lecturers, material types.

Ids are derived from names (uuid5), so loading twice changes nothing and the
same course has the same id on every machine.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import TYPE_CHECKING, Any

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from shared.db.models import Course, FileRequest, Lecturer, Major, MaterialType, User

if TYPE_CHECKING:
    from shared.config import Settings

__all__ = [
    "MATERIAL_TYPES",
    "demo_id",
    "ensure_user",
    "load_demo_data",
    "publish_demo_materials",
]

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


# Published on first start so the catalog, reading and search have something
# to show: (course code, title, type, lecturer, pages of text).
DEMO_MATERIALS = [
    (
        "10013",
        "Week 3: CPU scheduling",
        "Lecture Notes",
        "Dr. Sarah Cohen",
        [
            "The short-term scheduler picks the next process from the ready queue. Round robin "
            "gives each process a fixed time quantum and preempts it when the quantum expires.",
            "Priority scheduling runs the most urgent process first; aging raises the priority "
            "of waiting processes so that none starves. Shortest job first minimises the "
            "average waiting time.",
        ],
    ),
    (
        "10005",
        "Binary search trees",
        "Slides",
        "Prof. Daniel Levi",
        [
            "A binary search tree keeps smaller keys in the left subtree and larger keys in the "
            "right subtree, so search, insertion and deletion follow one path from the root.",
            "An unbalanced tree degrades to a list. AVL and red-black trees rebalance with "
            "rotations and keep the height logarithmic in the number of keys.",
        ],
    ),
    (
        "10002",
        "Limits and continuity",
        "Summary",
        "Dr. Miriam Katz",
        [
            "The limit of f(x) as x approaches a is L when f(x) gets arbitrarily close to L for "
            "all x close enough to a. A function is continuous at a when its limit there equals "
            "its value.",
        ],
    ),
]


def demo_pdf(title: str, pages: list[str]) -> bytes:
    from fpdf import FPDF

    document = FPDF()
    document.set_title(title)
    document.set_font("helvetica", size=12)
    for text in pages:
        document.add_page()
        document.multi_cell(0, 7, text)
    return bytes(document.output())


def publish_demo_materials(settings: Settings, uploader_id: uuid.UUID) -> int:
    """Upload and approve the demo materials through the real moderation path,
    once: a material already there (by id) is left alone. Returns how many were new."""
    from shared.db.engine import transaction
    from shared.moderation import run_call
    from shared.storage import get_bucket, pending_object, request_metadata, safe_filename

    bucket = get_bucket(settings)
    published = 0
    for code, title, type_name, lecturer, pages in DEMO_MATERIALS:
        request_id = demo_id("material", title)
        with transaction(settings) as session:
            if session.get(FileRequest, request_id) is not None:
                continue
            data = demo_pdf(title, pages)
            sha256 = hashlib.sha256(data).hexdigest()
            filename = safe_filename(f"{title}.pdf")
            name = pending_object(request_id, filename)
            course_id = demo_id("course", code)
            session.add(
                FileRequest(
                    id=request_id,
                    user_id=uploader_id,
                    course_id=course_id,
                    type_id=demo_id("material_type", type_name),
                    lecturer_id=demo_id("lecturer", lecturer),
                    title=title,
                    academic_year=1,
                    material_year=2025,
                    file_url=name,
                    original_filename=filename,
                    sha256=sha256,
                    size_bytes=len(data),
                    page_count=len(pages),
                )
            )
            session.flush()
            bucket.upload(
                name,
                data,
                request_metadata(
                    request_id=request_id,
                    sha256=sha256,
                    uploader_id=uploader_id,
                    course_id=course_id,
                ),
            )
        (result,) = run_call(
            settings,
            actor=None,
            actor_name="lectern dev (demo data)",
            action="approve",
            request_ids=[request_id],
            reason=None,
        )
        if not result["ok"]:
            raise RuntimeError(f"demo material not approved: {result['error']}")
        published += 1
    return published
