"""Bearer-token authentication: RS256 JWTs verified against a JWKS.

Only RS256 is accepted (``alg: none``, HS256 and every other algorithm are
refused before any key is looked at). ``iss``, ``aud``, ``exp`` and ``sub`` are
required and checked, ``nbf`` when present. The JWKS is fetched lazily and
cached by PyJWT's ``PyJWKClient``, which refetches once on an unknown ``kid``
so key rotation needs no restart.

The token names the person; the database says what they may do. A ``sub``
seen for the first time becomes a STUDENT; ``role`` is never read from the token.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import jwt
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert

from shared.config import Needs
from shared.db.models import User
from shared.errors import Conflict, ServiceUnavailable, Unauthorized

if TYPE_CHECKING:
    import flask
    from sqlalchemy.orm import Session

    from shared.config import Settings

__all__ = ["Authenticator", "current_user", "get_or_create_user", "verified_claims"]

log = logging.getLogger("lectern.auth")

ALGORITHMS = ["RS256"]
# Clock skew tolerated between the issuer and us.
LEEWAY_SECONDS = 30
# last_login_at is refreshed at most this often, so a busy user costs no write per request.
LOGIN_REFRESH = timedelta(minutes=15)


class Authenticator:
    """Verifies tokens for one issuer and audience."""

    def __init__(self, settings: Settings) -> None:
        settings.require(Needs.AUTH)
        self.issuer = str(settings.AUTH_ISSUER)
        self.audience = str(settings.AUTH_AUDIENCE)
        self.jwks_url = str(settings.AUTH_JWKS_URL)
        self._jwks: jwt.PyJWKClient | None = None

    @property
    def jwks(self) -> jwt.PyJWKClient:
        if self._jwks is None:
            self._jwks = jwt.PyJWKClient(self.jwks_url, cache_jwk_set=True, lifespan=600, timeout=5)
        return self._jwks

    def verify(self, token: str) -> dict[str, Any]:
        """The token's claims, or ``Unauthorized`` saying why not."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthorized("the token is malformed", code="invalid_token") from None
        if header.get("alg") not in ALGORITHMS:
            raise Unauthorized("the token must be signed with RS256", code="invalid_token")
        try:
            key = self.jwks.get_signing_key_from_jwt(token)
        except jwt.PyJWKClientConnectionError:
            raise ServiceUnavailable("the token issuer's keys cannot be fetched") from None
        except jwt.PyJWTError:
            raise Unauthorized("the token's signing key is unknown", code="invalid_token") from None
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
    """The user with this ``sub``, created as a STUDENT on first sight."""
    user = session.scalar(select(User).where(User.auth0_id == auth0_id))
    if user is None:
        # ON CONFLICT DO NOTHING: two first requests racing create one user.
        session.execute(
            insert(User)
            .values(auth0_id=auth0_id, email=email.lower(), name=name, role="STUDENT")
            .on_conflict_do_nothing()
        )
        user = session.scalar(select(User).where(User.auth0_id == auth0_id))
        if user is None:
            raise Conflict("this email already belongs to another account", code="email_in_use")
    return user


def verified_claims(authenticator: Authenticator, request: flask.Request) -> dict[str, Any]:
    """The request's bearer token, verified; 401 when missing or invalid."""
    claims = authenticator.verify(bearer_token(request))
    if not isinstance(claims.get("sub"), str) or not claims["sub"]:
        raise Unauthorized("the token has no subject", code="invalid_token")
    return claims


def current_user(session: Session, claims: dict[str, Any]) -> User:
    """The user the verified claims name, created on first sight."""
    subject = str(claims["sub"])
    email = claims.get("email")
    existing = session.scalar(select(User).where(User.auth0_id == subject))
    if existing is None:
        if not isinstance(email, str) or "@" not in email:
            raise Unauthorized("the token has no email claim", code="invalid_token")
        # Emails are unique here: an unverified one could claim someone else's address.
        if claims.get("email_verified") is False:
            raise Unauthorized(
                "verify your email address, then sign in again", code="email_not_verified"
            )
        name = claims.get("name")
        existing = get_or_create_user(
            session,
            auth0_id=subject,
            email=email,
            name=name if isinstance(name, str) else "",
        )
    now = datetime.now(UTC)
    if existing.last_login_at is None or now - existing.last_login_at > LOGIN_REFRESH:
        existing.last_login_at = now
    return existing
