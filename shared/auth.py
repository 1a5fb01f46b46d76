"""Bearer-token authentication: RS256 JWTs verified against a JWKS.

Only RS256 is accepted (``alg: none``, HS256 and every other algorithm are
refused before any key is looked at), only RSA keys of the JWKS are used, and
a token with a ``crit`` header is refused (no extension is understood here).
``iss``, ``aud``, ``exp`` and ``sub`` are required and checked, ``nbf`` when
present.

The JWKS is fetched lazily by ``KeySet``, cached for ``KEYS_LIFESPAN`` and
refetched on an unknown ``kid`` (at most once per ``UNKNOWN_KID_INTERVAL``, so
a flood of made-up kids cannot hammer the issuer), so key rotation needs no
restart. When a refresh fails the last good key set is kept: a JWKS outage
longer than the cache lifetime is not an outage of every function. Only with
no key set ever fetched is the answer 503.

The token names the person; the database says what they may do. A ``sub``
seen for the first time becomes a STUDENT (or what ``lectern admin grant``
promised its email); ``role`` is never read from the token.
"""

from __future__ import annotations

import logging
import threading
import time
import unicodedata
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import StringConstraints, TypeAdapter, ValidationError
from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert

from shared.config import Needs
from shared.db.models import RoleGrant, User
from shared.errors import Conflict, ServiceUnavailable, Unauthorized
from shared.fields import SingleLineText

if TYPE_CHECKING:
    import flask
    import jwt
    from sqlalchemy.orm import Session

    from shared.config import Settings

__all__ = [
    "Authenticator",
    "KeySet",
    "KeysUnavailable",
    "current_user",
    "display_name",
    "get_or_create_user",
    "verified_claims",
]

log = logging.getLogger("lectern.auth")

ALGORITHMS = ["RS256"]
# Clock skew tolerated between the issuer and us.
LEEWAY_SECONDS = 30
# last_login_at is refreshed at most this often, so a busy user costs no write per request.
LOGIN_REFRESH = timedelta(minutes=15)

# A fresh key set is used this long before it is refetched.
KEYS_LIFESPAN = 600.0
# One JWKS request may take this long: a small part of a function's 60 s.
FETCH_TIMEOUT = 3.0
# Refetches forced by a kid the key set lacks: at most one per this interval.
UNKNOWN_KID_INTERVAL = 30.0
# After a failed fetch the JWKS is not asked again for this long (the 503's Retry-After).
RETRY_SECONDS = 5

# The same rule as PATCH /me's name; claims longer than this are truncated.
MAX_NAME_CHARACTERS = 100
# RFC 5321 caps a forward path at 256 octets; 320 is the often-quoted upper bound.
MAX_EMAIL_CHARACTERS = 320
MAX_SUBJECT_CHARACTERS = 255

_NAME = TypeAdapter(
    Annotated[SingleLineText, StringConstraints(min_length=1, max_length=MAX_NAME_CHARACTERS)]
)
_EMAIL = TypeAdapter(
    Annotated[SingleLineText, StringConstraints(min_length=3, max_length=MAX_EMAIL_CHARACTERS)]
)
_SUBJECT = TypeAdapter(
    Annotated[SingleLineText, StringConstraints(min_length=1, max_length=MAX_SUBJECT_CHARACTERS)]
)


def _unstorable(value: str) -> bool:
    """NUL (PostgreSQL text cannot hold it) or a lone surrogate (not encodable as UTF-8)."""
    return "\x00" in value or any(0xD800 <= ord(c) <= 0xDFFF for c in value)


class KeysUnavailable(Exception):
    """No key set has been fetched yet and the JWKS cannot be fetched now."""


