"""infra/ and cloudbuild.yaml, checked offline against the functions' code.

The Terraform is parsed with python-hcl2 (no terraform binary, no provider):
every function folder is deployed with its entry point, gets every setting
its code requires, holds only the IAM it needs, and the pipeline migrates the
database before it deploys new code.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hcl2
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from scripts.package_functions import discover_functions, imported_modules
from shared.config import Needs, Settings, load_settings
from shared.errors import ConfigurationError

REPO = Path(__file__).resolve().parents[1]
INFRA = REPO / "infra"
FUNCTIONS = REPO / "functions"
CLOUDBUILD = REPO / "cloudbuild.yaml"

CONCERN_FILES = {
    "versions.tf",
    "variables.tf",
    "database.tf",
    "functions.tf",
    "pubsub.tf",
    "storage.tf",
    "iam.tf",
    "secrets.tf",
    "outputs.tf",
    "services.tf",
    "loadbalancer.tf",
}

# The contract's settings of each shared.config.Needs group, as a deployed function gets them.
REQUIRED_SETTINGS = {
    "DATABASE": {"CLOUD_SQL_INSTANCE", "DB_USER", "DB_NAME", "DB_IAM_AUTH"},
    "AUTH": {"AUTH_ISSUER", "AUTH_AUDIENCE", "AUTH_JWKS_URL"},
    "STORAGE": {"GCS_BUCKET"},
    "EMBEDDINGS": {"EMBEDDINGS_PROVIDER"},
}

# A valid value for every setting Terraform may give a function.
SAMPLE_VALUES = {
    "INGEST_TOPIC": "projects/lectern-prod/topics/lectern-ingest",
    "DB_STATEMENT_TIMEOUT_MS": "120000",
    "GEMINI_TIMEOUT_S": "10",
    "GEMINI_RETRY_ATTEMPTS": "3",
    "CLOUD_SQL_INSTANCE": "lectern-prod:europe-west1:lectern-db",
    "DB_USER": "lectern-catalog@lectern-prod.iam",
    "DB_NAME": "lectern",
    "DB_IAM_AUTH": "true",
    "DB_POOL_SIZE": "4",
    "DB_MAX_OVERFLOW": "0",
    "AUTH_ISSUER": "https://lectern.eu.auth0.com/",
    "AUTH_AUDIENCE": "https://api.lectern.app",
    "AUTH_JWKS_URL": "https://lectern.eu.auth0.com/.well-known/jwks.json",
    "GCS_BUCKET": "lectern-prod-lectern-materials",
    "EMBEDDINGS_PROVIDER": "gemini",
    "GEMINI_API_KEY": "from-secret-manager",
    "GEMINI_EMBEDDING_MODEL": "gemini-embedding-001",
    "GEMINI_ANSWER_MODEL": "gemini-2.5-flash",
    "CORS_ORIGINS": "https://app.lectern.app",
    "LOG_LEVEL": "INFO",
    "MAX_UPLOAD_MB": "25",
    "INGEST_MAX_ATTEMPTS": "5",
}

# The IAM table of infra/README.md: each function's role on the materials bucket.
BUCKET_ROLES = {
    "catalog": "roles/storage.objectViewer",
    "submit": "roles/storage.objectAdmin",
    "moderate": "roles/storage.objectAdmin",
    "ingest": "roles/storage.objectViewer",
    "sweep": "roles/storage.objectAdmin",
}

ENUM_VARIABLES = {
    "database_version",
    "db_edition",
    "db_availability_type",
    "embeddings_provider",
    "log_level",
    "ingest_ingress_settings",
}


# -- parsing --------------------------------------------------------------------


def _unquote(value: str) -> str:
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value


def _clean(value: Any) -> Any:
    """python-hcl2 keeps string quotes and block markers; drop them."""
    if isinstance(value, dict):
        return {_unquote(k): _clean(v) for k, v in value.items() if not k.startswith("__")}
    if isinstance(value, list):
        return [_clean(item) for item in value]
    if isinstance(value, str):
        return _unquote(value)
    return value


@dataclass
class Terraform:
    texts: dict[str, str] = field(default_factory=dict)
    resources: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    data: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    variables: dict[str, dict[str, Any]] = field(default_factory=dict)
    locals: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)
    settings: list[dict[str, Any]] = field(default_factory=list)

    def resource(self, kind: str, name: str) -> dict[str, Any]:
        assert (kind, name) in self.resources, f"no resource {kind}.{name}"
        return self.resources[(kind, name)]

    def block(self, body: dict[str, Any], name: str) -> dict[str, Any]:
        blocks = body.get(name)
        assert isinstance(blocks, list), f"no {name} block"
        assert len(blocks) == 1, f"expected one {name} block"
        block: dict[str, Any] = blocks[0]
        return block

    def default(self, variable: str) -> Any:
        return self.variables[variable].get("default")


def parse_infra() -> Terraform:
    parsed = Terraform()
    for path in sorted(INFRA.glob("*.tf")):
        parsed.texts[path.name] = path.read_text()
        with path.open() as handle:
            document = _clean(hcl2.load(handle))
        for entry in document.get("resource", []):
            for kind, named in entry.items():
                for name, body in named.items():
                    assert (kind, name) not in parsed.resources, f"{kind}.{name} twice"
                    parsed.resources[(kind, name)] = body
        for entry in document.get("data", []):
            for kind, named in entry.items():
                for name, body in named.items():
                    parsed.data[(kind, name)] = body
        for entry in document.get("variable", []):
            parsed.variables.update(entry)
        for entry in document.get("locals", []):
            for name, value in entry.items():
                assert name not in parsed.locals, f"local.{name} twice"
                parsed.locals[name] = value
        for entry in document.get("output", []):
            parsed.outputs.update(entry)
        for entry in document.get("check", []):
            parsed.checks.update(entry)
        parsed.settings += document.get("terraform", [])
    return parsed


@pytest.fixture(scope="module")
def tf() -> Terraform:
    return parse_infra()


def expression(value: Any) -> str:
    """An attribute as Terraform source-ish text, for matching references."""
    return value if isinstance(value, str) else json.dumps(value)


# -- reading the functions' code ------------------------------------------------


def _needs_in(node: ast.expr) -> set[str]:
    return {
        sub.attr
        for sub in ast.walk(node)
        if isinstance(sub, ast.Attribute)
        and isinstance(sub.value, ast.Name)
        and sub.value.id == "Needs"
        and sub.attr != "NONE"
    }


def code_needs(name: str) -> set[str]:
    """The Needs groups functions/<name>/main.py requires, as the code states them."""
    tree = ast.parse((FUNCTIONS / name / "main.py").read_text())
    needs: set[str] = set()
    found = False
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        callee = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
        if callee not in {"build_router", "load_settings_or_exit", "load_settings"}:
            continue
        found = True
        for argument in [*node.args, *(k.value for k in node.keywords)]:
            needs |= _needs_in(argument)
        if callee == "build_router":
            # shared/http.py: every HTTP function needs the database and auth.
            needs |= {"DATABASE", "AUTH"}
    assert found, f"functions/{name}/main.py loads no settings: cannot tell what it needs"
    return needs


def entry_point_is_a_function(name: str) -> bool:
    tree = ast.parse((FUNCTIONS / name / "main.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            decorators = {ast.unparse(d) for d in node.decorator_list}
            return bool(
                decorators & {"functions_framework.http", "functions_framework.cloud_event"}
            )
    return False


def module_file(name: str, module: str) -> Path:
    """The file of a module ``imported_modules`` reports for function ``name``."""
    root = REPO if module.split(".")[0] == "shared" else FUNCTIONS / name
    base = root.joinpath(*module.split("."))
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def uses_name(name: str, identifier: str) -> bool:
    """Whether the function's code (main.py and the shared modules it runs) uses ``identifier``."""
    local, _ = imported_modules(name)
    for module in local:
        if module == "shared.storage":
            continue  # where download_url is defined
        for node in ast.walk(ast.parse(module_file(name, module).read_text())):
            # Read, not assigned: a response model's field of the same name is not a use.
            if (
                isinstance(node, ast.Name)
                and node.id == identifier
                and isinstance(node.ctx, ast.Load)
            ):
                return True
            if isinstance(node, ast.alias) and node.name == identifier:
                return True
    return False


