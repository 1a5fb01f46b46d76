"""Build one deployable source package per Cloud Function.

For every folder ``functions/<name>/`` holding a ``main.py`` this writes

    build/functions/<name>/          main.py (and any sibling modules), a copy of
                                     shared/ without the local stack and the CLI,
                                     and requirements.txt
    build/functions/<name>.zip       the same files, zipped reproducibly

``requirements.txt`` lists only the PyPI distributions the function really
imports, found by static analysis: starting from ``main.py`` the ``ast`` of
every module is read and every ``shared.*`` module it imports is followed.
Imports inside function bodies count (shared/ imports its heavy dependencies
lazily, but the function still needs them installed); imports under
``if TYPE_CHECKING:`` do not. Each distribution is pinned to the version
installed here, the one the tests ran against.

The zip is byte-for-byte reproducible: entries sorted, every timestamp
1980-01-01 00:00, permissions 0644, so an unchanged function uploads the same
object and Terraform redeploys nothing.

    python scripts/package_functions.py [--out build/functions] [name ...]
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import shutil
import sys
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

__all__ = [
    "EXCLUDED_SHARED",
    "IMPORT_TO_DISTRIBUTION",
    "Package",
    "build_all",
    "build_package",
    "discover_functions",
    "imported_modules",
    "requirements_for",
]

REPO = Path(__file__).resolve().parents[1]
FUNCTIONS_DIR = REPO / "functions"
SHARED_DIR = REPO / "shared"
DEFAULT_OUT = REPO / "build" / "functions"

# Development-only parts of shared/: the local stack, the CLI and Alembic glue.
EXCLUDED_SHARED = ("shared/local", "shared/cli.py", "shared/migrate.py")

# Import name (longest dotted prefix wins) -> the distribution that provides it,
# with the extras the code relies on.
IMPORT_TO_DISTRIBUTION = {
    "functions_framework": "functions-framework",
    "google.cloud.functions": "functions-framework",
    # Flask and Werkzeug are what functions-framework serves requests with.
    "flask": "functions-framework",
    "werkzeug": "functions-framework",
    "cloudevents": "cloudevents",
    "google.cloud.storage": "google-cloud-storage",
    "google.cloud.pubsub": "google-cloud-pubsub",
    "google.cloud.pubsub_v1": "google-cloud-pubsub",
    "google.genai": "google-genai",
    "google.auth": "google-auth",
    "google.api_core": "google-api-core",
    "google.cloud.sql.connector": "cloud-sql-python-connector[pg8000]",
    "sqlalchemy": "SQLAlchemy",
    "pg8000": "pg8000",
    "pgvector": "pgvector",
    "pypdf": "pypdf",
    "jwt": "PyJWT[crypto]",
    "pydantic": "pydantic",
    "pydantic_settings": "pydantic-settings",
}

# Namespace packages: importing one alone provides nothing.
NAMESPACES = {"google", "google.cloud"}

# A SQLAlchemy URL names its driver as a string, which no import statement shows.
DIALECT_DRIVERS = {"postgresql+pg8000": "pg8000"}

# Every entry of a zip gets this time and these permissions.
ZIP_TIMESTAMP = (1980, 1, 1, 0, 0, 0)
ZIP_FILE_MODE = 0o100644


class PackagingError(Exception):
    """A function cannot be packaged (an unknown import, a missing module...)."""


@dataclass(frozen=True)
class Package:
    name: str
    directory: Path
    zip_path: Path
    requirements: tuple[str, ...]
    sha256: str


def discover_functions(functions_dir: Path = FUNCTIONS_DIR) -> list[str]:
    """Every folder of functions/ with a main.py, sorted; each is one Cloud Function."""
    return sorted(
        entry.name
        for entry in functions_dir.iterdir()
        if entry.is_dir()
        and not entry.name.startswith((".", "_"))
        and (entry / "main.py").is_file()
    )


# -- static import analysis --------------------------------------------------


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


class _ImportCollector(ast.NodeVisitor):
    """Dotted names a module imports when it runs, at any depth, and driver strings."""

    def __init__(self, package: str) -> None:
        self.package = package  # the importing module's package, for relative imports
        self.names: set[str] = set()

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):
            # Only for the type checker; the `else` branch runs.
            for statement in node.orelse:
                self.visit(statement)
            return
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        self.names.update(alias.name for alias in node.names)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:
            parts = self.package.split(".") if self.package else []
            if node.level - 1 > len(parts):
                raise PackagingError(f"relative import beyond the top in {self.package}")
            parts = parts[: len(parts) - (node.level - 1)]
            base = ".".join([*parts, base] if base else parts)
        self.names.add(base)
        # `from google.cloud import storage` imports the module google.cloud.storage.
        self.names.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str):
            for prefix, module in DIALECT_DRIVERS.items():
                if node.value.startswith(prefix):
                    self.names.add(module)


class _Resolver:
    """Maps dotted names to files of the function folder or of shared/."""

    def __init__(self, function_dir: Path, shared_dir: Path) -> None:
        self.function_dir = function_dir
        self.shared_dir = shared_dir

    def path_of(self, module: str) -> Path | None:
        parts = module.split(".")
        if parts[0] == "shared":
            root = self.shared_dir.parent
        elif (self.function_dir / f"{parts[0]}.py").is_file() or (
            self.function_dir / parts[0] / "__init__.py"
        ).is_file():
            root = self.function_dir
        else:
            return None
        base = root.joinpath(*parts)
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return candidate
        return None

    def is_local(self, module: str) -> bool:
        top = module.split(".")[0]
        return top == "shared" or self.path_of(top) is not None


def _package_of(module: str, path: Path) -> str:
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


def imported_modules(
    name: str, functions_dir: Path = FUNCTIONS_DIR, shared_dir: Path = SHARED_DIR
) -> tuple[set[str], set[str]]:
    """(local modules the function runs, external dotted names they import).

    Local modules are ``main``, sibling modules of the function folder and
    ``shared.*``; importing ``shared.db.engine`` also runs ``shared`` and
    ``shared.db``, so those count too.
    """
    function_dir = functions_dir / name
    resolver = _Resolver(function_dir, shared_dir)
    local: set[str] = set()
    external: set[str] = set()
    pending = ["main"]
    while pending:
        module = pending.pop()
        if module in local:
            continue
        path = resolver.path_of(module) if module != "main" else function_dir / "main.py"
        if path is None:
            raise PackagingError(f"{name}: cannot find the module {module}")
        local.add(module)
        parts = module.split(".")
        # Importing a.b.c runs a and a.b first.
        pending.extend(".".join(parts[:i]) for i in range(1, len(parts)))
        collector = _ImportCollector(_package_of(module, path))
        collector.visit(ast.parse(path.read_bytes(), filename=str(path)))
        for imported in collector.names:
            if not imported:
                continue
            if resolver.is_local(imported):
                if resolver.path_of(imported) is not None:
                    pending.append(imported)
                # else: `from shared import x` where x is a name, not a module.
            else:
                external.add(imported)
    return local, external


def _distribution_for(module: str) -> str | None:
    """The distribution providing ``module``; None for the standard library."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        distribution = IMPORT_TO_DISTRIBUTION.get(".".join(parts[:end]))
        if distribution is not None:
            return distribution
    if parts[0] in sys.stdlib_module_names:
        return None
    raise PackagingError(
        f"no distribution known for the import {module!r}: "
        "add it to IMPORT_TO_DISTRIBUTION in scripts/package_functions.py"
    )


