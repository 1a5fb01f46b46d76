"""Bearer tokens: RS256 against the JWKS, iss/aud/exp/nbf checked, users made on first sight."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from shared.db.models import User
from shared.local.issuer import LOCAL_AUDIENCE, LOCAL_ISSUER, LocalIssuer
from tests.parallel import run_together


@pytest.fixture(scope="module")
def client(function_client: Callable[[str], Any]) -> Any:
    return function_client("profile")


def _me(client: Any, token: str) -> Any:
    return client.get("/me", headers={"Authorization": f"Bearer {token}"})


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def test_a_valid_token_creates_a_student_with_lowercased_email(
    client: Any, issuer: LocalIssuer, sessions: sessionmaker[Session]
) -> None:
    token = issuer.token(
        subject="auth0|first-sight",
        email="New.Person@Example.EDU",
        name="New",
        email_verified=True,
    )
    response = _me(client, token)
    assert response.status_code == 200, response.json
    user = response.json["user"]
    assert user["email"] == "new.person@example.edu"
    assert user["role"] == "STUDENT"
    assert user["name"] == "New"
    assert user["created_at"].endswith("Z")
    with sessions.begin() as session:
        row = session.scalar(select(User).where(User.auth0_id == "auth0|first-sight"))
        assert row is not None
        assert row.last_login_at is not None


def test_role_comes_from_the_database_not_the_token(client: Any, issuer: LocalIssuer) -> None:
    token = issuer.token(
        subject="auth0|claims-admin",
        email="claims@example.edu",
        role="ADMIN",
        roles=["ADMIN"],
        email_verified=True,
    )
    response = _me(client, token)
    assert response.status_code == 200
    assert response.json["user"]["role"] == "STUDENT"


def _forged_tokens(issuer: LocalIssuer) -> dict[str, str]:
    now = int(time.time())
    claims = {
        "sub": "auth0|x",
        "email": "x@example.edu",
        "iss": LOCAL_ISSUER,
        "aud": LOCAL_AUDIENCE,
    }
    valid = issuer.token(subject="auth0|x", email="x@example.edu")
    header, _, signature = valid.split(".")
    tampered_payload = _b64({**claims, "sub": "auth0|someone-else", "exp": now + 3600})
    public_pem = issuer.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    # The classic key-confusion attack: HS256 keyed with the public key.
    hs256 = (
        _b64({"alg": "HS256", "typ": "JWT", "kid": issuer.kid})
        + "."
        + _b64({**claims, "exp": now + 3600})
    )
    import hmac

    mac = hmac.new(public_pem, hs256.encode(), hashlib.sha256).digest()
    hs256 += "." + base64.urlsafe_b64encode(mac).decode().rstrip("=")
    none = _b64({"alg": "none", "typ": "JWT"}) + "." + _b64({**claims, "exp": now + 3600}) + "."
    other_key = LocalIssuer.__new__(LocalIssuer)
    from cryptography.hazmat.primitives.asymmetric import rsa

    other_key.private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other_key.kid = issuer.kid  # claims to be our key, is not
    return {
        "tampered": f"{header}.{tampered_payload}.{signature}",
        "expired": issuer.token(subject="auth0|x", email="x@example.edu", lifetime_seconds=-120),
        "wrong_audience": issuer.token(
            subject="auth0|x", email="x@example.edu", audience="https://other.api"
        ),
        "wrong_issuer": issuer.token(
            subject="auth0|x", email="x@example.edu", issuer="https://evil.example/"
        ),
        "alg_none": none,
        "hs256": hs256,
        "wrong_key": other_key.token(subject="auth0|x", email="x@example.edu"),
        "not_yet_valid": issuer.token(subject="auth0|x", email="x@example.edu", nbf=now + 3600),
        "garbage": "not-a-jwt",
        "no_exp": jwt.encode(
            claims, issuer.private_key, algorithm="RS256", headers={"kid": issuer.kid}
        ),
    }


@pytest.mark.parametrize(
    "kind",
    [
        "tampered",
        "expired",
        "wrong_audience",
        "wrong_issuer",
        "alg_none",
        "hs256",
        "wrong_key",
        "not_yet_valid",
        "garbage",
        "no_exp",
    ],
)
def test_bad_tokens_are_401(
    client: Any, issuer: LocalIssuer, sessions: sessionmaker[Session], kind: str
) -> None:
    token = _forged_tokens(issuer)[kind]
    response = _me(client, token)
    assert response.status_code == 401, (kind, response.json)
    assert response.json["error"]["code"] in {"invalid_token", "token_expired"}
    with sessions.begin() as session:
        assert session.scalar(select(User).where(User.auth0_id == "auth0|someone-else")) is None


@pytest.mark.parametrize("header", [None, "Basic abc", "Bearer", "Bearer    "])
def test_missing_token_is_401(client: Any, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    response = client.get("/me", headers=headers)
    assert response.status_code == 401
    assert response.json["error"]["code"] == "missing_token"


def test_last_login_is_not_rewritten_on_every_request(
    client: Any, issuer: LocalIssuer, sessions: sessionmaker[Session]
) -> None:
    token = issuer.token(
        subject="auth0|frequent", email="frequent@example.edu", email_verified=True
    )
    assert _me(client, token).status_code == 200
    with sessions.begin() as session:
        first = session.scalar(select(User.last_login_at).where(User.auth0_id == "auth0|frequent"))
    assert _me(client, token).status_code == 200
    with sessions.begin() as session:
        second = session.scalar(select(User.last_login_at).where(User.auth0_id == "auth0|frequent"))
    assert first is not None
    assert first == second


def test_parallel_first_requests_create_one_user(
    client: Any, issuer: LocalIssuer, sessions: sessionmaker[Session]
) -> None:
    token = issuer.token(subject="auth0|racer", email="racer@example.edu", email_verified=True)
    clients = [client.application.test_client() for _ in range(6)]
    statuses = run_together(
        [partial(lambda own: _me(own, token).status_code, own) for own in clients]
    )
    assert statuses == [200] * 6
    with sessions.begin() as session:
        count = session.scalar(select(func.count()).where(User.auth0_id == "auth0|racer"))
    assert count == 1


def test_an_email_owned_by_another_account_is_409(client: Any, issuer: LocalIssuer) -> None:
    first = issuer.token(subject="auth0|owner", email="shared@example.edu", email_verified=True)
    assert _me(client, first).status_code == 200
    second = issuer.token(
        subject="google-oauth2|other", email="Shared@example.edu", email_verified=True
    )
    response = _me(client, second)
    assert response.status_code == 409
    assert response.json["error"]["code"] == "email_in_use"


def test_an_unverified_email_cannot_claim_an_address(
    client: Any, issuer: LocalIssuer, sessions: sessionmaker[Session]
) -> None:
    token = issuer.token(subject="auth0|squatter", email="victim@example.edu", email_verified=False)
    response = _me(client, token)
    assert (response.status_code, response.json["error"]["code"]) == (401, "email_not_verified")
    with sessions.begin() as session:
        assert session.scalar(select(User).where(User.email == "victim@example.edu")) is None
    verified = issuer.token(subject="auth0|victim", email="victim@example.edu", email_verified=True)
    assert _me(client, verified).status_code == 200


class _Absent:
    def __repr__(self) -> str:
        return "absent"


_ABSENT = _Absent()


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 30 else f"{text[:24]}...({len(text)})"


def _digest(value: object) -> str:
    return hashlib.sha256(repr(value).encode(errors="backslashreplace")).hexdigest()[:12]


@pytest.mark.parametrize("verified", [_ABSENT, "true", "false", 1, None, False], ids=_short)
def test_first_sight_needs_email_verified_to_be_the_boolean_true(
    client: Any, issuer: LocalIssuer, sessions: sessionmaker[Session], verified: object
) -> None:
    subject = f"auth0|unverified-{_digest(verified)}"
    email = f"unverified-{_digest(verified)}@example.edu"
    extra: dict[str, Any] = {} if verified is _ABSENT else {"email_verified": verified}
    response = _me(client, issuer.token(subject=subject, email=email, **extra))
    assert (response.status_code, response.json["error"]["code"]) == (401, "email_not_verified")
    with sessions.begin() as session:
        assert session.scalar(select(User).where(User.auth0_id == subject)) is None


def test_an_existing_user_is_not_asked_for_email_verified_again(
    client: Any, issuer: LocalIssuer
) -> None:
    first = issuer.token(subject="auth0|returning", email="back@example.edu", email_verified=True)
    assert _me(client, first).status_code == 200
    later = issuer.token(subject="auth0|returning", email="back@example.edu")
    assert _me(client, later).status_code == 200


def test_without_the_setting_only_an_explicit_false_is_refused(
    sessions: sessionmaker[Session],
) -> None:
    from shared.auth import current_user
    from shared.errors import Unauthorized

    claims = {"sub": "auth0|lenient", "email": "lenient@example.edu"}
    with sessions.begin() as session:
        user = current_user(session, claims, require_verified=False)
        assert user.email == "lenient@example.edu"
    with sessions.begin() as session, pytest.raises(Unauthorized) as refused:
        current_user(
            session,
            {"sub": "auth0|lenient-2", "email": "l2@example.edu", "email_verified": False},
            require_verified=False,
        )
    assert refused.value.code == "email_not_verified"
    with sessions.begin() as session, pytest.raises(Unauthorized) as strict:
        current_user(session, {"sub": "auth0|strict", "email": "strict@example.edu"})
    assert strict.value.code == "email_not_verified"


@pytest.mark.parametrize(
    ("claim", "stored"),
    [
        ("  Grace Hopper  ", "Grace Hopper"),
        ("Zoë 李 O'Brien", "Zoë 李 O'Brien"),
        ("Ada\nLovelace", "Ada Lovelace"),
        ("Tab\tName\r\n", "Tab Name"),
        ("x" * 150, "x" * 100),
        ("y" * 99 + "\n" + "z" * 10, "y" * 99),
        ("Ann\x00e", "Anne"),
        ("Bad\ud800Name", "BadName"),
        ("\udfff", ""),
        ("\x00\x01\x7f", ""),
        ("   ", ""),
        (42, ""),
        (None, ""),
        (["Ada"], ""),
    ],
    ids=_short,
)
def test_the_name_claim_is_stored_by_patch_mes_rule_or_cleaned(
    client: Any,
    issuer: LocalIssuer,
    sessions: sessionmaker[Session],
    claim: Any,
    stored: str,
) -> None:
    subject = f"auth0|name-{_digest(claim)}"
    token = issuer.token(
        subject=subject, email=f"{subject[6:]}@example.edu", name=claim, email_verified=True
    )
    response = _me(client, token)
    assert response.status_code == 200, response.json
    assert response.json["user"]["name"] == stored
    with sessions.begin() as session:
        assert session.scalar(select(User.name).where(User.auth0_id == subject)) == stored


@pytest.mark.parametrize(
    "email",
    [
        "nul\x00@example.edu",
        "surrogate\ud800@example.edu",
        "line\nbreak@example.edu",
        "no-at-sign.example.edu",
        "a" * 400 + "@example.edu",
        "   ",
        7,
    ],
    ids=_short,
)
def test_an_unusable_email_claim_is_401_and_creates_no_user(
    client: Any, issuer: LocalIssuer, sessions: sessionmaker[Session], email: object
) -> None:
    subject = f"auth0|email-{_digest(email)}"
    token = issuer.token(subject=subject, email=email, email_verified=True)  # type: ignore[arg-type]
    response = _me(client, token)
    assert (response.status_code, response.json["error"]["code"]) == (401, "invalid_token")
    with sessions.begin() as session:
        assert session.scalar(select(User).where(User.auth0_id == subject)) is None


@pytest.mark.parametrize(
    "subject", ["auth0|nul\x00", "auth0|\ud800", "auth0|line\nbreak", "s" * 300, 12345], ids=_short
)
def test_an_unusable_subject_is_401_before_the_database(
    client: Any, issuer: LocalIssuer, subject: object
) -> None:
    token = issuer.token(subject=subject, email="subject@example.edu", email_verified=True)  # type: ignore[arg-type]
    response = _me(client, token)
    assert (response.status_code, response.json["error"]["code"]) == (401, "invalid_token")


def test_a_token_with_an_unknown_critical_extension_is_401(
    client: Any, issuer: LocalIssuer, sessions: sessionmaker[Session]
) -> None:
    now = int(time.time())
    claims = {
        "sub": "auth0|critical",
        "email": "critical@example.edu",
        "email_verified": True,
        "iss": LOCAL_ISSUER,
        "aud": LOCAL_AUDIENCE,
        "exp": now + 3600,
    }
    token = jwt.encode(
        claims,
        issuer.private_key,
        algorithm="RS256",
        headers={
            "kid": issuer.kid,
            "crit": ["urn:example:must-understand"],
            "urn:example:must-understand": True,
        },
    )
    response = _me(client, token)
    assert (response.status_code, response.json["error"]["code"]) == (401, "invalid_token")
    with sessions.begin() as session:
        assert session.scalar(select(User).where(User.auth0_id == "auth0|critical")) is None
    # The same claims without the extension are accepted: the header was the reason.
    plain = jwt.encode(claims, issuer.private_key, algorithm="RS256", headers={"kid": issuer.kid})
    assert _me(client, plain).status_code == 200


def test_the_setting_off_lets_an_absent_claim_in_through_the_app(
    function_client: Callable[[str], Any], issuer: LocalIssuer
) -> None:
    """AUTH_REQUIRE_EMAIL_VERIFIED=false reaches the router's Call.user."""
    import os

    os.environ["AUTH_REQUIRE_EMAIL_VERIFIED"] = "false"
    relaxed = function_client("profile")
    absent = issuer.token(subject="auth0|relaxed", email="relaxed@example.edu")
    assert _me(relaxed, absent).status_code == 200
    refused = issuer.token(
        subject="auth0|relaxed-no", email="relaxed-no@example.edu", email_verified=False
    )
    assert _me(relaxed, refused).json["error"]["code"] == "email_not_verified"