# -- the Terraform, mirrored --------------------------------------------------------


def function_table(tf: Terraform) -> dict[str, dict[str, Any]]:
    functions: dict[str, dict[str, Any]] = tf.locals["functions"]
    return functions


def function_env_keys(tf: Terraform, name: str) -> tuple[set[str], set[str]]:
    """(plain, secret) environment variable names Terraform gives ``name``.

    Mirrors local.function_env / local.function_secret_env;
    test_function_environment_is_built_from_the_needs checks the mirror.
    """
    function = function_table(tf)[name]
    plain = {"LOG_LEVEL"}
    secret: set[str] = set()
    for need in function["needs"]:
        plain |= set(tf.locals["env_by_need"][need])
        secret |= set(tf.locals["secret_env_by_need"].get(need, {}))
    if "DATABASE" in function["needs"]:
        plain |= {"DB_USER", "DB_POOL_SIZE", "DB_MAX_OVERFLOW"}
    if function["frontend"]:
        plain.add("CORS_ORIGINS")
    plain |= set(tf.locals["extra_env"].get(name, {}))
    return plain, secret


# -- tests: files ------------------------------------------------------------------


def test_infra_is_one_file_per_concern(tf: Terraform) -> None:
    assert set(tf.texts) >= CONCERN_FILES
    assert (INFRA / "README.md").is_file()


def test_every_reference_resolves(tf: Terraform) -> None:
    # What `terraform validate` would catch first, without a binary: a typo in a name.
    code = "\n".join(
        line
        for text in tf.texts.values()
        for line in text.splitlines()
        if not line.lstrip().startswith("#")
    )
    # A moved block's `from` names an address that no longer exists, on purpose.
    code = re.sub(r"(?ms)^moved \{.*?^\}", "", code)
    for name in set(re.findall(r"\bvar\.(\w+)", code)):
        assert name in tf.variables, f"var.{name} is not declared"
    for name in set(re.findall(r"\blocal\.(\w+)", code)):
        assert name in tf.locals, f"local.{name} is not defined"
    for kind, name in set(re.findall(r"(?<![\w.])(google_\w+)\.(\w+)", code)):
        assert (kind, name) in tf.resources, f"{kind}.{name} is not a resource"
    for kind, name in set(re.findall(r"\bdata\.(google_\w+)\.(\w+)", code)):
        assert (kind, name) in tf.data, f"data.{kind}.{name} is not declared"


