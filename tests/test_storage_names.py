"""Object names from users' filenames: safe, bounded and still readable."""

from __future__ import annotations

import json
import logging
import uuid

from hypothesis import given
from hypothesis import strategies as st

from shared.log import JsonFormatter
from shared.storage import (
    MAX_NAME_LENGTH,
    course_object,
    in_course_folder,
    numbered,
    pending_object,
    safe_filename,
)


@given(st.text())
def test_any_filename_becomes_one_safe_segment(filename: str) -> None:
    name = safe_filename(filename)
    assert name.endswith(".pdf")
    assert "/" not in name
    assert "\\" not in name
    assert not any(ord(char) < 32 or ord(char) == 127 for char in name)
    assert not name.startswith(".")
    assert len(name) <= MAX_NAME_LENGTH
    assert name[:-4].strip() == name[:-4]
    assert name[:-4] not in {"", ".", ".."}


def test_readable_names_survive() -> None:
    assert safe_filename("Week 3 - Parsing.pdf") == "Week 3 - Parsing.pdf"
    assert safe_filename("הרצאה 1.PDF") == "הרצאה 1.pdf"
    assert safe_filename("C:\\Users\\dana\\notes.pdf") == "notes.pdf"
    assert safe_filename("../../etc/passwd") == "passwd.pdf"
    assert safe_filename("..") == "file.pdf"
    assert safe_filename(None) == "file.pdf"
    assert numbered("exam.pdf", 1) == "exam.pdf"
    assert numbered("exam.pdf", 3) == "exam (3).pdf"


def test_folders_cannot_be_escaped_or_confused() -> None:
    request_id = uuid.uuid4()
    assert pending_object(request_id, "a.pdf") == f"pending/{request_id}/a.pdf"
    assert course_object("Data/Structures", "a.pdf") == "Data Structures/a.pdf"
    # A course named like a system folder cannot collide with it.
    assert course_object("pending", "a.pdf") == "pending course/a.pdf"
    assert course_object("withdrawn", "a.pdf") == "withdrawn course/a.pdf"
    assert not in_course_folder("withdrawn/x/a.pdf")
    assert in_course_folder("withdrawn course/a.pdf")


def test_logs_are_json_lines_with_severity() -> None:
    record = logging.LogRecord(
        "lectern.test", logging.WARNING, __file__, 1, "hello %s", ("you",), None
    )
    record.request_id = "r-1"
    entry = json.loads(JsonFormatter().format(record))
    assert entry["severity"] == "WARNING"
    assert entry["message"] == "hello you"
    assert entry["request_id"] == "r-1"
    assert entry["time"].endswith("Z")
