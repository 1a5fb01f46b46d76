"""``lectern catalog import FILE``: majors, courses, lecturers and material types from a file.

The file (YAML or JSON) is the source of truth for what it lists and says
nothing about what it leaves out: rows are matched on their natural keys and
created or updated, never deleted.

- a major by ``name`` (its ``slug`` is made from the name when not given),
- a course by ``code``; without a code, by ``name`` within its ``major``
  (an existing course only: ``courses.code`` is required for a new one),
- a lecturer by ``name``, ignoring letter case (as the database does),
- a material type by ``name`` (``material_types.display_name``).

Everything happens in the caller's one transaction: a file with any problem
is refused as a whole, each problem as ``FILE:LINE: path: reason`` (YAML node
marks give the line; JSON is read by the same composer for them), and nothing
is written. Importing the same file again changes nothing.
"""

from __future__ import annotations

import json
import re
import unicodedata
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    StringConstraints,
    ValidationError,
)
from sqlalchemy import func, select

from shared import audit
from shared.db.models import Course, Lecturer, Major, MaterialType
from shared.fields import SingleLineText

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from shared.config import Settings

__all__ = [
    "CatalogFile",
    "CatalogRefused",
    "ImportReport",
    "LoadedCatalog",
    "import_catalog",
    "load_catalog",
    "parse_catalog",
    "run_import",
]

# At most this many problems are listed; the rest are counted.
MAX_PROBLEMS = 20
SLUG = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")


class CatalogRefused(Exception):
    """The file cannot be imported; ``problems`` are ``FILE:LINE: path: reason`` lines."""

    def __init__(self, problems: list[str]) -> None:
        shown = problems[:MAX_PROBLEMS]
        if len(problems) > MAX_PROBLEMS:
            shown.append(f"... and {len(problems) - MAX_PROBLEMS} more problems")
        super().__init__("\n".join(shown))
        self.problems = shown


# -- the file's shape ------------------------------------------------------------


def _between(low: int, high: int) -> Callable[[int], int]:
    def check(value: int) -> int:
        if not low <= value <= high:
            raise ValueError(f"must be {low}-{high}")
        return value

    return check


def _text_not_number(value: object) -> object:
    # YAML reads 10001 as a number and 010 as octal 8: a code must be quoted.
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise ValueError(f'must be text: write it in quotes ("{value}")')
    return value


def _slug(value: str) -> str:
    if not SLUG.fullmatch(value):
        raise ValueError("must be lower-case letters a-z, digits and single hyphens")
    return value


def _name_alone(value: object) -> object:
    # A lecturer or type may be written as just its name.
    return {"name": value} if isinstance(value, str) else value


Name = Annotated[SingleLineText, StringConstraints(min_length=1, max_length=200)]
Code = Annotated[
    SingleLineText,
    BeforeValidator(_text_not_number),
    StringConstraints(min_length=1, max_length=32),
]
Slug = Annotated[str, StringConstraints(max_length=100), AfterValidator(_slug)]


class _Entry(BaseModel):
    # strict: "1" is not a year and true is not a number.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class MajorEntry(_Entry):
    name: Name
    slug: Slug | None = None


class CourseEntry(_Entry):
    code: Code | None = None
    name: Name
    major: Name
    year: Annotated[int, AfterValidator(_between(1, 4))]
    semester: Annotated[int, AfterValidator(_between(1, 2))]


class NamedEntry(_Entry):
    name: Name


Named = Annotated[NamedEntry, BeforeValidator(_name_alone)]


class CatalogFile(_Entry):
    majors: list[MajorEntry] = []
    courses: list[CourseEntry] = []
    lecturers: list[Named] = []
    material_types: list[Named] = []


# -- reading the file, with lines --------------------------------------------------


Location = tuple[str | int, ...]


@dataclass(frozen=True)
class LoadedCatalog:
    """A validated file and where each of its parts is, for messages."""

    source: str
    catalog: CatalogFile
    lines: Callable[[Location], int | None]

    def problem(self, location: Location, reason: str) -> str:
        line = self.lines(location)
        where = f"{self.source}:{line}" if line is not None else self.source
        return f"{where}: {_path(location)}: {reason}"


def _path(location: Location) -> str:
    text = ""
    for part in location:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text or "(file)"