@pytest.mark.skipif(shutil.which("terraform") is None, reason="no terraform binary on PATH")
def test_terraform_fmt() -> None:
    result = subprocess.run(
        ["terraform", "fmt", "-check", "-recursive", "-diff", str(INFRA)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_providers_are_pinned(tf: Terraform) -> None:
    (settings,) = tf.settings
    providers = settings["required_providers"][0]
    assert set(providers) >= {"google", "google-beta"}
    for name in ("google", "google-beta"):
        assert providers[name]["source"] == f"hashicorp/{name}"
        assert providers[name]["version"].startswith("~>"), "pin the provider's major version"
    assert "required_version" in settings


# -- tests: functions ------------------------------------------------------------------


def test_every_function_folder_is_deployed_with_its_entry_point(tf: Terraform) -> None:
    folders = discover_functions()
    assert folders, "no functions found"
    assert set(folders) <= set(function_table(tf)), (
        "functions/ has folders infra/functions.tf does not deploy: "
        f"{sorted(set(folders) - set(function_table(tf)))}"
    )
    function = tf.resource("google_cloudfunctions2_function", "function")
    assert function["for_each"] == "${local.deployed}"
    # local.deployed keeps the configured functions whose folder exists.
    assert "fileset(" in tf.locals["function_folders"]
    assert "../functions" in tf.locals["function_folders"]
    assert "local.function_folders" in tf.locals["deployed"]
    build = tf.block(function, "build_config")
    assert build["entry_point"] == "${each.key}"
    assert build["runtime"] == "python312"
    source = tf.block(tf.block(build, "source"), "storage_source")
    assert source["object"] == "${google_storage_bucket_object.source[each.key].name}"
    for name in folders:
        assert entry_point_is_a_function(name), (
            f"functions/{name}/main.py has no decorated function named {name}"
        )
    # Every function is HTTP-triggered: ingest gets our push subscription, not an Eventarc trigger.
    assert "event_trigger" not in function
    # A folder with no entry fails the plan.
    preconditions = tf.block(function, "lifecycle")["precondition"]
    assert any("local.function_folders" in p["condition"] for p in preconditions)


def test_function_sources_are_the_packaged_zips(tf: Terraform) -> None:
    source = tf.resource("google_storage_bucket_object", "source")
    assert source["for_each"] == "${local.deployed}"
    assert "filesha256(" in source["name"]
    assert "var.package_dir" in tf.locals["package_zips"]
    assert tf.default("package_dir") == "../build/functions"


def test_function_environment_is_built_from_the_needs(tf: Terraform) -> None:
    built = tf.locals["function_env"]
    for piece in (
        "local.env_by_need[need]",
        "DB_USER = local.db_users[name]",
        "DB_POOL_SIZE = tostring(local.sizing[name].concurrency)",
        'DB_MAX_OVERFLOW = "0"',
        "CORS_ORIGINS",
        "local.extra_env[name]",
        "LOG_LEVEL",
    ):
        assert piece in built, piece
    assert "local.secret_env_by_need[need]" in tf.locals["function_secret_env"]
    service = tf.block(tf.resource("google_cloudfunctions2_function", "function"), "service_config")
    assert service["environment_variables"] == "${local.function_env[each.key]}"
    (dynamic,) = service["dynamic"]
    secret_env = dynamic["secret_environment_variables"]
    assert secret_env["for_each"] == "${local.function_secret_env[each.key]}"
    assert "DATABASE_URL" not in json.dumps(tf.locals["env_by_need"])


def test_every_setting_a_function_requires_is_set(
    tf: Terraform, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in discover_functions():
        needs = code_needs(name)
        declared = set(function_table(tf)[name]["needs"])
        assert needs <= declared, f"{name} needs {sorted(needs - declared)} (from its main.py)"
        plain, secret = function_env_keys(tf, name)
        assert not plain & secret, name
        given = plain | secret
        for need in needs:
            missing = REQUIRED_SETTINGS[need] - given
            assert not missing, f"{name}: {need} needs {sorted(missing)}"
        if "EMBEDDINGS" in needs:
            vertex = {"GOOGLE_CLOUD_PROJECT", "GOOGLE_CLOUD_LOCATION"}
            assert "GEMINI_API_KEY" in secret or vertex <= given, name
        assert "GEMINI_API_KEY" not in plain, "the Gemini key must come from Secret Manager"
        # And the code itself accepts them: shared.config with exactly this environment.
        for variable in Settings.model_fields:
            monkeypatch.delenv(variable, raising=False)
        for variable in given:
            assert variable in SAMPLE_VALUES, f"add a sample value for {variable}"
            monkeypatch.setenv(variable, SAMPLE_VALUES[variable])
        flags = Needs.NONE
        for need in needs:
            flags |= Needs[need]
        try:
            settings = load_settings(flags)
        except ConfigurationError as error:  # pragma: no cover - the failure message
            pytest.fail(f"{name} would not start: {error}")
        if "DATABASE" in needs:
            assert settings.DB_IAM_AUTH
            assert settings.DATABASE_URL is None


def test_db_iam_auth_is_on(tf: Terraform) -> None:
    database = tf.locals["env_by_need"]["DATABASE"]
    assert database["DB_IAM_AUTH"] == "true"
    assert database["CLOUD_SQL_INSTANCE"] == "${google_sql_database_instance.main.connection_name}"
    assert "trimsuffix(" in tf.locals["db_users"]
    assert ".gserviceaccount.com" in tf.locals["db_users"]


def test_min_instances_default_to_zero(tf: Terraform) -> None:
    assert "min_instances = 0" in tf.locals["sizing"]
    assert tf.locals["sizing"].index("min_instances = 0") < tf.locals["sizing"].index("sizing")
    for name, function in function_table(tf).items():
        assert "min_instances" not in function["sizing"], name
    assert tf.default("function_settings") == {}
    service = tf.block(tf.resource("google_cloudfunctions2_function", "function"), "service_config")
    assert service["min_instance_count"] == "${local.sizing[each.key].min_instances}"
    for setting in ("memory", "timeout_seconds", "max_instances", "concurrency"):
        for function in function_table(tf).values():
            assert setting in function["sizing"]


def sizing(tf: Terraform, overrides: dict[str, dict[str, int]] | None = None) -> dict[str, Any]:
    """local.sizing: each function's defaults, overridden field by field (var.function_settings)."""
    overrides = overrides or {}
    return {
        name: {"min_instances": 0, **function["sizing"], **overrides.get(name, {})}
        for name, function in function_table(tf).items()
    }


def connections_at_peak(tf: Terraform, overrides: dict[str, dict[str, int]] | None = None) -> int:
    """local.db_connections_at_peak: every database function's instances, each
    holding a pool of its concurrency (no overflow)."""
    return sum(
        size["max_instances"] * size["concurrency"]
        for name, size in sizing(tf, overrides).items()
        if "DATABASE" in function_table(tf)[name]["needs"]
    )


def budget_fits(tf: Terraform, peak: int, max_connections: int | None = None) -> bool:
    limit = tf.default("db_max_connections") if max_connections is None else max_connections
    return bool(peak + tf.default("db_reserved_connections") <= limit)


def test_each_pool_is_the_functions_concurrency_without_overflow(tf: Terraform) -> None:
    built = tf.locals["function_env"]
    assert "DB_POOL_SIZE = tostring(local.sizing[name].concurrency)" in built
    assert 'DB_MAX_OVERFLOW = "0"' in built
    # Nothing else sets a pool: not the shared DATABASE group, not a variable.
    assert "DB_POOL_SIZE" not in tf.locals["env_by_need"]["DATABASE"]
    assert "db_pool_size" not in tf.variables
    assert "db_max_overflow" not in tf.variables
    # The code's defaults are the same rule for the usual concurrency of 4.
    assert Settings.model_fields["DB_MAX_OVERFLOW"].default == 0
    assert Settings.model_fields["DB_POOL_SIZE"].default == 4
    # ingest and sweep handle one event at a time: one connection each.
    for name in ("ingest", "sweep"):
        assert function_table(tf)[name]["sizing"]["concurrency"] == 1, name
    # A pool larger than shared/config.py accepts fails the plan.
    function = tf.resource("google_cloudfunctions2_function", "function")
    preconditions = tf.block(function, "lifecycle")["precondition"]
    limit = Settings.model_fields["DB_POOL_SIZE"].metadata
    assert any(getattr(m, "le", None) == 20 for m in limit)
    assert any("local.sizing[each.key].concurrency <= 20" in p["condition"] for p in preconditions)


def test_database_connections_fit_at_peak_with_the_defaults(tf: Terraform) -> None:
    peak = connections_at_peak(tf)
    # The arithmetic written in functions.tf, infra/README.md and docs/scaling.md.
    assert peak == 140
    assert budget_fits(tf, peak)
    assert "= 140, plus 10 reserved = 150 <= 200" in " ".join(
        line.strip("# ").strip() for line in (INFRA / "functions.tf").read_text().splitlines()
    )
    # The HCL computes the same sum ...
    assert "local.sizing[name].max_instances * local.sizing[name].concurrency" in json.dumps(
        tf.locals["db_connections"]
    )
    # ... and refuses a plan that would not fit.
    function = tf.resource("google_cloudfunctions2_function", "function")
    preconditions = tf.block(function, "lifecycle")["precondition"]
    assert any(
        "local.db_connections_at_peak" in p["condition"]
        and "var.db_reserved_connections" in p["condition"]
        and "var.db_max_connections" in p["condition"]
        for p in preconditions
    )
    flags = tf.block(tf.resource("google_sql_database_instance", "main"), "settings")
    assert {"name": "max_connections", "value": "${tostring(var.db_max_connections)}"} in flags[
        "database_flags"
    ]


def test_a_hundred_instances_do_not_fit_and_the_documented_answers_do(tf: Terraform) -> None:
    """heartbeat at 100 instances: the plan must fail, and each documented way out must fit."""
    hundred = {"heartbeat": {"max_instances": 100}}
    peak = connections_at_peak(tf, hundred)
    assert peak == 140 - 8 * 4 + 100 * 4 == 508
    assert not budget_fits(tf, peak)
    scaling = (REPO / "docs" / "scaling.md").read_text()
    assert "508" in scaling
    assert "518" in scaling
    # Way out 1: raise max_connections (and the tier) to cover it.
    assert budget_fits(tf, peak, max_connections=520)
    assert "db_max_connections = 520" in scaling
    # Way out 2: fewer heartbeat instances; 108 + 20 x 4 + 10 = 198 is the most that fits.
    assert budget_fits(tf, connections_at_peak(tf, {"heartbeat": {"max_instances": 20}}))
    assert not budget_fits(tf, connections_at_peak(tf, {"heartbeat": {"max_instances": 21}}))
    assert "max_instances = 20" in scaling
    # Way out 3: the managed connection pooler: clients connect to the pooler,
    # which holds at most its configured server connections.
    assert "managed connection pooling" in scaling


# -- tests: IAM ------------------------------------------------------------------------


def _roles_reachable(tf: Terraform, body: Any, skip: frozenset[str] = frozenset()) -> set[str]:
    """Role names written in a resource or in the locals it (transitively) reads."""
    seen: set[str] = set(skip)
    texts = [expression(body)]
    roles: set[str] = set()
    while texts:
        current = texts.pop()
        roles |= set(re.findall(r"roles/[A-Za-z0-9_.]+", current))
        for local in re.findall(r"local\.(\w+)", current):
            if local not in seen and local in tf.locals:
                seen.add(local)
                texts.append(expression(tf.locals[local]))
    return roles


def test_no_owner_or_editor_anywhere(tf: Terraform) -> None:
    everything = json.dumps([list(tf.resources.values()), tf.locals, tf.variables])
    assert "roles/" in everything
    assert not re.search(r"roles/(owner|editor)\b", everything)


def test_no_authoritative_iam(tf: Terraform) -> None:
    # *_iam_binding and *_iam_policy replace grants made elsewhere; only *_iam_member here.
    for kind, name in tf.resources:
        assert not re.search(r"_iam_(binding|policy)$", kind), f"{kind}.{name}"


def test_no_project_level_token_creator(tf: Terraform) -> None:
    project_grants = {
        key: body for key, body in tf.resources.items() if key[0].startswith("google_project_iam")
    }
    assert project_grants
    for (kind, name), body in project_grants.items():
        roles = _roles_reachable(tf, body)
        assert roles, f"cannot tell which roles {kind}.{name} grants"
        assert "roles/iam.serviceAccountTokenCreator" not in roles, f"{kind}.{name}"
    # Project-level grants are only the Cloud SQL login roles and the builder's
    # (local.functions only names the functions here; its roles are the bucket's).
    all_project_roles = set().union(
        *(_roles_reachable(tf, b, frozenset({"functions"})) for b in project_grants.values())
    )
    assert all_project_roles == {
        "roles/cloudsql.client",
        "roles/cloudsql.instanceUser",
        "roles/logging.logWriter",
        "roles/artifactregistry.writer",
        "roles/storage.objectAdmin",  # the builder's, conditioned to the source buckets
    }


def test_token_creator_only_on_itself_or_for_the_push(tf: Terraform) -> None:
    grants = [
        (key, body)
        for key, body in tf.resources.items()
        if "roles/iam.serviceAccountTokenCreator" in expression(body)
    ]
    assert {key for key, _ in grants} == {
        ("google_service_account_iam_member", "function_signs_as_itself"),
        ("google_service_account_iam_member", "pubsub_signs_invoker_tokens"),
    }
    itself = tf.resource("google_service_account_iam_member", "function_signs_as_itself")
    assert itself["service_account_id"] == "${google_service_account.function[each.key].name}"
    assert itself["member"] == "${google_service_account.function[each.key].member}"
    push = tf.resource("google_service_account_iam_member", "pubsub_signs_invoker_tokens")
    assert push["service_account_id"] == "${google_service_account.ingest_invoker.name}"
    assert push["member"] == "${local.pubsub_agent}"


def test_each_function_holds_only_the_roles_its_code_needs(tf: Terraform) -> None:
    table = function_table(tf)
    for name in discover_functions():
        function = table[name]
        assert function["bucket_role"] == BUCKET_ROLES.get(name), name
        # A role on the bucket exactly when the code uses the bucket...
        assert (function["bucket_role"] is not None) == ("STORAGE" in code_needs(name)), name
        # ... and token creator on itself exactly when the code signs URLs.
        assert function["signs_urls"] == uses_name(name, "download_url"), name
        _, secret = function_env_keys(tf, name)
        assert bool(secret) == ("EMBEDDINGS" in code_needs(name)), name
    assert {n for n, f in table.items() if f["signs_urls"]} == {"catalog", "moderate"}
    accessor = tf.resource("google_secret_manager_secret_iam_member", "function_reads_secret")
    assert accessor["for_each"] == "${local.function_secrets}"
    assert accessor["role"] == "roles/secretmanager.secretAccessor"
    assert "local.function_secret_env" in tf.locals["function_secrets"]
    bucket = tf.resource("google_storage_bucket_iam_member", "function_materials")
    assert bucket["bucket"] == "${google_storage_bucket.materials.name}"
    accounts = tf.resource("google_service_account", "function")
    assert accounts["for_each"] == "${local.functions}"
    service = tf.block(tf.resource("google_cloudfunctions2_function", "function"), "service_config")
    assert service["service_account_email"] == "${google_service_account.function[each.key].email}"


def test_ingest_is_invoked_only_by_the_push_identity(tf: Terraform) -> None:
    invoker = tf.resource("google_cloud_run_v2_service_iam_member", "ingest_invoker")
    assert invoker["role"] == "roles/run.invoker"
    assert invoker["name"] == '${google_cloudfunctions2_function.function["ingest"].name}'
    assert invoker["member"] == "${google_service_account.ingest_invoker.member}"
    public = tf.resource("google_cloud_run_v2_service_iam_member", "public_invoker")
    assert "function.frontend" in public["for_each"]
    assert function_table(tf)["ingest"]["frontend"] is False


# -- tests: storage and Pub/Sub ----------------------------------------------------------


def test_bucket_notification_feeds_the_ingest_subscription(tf: Terraform) -> None:
    notification = tf.resource("google_storage_notification", "materials_finalized")
    subscription = tf.resource("google_pubsub_subscription", "ingest_push")
    assert notification["topic"] == subscription["topic"] == "${google_pubsub_topic.ingest.id}"
    assert notification["bucket"] == "${google_storage_bucket.materials.name}"
    assert notification["payload_format"] == "JSON_API_V1"
    assert notification["event_types"] == ["OBJECT_FINALIZE"]
    publisher = tf.resource("google_pubsub_topic_iam_member", "storage_publishes_ingest")
    assert publisher["topic"] == "${google_pubsub_topic.ingest.id}"
    assert publisher["role"] == "roles/pubsub.publisher"
    assert "google_storage_project_service_account" in tf.locals["storage_agent"]


def test_the_ingest_subscription_pushes_with_oidc_and_dead_letters(tf: Terraform) -> None:
    subscription = tf.resource("google_pubsub_subscription", "ingest_push")
    push = tf.block(subscription, "push_config")
    assert push["push_endpoint"].startswith("${local.ingest_url}/")
    assert "no_wrapper" not in push, "functions-framework needs Pub/Sub's wrapper"
    assert '["ingest"]' in tf.locals["ingest_url"]
    assert "service_config[0].uri" in tf.locals["ingest_url"]
    oidc = tf.block(push, "oidc_token")
    assert oidc["service_account_email"] == "${google_service_account.ingest_invoker.email}"
    assert oidc["audience"] == "${local.ingest_url}"
    dead = tf.block(subscription, "dead_letter_policy")
    assert dead["dead_letter_topic"] == "${google_pubsub_topic.ingest_dead_letter.id}"
    assert dead["max_delivery_attempts"] == "${var.dead_letter_max_delivery_attempts}"
    validation = tf.variables["dead_letter_max_delivery_attempts"]["validation"][0]["condition"]
    assert ">= 5" in validation
    assert "<= 100" in validation
    retry = tf.block(subscription, "retry_policy")
    assert {"minimum_backoff", "maximum_backoff"} <= set(retry)
    # The ack deadline (= the push request's timeout) covers a whole ingest run.
    assert subscription["ack_deadline_seconds"] == "${local.ingest_ack_deadline_seconds}"
    assert tf.locals["ingest_ack_deadline_seconds"] == '${local.sizing["ingest"].timeout_seconds}'
    assert 10 <= function_table(tf)["ingest"]["sizing"]["timeout_seconds"] <= 600
    # The service agent may dead-letter: publish there, and ack here.
    dlq_publisher = tf.resource("google_pubsub_topic_iam_member", "pubsub_publishes_dead_letters")
    assert dlq_publisher["topic"] == "${google_pubsub_topic.ingest_dead_letter.id}"
    assert dlq_publisher["member"] == "${local.pubsub_agent}"
    subscriber = tf.resource("google_pubsub_subscription_iam_member", "pubsub_acks_dead_letters")
    assert subscriber["subscription"] == "${google_pubsub_subscription.ingest_push.id}"
    assert subscriber["role"] == "roles/pubsub.subscriber"
    # Dead letters are kept somewhere to be read.
    kept = tf.resource("google_pubsub_subscription", "ingest_dead_letter")
    assert kept["topic"] == "${google_pubsub_topic.ingest_dead_letter.id}"
    assert tf.default("ingest_max_attempts") < tf.default("dead_letter_max_delivery_attempts")


def test_materials_bucket_rules(tf: Terraform) -> None:
    bucket = tf.resource("google_storage_bucket", "materials")
    assert bucket["uniform_bucket_level_access"] is True
    assert bucket["public_access_prevention"] == "enforced"
    rules = bucket["lifecycle_rule"]
    rejected = [r for r in rules if r["condition"][0].get("matches_prefix") == ["rejected/"]]
    assert len(rejected) == 1
    assert rejected[0]["condition"][0]["age"] == "${var.rejected_retention_days}"
    assert rejected[0]["action"][0]["type"] == "Delete"
    (cors,) = bucket["dynamic"]
    assert "var.frontend_origins" in cors["cors"]["for_each"]
    assert tf.variables["frontend_origins"]["type"] == "${list(string)}"


# -- tests: database -----------------------------------------------------------------


def test_cloud_sql_has_iam_auth_pgvector_and_protection(tf: Terraform) -> None:
    instance = tf.resource("google_sql_database_instance", "main")
    assert instance["deletion_protection"] == "${var.deletion_protection}"
    assert tf.variables["deletion_protection"]["type"] == "bool"
    assert tf.default("deletion_protection") is True
    settings = tf.block(instance, "settings")
    assert {"name": "cloudsql.iam_authentication", "value": "on"} in settings["database_flags"]
    assert settings["deletion_protection_enabled"] == "${var.deletion_protection}"
    version = tf.default("database_version")
    major = re.fullmatch(r"POSTGRES_(\d+)", version)
    assert major is not None
    assert int(major[1]) >= 16
    for user in ("migrator", "function"):
        body = tf.resource("google_sql_user", user)
        assert body["type"] == "CLOUD_IAM_SERVICE_ACCOUNT"
    assert tf.resource("google_sql_user", "migrator")["database_roles"] == ["cloudsqlsuperuser"]
    assert "database_roles" not in tf.resource("google_sql_user", "function")


# -- tests: variables and outputs -----------------------------------------------------


def test_every_variable_is_typed_and_described(tf: Terraform) -> None:
    for name, variable in tf.variables.items():
        assert variable.get("type"), f"variable {name} has no type"
        assert len(str(variable.get("description", "")).strip()) > 10, f"describe {name}"


def test_bool_like_variables_are_bools(tf: Terraform) -> None:
    for name, variable in tf.variables.items():
        default = variable.get("default")
        if isinstance(default, bool) or re.match(r"(allow|enable|use|is)_|.*protection", name):
            assert variable["type"] == "bool", f"{name} must be typed bool"
        if isinstance(default, str):
            assert default not in {"true", "false"}, f"{name}: a bool as a string"


def test_enum_like_variables_are_validated(tf: Terraform) -> None:
    for name in ENUM_VARIABLES:
        validations = tf.variables[name].get("validation", [])
        assert any("contains([" in v["condition"] for v in validations), name


def test_outputs_give_every_http_function_url(tf: Terraform) -> None:
    urls = tf.outputs["function_urls"]
    assert "google_cloudfunctions2_function.function" in urls["value"]
    assert "service_config[0].uri" in urls["value"]
    assert "frontend" in urls["value"]
    for name, output in tf.outputs.items():
        assert output.get("description"), f"describe output {name}"


# -- tests: the pipeline --------------------------------------------------------------


def cloudbuild_steps() -> dict[str, str]:
    """Step id -> the step's text, in order (cloudbuild.yaml, without a YAML parser)."""
    source = CLOUDBUILD.read_text()
    body = source[source.index("\nsteps:") :]
    parts = re.split(r"\n  - id: ", body)[1:]
    return {part.split("\n", 1)[0].strip(): part for part in parts}


def test_cloudbuild_migrates_after_the_database_and_before_the_code() -> None:
    steps = cloudbuild_steps()
    order = list(steps)
    for earlier, later in [
        ("test", "package"),
        ("package", "terraform-plan"),
        ("terraform-init", "terraform-apply-database"),
        ("terraform-apply-database", "migrate"),
        ("migrate", "terraform-plan"),
        ("terraform-plan", "terraform-apply"),
    ]:
        assert order.index(earlier) < order.index(later), f"{earlier} must run before {later}"
    assert order[0] == "test"
    assert "name: ${_PYTHON_IMAGE}" in steps["test"]
    assert "entrypoint: make" in steps["test"]
    assert 'args: ["test"]' in steps["test"]
    assert "_PYTHON_IMAGE: python:3.12" in CLOUDBUILD.read_text()
    assert "hashicorp/terraform" in CLOUDBUILD.read_text()
    # No step waits on anything out of order.
    assert "waitFor" not in CLOUDBUILD.read_text()
    migrate = steps["migrate"]
    assert "lectern migrate" in migrate
    assert "DB_IAM_AUTH=true" in migrate
    for variable in ("CLOUD_SQL_INSTANCE", "DB_USER", "DB_NAME"):
        assert f"export {variable}=" in migrate
    assert "infra/sql/grants.sql" in migrate
    for substitution in ("_TF_STATE_BUCKET", "_REGION", "_DEPLOYER_SA"):
        assert f"\n  {substitution}:" in CLOUDBUILD.read_text()


def test_cloudbuild_database_stage_targets_only_the_database(tf: Terraform) -> None:
    stage = cloudbuild_steps()["terraform-apply-database"]
    targets = re.findall(r"-target=([\w.]+)", stage)
    assert targets
    for target in targets:
        kind, name = target.split(".")
        assert (kind, name) in tf.resources, f"{target} is not in infra/"
        assert kind.startswith(("google_sql_", "google_project_iam_member")), target
    assert {
        "google_sql_database.lectern",
        "google_sql_user.migrator",
        "google_sql_user.function",
    } <= set(targets)
    outputs = re.findall(
        r"terraform -chdir=infra output (?:-raw |-json )?(\w+)",
        "".join(cloudbuild_steps().values()),
    )
    assert outputs
    for output in outputs:
        assert output in tf.outputs, f"cloudbuild.yaml reads the missing output {output}"


def test_cloudbuild_packages_into_the_folder_terraform_reads(tf: Terraform) -> None:
    package = cloudbuild_steps()["package"]
    assert "scripts/package_functions.py" in package
    assert '"build/functions"' in package
    assert (INFRA / tf.default("package_dir")).resolve() == (REPO / "build" / "functions")


# -- tests: the functions' database privileges -------------------------------------------


@pytest.fixture(scope="module")
def granted_database(new_database: Callable[..., str]) -> tuple[str, list[str]]:
    """A migrated database with two function users, granted as cloudbuild.yaml does."""
    url = new_database()
    users = ["lectern-catalog@lectern-prod.iam", "lectern-tasks@lectern-prod.iam"]
    engine = create_engine(url)
    with engine.begin() as connection:
        for user in users:
            connection.exec_driver_sql(f'CREATE ROLE "{user}" LOGIN')
    grants = (INFRA / "sql" / "grants.sql").read_text()
    for _ in range(2):  # idempotent
        with engine.begin() as connection:
            connection.execute(
                text("SELECT set_config('lectern.function_users', :users, true)"),
                {"users": ",".join(users)},
            )
            connection.exec_driver_sql(grants)
    engine.dispose()
    return url, users


def test_function_users_may_use_the_data_but_not_change_the_schema(
    granted_database: tuple[str, list[str]],
) -> None:
    url, users = granted_database
    as_function = create_engine(make_url(url).set(username=users[0]))
    try:
        with as_function.begin() as connection:
            connection.execute(text("SELECT count(*) FROM users")).scalar_one()
            connection.execute(text("SELECT count(*) FROM material_chunks")).scalar_one()
        for statement in (
            "CREATE TABLE intruder (id int)",
            "DROP TABLE users",
            "DELETE FROM alembic_version",
            "ALTER TABLE users ADD COLUMN intruder int",
        ):
            with (
                pytest.raises(Exception, match=r"permission denied|must be owner"),
                as_function.begin() as connection,
            ):
                connection.exec_driver_sql(statement)
    finally:
        as_function.dispose()


def test_grants_refuse_an_unknown_user(granted_database: tuple[str, list[str]]) -> None:
    url, _ = granted_database
    engine = create_engine(url)
    grants = (INFRA / "sql" / "grants.sql").read_text()
    try:
        with engine.connect() as connection:
            connection.execute(
                text("SELECT set_config('lectern.function_users', 'nobody@x.iam', false)")
            )
            with pytest.raises(Exception, match="no database user"):
                connection.exec_driver_sql(grants)
    finally:
        engine.dispose()


def test_grants_sql_has_no_percent_signs() -> None:
    # pg8000 would read them as parameter markers.
    assert "%" not in (INFRA / "sql" / "grants.sql").read_text()


# -- outbound budgets -------------------------------------------------------------


def _gemini_call_seconds(settings: Any) -> float:
    """The longest one Gemini call can take: every attempt times out, full backoff between."""
    from shared.embeddings import RETRY_INITIAL_DELAY, RETRY_JITTER, RETRY_MAX_DELAY

    attempts = settings.GEMINI_RETRY_ATTEMPTS
    backoff = sum(
        min(RETRY_INITIAL_DELAY * 2**retry, RETRY_MAX_DELAY) + RETRY_JITTER
        for retry in range(attempts - 1)
    )
    return float(attempts * settings.GEMINI_TIMEOUT_S + backoff)


def test_every_outbound_budget_fits_inside_the_function_timeout(tf: Terraform) -> None:
    """A dependency that hangs is given up on in time to answer 503 before the platform
    kills the request: the worst case of each function's calls, with 10 s to spare.

    Per request at most: the JWKS fetch (5 s), waiting for a pooled connection,
    connecting, two statements running to their timeout; storage: the calls
    the function makes before it can answer (below), each one attempt's
    timeout plus the retry deadline (a failed call ends the request: see
    shared/moderation.py); search: two Gemini calls (embedding, answer).
    """
    # catalog signs a URL; submit uploads (and deletes a failed one); a
    # transition reads, copies and patches metadata; ingest reads.
    # submit's direct-upload complete: stat, copy, delete, and its whole read
    # (uploads.READ_BUDGET_SECONDS) on top.
    storage_calls = {"catalog": 1, "submit": 3, "moderate": 3, "ingest": 1, "sweep": 2}
    from shared.auth import FETCH_TIMEOUT as JWKS_TIMEOUT_SECONDS
    from shared.config import Settings
    from shared.uploads import READ_BUDGET_SECONDS

    for name, function in function_table(tf).items():
        # Literal values only (a Terraform expression is not a timeout).
        env = {
            key: str(value)
            for key, value in tf.locals["extra_env"].get(name, {}).items()
            if "${" not in str(value)
        }
        settings = Settings.model_validate(env)
        needs = set(function["needs"])
        worst = 0.0
        if "AUTH" in needs:
            worst += JWKS_TIMEOUT_SECONDS
        if "DATABASE" in needs:
            worst += settings.DB_POOL_TIMEOUT_S + settings.DB_CONNECT_TIMEOUT_S
            worst += 2 * settings.DB_STATEMENT_TIMEOUT_MS / 1000
        if "STORAGE" in needs:
            worst += storage_calls[name] * 2 * settings.STORAGE_TIMEOUT_S
        if name == "submit":
            worst += READ_BUDGET_SECONDS
        if "EMBEDDINGS" in needs and name == "search":
            worst += 2 * _gemini_call_seconds(settings)
        timeout = function["sizing"]["timeout_seconds"]
        assert worst + 10 <= timeout, f"{name}: worst case {worst:.0f} s, timeout {timeout} s"


# -- issue 14: builder, APIs, names, regions, images, retention, one origin ----------


def test_builder_holds_what_the_gen2_build_documentation_lists(tf: Terraform) -> None:
    # Cloud Run docs, "Configure the build service account" (functions): Logs
    # Writer, Artifact Registry Writer, Storage Object Admin on the source.
    assert tf.locals["builder_project_roles"] == [
        "roles/logging.logWriter",
        "roles/artifactregistry.writer",
    ]
    sources = tf.resource("google_project_iam_member", "builder_function_sources")
    assert sources["role"] == "roles/storage.objectAdmin"
    assert sources["member"] == "${google_service_account.builder.member}"
    condition = tf.block(sources, "condition")
    assert "local.builder_source_buckets" in condition["expression"]
    buckets = tf.locals["builder_source_buckets"]
    assert len(buckets) == 2
    assert any(
        "gcf-v2-sources-${data.google_project.this.number}-${var.region}" in b for b in buckets
    )
    assert any("google_storage_bucket.sources.name" in b for b in buckets)
    assert not any("materials" in b for b in buckets)
    # Nothing else is granted to the builder.
    builder_grants = [
        key
        for key, body in tf.resources.items()
        if "google_service_account.builder" in expression(body)
    ]
    assert sorted(builder_grants) == [
        ("google_cloudfunctions2_function", "function"),
        ("google_project_iam_member", "builder"),
        ("google_project_iam_member", "builder_function_sources"),
    ]
    build = tf.block(tf.resource("google_cloudfunctions2_function", "function"), "build_config")
    assert build["service_account"] == "${google_service_account.builder.id}"


# What each resource kind needs enabled (the function also needs its build and runtime APIs).
SERVICE_OF_KIND = {
    "google_cloudfunctions2_function": {
        "cloudfunctions.googleapis.com",
        "run.googleapis.com",
        "cloudbuild.googleapis.com",
        "artifactregistry.googleapis.com",
    },
    "google_cloud_run_v2_service_iam_member": {"run.googleapis.com"},
    "google_sql_": {"sqladmin.googleapis.com"},
    "google_pubsub_": {"pubsub.googleapis.com"},
    "google_secret_manager_": {"secretmanager.googleapis.com"},
    "google_cloud_scheduler_job": {"cloudscheduler.googleapis.com"},
    "google_service_account": {"iam.googleapis.com"},
    "google_project_iam_member": {"cloudresourcemanager.googleapis.com"},
    "google_storage_": {"storage.googleapis.com"},
    "google_compute_": {"compute.googleapis.com"},
}


def test_required_apis_are_enabled_by_terraform(tf: Terraform) -> None:
    services = tf.resource("google_project_service", "required")
    assert services["for_each"] == "${local.required_services}"
    assert services["disable_on_destroy"] is False
    assert [key for key in tf.resources if key[0] == "google_project_service"] == [
        ("google_project_service", "required")
    ]
    enabled = set(re.findall(r'"([a-z]+\.googleapis\.com)"', tf.texts["services.tf"]))
    for kind, _ in tf.resources:
        for prefix, needed in SERVICE_OF_KIND.items():
            if kind.startswith(prefix):
                assert needed <= enabled, f"{kind} needs {sorted(needed - enabled)}"
    # Signed URLs call signBlob.
    assert "iamcredentials.googleapis.com" in enabled
    # The first resources of each API wait for it.
    for key in [
        ("google_sql_database_instance", "main"),
        ("google_service_account", "function"),
        ("google_pubsub_topic", "ingest"),
        ("google_secret_manager_secret", "gemini_api_key"),
        ("google_cloudfunctions2_function", "function"),
        ("google_cloud_scheduler_job", "sweep"),
        ("google_compute_global_address", "lb"),
    ]:
        assert "google_project_service.required" in expression(
            tf.resource(*key).get("depends_on")
        ), key


# The provider's (and the services') limits on names Terraform builds.
NAME_LIMITS = {
    ("google_service_account", "account_id"): 30,
    ("google_cloudfunctions2_function", "name"): 49,  # the Cloud Run service's name limit
    ("google_storage_bucket", "name"): 63,
    ("google_pubsub_topic", "name"): 255,
    ("google_pubsub_subscription", "name"): 255,
    ("google_sql_database_instance", "name"): 98 - 30 - 1,  # project:instance <= 98
    ("google_secret_manager_secret", "secret_id"): 255,
    ("google_cloud_scheduler_job", "name"): 500,
}
COMPUTE_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
LONGEST_PROJECT = "p" * 30
PG_ROLE_NAME_LIMIT = 63


def _hcl_regex(condition: str) -> str:
    """The pattern of the first regex("...") in a validation, HCL escapes undone."""
    match = re.search(r'regex\("((?:[^"\\]|\\.)*)"', condition)
    assert match, condition
    return match[1].encode().decode("unicode_escape")


def _built_names(tf: Terraform, prefix: str) -> list[tuple[str, str, int]]:
    """(what, name, limit) of every name built from the prefix, for every function."""
    names: list[tuple[str, str, int]] = []
    functions = sorted(function_table(tf))
    for (kind, resource), body in tf.resources.items():
        limit = next((v for (k, a), v in NAME_LIMITS.items() if k == kind), None)
        attribute = next((a for (k, a) in NAME_LIMITS if k == kind), "name")
        if kind.startswith("google_compute_") and "name" in body:
            limit, attribute = 63, "name"
        if limit is None or attribute not in body:
            continue
        template = body[attribute]
        keys = functions if "${each.key}" in template else [""]
        for key in keys:
            name = (
                template.replace("${var.name_prefix}", prefix)
                .replace("${var.project_id}", LONGEST_PROJECT)
                .replace("${each.key}", key)
            )
            assert "${" not in name, f"{kind}.{resource}: teach this test {template}"
            names.append((f"{kind}.{resource}[{key}]", name, limit))
            if kind.startswith("google_compute_") and prefix:
                assert COMPUTE_NAME.match(name), name
    # The functions' IAM database users: the account email without .gserviceaccount.com.
    for function in functions:
        user = f"{prefix}-{function}@{LONGEST_PROJECT}.iam"
        names.append((f"database user of {function}", user, PG_ROLE_NAME_LIMIT))
    return names


def test_name_prefix_bound_is_the_longest_name_that_fits(tf: Terraform) -> None:
    validation = tf.variables["name_prefix"]["validation"][0]["condition"]
    pattern = re.compile(_hcl_regex(validation))
    # The longest prefix every name allows, derived from the names themselves.
    derived = min(limit - len(name) for _, name, limit in _built_names(tf, ""))
    longest_allowed = max(n for n in range(1, 64) if pattern.match("a" * n))
    assert longest_allowed == derived, (
        f"name_prefix allows {longest_allowed} characters; the names allow {derived}"
    )
    assert not pattern.match("a" * (derived + 1))
    assert str(derived) in tf.variables["name_prefix"]["validation"][0]["error_message"]
    # Every name, built at the longest prefix, fits.
    for what, name, limit in _built_names(tf, "a" * derived):
        assert len(name) <= limit, f"{what}: {name} ({len(name)} > {limit})"
    # And the shortest prefix still makes valid service account ids (6 at least).
    shortest = min(n for n in range(1, 64) if pattern.match("a" * n))
    for what, name, _ in _built_names(tf, "a" * shortest):
        if what.startswith("google_service_account"):
            assert len(name) >= 6, what
    for good in ("lectern", "lec-prod-2"):
        assert pattern.match(good)
    for bad in ("Lectern", "1lectern", "lectern-", "le"):
        assert not pattern.match(bad), bad


def test_deployer_database_user_fits_postgres() -> None:
    text = (INFRA / "variables.tf").read_text()
    assert 'length(trimsuffix(var.deployer_service_account, ".gserviceaccount.com")) <= 63' in text


def test_region_pattern_accepts_real_regions(tf: Terraform) -> None:
    pattern = re.compile(_hcl_regex(tf.variables["region"]["validation"][0]["condition"]))
    for region in (
        "europe-west1",
        "europe-west10",
        "europe-west12",
        "me-central2",
        "us-central1",
        "northamerica-northeast2",
        "southamerica-west1",
        "africa-south1",
        "asia-southeast2",
    ):
        assert pattern.match(region), region
    for not_a_region in ("europe-west1-b", "eu", "EUROPE-WEST1", "europe", "us-central"):
        assert not pattern.match(not_a_region), not_a_region


def test_cloudbuild_images_are_pinned() -> None:
    source = CLOUDBUILD.read_text()
    images = dict(re.findall(r"\n  (_\w+_IMAGE): (\S+)", source))
    assert set(images) == {"_PYTHON_IMAGE", "_TERRAFORM_IMAGE", "_CLOUD_SDK_IMAGE"}
    for name, image in images.items():
        # A full version tag (major.minor.patch), and optionally a digest.
        assert re.fullmatch(r"[\w./-]+:\d+\.\d+\.\d+[\w.-]*(@sha256:[0-9a-f]{64})?", image), name
    for step in cloudbuild_steps().values():
        (image,) = re.findall(r"\n    name: (\S+)", step)
        assert re.fullmatch(r"\$\{_\w+_IMAGE\}", image), image


def test_cloudbuild_retries_connecting_never_the_migration() -> None:
    migrate = cloudbuild_steps()["migrate"]
    loop = migrate[migrate.index("for attempt") : migrate.index("done")]
    assert "lectern migrate" not in loop
    assert "$$CONNECT" in loop
    assert migrate.count("lectern migrate") == 1
    assert migrate.index("done") < migrate.index(".venv/bin/lectern migrate")
    connect = migrate[migrate.index("CONNECT=") : migrate.index("args:")]
    assert "engine.connect().close()" in connect
    assert "migrate" not in connect.replace("the migrator", "")
    # The private pool a restricted-public-IP organisation needs is documented.
    assert "sql.restrictPublicIp" in CLOUDBUILD.read_text()
    assert "sql.restrictPublicIp" in (INFRA / "README.md").read_text()


def test_rejected_retention_and_undo_reject_agree(tf: Terraform) -> None:
    description = tf.variables["rejected_retention_days"]["description"]
    assert "undo_reject" in description
    assert "object_missing" in description
    moderation = (REPO / "shared" / "moderation.py").read_text()
    assert "retention, which ``undo_reject`` reports as ``object_missing``" in moderation
    assert "var.rejected_retention_days" in tf.texts["storage.tf"]


def test_no_lifecycle_rule_deletes_pending_uploads(tf: Terraform) -> None:
    # A pending request must never lose its file: only the sweep, which knows
    # whether a row refers to an object, deletes under pending/.
    for rule in tf.resource("google_storage_bucket", "materials")["lifecycle_rule"]:
        if rule["action"][0]["type"] != "Delete":
            continue
        condition = rule["condition"][0]
        prefixes = condition.get("matches_prefix")
        assert prefixes, f"a Delete rule without a prefix reaches pending/: {condition}"
        for prefix in prefixes:
            assert not "pending/".startswith(prefix), prefix
            assert not prefix.startswith("pending"), prefix


def test_every_variable_is_validated_or_free_form(tf: Terraform) -> None:
    # Free-form on purpose: bools, maps of labels, and names Google owns.
    free_form = {
        "labels",
        "allow_unauthenticated_http",
        "deletion_protection",
        "package_dir",
        "db_tier",
        "gemini_embedding_model",
        "gemini_answer_model",
    }
    for name, variable in tf.variables.items():
        if name in free_form:
            continue
        assert variable.get("validation"), f"validate variable {name}"


def test_functions_that_publish_may_publish(tf: Terraform) -> None:
    # Derived from the code: a function importing the Pub/Sub client publishes re-ingests.
    for name in discover_functions():
        _, external = imported_modules(name)
        publishes = any(module.startswith("google.cloud.pubsub") for module in external)
        grants = [
            body
            for (kind, _), body in tf.resources.items()
            if kind == "google_pubsub_topic_iam_member"
            and body["member"] == f'${{google_service_account.function["{name}"].member}}'
        ]
        assert bool(grants) == publishes, name
        for grant in grants:
            assert grant["role"] == "roles/pubsub.publisher"


def test_one_origin_load_balancer(tf: Terraform) -> None:
    assert tf.default("domain") is None
    assert "var.domain != null" in tf.locals["load_balancer"]
    # Only the browser's functions are behind it; ingest and sweep are called directly.
    assert "function.frontend" in tf.locals["balanced"]
    assert "local.deployed" in tf.locals["balanced"]
    neg = tf.resource("google_compute_region_network_endpoint_group", "function")
    assert neg["network_endpoint_type"] == "SERVERLESS"
    assert tf.block(neg, "cloud_run")["service"] == (
        "${google_cloudfunctions2_function.function[each.key].name}"
    )
    backend = tf.resource("google_compute_backend_service", "function")
    assert backend["load_balancing_scheme"] == "EXTERNAL_MANAGED"
    assert "health_checks" not in backend  # serverless NEGs take none
    url_map = tf.resource("google_compute_url_map", "https")
    matcher = tf.block(url_map, "path_matcher")
    (dynamic,) = matcher["dynamic"]
    rule = dynamic["path_rule"]
    assert rule["for_each"] == "${local.balanced}"
    assert rule["content"][0]["paths"] == ["/${path_rule.key}", "/${path_rule.key}/*"]
    assert tf.block(url_map, "host_rule")["hosts"] == ["${var.domain}"]
    certificate = tf.resource("google_compute_managed_ssl_certificate", "lb")
    assert tf.block(certificate, "managed")["domains"] == ["${var.domain}"]
    https = tf.resource("google_compute_global_forwarding_rule", "https")
    assert https["port_range"] == "443"
    assert https["target"] == "${google_compute_target_https_proxy.lb[0].id}"
    redirect = tf.block(
        tf.resource("google_compute_url_map", "http_redirect"), "default_url_redirect"
    )
    assert redirect["https_redirect"] is True
    http = tf.resource("google_compute_global_forwarding_rule", "http_redirect")
    assert http["port_range"] == "80"
    assert "var.domain" in tf.outputs["base_url"]["value"]
    # Cloud Armor: off by default, on the expensive functions when on.
    assert tf.default("rate_limit_per_minute") == 0
    assert tf.default("rate_limited_functions") == ["submit", "search"]
    armor = tf.resource("google_compute_security_policy", "rate_limit")
    assert armor["count"] == "${local.armor ? 1 : 0}"
    assert "var.rate_limit_per_minute > 0" in tf.locals["armor"]
    assert "local.rate_limited" in backend["security_policy"]
    # The functions take their /<function> prefix (tests/test_one_origin.py).
    assert "FUNCTION_TARGET" in (REPO / "shared" / "http.py").read_text()
