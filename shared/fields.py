"""Reusable validated field types, and the one check every input value passes.

``checked_values`` runs on every body, form and query before its pydantic
model sees it (``shared.http.validate``), so no handler can forget it: a NUL
byte or a lone surrogate in any string, an integer outside what PostgreSQL's
``bigint`` and a browser's ``Number`` hold exactly, a non-finite number, or
nesting deeper than any request of this API needs is a 422 naming the field,
never a driver error (500) deeper down.
"""

from __future__ import annotations

import math
import re
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, StringConstraints

__all__ = [
    "MAX_DEPTH",
    "MAX_SAFE_INTEGER",
    "MultilineText",
    "SingleLineText",
    "TimeZone",
    "checked_values",
]

# Tab, line feed and carriage return (browsers send CRLF) are allowed in multiline text.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_LINE_BREAK = re.compile(r"[\r\n\t]")
# NUL: PostgreSQL text cannot hold it. Lone surrogates (which JSON's \ud800
# escapes can produce): not encodable as UTF-8, so no driver can send them.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")

# 2**53 - 1: the largest integer JSON clients (JavaScript) and float8 keep exactly.
MAX_SAFE_INTEGER = 2**53 - 1
# The deepest a request of this API nests is a list of objects in an object (3).
MAX_DEPTH = 8


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


def _problem(value: object, depth: int) -> str | None:
    """Why this value can never be stored or answered, or None."""
    if isinstance(value, str):
        if _UNSTORABLE.search(value):
            return "must not contain NUL bytes or unpaired surrogates"
        return None
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return None if abs(value) <= MAX_SAFE_INTEGER else "is out of range"
    if isinstance(value, float):
        return None if math.isfinite(value) else "must be a finite number"
    if depth >= MAX_DEPTH and isinstance(value, dict | list):
        return "is nested too deeply"
    return None


def checked_values(data: object) -> dict[str, str]:
    """Field errors for values no model may accept, keyed as pydantic names fields.

    Iterative, so a hostile nesting depth cannot exhaust Python's stack.
    """
    errors: dict[str, str] = {}
    pending: list[tuple[tuple[str, ...], object, int]] = [((), data, 0)]
    while pending:
        path, value, depth = pending.pop()
        problem = _problem(value, depth)
        if problem is not None:
            errors.setdefault(".".join(path) or "body", problem)
            continue
        if isinstance(value, dict):
            for key, item in value.items():
                key_text = str(key)
                if _UNSTORABLE.search(key_text):
                    errors.setdefault(".".join(path) or "body", "has an unusable key")
                    continue
                pending.append(((*path, key_text), item, depth + 1))
        elif isinstance(value, list):
            pending.extend(
                ((*path, str(index)), item, depth + 1) for index, item in enumerate(value)
            )
    return errors


def _time_zone(value: str) -> str:
    # IANA names only: letters, digits and _ + - /; zoneinfo refuses paths out of its tree.
    if not re.fullmatch(r"[A-Za-z0-9_+\-/]{1,64}", value):
        raise ValueError("must be an IANA time zone name such as Europe/Berlin")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError("unknown time zone") from None
    return value


# Kept as the name (a plain string in the API's schema); ZoneInfo caches the lookup.
TimeZone = Annotated[str, AfterValidator(_time_zone)]
