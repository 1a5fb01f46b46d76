"""checkov over infra/, offline: no failed check, and every skip says why.

checkov runs its built-in Terraform policies on the .tf files (about 3-4 s).
It lives in its own environment, ``.venv/checkov`` (removed by ``make
clean``), installed with ``pip --require-hashes`` from ``tests/checkov.lock``
the first time this module runs and again whenever the lock changes (about a
minute; PyPI must be reachable then, never afterwards). It cannot share
``.venv``: checkov depends on bc-python-hcl2, which installs a package named
``hcl2`` over python-hcl2's, the parser tests/test_infra.py needs.

To move checkov, edit the version below and rewrite the lock::

    echo "checkov==3.3.30" | .venv/bin/uv pip compile - --universal \
        --python-version 3.11 --generate-hashes -o tests/checkov.lock

Skips live next to the resource they concern, as ``#checkov:skip=CKV_..:reason``;
there is no config file or ``--skip-check`` that could hide one.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
INFRA = REPO / "infra"
LOCK = Path(__file__).with_name("checkov.lock")
ENVIRONMENT = REPO / ".venv" / "checkov"
CHECKOV = ENVIRONMENT / "bin" / "checkov"
SKIP = re.compile(r"#\s*checkov:skip=([A-Z0-9_]+)(?::(.*))?$")
SKIP_ID = re.compile(r"^CKV2?_GCP_\d+$")
MIN_REASON = 20


def checkov_environment() -> Path:
    """``.venv/checkov`` holding exactly tests/checkov.lock; made when missing or stale."""
    wanted = hashlib.sha256(LOCK.read_bytes()).hexdigest()
    stamp = ENVIRONMENT / ".lock-sha256"
    if CHECKOV.exists() and stamp.exists() and stamp.read_text() == wanted:
        return CHECKOV
    shutil.rmtree(ENVIRONMENT, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(ENVIRONMENT)], check=True)
    python = ENVIRONMENT / "bin" / "python"
    install = subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--require-hashes",
            "-r",
            str(LOCK),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    assert install.returncode == 0, "installing checkov failed:\n" + install.stderr[-3000:]
    stamp.write_text(wanted)
    return CHECKOV


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    checkov = checkov_environment()
    result = subprocess.run(
        [
            str(checkov),
            "--directory",
            str(INFRA),
            "--framework",
            "terraform",
            "--skip-download",  # offline: built-in policies only
            "--compact",
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode in (0, 1), result.stderr[-2000:]
    parsed = json.loads(result.stdout)
    reports = parsed if isinstance(parsed, list) else [parsed]
    (terraform,) = [r for r in reports if r.get("check_type") == "terraform"]
    report: dict[str, Any] = terraform
    return report


def source_skips() -> list[tuple[str, int, str, str]]:
    """(file, line, check id, reason) of every inline skip in infra/."""
    found = []
    for path in sorted(INFRA.glob("*.tf")):
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if "checkov:" not in line:
                continue
            match = SKIP.search(line.strip())
            assert match, f"{path.name}:{number}: not a checkov skip: {line.strip()}"
            found.append((path.name, number, match[1], (match[2] or "").strip()))
    return found


def test_no_failed_check(report: dict[str, Any]) -> None:
    summary = report["summary"]
    failed = [
        f"{c['check_id']} {c['resource']} ({c['file_path']}): {c['check_name']}"
        for c in report["results"]["failed_checks"]
    ]
    assert failed == [], "\n".join(failed)
    assert summary["parsing_errors"] == 0
    # It did look at the whole of infra/ (the load balancer included).
    assert summary["resource_count"] >= 60
    assert summary["passed"] >= 50


def test_every_skip_is_inline_with_a_reason(report: dict[str, Any]) -> None:
    skips = source_skips()
    assert skips, "expected the documented skips"
    for file, line, check_id, reason in skips:
        assert SKIP_ID.match(check_id), f"{file}:{line}: {check_id} is not a GCP check id"
        assert len(reason) >= MIN_REASON, f"{file}:{line}: {check_id} needs a reason"
    for skipped in report["results"]["skipped_checks"]:
        comment = skipped["check_result"].get("suppress_comment", "")
        assert len(comment.strip()) >= MIN_REASON, skipped["check_id"]
    # Every inline skip suppresses a check that applies (no stale or mistyped id).
    applied = {
        (c["check_id"], Path(c["file_path"]).name) for c in report["results"]["skipped_checks"]
    }
    for file, line, check_id, _ in skips:
        assert (check_id, file) in applied, f"{file}:{line}: {check_id} suppresses nothing"
    # No skip outside the .tf files.
    for name in (".checkov.yaml", ".checkov.yml"):
        assert not (REPO / name).exists()
        assert not (INFRA / name).exists()
