"""catalog: majors, material types, lecturers, courses and published materials.

Reads are for any signed-in user; writes of the reference rows (majors,
courses, material types, lecturers) are for admins, each audited in its own
transaction.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from typing import Annotated, Any, Self

import flask
import functions_framework
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StringConstraints,
    model_validator,
)

from shared import catalog as data
from shared.config import Needs
from shared.db.engine import transaction
from shared.errors import NotFound
from shared.fields import SingleLineText
from shared.http import Call, build_router, json_response, no_content
from shared.storage import download_url

router = build_router(Needs.STORAGE)


class _Query(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LecturerQuery(_Query):
    q: str | None = Field(default=None, max_length=100)
    limit: int = Field(default=50, ge=1, le=200)


class CourseQuery(_Query):
    major_id: uuid.UUID | None = None
    year: int | None = Field(default=None, ge=1, le=4)
    semester: int | None = Field(default=None, ge=1, le=2)


class MaterialQuery(_Query):
    course_id: uuid.UUID | None = None
    type_id: uuid.UUID | None = None
    lecturer_id: uuid.UUID | None = None
    material_year: int | None = Field(default=None, ge=1900, le=2200)
    limit: int = Field(default=20, ge=1, le=100)
    cursor: str | None = None


@router.get("/majors")
def list_majors(call: Call) -> flask.Response:
    with transaction(call.settings) as session:
        call.user(session)
        return json_response({"majors": data.list_majors(session=session)})


@router.get("/material-types")
def list_material_types(call: Call) -> flask.Response:
    with transaction(call.settings) as session:
        call.user(session)
        return json_response({"material_types": data.list_material_types(session=session)})


@router.get("/lecturers")
def list_lecturers(call: Call) -> flask.Response:
    query = call.query(LecturerQuery)
    with transaction(call.settings) as session:
        call.user(session)
        lecturers = data.search_lecturers(session=session, query=query.q, limit=query.limit)
        return json_response({"lecturers": lecturers})


@router.get("/courses")
def list_courses(call: Call) -> flask.Response:
    query = call.query(CourseQuery)
    with transaction(call.settings) as session:
        call.user(session)
        courses = data.list_courses(
            session=session, major_id=query.major_id, year=query.year, semester=query.semester
        )
        return json_response({"courses": courses})


@router.get("/materials")
def list_materials(call: Call) -> flask.Response:
    query = call.query(MaterialQuery)
    filters = data.MaterialFilters(
        course_id=query.course_id,
        type_id=query.type_id,
        lecturer_id=query.lecturer_id,
        material_year=query.material_year,
    )
    with transaction(call.settings) as session:
        call.user(session)
        materials, next_cursor = data.list_materials(
            session=session, filters=filters, limit=query.limit, cursor=query.cursor
        )
    return json_response({"materials": materials, "next_cursor": next_cursor})


@router.get("/materials/{material_id}")
def get_material(call: Call) -> flask.Response:
    material_id = call.path_id("material_id")
    with transaction(call.settings) as session:
        call.user(session)
        material = data.get_material(session=session, material_id=material_id)
    if material is None:
        raise NotFound("no such material")
    material["download_url"] = download_url(call.settings, material.pop("file_url"))
    return json_response({"material": material})


# --- Admin writes -----------------------------------------------------------

Name = Annotated[SingleLineText, StringConstraints(min_length=1, max_length=200)]
CourseCode = Annotated[SingleLineText, StringConstraints(min_length=1, max_length=50)]
# Lower-case ASCII words joined by single hyphens: safe in a URL as it is.
SLUG_PATTERN = r"^[a-z0-9]+(-[a-z0-9]+)*$"
Slug = Annotated[str, StringConstraints(max_length=100, pattern=SLUG_PATTERN)]
# Strict: a JSON "2" or 2.5 is a mistake, not a year.
Year = Annotated[StrictInt, Field(ge=1, le=4)]
Semester = Annotated[StrictInt, Field(ge=1, le=2)]


def slug_of(name: str) -> str:
    """ "Computer Science & AI" -> "computer-science-ai"; empty if no ASCII letter survives."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")[:100].strip("-")


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Changes(_Body):
    """A PATCH body: any subset of the fields, none of them null."""

    @model_validator(mode="before")
    @classmethod
    def _no_nulls(cls, values: Any) -> Any:
        if isinstance(values, dict):
            for name, value in values.items():
                if value is None:
                    raise ValueError(f"{name}: cannot be null")
        return values


class NewMajor(_Body):
    name: Name
    slug: Slug | None = None

    @model_validator(mode="after")
    def _default_slug(self) -> Self:
        if self.slug is None:
            derived = slug_of(self.name)
            if not derived:
                raise ValueError("slug: cannot be made from this name; give one")
            self.slug = derived
        return self


