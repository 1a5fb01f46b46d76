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
from shared.responses import Course, Lecturer, Major, Material, MaterialDetail, MaterialType, Shape
from shared.storage import download_url

router = build_router(Needs.STORAGE)

# Only admins write; a student's write is 403 before its body is read.
ADMIN_WRITE = (403,)


class MajorList(Shape):
    majors: list[Major]


class MaterialTypeList(Shape):
    material_types: list[MaterialType]


class LecturerList(Shape):
    lecturers: list[Lecturer]


class CourseList(Shape):
    courses: list[Course]


class MaterialPage(Shape):
    materials: list[Material]
    next_cursor: str | None


class MaterialOne(Shape):
    material: MaterialDetail


class CourseDetail(Course):
    major: Major | None
    materials_count: int = Field(description="Published materials only.")


class CourseOne(Shape):
    course: CourseDetail


class CourseWritten(Shape):
    course: Course


class MajorWritten(Shape):
    major: Major


class MaterialTypeWritten(Shape):
    material_type: MaterialType


class LecturerWritten(Shape):
    lecturer: Lecturer


class Moved(Shape):
    requests: int
    materials: int


class LecturerMerged(Shape):
    lecturer: Lecturer
    moved: Moved


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


@router.get("/majors", response=MajorList)
def list_majors(call: Call) -> flask.Response:
    """Every major, by name."""
    with transaction(call.settings) as session:
        call.user(session)
        return json_response(MajorList.of({"majors": data.list_majors(session=session)}))


@router.get("/material-types", response=MaterialTypeList)
def list_material_types(call: Call) -> flask.Response:
    """Every material type, by name."""
    with transaction(call.settings) as session:
        call.user(session)
        types = data.list_material_types(session=session)
        return json_response(MaterialTypeList.of({"material_types": types}))


@router.get("/lecturers", query=LecturerQuery, response=LecturerList)
def list_lecturers(call: Call) -> flask.Response:
    """Lecturers by name; ``q`` matches anywhere in the name."""
    query = call.query(LecturerQuery)
    with transaction(call.settings) as session:
        call.user(session)
        lecturers = data.search_lecturers(session=session, query=query.q, limit=query.limit)
        return json_response(LecturerList.of({"lecturers": lecturers}))


@router.get("/courses", query=CourseQuery, response=CourseList)
def list_courses(call: Call) -> flask.Response:
    """Courses by year, semester and name, filtered by major, year and semester."""
    query = call.query(CourseQuery)
    with transaction(call.settings) as session:
        call.user(session)
        courses = data.list_courses(
            session=session, major_id=query.major_id, year=query.year, semester=query.semester
        )
        return json_response(CourseList.of({"courses": courses}))


@router.get("/materials", query=MaterialQuery, response=MaterialPage)
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
    return json_response(MaterialPage.of({"materials": materials, "next_cursor": next_cursor}))


@router.get("/materials/{material_id}", response=MaterialOne)
def get_material(call: Call) -> flask.Response:
    """One published material with a download URL good for at least its reading time.

    Reading it again gives a fresh URL (the way to refresh an expired one).
    """
    material_id = call.path_id("material_id")
    with transaction(call.settings) as session:
        call.user(session)
        material = data.get_material(session=session, material_id=material_id)
    if material is None:
        raise NotFound("no such material")
    url, expires_at = download_url(
        call.settings, material.pop("file_url"), page_count=material["page_count"]
    )
    material.update(download_url=url, download_url_expires_at=expires_at)
    return json_response(MaterialOne.of({"material": material}))


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


def _create(
    call: Call, kind: data.CatalogKind, model: type[_Body], answer: type[Shape], collection: str
) -> flask.Response:
    with transaction(call.settings) as session:
        # The role before the body: a student learns nothing about the fields.
        admin = call.admin(session)
        values = call.json(model).model_dump()
        row = data.create(session, kind, actor=admin, values=values)
    location = call.location(f"/{collection}/{row['id']}")
    return json_response(answer.of({kind.key: row}), 201, location=location)


def _update(
    call: Call, kind: data.CatalogKind, model: type[_Changes], name: str, answer: type[Shape]
) -> flask.Response:
    row_id = call.path_id(name)
    with transaction(call.settings) as session:
        admin = call.admin(session)
        changes = call.json(model).model_dump(exclude_unset=True)
        row = data.update(session, kind, actor=admin, row_id=row_id, changes=changes)
    return json_response(answer.of({kind.key: row}))


def _delete(call: Call, kind: data.CatalogKind, name: str) -> flask.Response:
    row_id = call.path_id(name)
    with transaction(call.settings) as session:
        admin = call.admin(session)
        data.delete(session, kind, actor=admin, row_id=row_id)
    return no_content()


@router.post("/majors", body=NewMajor, response=MajorWritten, status=201, errors=ADMIN_WRITE)
def create_major(call: Call) -> flask.Response:
    """Admin: add one (audited); 409 if its natural key is taken."""
    return _create(call, data.MAJOR, NewMajor, MajorWritten, "majors")


