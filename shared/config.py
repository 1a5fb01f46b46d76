"""Settings: every environment variable of the contract, validated once at start.

A function loads its settings at import time with ``load_settings_or_exit``,
naming the groups it needs; a missing or malformed value stops the process
with one line naming the variable, before any request is served.

A plain pydantic model filled from ``os.environ`` (names are case-sensitive,
unknown variables ignored, keyword arguments win over the environment):
pydantic-settings did the same at ~15 ms of every cold start.
"""

from __future__ import annotations

import enum
import os
import sys
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from shared.errors import ConfigurationError

__all__ = ["Needs", "Settings", "load_settings", "load_settings_or_exit"]


class Needs(enum.Flag):
    """The groups of settings a function requires to be present."""

    NONE = 0
    DATABASE = enum.auto()
    AUTH = enum.auto()
    STORAGE = enum.auto()
    EMBEDDINGS = enum.auto()


def _is_http_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in {"http", "https"} and bool(parts.netloc)


class Settings(BaseModel):
    model_config = ConfigDict(extra="ignore")

    def __init__(self, **values: object) -> None:
        environment = {
            name: os.environ[name] for name in type(self).model_fields if name in os.environ
        }
        super().__init__(**{**environment, **values})

    # Database: DATABASE_URL wins; otherwise the Cloud SQL connector is used.
    DATABASE_URL: str | None = None
    CLOUD_SQL_INSTANCE: str | None = None
    DB_USER: str | None = None
    DB_NAME: str | None = None
    DB_PASSWORD: str | None = None
    DB_IAM_AUTH: bool = False
    # One connection per request an instance serves at once (infra/ sets the
    # pool to each function's concurrency) and no overflow: Cloud SQL's
    # connection limit is shared by every instance of every function, and a
    # budget of max_instances x concurrency holds only without overflow.
    DB_POOL_SIZE: int = Field(default=4, ge=1, le=20)
    DB_MAX_OVERFLOW: int = Field(default=0, ge=0, le=20)
    # Bounds that keep every request inside its function's timeout (60 s for
    # the HTTP functions in infra/): a frozen or unreachable database costs a
    # request at most about connect + statement + pool wait, never a hang.
    DB_CONNECT_TIMEOUT_S: float = Field(default=5, gt=0, le=60)
    DB_SOCKET_TIMEOUT_S: float = Field(default=15, gt=0, le=600)
    DB_STATEMENT_TIMEOUT_MS: int = Field(default=10_000, ge=100, le=600_000)
    DB_LOCK_TIMEOUT_MS: int = Field(default=5_000, ge=10, le=600_000)
    DB_IDLE_IN_TRANSACTION_TIMEOUT_MS: int = Field(default=20_000, ge=100, le=600_000)
    DB_POOL_TIMEOUT_S: float = Field(default=5, gt=0, le=60)

    GCS_BUCKET: str | None = None
    STORAGE_EMULATOR_HOST: str | None = None
    # Per attempt and the whole retry deadline of one storage operation.
    STORAGE_TIMEOUT_S: float = Field(default=5, gt=0, le=300)

    EMBEDDINGS_PROVIDER: Literal["gemini", "local", "local-semantic"] = "local"
    GEMINI_API_KEY: str | None = None
    GOOGLE_CLOUD_PROJECT: str | None = None
    GOOGLE_CLOUD_LOCATION: str | None = None
    # Another endpoint for the Gemini API (a proxy, or the test stub on loopback).
    GEMINI_BASE_URL: str | None = None
    GEMINI_EMBEDDING_MODEL: str = "gemini-embedding-001"
    GEMINI_ANSWER_MODEL: str = "gemini-2.5-flash"
    # One Gemini call's budget: attempts (the first included) of at most
    # GEMINI_TIMEOUT_S each, with 1, 2, 4 ... s of backoff between them.
    # Ingestion (540 s) keeps the defaults; search (120 s) sets 3 x 10 s in infra/.
    GEMINI_TIMEOUT_S: float = Field(default=30, gt=0, le=300)
    GEMINI_RETRY_ATTEMPTS: int = Field(default=5, ge=1, le=10)

    # Where POST /moderate/materials/{id}/reingest publishes its notice
    # (projects/P/topics/T, the bucket notifications' topic; infra/ sets it).
    INGEST_TOPIC: str | None = None
    # Without Pub/Sub (STORAGE_EMULATOR_HOST set): where the local stack's
    # ingest function listens; lectern dev sets it.
    LECTERN_INGEST_URL: str | None = None

    # Deliveries of one object generation before its material is marked failed.
    INGEST_MAX_ATTEMPTS: int = Field(default=5, ge=1, le=50)

    AUTH_ISSUER: str | None = None
    AUTH_AUDIENCE: str | None = None
    AUTH_JWKS_URL: str | None = None
    # A first-sight token must carry email_verified: true (the JSON boolean).
    AUTH_REQUIRE_EMAIL_VERIFIED: bool = True

    CORS_ORIGINS: list[str] = Field(default_factory=list)
    MAX_UPLOAD_MB: int = Field(default=25, ge=1, le=1024)
    # How long a direct upload (POST /submit/uploads) may take before complete
    # refuses it. At most a day: the bucket's lifecycle rule deletes uploads/
    # objects a day old, which must never be one that may still be completed.
    UPLOAD_EXPIRY_HOURS: float = Field(default=6, gt=0, le=24)

    XP_UPLOAD_APPROVAL: int = Field(default=50, ge=0, le=100_000)
    XP_FILE_COMPLETED: int = Field(default=10, ge=0, le=100_000)
    XP_COURSE_COMPLETE: int = Field(default=100, ge=0, le=100_000)

    # Reading time: the most one heartbeat may credit, and the slack allowed
    # between a beat's claim and the wall-clock time since the previous beat.
    HEARTBEAT_MAX_SECONDS: int = Field(default=30, ge=1, le=600)
    HEARTBEAT_GRACE_SECONDS: int = Field(default=5, ge=0, le=60)

    # Per-user limits on the expensive calls; past them the answer is 429.
    RATE_LIMIT_UPLOADS_PER_HOUR: int = Field(default=30, ge=1, le=100_000)
    RATE_LIMIT_SEARCHES_PER_MINUTE: int = Field(default=30, ge=1, le=100_000)

    LOG_LEVEL: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("CORS_ORIGINS", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part.strip().rstrip("/") for part in value.split(",") if part.strip()]
        if isinstance(value, list):
            for origin in value:
                if origin != "*" and not _is_http_url(str(origin)):
                    raise ValueError(f"not an http(s) origin: {origin!r}")
        return value

    @field_validator("DATABASE_URL")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("postgresql+pg8000://"):
            raise ValueError("must start with postgresql+pg8000://")
        return value

    @field_validator("AUTH_JWKS_URL", "GEMINI_BASE_URL", "LECTERN_INGEST_URL")
    @classmethod
    def _check_jwks_url(cls, value: str | None) -> str | None:
        if value is not None and not _is_http_url(value):
            raise ValueError("must be an http(s) URL")
        return value

    @field_validator("AUTH_ISSUER")
    @classmethod
    def _check_issuer(cls, value: str | None) -> str | None:
        if value is not None and not _is_http_url(value):
            raise ValueError("must be an http(s) URL")
        return value

    @property
    def max_upload_bytes(self) -> int:
        return self.MAX_UPLOAD_MB * 1024 * 1024

    def require(self, needs: Needs) -> None:
        """Raise ``ConfigurationError`` naming the first missing variable."""
        missing: list[str] = []
        if Needs.DATABASE in needs and not self.DATABASE_URL:
            if not self.CLOUD_SQL_INSTANCE:
                missing.append("DATABASE_URL (or CLOUD_SQL_INSTANCE)")
            else:
                missing += [n for n in ("DB_USER", "DB_NAME") if not getattr(self, n)]
                if not self.DB_IAM_AUTH and not self.DB_PASSWORD:
                    missing.append("DB_PASSWORD (or DB_IAM_AUTH=true)")
        if Needs.AUTH in needs:
            missing += [
                n for n in ("AUTH_ISSUER", "AUTH_AUDIENCE", "AUTH_JWKS_URL") if not getattr(self, n)
            ]
        if Needs.STORAGE in needs and not self.GCS_BUCKET:
            missing.append("GCS_BUCKET")
        if Needs.EMBEDDINGS in needs and self.EMBEDDINGS_PROVIDER == "gemini":
            vertex = self.GOOGLE_CLOUD_PROJECT and self.GOOGLE_CLOUD_LOCATION
            if not self.GEMINI_API_KEY and not vertex:
                missing.append("GEMINI_API_KEY (or GOOGLE_CLOUD_PROJECT + GOOGLE_CLOUD_LOCATION)")
        if missing:
            raise ConfigurationError(f"{missing[0]}: required but not set")


def load_settings(needs: Needs = Needs.NONE) -> Settings:
    """Read the environment; raise ``ConfigurationError`` with a one-line reason."""
    try:
        settings = Settings()
    except ValidationError as error:
        first = error.errors()[0]
        name = ".".join(str(part) for part in first["loc"]) or "settings"
        raise ConfigurationError(f"{name}: {first['msg']}") from None
    settings.require(needs)
    return settings


def load_settings_or_exit(needs: Needs = Needs.NONE) -> Settings:
    """For entry points: a bad setting ends the process with one clear line."""
    try:
        return load_settings(needs)
    except ConfigurationError as error:
        print(f"lectern: configuration error: {error}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
