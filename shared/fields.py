"""Reusable validated field types for request bodies, forms and queries."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, StringConstraints

__all__ = ["MultilineText", "SingleLineText"]

# Tab, line feed and carriage return (browsers send CRLF) are allowed in multiline text.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_LINE_BREAK = re.compile(r"[\r\n\t]")


def _no_control_characters(value: str) -> str:
    # Postgres text cannot hold NUL, and no legitimate title or note needs the others.
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters")
    return value


def _single_line(value: str) -> str:
    _no_control_characters(value)
    if _LINE_BREAK.search(value):
        raise ValueError("must be a single line")
    return value


SingleLineText = Annotated[
    str, StringConstraints(strip_whitespace=True), AfterValidator(_single_line)
]
MultilineText = Annotated[
    str, StringConstraints(strip_whitespace=True), AfterValidator(_no_control_characters)
]