class KeySet:
    """The issuer's RSA signing keys by kid, kept through a JWKS outage.

    Thread-safe. One thread fetches at a time; while it does, others are
    served the key set already held (or wait, when none is held yet).
    """

    def __init__(
        self,
        url: str,
        *,
        lifespan: float = KEYS_LIFESPAN,
        timeout: float = FETCH_TIMEOUT,
        unknown_kid_interval: float = UNKNOWN_KID_INTERVAL,
        retry_seconds: float = RETRY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self._client: jwt.PyJWKClient | None = None
        self.lifespan = lifespan
        self.unknown_kid_interval = unknown_kid_interval
        self.retry_seconds = retry_seconds
        self.clock = clock
        self._keys: dict[str, jwt.PyJWK] | None = None
        self._fetched_at = 0.0
        self._failed_at: float | None = None
        self._forced_at: float | None = None
        self._lock = threading.Lock()

    def key(self, kid: str) -> jwt.PyJWK | None:
        """The key with this kid, or None; ``KeysUnavailable`` if none can be had."""
        keys = self._keys
        if keys is None or self.clock() - self._fetched_at >= self.lifespan:
            keys = self._refresh(unknown_kid=None)
        if kid in keys:
            return keys[kid]
        return self._refresh(unknown_kid=kid).get(kid)

    def _refresh(self, *, unknown_kid: str | None) -> dict[str, jwt.PyJWK]:
        held = self._keys
        if held is not None and not self._lock.acquire(blocking=False):
            return held  # another thread is fetching: serve what is held meanwhile
        if held is None:
            self._lock.acquire()
        try:
            now = self.clock()
            keys = self._keys
            if keys is not None:
                if unknown_kid is None and now - self._fetched_at < self.lifespan:
                    return keys  # refreshed while this thread waited
                if unknown_kid is not None:
                    if unknown_kid in keys:
                        return keys
                    if (
                        self._forced_at is not None
                        and now - self._forced_at < self.unknown_kid_interval
                    ):
                        return keys
            if self._failed_at is not None and now - self._failed_at < self.retry_seconds:
                if keys is None:
                    raise KeysUnavailable("the last attempt to fetch the JWKS failed")
                return keys
            if unknown_kid is not None:
                self._forced_at = now
            try:
                fresh = self._fetch()
            except Exception as error:  # what the JWKS serves is untrusted input
                self._failed_at = now
                if keys is None:
                    raise KeysUnavailable(str(error)) from error
                log.warning(
                    "JWKS refresh failed, keeping the key set fetched %.0f s ago: %s",
                    now - self._fetched_at,
                    error,
                )
                return keys
            self._keys, self._fetched_at, self._failed_at = fresh, now, None
            return fresh
        finally:
            self._lock.release()

    def _fetch(self) -> dict[str, jwt.PyJWK]:
        import jwt

        if self._client is None:
            # PyJWKClient only for the request (http(s) only, no redirects, timeout);
            # the caching is done here, because its cache drops keys on a failed refresh.
            self._client = jwt.PyJWKClient(self.url, cache_jwk_set=False, timeout=self.timeout)
        data = self._client.fetch_data()
        if not isinstance(data, dict):
            raise jwt.PyJWKClientError("the JWKS is not a JSON object")
        keys = {
            key.key_id: key
            for key in jwt.PyJWKSet.from_dict(data).keys
            if key.key_type == "RSA" and key.public_key_use in ("sig", None) and key.key_id
        }
        if not keys:
            raise jwt.PyJWKClientError("the JWKS holds no RSA signing key")
        return keys


class Authenticator:
    """Verifies tokens for one issuer and audience."""

    def __init__(self, settings: Settings) -> None:
        settings.require(Needs.AUTH)
        self.issuer = str(settings.AUTH_ISSUER)
        self.audience = str(settings.AUTH_AUDIENCE)
        self.jwks_url = str(settings.AUTH_JWKS_URL)
        # Nothing is fetched until the first token arrives.
        self.keys = KeySet(self.jwks_url)

    def verify(self, token: str) -> dict[str, Any]:
        """The token's claims, or ``Unauthorized`` saying why not."""
        # jwt and cryptography (~30 ms) load with the first token, not at start.
        import jwt

        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthorized("the token is malformed", code="invalid_token") from None
        if header.get("alg") not in ALGORITHMS:
            raise Unauthorized("the token must be signed with RS256", code="invalid_token")
        if "crit" in header:
            raise Unauthorized("the token names a critical extension", code="invalid_token")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise Unauthorized("the token names no signing key", code="invalid_token")
        try:
            key = self.keys.key(kid)
        except KeysUnavailable:
            raise ServiceUnavailable(
                "the token issuer's keys cannot be fetched",
                headers={"Retry-After": str(RETRY_SECONDS)},
            ) from None
        if key is None:
            raise Unauthorized("the token's signing key is unknown", code="invalid_token")
        try:
            return jwt.decode(
                token,
                key.key,
                algorithms=ALGORITHMS,
                audience=self.audience,
                issuer=self.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("the token has expired", code="token_expired") from None
        except jwt.PyJWTError as error:
            raise Unauthorized(f"the token is not valid: {error}", code="invalid_token") from None


def bearer_token(request: flask.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("send Authorization: Bearer <token>", code="missing_token")
    return token.strip()


def get_or_create_user(session: Session, *, auth0_id: str, email: str, name: str) -> User:
    """The user with this ``sub``, created on first sight: as a STUDENT, or with
    the role ``lectern admin grant`` promised this email (the grant is used up)."""
    user = session.scalar(select(User).where(User.auth0_id == auth0_id))
    if user is None:
        # Deleted in this transaction: a racing first request waits on the row
        # and then finds none (it loses the insert below anyway), and if this
        # transaction fails the grant is still there for the next sign-in.
        granted = session.scalar(
            delete(RoleGrant).where(RoleGrant.email == func.lower(email)).returning(RoleGrant.role)
        )
        # ON CONFLICT DO NOTHING: two first requests racing create one user.
        # Lower-cased by PostgreSQL, whose lower() the email_lowercase check uses.
        session.execute(
            insert(User)
            .values(
                auth0_id=auth0_id,
                email=func.lower(email),
                name=name,
                role=granted or "STUDENT",
            )
            .on_conflict_do_nothing()
        )
        user = session.scalar(select(User).where(User.auth0_id == auth0_id))
        if user is None:
            raise Conflict("this email already belongs to another account", code="email_in_use")
    return user


def verified_claims(authenticator: Authenticator, request: flask.Request) -> dict[str, Any]:
    """The request's bearer token, verified; 401 when missing or invalid."""
    claims = authenticator.verify(bearer_token(request))
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise Unauthorized("the token has no subject", code="invalid_token")
    # The subject is looked up on every request: it must be storable text.
    try:
        valid = not _unstorable(subject) and _SUBJECT.validate_python(subject) == subject
    except ValidationError:
        valid = False
    if not valid:
        raise Unauthorized("the token's subject is malformed", code="invalid_token")
    return claims


def display_name(claim: object) -> str:
    """The ``name`` claim as it is stored on first sight.

    A name PATCH /me would accept (one line, 1-100 characters after trimming)
    is kept as it is. Anything else is cleaned rather than refused, so an
    identity provider's odd display name cannot lock anyone out: NUL and lone
    surrogates are dropped, other control characters and line breaks become
    spaces, runs of whitespace collapse, and the result is cut to 100
    characters. What is still not a valid name, or a missing or non-string
    claim, is stored as "" (the user can set a name later).
    """
    if not isinstance(claim, str):
        return ""
    if not _unstorable(claim):
        try:
            return _NAME.validate_python(claim)
        except ValidationError:
            pass
    kept = "".join("" if c == "\x00" or unicodedata.category(c) == "Cs" else c for c in claim)
    spaced = "".join(" " if unicodedata.category(c) == "Cc" else c for c in kept)
    cleaned = " ".join(spaced.split())[:MAX_NAME_CHARACTERS].strip()
    try:
        return _NAME.validate_python(cleaned)
    except ValidationError:
        return ""


def _first_sight_email(claim: object) -> str:
    if not isinstance(claim, str) or _unstorable(claim):
        raise Unauthorized("the token has no usable email claim", code="invalid_token")
    try:
        email = _EMAIL.validate_python(claim)
    except ValidationError:
        raise Unauthorized("the token has no usable email claim", code="invalid_token") from None
    if "@" not in email:
        raise Unauthorized("the token has no usable email claim", code="invalid_token")
    return email


def current_user(
    session: Session, claims: dict[str, Any], *, require_verified: bool = True
) -> User:
    """The user the verified claims name, created on first sight.

    On first sight the email must be verified: with ``require_verified``
    (``AUTH_REQUIRE_EMAIL_VERIFIED``) ``email_verified`` must be the JSON
    boolean ``true``; without it only an explicit ``false`` is refused.
    """
    subject = str(claims["sub"])
    existing = session.scalar(select(User).where(User.auth0_id == subject))
    if existing is None:
        email = _first_sight_email(claims.get("email"))
        # Emails are unique here: an unverified one could claim someone else's address.
        verified = claims.get("email_verified")
        refused = verified is not True if require_verified else verified is False
        if refused:
            raise Unauthorized(
                "verify your email address, then sign in again", code="email_not_verified"
            )
        existing = get_or_create_user(
            session, auth0_id=subject, email=email, name=display_name(claims.get("name"))
        )
    now = datetime.now(UTC)
    if existing.last_login_at is None or now - existing.last_login_at > LOGIN_REFRESH:
        existing.last_login_at = now
    return existing