def _pinned(distribution: str) -> str:
    base = distribution.split("[")[0]
    try:
        version = metadata.version(base)
    except metadata.PackageNotFoundError:
        raise PackagingError(f"{base} is imported but not installed here") from None
    return f"{distribution}=={version}"


def requirements_for(
    name: str, functions_dir: Path = FUNCTIONS_DIR, shared_dir: Path = SHARED_DIR
) -> tuple[str, ...]:
    """The pinned requirement lines of one function, sorted by name."""
    local, external = imported_modules(name, functions_dir, shared_dir)
    excluded = sorted(module for module in local if _is_excluded(module))
    if excluded:
        raise PackagingError(f"{name} imports development-only modules: {', '.join(excluded)}")
    distributions: set[str] = set()
    for module in external:
        if module in NAMESPACES:
            # `from google import genai` also records `google`, which provides nothing.
            if not any(other.startswith(module + ".") for other in external):
                raise PackagingError(f"{name} imports the bare namespace {module!r}")
            continue
        distribution = _distribution_for(module)
        if distribution is not None:
            distributions.add(distribution)
    return tuple(_pinned(d) for d in sorted(distributions, key=_sort_key))


def _sort_key(distribution: str) -> str:
    return distribution.split("[")[0].lower()


def _is_excluded(module: str) -> bool:
    path = module.replace(".", "/")
    return any(
        candidate == prefix or candidate.startswith(prefix + "/")
        for prefix in EXCLUDED_SHARED
        for candidate in (path, f"{path}.py")
    )