@router.patch(
    "/majors/{major_id}", body=MajorChanges, response=MajorWritten, errors=(*ADMIN_WRITE, 409)
)
def update_major(call: Call) -> flask.Response:
    """Admin: change any of its fields (audited)."""
    return _update(call, data.MAJOR, MajorChanges, "major_id", MajorWritten)


@router.delete("/majors/{major_id}", status=204, errors=(*ADMIN_WRITE, 409))
def delete_major(call: Call) -> flask.Response:
    """Admin: delete one no row refers to (409 in_use otherwise; audited)."""
    return _delete(call, data.MAJOR, "major_id")


@router.get("/courses/{course_id}", response=CourseOne)
def get_course(call: Call) -> flask.Response:
    """One course with its major and how many published materials it has."""
    course_id = call.path_id("course_id")
    with transaction(call.settings) as session:
        call.user(session)
        course = data.get_course(session=session, course_id=course_id)
    if course is None:
        raise NotFound("no such course")
    return json_response(CourseOne.of({"course": course}))


@router.post("/courses", body=NewCourse, response=CourseWritten, status=201, errors=ADMIN_WRITE)
def create_course(call: Call) -> flask.Response:
    """Admin: add one (audited); 409 if its natural key is taken."""
    return _create(call, data.COURSE, NewCourse, CourseWritten, "courses")


@router.patch(
    "/courses/{course_id}", body=CourseChanges, response=CourseWritten, errors=(*ADMIN_WRITE, 409)
)
def update_course(call: Call) -> flask.Response:
    """Admin: change any of its fields (audited)."""
    return _update(call, data.COURSE, CourseChanges, "course_id", CourseWritten)


@router.delete("/courses/{course_id}", status=204, errors=(*ADMIN_WRITE, 409))
def delete_course(call: Call) -> flask.Response:
    """Admin: delete one no row refers to (409 in_use otherwise; audited)."""
    return _delete(call, data.COURSE, "course_id")


@router.post(
    "/material-types",
    body=NewMaterialType,
    response=MaterialTypeWritten,
    status=201,
    errors=ADMIN_WRITE,
)
def create_material_type(call: Call) -> flask.Response:
    """Admin: add one (audited); 409 if its natural key is taken."""
    return _create(call, data.MATERIAL_TYPE, NewMaterialType, MaterialTypeWritten, "material-types")


@router.patch(
    "/material-types/{type_id}",
    body=MaterialTypeChanges,
    response=MaterialTypeWritten,
    errors=(*ADMIN_WRITE, 409),
)
def update_material_type(call: Call) -> flask.Response:
    """Admin: change any of its fields (audited)."""
    return _update(call, data.MATERIAL_TYPE, MaterialTypeChanges, "type_id", MaterialTypeWritten)


@router.delete("/material-types/{type_id}", status=204, errors=(*ADMIN_WRITE, 409))
def delete_material_type(call: Call) -> flask.Response:
    """Admin: delete one no row refers to (409 in_use otherwise; audited)."""
    return _delete(call, data.MATERIAL_TYPE, "type_id")


@router.post(
    "/lecturers", body=NewLecturer, response=LecturerWritten, status=201, errors=ADMIN_WRITE
)
def create_lecturer(call: Call) -> flask.Response:
    """Admin: add one (audited); 409 if its natural key is taken."""
    return _create(call, data.LECTURER, NewLecturer, LecturerWritten, "lecturers")


@router.patch(
    "/lecturers/{lecturer_id}",
    body=LecturerChanges,
    response=LecturerWritten,
    errors=(*ADMIN_WRITE, 409),
)
def update_lecturer(call: Call) -> flask.Response:
    """Admin: change any of its fields (audited)."""
    return _update(call, data.LECTURER, LecturerChanges, "lecturer_id", LecturerWritten)


@router.delete("/lecturers/{lecturer_id}", status=204, errors=(*ADMIN_WRITE, 409))
def delete_lecturer(call: Call) -> flask.Response:
    """Admin: delete one no row refers to (409 in_use otherwise; audited)."""
    return _delete(call, data.LECTURER, "lecturer_id")


@router.post(
    "/lecturers/{lecturer_id}/merge",
    body=MergeBody,
    response=LecturerMerged,
    errors=(*ADMIN_WRITE, 409),
)
def merge_lecturer(call: Call) -> flask.Response:
    """Admin: every material and request of this lecturer moves to ``into_id``; it is deleted."""
    lecturer_id = call.path_id("lecturer_id")
    with transaction(call.settings) as session:
        admin = call.admin(session)
        body = call.json(MergeBody)
        lecturer, moved = data.merge_lecturers(
            session, actor=admin, lecturer_id=lecturer_id, into_id=body.into_id
        )
    return json_response(LecturerMerged.of({"lecturer": lecturer, "moved": moved}))


@functions_framework.http
def catalog(request: flask.Request) -> flask.Response:
    return router(request)
