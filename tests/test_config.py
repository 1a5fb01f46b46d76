"""Settings: a missing or malformed value fails at start with one line naming it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared.config import Needs, load_settings
from shared.errors import ConfigurationError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith(
            ("DB_", "AUTH_", "GCS_", "GEMINI_", "XP_", "CORS_", "MAX_UPLOAD")
        ) or name in {
            "DATABASE_URL",
            "CLOUD_SQL_INSTANCE",
            "EMBEDDINGS_PROVIDER",
            "GOOGLE_CLOUD_PROJECT",
            "GOOGLE_CLOUD_LOCATION",
        }:
            monkeypatch.delenv(name)
    return monkeypatch


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MAX_UPLOAD_MB", "lots"),
        ("MAX_UPLOAD_MB", "0"),
        ("DB_IAM_AUTH", "maybe"),
        ("EMBEDDINGS_PROVIDER", "openai"),
        ("CORS_ORIGINS", "app.example.com"),
        ("DATABASE_URL", "sqlite:///x.db"),
        ("AUTH_JWKS_URL", "not a url"),
        ("XP_FILE_COMPLETED", "-5"),
    ],
)
def test_a_malformed_value_names_the_variable(
    clean_env: pytest.MonkeyPatch, name: str, value: str
) -> None:
    clean_env.setenv(name, value)
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    message = str(caught.value)
    assert message.startswith(f"{name}:")
    assert "\n" not in message


@pytest.mark.parametrize(
    ("needs", "env", "missing"),
    [
        (Needs.DATABASE, {}, "DATABASE_URL"),
        (Needs.DATABASE, {"CLOUD_SQL_INSTANCE": "p:r:i"}, "DB_USER"),
        (
            Needs.DATABASE,
            {"CLOUD_SQL_INSTANCE": "p:r:i", "DB_USER": "u", "DB_NAME": "d"},
            "DB_PASSWORD",
        ),
        (Needs.AUTH, {"AUTH_ISSUER": "https://x/", "AUTH_AUDIENCE": "a"}, "AUTH_JWKS_URL"),
        (Needs.STORAGE, {}, "GCS_BUCKET"),
        (Needs.EMBEDDINGS, {"EMBEDDINGS_PROVIDER": "gemini"}, "GEMINI_API_KEY"),
    ],
)
def test_a_missing_value_names_the_variable(
    clean_env: pytest.MonkeyPatch, needs: Needs, env: dict[str, str], missing: str
) -> None:
    for name, value in env.items():
        clean_env.setenv(name, value)
    with pytest.raises(ConfigurationError, match=f"^{missing}"):
        load_settings(needs)


def test_cloud_sql_with_iam_auth_needs_no_password(clean_env: pytest.MonkeyPatch) -> None:
    for name, value in {
        "CLOUD_SQL_INSTANCE": "proj:region:inst",
        "DB_USER": "svc@proj.iam",
        "DB_NAME": "lectern",
        "DB_IAM_AUTH": "true",
    }.items():
        clean_env.setenv(name, value)
    settings = load_settings(Needs.DATABASE)
    assert settings.DB_IAM_AUTH is True


def test_cors_origins_are_comma_separated(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("CORS_ORIGINS", "https://a.example, http://localhost:5173/")
    assert load_settings().CORS_ORIGINS == ["https://a.example", "http://localhost:5173"]


def test_defaults_follow_the_contract(clean_env: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    assert settings.MAX_UPLOAD_MB == 25
    assert settings.EMBEDDINGS_PROVIDER == "local"
    assert (
        settings.XP_UPLOAD_APPROVAL,
        settings.XP_FILE_COMPLETED,
        settings.XP_COURSE_COMPLETE,
    ) == (
        50,
        10,
        100,
    )


def test_a_function_with_a_bad_setting_exits_at_start_with_one_line(
    function_env: dict[str, str],
) -> None:
    env = {**os.environ, **function_env, "MAX_UPLOAD_MB": "twenty"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "functions_framework",
            "--target",
            "catalog",
            "--source",
            str(REPO / "functions" / "catalog" / "main.py"),
            "--port",
            "0",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [
        "lectern: configuration error: MAX_UPLOAD_MB: "
        "Input should be a valid integer, unable to parse string as an integer"
    ]