def _line_finder(node: yaml.Node | None) -> Callable[[Location], int | None]:
    def line(location: Location) -> int | None:
        if node is None:
            return None
        current = node
        for part in location:
            if isinstance(current, yaml.MappingNode):
                values = [v for k, v in current.value if getattr(k, "value", None) == part]
                if not values:
                    break
                current = values[0]
            elif isinstance(current, yaml.SequenceNode) and isinstance(part, int):
                if not 0 <= part < len(current.value):
                    break
                current = current.value[part]
            else:
                break
        return int(current.start_mark.line) + 1

    return line


def _duplicate_keys(node: yaml.Node, source: str) -> Iterator[str]:
    """YAML keeps the last of two equal keys without a word: refuse them instead."""
    pending = [node]
    while pending:
        current = pending.pop()
        if isinstance(current, yaml.MappingNode):
            seen: set[object] = set()
            for key, value in current.value:
                if isinstance(key, yaml.ScalarNode):
                    if key.value in seen:
                        line = key.start_mark.line + 1
                        yield f"{source}:{line}: the key {key.value!r} appears twice"
                    seen.add(key.value)
                pending.append(value)
        elif isinstance(current, yaml.SequenceNode):
            pending.extend(current.value)


def _compose_quietly(text: str) -> yaml.Node | None:
    """The YAML node tree of JSON text, for line numbers; None where YAML 1.1
    reads it differently (tabs as indentation, some escapes)."""
    loader = yaml.SafeLoader(text)
    try:
        return loader.get_single_node()
    except yaml.YAMLError:
        return None
    finally:
        loader.dispose()


def _read_json(text: str, source: str) -> tuple[Any, yaml.Node | None]:
    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [key for key, _ in pairs]
        for key in keys:
            if keys.count(key) > 1:
                raise ValueError(f"the key {key!r} appears twice")
        return dict(pairs)

    try:
        data = json.loads(text, object_pairs_hook=no_duplicates)
    except json.JSONDecodeError as error:
        raise CatalogRefused([f"{source}:{error.lineno}: not valid JSON: {error.msg}"]) from None
    except ValueError as error:
        duplicated = None
        if (node := _compose_quietly(text)) is not None:
            duplicated = list(_duplicate_keys(node, source))
        raise CatalogRefused(duplicated or [f"{source}: {error}"]) from None
    # JSON is (nearly) YAML: its nodes give the lines for the messages below.
    return data, _compose_quietly(text)


def _read_yaml(text: str, source: str) -> tuple[Any, yaml.Node | None]:
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is not None:
            duplicates = list(_duplicate_keys(node, source))
            if duplicates:
                raise CatalogRefused(duplicates)
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        reason = error.problem or error.context or "not valid YAML"
        raise CatalogRefused([f"{source}{line}: not valid YAML: {reason}"]) from None
    except yaml.YAMLError as error:
        raise CatalogRefused([f"{source}: not valid YAML: {error}"]) from None
    finally:
        loader.dispose()
    return data, node


def parse_catalog(
    text: str, *, source: str, format: Literal["yaml", "json"] | None = None
) -> LoadedCatalog:
    """Read and validate a catalog; ``CatalogRefused`` with every problem found.

    Without ``format`` the text decides: JSON when it starts with ``{``.
    """
    kind = format or ("json" if text.lstrip().startswith("{") else "yaml")
    data, node = _read_json(text, source) if kind == "json" else _read_yaml(text, source)
    if data is None:
        raise CatalogRefused([f"{source}: the file is empty"])
    if not isinstance(data, dict):
        raise CatalogRefused(
            [
                f"{source}:{_line_finder(node)(()) or 1}: the file must be a mapping of "
                "majors, courses, lecturers and material_types"
            ]
        )
    lines = _line_finder(node)
    try:
        catalog = CatalogFile.model_validate(data)
    except ValidationError as error:
        loaded = LoadedCatalog(source, CatalogFile(), lines)
        raise CatalogRefused(
            sorted(
                (
                    loaded.problem(tuple(issue["loc"]), _reason(issue))
                    for issue in error.errors(include_url=False)
                ),
                key=_line_order,
            )
        ) from None
    loaded = LoadedCatalog(source, catalog, lines)
    duplicates = list(_listed_twice(loaded))
    if duplicates:
        raise CatalogRefused(duplicates)
    return loaded


