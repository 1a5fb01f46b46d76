"""SQLAlchemy 2.0 models of every Lectern table.

The seed system's data model, with its known gaps closed: quotes live in the
database, users carry their profile fields, materials their page count and
ingestion state, chunks their index and embedding model, and every enum-like
column has a CHECK constraint. The ledger and audit log are append-only in the
database itself (triggers created by the first migration).
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Any

from pgvector.sqlalchemy import HALFVEC
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Computed,
    Date,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, TSVECTOR, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "EMBEDDING_DIMENSIONS",
    "HNSW_PARAMETERS",
    "AuditLog",
    "Base",
    "Course",
    "DirectUpload",
    "FileRequest",
    "FileViewingSession",
    "Lecturer",
    "Major",
    "Material",
    "MaterialChunk",
    "MaterialType",
    "MotivationalQuote",
    "PointsTransaction",
    "RateLimitWindow",
    "ReadingProgress",
    "User",
    "UserCourseActivity",
    "UserNote",
    "UserRecentFile",
    "UserTask",
]

EMBEDDING_DIMENSIONS = 1536
# The chunks' HNSW graph (migration 0018): recall@10 1.000 at 100k chunks where
# m = 16, ef_construction = 64 gave 0.951 (docs/benchmarks.md).
HNSW_PARAMETERS = {"m": 32, "ef_construction": 128}

ROLES = ("STUDENT", "ADMIN")
REQUEST_STATUSES = ("pending", "approved", "rejected", "withdrawn")
INGEST_STATUSES = ("queued", "processing", "ready", "no_text", "failed")
LEDGER_ACTIONS = (
    "upload_approval",
    "upload_approval_revoked",
    "file_completed",
    "course_complete",
)
ACTIVITY_STATUSES = ("not_started", "exploring", "engaged", "completed")
PRIORITIES = ("normal", "high", "urgent")
# Audit actions are snake_case verbs (approve, bulk_approve, create_course,
# change_role ...): checked by shape, so a new admin action needs no migration.
AUDIT_ACTION_PATTERN = "^[a-z][a-z_]{0,63}$"

# Constraint names are fixed so migrations can refer to them.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def _in(column: str, values: tuple[str, ...]) -> str:
    quoted = ", ".join(f"'{value}'" for value in values)
    return f"{column} IN ({quoted})"


UUIDKey = Annotated[
    uuid.UUID, mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
]
Timestamp = Annotated[datetime, mapped_column(DateTime(timezone=True), server_default=func.now())]


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        uuid.UUID: UUID(as_uuid=True),
        datetime: DateTime(timezone=True),
        date: Date(),
        str: Text(),
        int: Integer(),
        float: Double(),
        bool: Boolean(),
        dict[str, Any]: JSONB(),
        list[Any]: JSONB(),
    }


def _fk(target: str, *, cascade: bool = False, nullable: bool = False) -> Any:
    return mapped_column(
        ForeignKey(target, ondelete="CASCADE" if cascade else None),
        nullable=nullable,
    )


class Major(Base):
    __tablename__ = "majors"

    id: Mapped[UUIDKey]
    name: Mapped[str] = mapped_column(unique=True)
    slug: Mapped[str] = mapped_column(unique=True)


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint(_in("role", ROLES), name="role"),
        CheckConstraint("email = lower(email)", name="email_lowercase"),
        # The leaderboard: points descending, earlier arrivals first in a tie.
        Index("ix_users_leaderboard", text("total_points DESC"), "points_reached_at", "id"),
        Index(
            "ix_users_major_leaderboard",
            "major_id",
            text("total_points DESC"),
            "points_reached_at",
            "id",
        ),
        # GET /moderate/users pages (newest first, optionally by role), the
        # users-by-role figure of /moderate/stats, and the last-admin lock.
        Index("ix_users_created_id", "created_at", "id"),
        Index("ix_users_role_created_id", "role", "created_at", "id"),
    )

    id: Mapped[UUIDKey]
    auth0_id: Mapped[str] = mapped_column(unique=True)
    email: Mapped[str] = mapped_column(unique=True)
    name: Mapped[str] = mapped_column(server_default="")
    role: Mapped[str] = mapped_column(server_default="STUDENT")
    major_id: Mapped[uuid.UUID | None] = _fk("majors.id", nullable=True)
    # Denormalised sum of the ledger, maintained by a database trigger on
    # points_transactions so it can never drift from the ledger.
    total_points: Mapped[int] = mapped_column(server_default="0")
    points_reached_at: Mapped[Timestamp]
    bio: Mapped[str | None]
    avatar_url: Mapped[str | None]
    university: Mapped[str | None]
    last_login_at: Mapped[datetime | None]
    created_at: Mapped[Timestamp]


class Course(Base):
    __tablename__ = "courses"
    __table_args__ = (
        CheckConstraint("year_id BETWEEN 1 AND 4", name="year_id"),
        CheckConstraint("semester IN (1, 2)", name="semester"),
        Index("ix_courses_major_year_semester", "major_id", "year_id", "semester"),
    )

    id: Mapped[UUIDKey]
    code: Mapped[str] = mapped_column(unique=True)
    name: Mapped[str]
    major_id: Mapped[uuid.UUID] = _fk("majors.id")
    year_id: Mapped[int]
    semester: Mapped[int]


class Lecturer(Base):
    __tablename__ = "lecturers"
    __table_args__ = (
        # Lecturers are looked up by name case-insensitively; the same name in
        # another case is the same person.
        Index("uq_lecturers_name_lower", func.lower(text("name")), unique=True),
    )

    id: Mapped[UUIDKey]
    name: Mapped[str] = mapped_column(unique=True)


class MaterialType(Base):
    __tablename__ = "material_types"

    id: Mapped[UUIDKey]
    display_name: Mapped[str] = mapped_column(unique=True)


class FileRequest(Base):
    __tablename__ = "file_requests"
    __table_args__ = (
        CheckConstraint(_in("status", REQUEST_STATUSES), name="status"),
        CheckConstraint("academic_year BETWEEN 1 AND 4", name="academic_year"),
        CheckConstraint("material_year BETWEEN 1900 AND 2200", name="material_year"),
        CheckConstraint("page_count > 0", name="page_count"),
        Index("ix_file_requests_user_created", "user_id", text("created_at DESC")),
        Index("ix_file_requests_status_created", "status", "created_at", "id"),
        # The same bytes may be live (pending or approved) once per course.
        Index(
            "uq_file_requests_live_course_sha256",
            "course_id",
            "sha256",
            unique=True,
            postgresql_where=text("status IN ('pending', 'approved')"),
        ),
    )

    id: Mapped[UUIDKey]
    user_id: Mapped[uuid.UUID] = _fk("users.id")
    course_id: Mapped[uuid.UUID] = _fk("courses.id")
    type_id: Mapped[uuid.UUID] = _fk("material_types.id")
    lecturer_id: Mapped[uuid.UUID] = _fk("lecturers.id")
    title: Mapped[str]
    academic_year: Mapped[int]
    material_year: Mapped[int]
    file_url: Mapped[str]
    original_filename: Mapped[str]
    sha256: Mapped[str]
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    page_count: Mapped[int]
    status: Mapped[str] = mapped_column(server_default="pending")
    notes: Mapped[str | None]
    admin_note: Mapped[str | None]
    # Incremented by every approval: names the ledger rows of that approval
    # (see migration 0002), so approve -> undo -> approve awards again.
    approval_episode: Mapped[int] = mapped_column(server_default="0")
    created_at: Mapped[Timestamp]
    updated_at: Mapped[Timestamp]


class Material(Base):
    """An approved, published file; shares its id with its file request."""

    __tablename__ = "materials"
    __table_args__ = (
        CheckConstraint("academic_year BETWEEN 1 AND 4", name="academic_year"),
        CheckConstraint("material_year BETWEEN 1900 AND 2200", name="material_year"),
        CheckConstraint("page_count > 0", name="page_count"),
        CheckConstraint(_in("ingest_status", INGEST_STATUSES), name="ingest_status"),
        CheckConstraint("chunk_count >= 0", name="chunk_count"),
        # The codes of shared.pipeline.ERROR_MESSAGES (a test keeps them equal).
        CheckConstraint(
            _in(
                "ingest_error_code",
                (
                    "pdf_encrypted",
                    "pdf_damaged",
                    "no_text",
                    "object_missing",
                    "embedding_unavailable",
                    "storage_unavailable",
                    "database_unavailable",
                    "interrupted",
                    "internal",
                ),
            ),
            name="ingest_error_code",
        ),
        # What the ingestion sweep scans: the few materials not yet ingested.
        Index(
            "ix_materials_ingest_pending",
            "created_at",
            postgresql_where=text("ingest_status IN ('queued', 'processing')"),
        ),
        Index("ix_materials_course_created", "course_id", text("created_at DESC"), "id"),
        Index("ix_materials_created", text("created_at DESC"), "id"),
        Index("ix_materials_type_id", "type_id"),
        Index("ix_materials_lecturer_id", "lecturer_id"),
        # The materials-by-ingest_status figure of GET /moderate/stats.
        Index("ix_materials_ingest_status", "ingest_status"),
    )

    id: Mapped[uuid.UUID] = mapped_column(ForeignKey("file_requests.id"), primary_key=True)
    title: Mapped[str]
    academic_year: Mapped[int]
    material_year: Mapped[int]
    course_id: Mapped[uuid.UUID] = _fk("courses.id")
    lecturer_id: Mapped[uuid.UUID] = _fk("lecturers.id")
    type_id: Mapped[uuid.UUID] = _fk("material_types.id")
    uploader_id: Mapped[uuid.UUID] = _fk("users.id")
    notes: Mapped[str | None]
    file_url: Mapped[str] = mapped_column(unique=True)
    page_count: Mapped[int]
    sha256: Mapped[str]
    # False while its request is not approved (undone or taken down): hidden
    # from students, but notes, progress, recent files and chunks are kept.
    is_published: Mapped[bool] = mapped_column(server_default=text("true"))
    unpublished_at: Mapped[datetime | None]
    ingest_status: Mapped[str] = mapped_column(server_default="queued")
    chunk_count: Mapped[int] = mapped_column(server_default="0")
    # A fixed sentence for ingest_error_code (never exception text, which goes to the log).
    ingest_error: Mapped[str | None]
    ingest_error_code: Mapped[str | None]
    ingest_generation: Mapped[int | None] = mapped_column(BigInteger)
    # Failed attempts of ingest_generation (not deliveries; see shared.pipeline).
    ingest_attempts: Mapped[int] = mapped_column(server_default="0")
    ingest_started_at: Mapped[datetime | None]
    ingest_finished_at: Mapped[datetime | None]
    created_at: Mapped[Timestamp]


class PointsTransaction(Base):
    """The XP ledger: append-only, one row per award or compensation."""

    __tablename__ = "points_transactions"
    __table_args__ = (
        CheckConstraint(_in("action", LEDGER_ACTIONS), name="action"),
        CheckConstraint("amount <> 0", name="amount_nonzero"),
        Index("ix_points_transactions_user_created", "user_id", text("created_at DESC"), "id"),
    )

    id: Mapped[UUIDKey]
    user_id: Mapped[uuid.UUID] = _fk("users.id")
    amount: Mapped[int]
    action: Mapped[str]
    reason: Mapped[str]
    request_id: Mapped[uuid.UUID | None] = _fk("file_requests.id", nullable=True)
    # The idempotency key of the award: a retry with the same key writes nothing.
    source_id: Mapped[str] = mapped_column(unique=True)
    created_at: Mapped[Timestamp]


class FileViewingSession(Base):
    __tablename__ = "file_viewing_sessions"
    __table_args__ = (
        CheckConstraint("active_seconds >= 0", name="active_seconds"),
        CheckConstraint("required_active_seconds > 0", name="required_active_seconds"),
        CheckConstraint("completion_score BETWEEN 0 AND 1", name="completion_score"),
        Index("ix_file_viewing_sessions_user_file", "user_id", "file_id"),
        Index("ix_file_viewing_sessions_file_id", "file_id"),
    )

    id: Mapped[UUIDKey]
    user_id: Mapped[uuid.UUID] = _fk("users.id")
    file_id: Mapped[uuid.UUID] = _fk("materials.id", cascade=True)
    course_id: Mapped[uuid.UUID] = _fk("courses.id")
    started_at: Mapped[Timestamp]
    last_beat_at: Mapped[Timestamp]
    active_seconds: Mapped[int] = mapped_column(server_default="0")
    required_active_seconds: Mapped[int]
    completion_score: Mapped[float] = mapped_column(server_default="0")
    is_complete: Mapped[bool] = mapped_column(server_default="false")
    completed_at: Mapped[datetime | None]


class ReadingProgress(Base):
    """A user's reading of one file across all their sessions (migration 0015).

    A new session resumes from ``active_seconds``. ``credited_through`` is the
    wall-clock moment up to which reading time has been credited: parallel
    sessions of the same user and file draw on one clock, so together they
    never credit more seconds than have passed (see ``shared.reading``).
    """

    __tablename__ = "reading_progress"
    __table_args__ = (
        CheckConstraint("active_seconds >= 0", name="active_seconds"),
        Index("ix_reading_progress_file_id", "file_id"),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), primary_key=True)
    file_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("materials.id", ondelete="CASCADE"), primary_key=True
    )
    active_seconds: Mapped[int] = mapped_column(server_default="0")
    is_complete: Mapped[bool] = mapped_column(server_default="false")
    completed_at: Mapped[datetime | None]
    credited_through: Mapped[Timestamp]
    updated_at: Mapped[Timestamp]


class UserCourseActivity(Base):
    __tablename__ = "user_course_activities"
    __table_args__ = (
        CheckConstraint(_in("status", ACTIVITY_STATUSES), name="status"),
        CheckConstraint("files_completed >= 0 AND total_files >= 0", name="counts"),
        Index("ix_user_course_activities_course_id", "course_id"),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), primary_key=True)
    course_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("courses.id"), primary_key=True)
    status: Mapped[str] = mapped_column(server_default="not_started")
    files_completed: Mapped[int] = mapped_column(server_default="0")
    total_files: Mapped[int] = mapped_column(server_default="0")
    updated_at: Mapped[Timestamp]


class UserTask(Base):
    __tablename__ = "user_tasks"
    __table_args__ = (
        CheckConstraint(_in("priority", PRIORITIES), name="priority"),
        CheckConstraint(
            "start_hour >= 0 AND start_hour <= 23.5 AND start_hour * 2 = floor(start_hour * 2)",
            name="start_hour",
        ),
        CheckConstraint("duration > 0 AND start_hour + duration <= 24", name="duration"),
        CheckConstraint("char_length(title) BETWEEN 1 AND 200", name="title"),
        Index("ix_user_tasks_user_date", "user_id", "date"),
    )

    id: Mapped[UUIDKey]
    user_id: Mapped[uuid.UUID] = _fk("users.id")
    title: Mapped[str]
    # A calendar date with no time zone: the seed stored text for the same reason.
    date: Mapped[date]
    start_hour: Mapped[float]
    duration: Mapped[float]
    priority: Mapped[str] = mapped_column(server_default="normal")
    completed: Mapped[bool] = mapped_column(server_default="false")
    created_at: Mapped[Timestamp]
    updated_at: Mapped[Timestamp]
    # The file to open (study plans set it). SET NULL: a task outlives its file.
    file_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("materials.id", ondelete="SET NULL")
    )
    # Set only on tasks a study plan made: which plan, and for which course.
    # Re-planning a course replaces that course's plan tasks still ahead and
    # not completed; a task with no plan_id was made by hand and is never touched.
    plan_id: Mapped[uuid.UUID | None]
    course_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("courses.id", ondelete="SET NULL")
    )


class UserNote(Base):
    __tablename__ = "user_notes"

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), primary_key=True)
    file_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("materials.id", ondelete="CASCADE"), primary_key=True
    )
    content: Mapped[list[Any]] = mapped_column(server_default=text("'[]'::jsonb"))
    updated_at: Mapped[Timestamp]


class UserRecentFile(Base):
    __tablename__ = "user_recent_files"
    __table_args__ = (Index("ix_user_recent_files_user_viewed", "user_id", text("viewed_at DESC")),)

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), primary_key=True)
    file_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("materials.id", ondelete="CASCADE"), primary_key=True
    )
    viewed_at: Mapped[Timestamp]


class AuditLog(Base):
    """Append-only log of admin actions."""

    __tablename__ = "audit_logs"
    __table_args__ = (
        CheckConstraint(f"action ~ '{AUDIT_ACTION_PATTERN}'", name="action"),
        # Keyset pages, newest first, and the filters of GET /moderate/audit.
        Index("ix_audit_logs_timestamp_id", text("timestamp DESC"), text("id DESC")),
        Index("ix_audit_logs_actor_id_timestamp", "actor_id", text("timestamp DESC")),
        Index("ix_audit_logs_action_timestamp", "action", text("timestamp DESC")),
        Index("ix_audit_logs_target_ids", "target_ids", postgresql_using="gin"),
    )

    id: Mapped[UUIDKey]
    timestamp: Mapped[Timestamp]
    # Null for the CLI (lectern admin, lectern catalog import): actor_name says which.
    actor_id: Mapped[uuid.UUID | None] = _fk("users.id", nullable=True)
    actor_name: Mapped[str]
    action: Mapped[str]
    target_type: Mapped[str] = mapped_column(server_default="file_request")
    target_ids: Mapped[list[Any]]
    meta_data: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))


class MaterialChunk(Base):
    """One embedded text chunk of a material, for retrieval."""

    __tablename__ = "material_chunks"
    __table_args__ = (
        UniqueConstraint("material_id", "chunk_index"),
        CheckConstraint("page_number IS NULL OR page_number > 0", name="page_number"),
        Index(
            "ix_material_chunks_embedding_hnsw",
            "embedding",
            postgresql_using="hnsw",
            postgresql_with=HNSW_PARAMETERS,
            postgresql_ops={"embedding": "halfvec_cosine_ops"},
        ),
        Index("ix_material_chunks_search_vector", "search_vector", postgresql_using="gin"),
    )

    id: Mapped[UUIDKey]
    material_id: Mapped[uuid.UUID] = _fk("materials.id", cascade=True)
    chunk_index: Mapped[int]
    content: Mapped[str]
    # Half precision: half the heap and index of vector(1536) at the same recall
    # (docs/scaling.md; migration 0014).
    embedding: Mapped[Any] = mapped_column(HALFVEC(EMBEDDING_DIMENSIONS))
    embedding_model: Mapped[str]
    page_number: Mapped[int | None]
    created_at: Mapped[Timestamp]
    # Full-text side of hybrid search. The 'simple' configuration (lower-case
    # words, no stemming, no stop words) because materials come in several
    # languages (shared.search_terms reads the query per language). < and >
    # become spaces first: the parser would read "<...>" as a tag and drop
    # the words inside (migration 0017).
    search_vector: Mapped[Any] = mapped_column(
        TSVECTOR,
        Computed(
            "to_tsvector('simple'::regconfig, translate(content, '<>', '  '))", persisted=True
        ),
    )


class MotivationalQuote(Base):
    __tablename__ = "motivational_quotes"

    id: Mapped[UUIDKey]
    text: Mapped[str] = mapped_column(unique=True)
    author: Mapped[str]


class RateLimitWindow(Base):
    """Requests per user, action and fixed time window (see shared.ratelimit)."""

    __tablename__ = "rate_limit_windows"
    __table_args__ = (CheckConstraint("count > 0", name="count"),)

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), primary_key=True)
    action: Mapped[str] = mapped_column(primary_key=True)
    window_start: Mapped[datetime] = mapped_column(primary_key=True)
    count: Mapped[int]


class ObjectIntent(Base):
    """An object that may exist in the bucket while no committed row refers to it.

    Written (and committed) before every upload or copy and before an old
    object is left behind; removed once the row that refers to the object is
    committed, or once the object is deleted. No transaction is open while the
    bucket is called, so a crash between the two steps leaves exactly this row,
    and ``shared.sweep`` deletes what it names unless a row refers to it.
    A name with an intent is taken: approvals never choose it.
    """

    __tablename__ = "object_intents"
    __table_args__ = (
        Index("ix_object_intents_name", "name"),
        Index("ix_object_intents_created_at", "created_at"),
    )

    id: Mapped[UUIDKey]
    name: Mapped[str]
    # The generation to delete, once known (None: whatever is there, if no row refers to it).
    generation: Mapped[int | None] = mapped_column(BigInteger)
    # No foreign key: the request of a failed upload is never committed.
    request_id: Mapped[uuid.UUID | None]
    created_at: Mapped[Timestamp]


class RoleGrant(Base):
    """A role promised to an email that has not signed in yet (``lectern admin grant``).

    Consumed on first sight: the new user is created with this role and the
    row is deleted in the same transaction (``shared.auth.get_or_create_user``),
    so from then on ``users.role`` alone says what the user may do.
    """

    __tablename__ = "role_grants"
    __table_args__ = (
        CheckConstraint(_in("role", ROLES), name="role"),
        # Compared with users.email, which is stored lower-cased.
        CheckConstraint("email = lower(email)", name="email_lowercase"),
    )

    email: Mapped[str] = mapped_column(primary_key=True)
    role: Mapped[str]
    granted_at: Mapped[Timestamp]
    # Who granted it: the command, as audit_logs.actor_name says.
    granted_by: Mapped[str]


UPLOAD_STATUSES = ("open", "completed", "failed")


class DirectUpload(Base):
    """A file a student sends straight to the bucket (``POST /submit/uploads``).

    ``open`` until its complete call ends it: ``completed`` names the request
    it became, ``failed`` keeps the error that call answered, so a repeated
    complete gets the same answer and an upload id is used once. The object
    (``object_name``, under ``uploads/``) is written by the browser, not by
    us: no intent covers it while open, the bucket's lifecycle rule deletes
    it if the upload is abandoned.
    """

    __tablename__ = "direct_uploads"
    __table_args__ = (
        CheckConstraint(_in("status", UPLOAD_STATUSES), name="status"),
        CheckConstraint("size_bytes > 0", name="size_bytes"),
        # A completed upload names its request; nothing else does.
        CheckConstraint(
            "(status = 'completed') = (request_id IS NOT NULL)", name="completed_request"
        ),
        Index("ix_direct_uploads_user_created", "user_id", "created_at"),
    )

    id: Mapped[UUIDKey]
    user_id: Mapped[uuid.UUID] = _fk("users.id")
    object_name: Mapped[str] = mapped_column(unique=True)
    # The safe name, as a multipart upload's original_filename.
    filename: Mapped[str]
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    content_type: Mapped[str]
    status: Mapped[str] = mapped_column(server_default="open")
    request_id: Mapped[uuid.UUID | None] = _fk("file_requests.id", nullable=True)
    # What the failing complete answered: {"status", "code", "message", "fields"?}.
    error: Mapped[dict[str, Any] | None]
    created_at: Mapped[Timestamp]
    expires_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