# -- writing the package -----------------------------------------------------


def _function_files(function_dir: Path) -> list[tuple[str, Path]]:
    files = []
    for path in sorted(function_dir.rglob("*")):
        relative = path.relative_to(function_dir)
        if path.is_file() and not _is_cache(relative) and relative.name != "requirements.txt":
            files.append((relative.as_posix(), path))
    return files


def _shared_files(shared_dir: Path) -> list[tuple[str, Path]]:
    files = []
    root = shared_dir.parent
    for path in sorted(shared_dir.rglob("*")):
        relative = path.relative_to(root).as_posix()
        if not path.is_file() or _is_cache(path.relative_to(root)):
            continue
        if any(
            relative == prefix or relative.startswith(prefix + "/") for prefix in EXCLUDED_SHARED
        ):
            continue
        files.append((relative, path))
    return files


def _is_cache(relative: Path) -> bool:
    return "__pycache__" in relative.parts or relative.suffix in {".pyc", ".pyo"}


def _requirements_text(name: str, requirements: tuple[str, ...]) -> str:
    header = (
        f"# {name}: the distributions its code imports (through shared/), pinned to the\n"
        "# versions the tests ran with. Generated by scripts/package_functions.py.\n"
    )
    return header + "".join(f"{line}\n" for line in requirements)


def _write_zip(zip_path: Path, entries: dict[str, bytes]) -> None:
    with zipfile.ZipFile(zip_path, "w") as archive:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=ZIP_TIMESTAMP)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # Unix, so the permission bits below are read
            info.external_attr = ZIP_FILE_MODE << 16
            archive.writestr(info, entries[name], compresslevel=9)


def build_package(
    name: str,
    out_dir: Path = DEFAULT_OUT,
    functions_dir: Path = FUNCTIONS_DIR,
    shared_dir: Path = SHARED_DIR,
) -> Package:
    """Write build/functions/<name>/ and <name>.zip; returns what was written."""
    requirements = requirements_for(name, functions_dir, shared_dir)
    entries: dict[str, bytes] = {}
    for relative, path in [*_function_files(functions_dir / name), *_shared_files(shared_dir)]:
        entries[relative] = path.read_bytes()
    entries["requirements.txt"] = _requirements_text(name, requirements).encode()

    out_dir.mkdir(parents=True, exist_ok=True)
    directory = out_dir / name
    if directory.exists():
        shutil.rmtree(directory)
    for relative, data in entries.items():
        target = directory / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    zip_path = out_dir / f"{name}.zip"
    _write_zip(zip_path, entries)
    digest = hashlib.sha256(zip_path.read_bytes()).hexdigest()
    return Package(name, directory, zip_path, requirements, digest)


def build_all(
    out_dir: Path = DEFAULT_OUT,
    names: list[str] | None = None,
    functions_dir: Path = FUNCTIONS_DIR,
    shared_dir: Path = SHARED_DIR,
) -> list[Package]:
    available = discover_functions(functions_dir)
    unknown = sorted(set(names or []) - set(available))
    if unknown:
        raise PackagingError(f"no such function: {', '.join(unknown)}")
    return [
        build_package(name, out_dir, functions_dir, shared_dir) for name in (names or available)
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="functions to package (default: all)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    args = parser.parse_args(argv)
    try:
        packages = build_all(args.out.resolve(), args.names or None)
    except PackagingError as error:
        print(f"package_functions: {error}", file=sys.stderr)
        return 1
    for package in packages:
        print(f"{package.name:<10} {package.zip_path}  sha256:{package.sha256[:12]}")
        for requirement in package.requirements:
            print(f"           {requirement}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
