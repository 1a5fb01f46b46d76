"""Demo data for the local stack: the demo catalog and three published materials.

The catalog is ``catalog/demo.yaml``, loaded by the same code as ``lectern
catalog import`` (matched on natural keys, so loading twice changes nothing).
The demo materials find their course, type and lecturer by those same keys;
their request ids are derived from their titles (uuid5), so each is
published once however often the stack starts.
"""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared.db.models import Course, FileRequest, Lecturer, MaterialType, User

if TYPE_CHECKING:
    from shared.catalog_import import ImportReport
    from shared.config import Settings

__all__ = [
    "DEMO_CATALOG",
    "MATERIAL_TYPES",
    "demo_id",
    "ensure_user",
    "load_demo_data",
    "publish_demo_materials",
]

DEMO_CATALOG = Path(__file__).resolve().parents[2] / "catalog" / "demo.yaml"
# The seed's types: migration 0008 makes them on an empty database, the demo catalog lists them.
MATERIAL_TYPES = ("Slides", "Exam", "Lecture Notes", "Summary", "Homework")


def demo_id(kind: str, name: str) -> uuid.UUID:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"lectern:demo:{kind}:{name}")


def load_demo_data(session: Session) -> ImportReport:
    """Import ``catalog/demo.yaml`` in ``session``, as ``lectern catalog import`` would."""
    from shared.catalog_import import import_catalog, load_catalog

    return import_catalog(
        session, load_catalog(DEMO_CATALOG), actor_name="lectern dev (demo catalog)"
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
            course_id = session.scalar(select(Course.id).where(Course.code == code))
            type_id = session.scalar(
                select(MaterialType.id).where(MaterialType.display_name == type_name)
            )
            lecturer_id = session.scalar(
                select(Lecturer.id).where(func.lower(Lecturer.name) == func.lower(lecturer))
            )
            if course_id is None or type_id is None or lecturer_id is None:
                raise RuntimeError(f"demo material {title!r}: {DEMO_CATALOG.name} lacks its row")
            session.add(
                FileRequest(
                    id=request_id,
                    user_id=uploader_id,
                    course_id=course_id,
                    type_id=type_id,
                    lecturer_id=lecturer_id,
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
