"""Response shapes shared by several functions.

Each model describes exactly what a handler sends (``json_response`` dumps it
with ``model_dump(mode="json")``), and the OpenAPI document is generated from
the same models, so the two cannot drift. Times are aware datetimes
(``UtcDatetime``) written in UTC with ``Z``, as the contract writes them.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
)

__all__ = ["Shape", "Uploader", "UtcDatetime"]


def _utc(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


# Aware (a naive time is a bug, refused when the model is built) and written in UTC.
UtcDatetime = Annotated[
    AwareDatetime,
    PlainSerializer(_utc, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]


class Shape(BaseModel):
    """A response object: every field always present (nullable ones as null).

    Keys a row's dict has beyond the model are dropped, so a field reaches a
    client only once the model (and with it the document) names it.
    """

    model_config = ConfigDict(extra="ignore", json_schema_serialization_defaults_required=True)

    @classmethod
    def of(cls, values: dict[str, Any]) -> Self:
        """The model of a row's JSON dict (the data layer's ``*_to_json``)."""
        return cls.model_validate(values)


class Uploader(Shape):
    id: uuid.UUID
    name: str
    email: str


# --- catalog ------------------------------------------------------------------


class Major(Shape):
    id: uuid.UUID
    name: str
    slug: str


class MaterialType(Shape):
    id: uuid.UUID
    display_name: str


class Lecturer(Shape):
    id: uuid.UUID
    name: str


class Course(Shape):
    id: uuid.UUID
    code: str
    name: str
    major_id: uuid.UUID
    year: int = Field(description="The year of study (1-4) the course is taught in.")
    semester: int


IngestStatus = Literal["queued", "processing", "ready", "no_text", "failed"]


class Material(Shape):
    """A published material as students see it."""

    id: uuid.UUID
    title: str
    course_id: uuid.UUID
    course_name: str
    type_id: uuid.UUID
    type_name: str
    lecturer_id: uuid.UUID
    lecturer_name: str
    academic_year: int
    material_year: int
    uploader_id: uuid.UUID
    notes: str | None
    page_count: int
    ingest_status: IngestStatus
    chunk_count: int
    ingest_error: str | None
    ingest_error_code: str | None
    ingest_started_at: UtcDatetime | None
    ingest_finished_at: UtcDatetime | None
    created_at: UtcDatetime


class Download(Shape):
    download_url: str = Field(
        description="Where the browser reads the PDF (a signed URL; HTTP Range works)."
    )
    download_url_expires_at: UtcDatetime = Field(
        description="Until when download_url works: at least twice the file's required "
        "reading time plus 30 minutes. Read the resource again for a fresh URL."
    )


class MaterialDetail(Material, Download):
    pass


# --- requests (submit, moderate) ---------------------------------------------

RequestStatus = Literal["pending", "approved", "rejected", "withdrawn"]


class FileRequest(Shape):
    """An uploaded file's request; the ingest_* fields only once it is approved."""

    id: uuid.UUID
    user_id: uuid.UUID
    course_id: uuid.UUID
    type_id: uuid.UUID
    lecturer_id: uuid.UUID
    title: str
    academic_year: int
    material_year: int
    status: RequestStatus
    notes: str | None
    admin_note: str | None
    page_count: int
    size_bytes: int
    original_filename: str
    created_at: UtcDatetime
    updated_at: UtcDatetime
    # Null until the request has a material (approved, or approved once).
    ingest_status: IngestStatus | None = None
    chunk_count: int | None = None
    ingest_error: str | None = None
    ingest_error_code: str | None = None
    ingest_started_at: UtcDatetime | None = None
    ingest_finished_at: UtcDatetime | None = None


# --- tasks ----------------------------------------------------------------------


class Task(Shape):
    id: uuid.UUID
    title: str
    date: dt.date
    start_hour: float
    duration: float
    priority: Literal["normal", "high", "urgent"]
    completed: bool
    file_id: uuid.UUID | None = Field(description="The file a planned reading is for.")
    plan_id: uuid.UUID | None = Field(description="The study plan that made it (POST /plan).")
    course_id: uuid.UUID | None
    created_at: UtcDatetime
    updated_at: UtcDatetime


# --- users ----------------------------------------------------------------------

Role = Literal["STUDENT", "ADMIN"]


class User(Shape):
    id: uuid.UUID
    email: str
    name: str
    role: Role
    total_points: int
    major_id: uuid.UUID | None
    bio: str | None
    avatar_url: str | None
    university: str | None
    created_at: UtcDatetime