def load_catalog(path: Path) -> LoadedCatalog:
    """``parse_catalog`` of a file: JSON by a ``.json`` name, YAML by ``.yaml``/``.yml``."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise CatalogRefused([f"{path}: not UTF-8 text"]) from None
    except OSError as error:
        raise CatalogRefused([f"{path}: cannot be read: {error.strerror}"]) from None
    suffix = path.suffix.lower()
    kind: Literal["yaml", "json"] | None = (
        "json" if suffix == ".json" else "yaml" if suffix in (".yaml", ".yml") else None
    )
    return parse_catalog(text, source=str(path), format=kind)


def _reason(issue: Any) -> str:
    message = str(issue["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    if issue["type"] == "extra_forbidden":
        return "is not a field of this entry (misspelt?)"
    if issue["type"] == "missing":
        return "is required"
    return message


def _line_order(problem: str) -> tuple[int, str]:
    match = re.match(r"[^:]*:(\d+):", problem)
    return (int(match.group(1)) if match else 0, problem)


def _listed_twice(loaded: LoadedCatalog) -> Iterator[str]:
    """The same natural key twice in one file is a mistake, not an update."""
    catalog = loaded.catalog
    keyed: list[tuple[str, list[tuple[object, str | None]], str]] = [
        ("majors", [(m.name, "name") for m in catalog.majors], "major"),
        ("majors", [(m.slug, "slug") if m.slug else (None, None) for m in catalog.majors], "slug"),
        (
            "courses",
            [
                ((c.code,), "code") if c.code else ((c.major, c.name), "name")
                for c in catalog.courses
            ],
            "course",
        ),
        ("lecturers", [(n.name.lower(), "name") for n in catalog.lecturers], "lecturer"),
        ("material_types", [(n.name, "name") for n in catalog.material_types], "material type"),
    ]
    for kind, keys, noun in keyed:
        first: dict[object, int] = {}
        for index, (key, field_name) in enumerate(keys):
            if key is None or field_name is None:
                continue
            if key in first:
                line = loaded.lines((kind, first[key]))
                yield loaded.problem(
                    (kind, index, field_name),
                    f"the same {noun} as {kind}[{first[key]}] (line {line})",
                )
            else:
                first[key] = index


# -- writing ----------------------------------------------------------------------


@dataclass
class KindReport:
    created: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {
            "created": len(self.created),
            "changed": len(self.changed),
            "unchanged": len(self.unchanged),
        }


@dataclass
class ImportReport:
    source: str
    dry_run: bool = False
    kinds: dict[str, KindReport] = field(
        default_factory=lambda: {
            kind: KindReport() for kind in ("material_types", "majors", "lecturers", "courses")
        }
    )
    # Rows created or changed, for the audit row.
    touched: list[uuid.UUID] = field(default_factory=list)

    @property
    def changed_anything(self) -> bool:
        return any(report.created or report.changed for report in self.kinds.values())

    def counts(self) -> dict[str, dict[str, int]]:
        return {kind: report.counts() for kind, report in self.kinds.items()}

    def lines(self) -> list[str]:
        """What the command prints: a heading, then per kind its counts and names."""
        heading = f"{self.source}: " + (
            "dry run, nothing was written" if self.dry_run else "imported"
        )
        out = [heading]
        for kind, report in self.kinds.items():
            counts = report.counts()
            label = kind.replace("_", " ")
            out.append(
                f"  {label}: {counts['created']} created, {counts['changed']} changed, "
                f"{counts['unchanged']} unchanged"
            )
            if report.created:
                out.append(f"    created: {'; '.join(report.created)}")
            if report.changed:
                out.append(f"    changed: {'; '.join(report.changed)}")
        return out


def _changes(row: Any, wanted: dict[str, Any]) -> list[str]:
    """Set each attribute that differs; the names of those that did."""
    differing = [name for name, value in wanted.items() if getattr(row, name) != value]
    for name in differing:
        setattr(row, name, wanted[name])
    return differing


def _made_slug(name: str) -> str:
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")[:100].strip("-")


def import_catalog(session: Session, loaded: LoadedCatalog, *, actor_name: str) -> ImportReport:
    """Upsert the file's rows in ``session``; ``CatalogRefused`` (write nothing more
    and roll back) when a row conflicts with the database. Audited when it changed anything."""
    catalog = loaded.catalog
    report = ImportReport(source=loaded.source)
    problems: list[str] = []

    types = report.kinds["material_types"]
    for entry in catalog.material_types:
        existing_type = session.scalar(
            select(MaterialType).where(MaterialType.display_name == entry.name)
        )
        if existing_type is None:
            created_type = MaterialType(display_name=entry.name)
            session.add(created_type)
            session.flush()
            report.touched.append(created_type.id)
            types.created.append(entry.name)
        else:
            types.unchanged.append(entry.name)

    majors = report.kinds["majors"]
    for index, major_entry in enumerate(catalog.majors):
        major = session.scalar(select(Major).where(Major.name == major_entry.name))
        # Without a slug in the file an existing major keeps its own.
        slug = major_entry.slug or (
            major.slug if major is not None else _made_slug(major_entry.name)
        )
        if not slug:
            problems.append(
                loaded.problem(
                    ("majors", index, "name"),
                    "no slug can be made from this name: give one (slug: a-z, 0-9, hyphens)",
                )
            )
            continue
        holder = session.scalar(select(Major).where(Major.slug == slug))
        if holder is not None and holder is not major:
            problems.append(
                loaded.problem(
                    ("majors", index, "slug" if major_entry.slug else "name"),
                    f"the slug {slug!r} belongs to the major {holder.name!r}",
                )
            )
            continue
        if major is None:
            major = Major(name=major_entry.name, slug=slug)
            session.add(major)
            session.flush()
            report.touched.append(major.id)
            majors.created.append(major_entry.name)
        elif differing := _changes(major, {"slug": slug}):
            session.flush()
            report.touched.append(major.id)
            majors.changed.append(f"{major_entry.name} ({', '.join(differing)})")
        else:
            majors.unchanged.append(major_entry.name)

    lecturers = report.kinds["lecturers"]
    for lecturer_entry in catalog.lecturers:
        lecturer = session.scalar(
            select(Lecturer).where(func.lower(Lecturer.name) == func.lower(lecturer_entry.name))
        )
        if lecturer is None:
            lecturer = Lecturer(name=lecturer_entry.name)
            session.add(lecturer)
            session.flush()
            report.touched.append(lecturer.id)
            lecturers.created.append(lecturer_entry.name)
        elif _changes(lecturer, {"name": lecturer_entry.name}):
            # The same person (names match ignoring case); the file's spelling wins.
            session.flush()
            report.touched.append(lecturer.id)
            lecturers.changed.append(f"{lecturer_entry.name} (name)")
        else:
            lecturers.unchanged.append(lecturer_entry.name)

    courses = report.kinds["courses"]
    for index, course_entry in enumerate(catalog.courses):
        major_id = session.scalar(select(Major.id).where(Major.name == course_entry.major))
        if major_id is None:
            problems.append(
                loaded.problem(
                    ("courses", index, "major"),
                    f"no major named {course_entry.major!r} in the file or the database",
                )
            )
            continue
        label = " ".join(part for part in (course_entry.code, course_entry.name) if part)
        if course_entry.code:
            course = session.scalar(select(Course).where(Course.code == course_entry.code))
        else:
            matches = session.scalars(
                select(Course).where(Course.major_id == major_id, Course.name == course_entry.name)
            ).all()
            if len(matches) != 1:
                problems.append(
                    loaded.problem(
                        ("courses", index, "name"),
                        (
                            "a new course needs a code"
                            if not matches
                            else f"{len(matches)} courses of {course_entry.major!r} have this "
                            "name: give the code"
                        ),
                    )
                )
                continue
            (course,) = matches
        wanted = {
            "name": course_entry.name,
            "major_id": major_id,
            "year_id": course_entry.year,
            "semester": course_entry.semester,
        }
        if course is None:
            course = Course(code=course_entry.code, **wanted)
            session.add(course)
            session.flush()
            report.touched.append(course.id)
            courses.created.append(label)
        elif differing := _changes(course, wanted):
            session.flush()
            report.touched.append(course.id)
            names = ", ".join(name.removesuffix("_id") for name in differing)
            courses.changed.append(f"{course.code} {course_entry.name} ({names})")
        else:
            courses.unchanged.append(label)

    if problems:
        raise CatalogRefused(sorted(problems, key=_line_order))
    if report.changed_anything:
        audit.record(
            session,
            actor=None,
            actor_name=actor_name,
            action="import_catalog",
            target_type="catalog",
            target_ids=report.touched,
            meta={"file": Path(loaded.source).name, "counts": report.counts()},
        )
    return report


@contextmanager
def _savepoint(session: Session, *, keep: bool) -> Iterator[None]:
    nested = session.begin_nested()
    try:
        yield
    except BaseException:
        nested.rollback()
        raise
    if keep:
        nested.commit()
    else:
        nested.rollback()


def run_import(
    settings: Settings, loaded: LoadedCatalog, *, dry_run: bool, actor_name: str
) -> ImportReport:
    """The whole import in one transaction of the configured database; with
    ``dry_run`` it is rolled back, so the report says what would happen."""
    from shared.db.engine import transaction

    with transaction(settings) as session, _savepoint(session, keep=not dry_run):
        report = import_catalog(session, loaded, actor_name=actor_name)
    report.dry_run = dry_run
    return report