class MajorChanges(_Changes):
    name: Name | None = None
    slug: Slug | None = None


class NewCourse(_Body):
    code: CourseCode
    name: Name
    major_id: uuid.UUID
    year: Year
    semester: Semester


class CourseChanges(_Changes):
    code: CourseCode | None = None
    name: Name | None = None
    major_id: uuid.UUID | None = None
    year: Year | None = None
    semester: Semester | None = None


class NewMaterialType(_Body):
    display_name: Name


class MaterialTypeChanges(_Changes):
    display_name: Name | None = None


class NewLecturer(_Body):
    name: Name


class LecturerChanges(_Changes):
    name: Name | None = None


class MergeBody(_Body):
    into_id: uuid.UUID


def _create(call: Call, kind: data.CatalogKind, model: type[_Body]) -> flask.Response:
    with transaction(call.settings) as session:
        # The role before the body: a student learns nothing about the fields.
        admin = call.admin(session)
        values = call.json(model).model_dump()
        row = data.create(session, kind, actor=admin, values=values)
    return json_response({kind.key: row}, 201)


def _update(call: Call, kind: data.CatalogKind, model: type[_Changes], name: str) -> flask.Response:
    row_id = call.path_id(name)
    with transaction(call.settings) as session:
        admin = call.admin(session)
        changes = call.json(model).model_dump(exclude_unset=True)
        row = data.update(session, kind, actor=admin, row_id=row_id, changes=changes)
    return json_response({kind.key: row})


def _delete(call: Call, kind: data.CatalogKind, name: str) -> flask.Response:
    row_id = call.path_id(name)
    with transaction(call.settings) as session:
        admin = call.admin(session)
        data.delete(session, kind, actor=admin, row_id=row_id)
    return no_content()


@router.post("/majors")
def create_major(call: Call) -> flask.Response:
    return _create(call, data.MAJOR, NewMajor)


@router.patch("/majors/{major_id}")
def update_major(call: Call) -> flask.Response:
    return _update(call, data.MAJOR, MajorChanges, "major_id")


@router.delete("/majors/{major_id}")
def delete_major(call: Call) -> flask.Response:
    return _delete(call, data.MAJOR, "major_id")


@router.get("/courses/{course_id}")
def get_course(call: Call) -> flask.Response:
    course_id = call.path_id("course_id")
    with transaction(call.settings) as session:
        call.user(session)
        course = data.get_course(session=session, course_id=course_id)
    if course is None:
        raise NotFound("no such course")
    return json_response({"course": course})


@router.post("/courses")
def create_course(call: Call) -> flask.Response:
    return _create(call, data.COURSE, NewCourse)


@router.patch("/courses/{course_id}")
def update_course(call: Call) -> flask.Response:
    return _update(call, data.COURSE, CourseChanges, "course_id")


@router.delete("/courses/{course_id}")
def delete_course(call: Call) -> flask.Response:
    return _delete(call, data.COURSE, "course_id")


@router.post("/material-types")
def create_material_type(call: Call) -> flask.Response:
    return _create(call, data.MATERIAL_TYPE, NewMaterialType)


@router.patch("/material-types/{type_id}")
def update_material_type(call: Call) -> flask.Response:
    return _update(call, data.MATERIAL_TYPE, MaterialTypeChanges, "type_id")


@router.delete("/material-types/{type_id}")
def delete_material_type(call: Call) -> flask.Response:
    return _delete(call, data.MATERIAL_TYPE, "type_id")


@router.post("/lecturers")
def create_lecturer(call: Call) -> flask.Response:
    return _create(call, data.LECTURER, NewLecturer)


@router.patch("/lecturers/{lecturer_id}")
def update_lecturer(call: Call) -> flask.Response:
    return _update(call, data.LECTURER, LecturerChanges, "lecturer_id")


@router.delete("/lecturers/{lecturer_id}")
def delete_lecturer(call: Call) -> flask.Response:
    return _delete(call, data.LECTURER, "lecturer_id")


@router.post("/lecturers/{lecturer_id}/merge")
def merge_lecturer(call: Call) -> flask.Response:
    lecturer_id = call.path_id("lecturer_id")
    with transaction(call.settings) as session:
        admin = call.admin(session)
        body = call.json(MergeBody)
        lecturer, moved = data.merge_lecturers(
            session, actor=admin, lecturer_id=lecturer_id, into_id=body.into_id
        )
    return json_response({"lecturer": lecturer, "moved": moved})


@functions_framework.http
def catalog(request: flask.Request) -> flask.Response:
    return router(request)
