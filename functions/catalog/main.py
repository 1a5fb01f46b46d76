"""catalog: majors, material types, lecturers, courses and published materials."""

from __future__ import annotations

import uuid

import flask
import functions_framework
from pydantic import BaseModel, ConfigDict, Field

from shared import catalog as data
from shared.config import Needs
from shared.db.engine import transaction
from shared.errors import NotFound
from shared.http import Call, build_router, json_response
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


@functions_framework.http
def catalog(request: flask.Request) -> flask.Response:
    return router(request)
