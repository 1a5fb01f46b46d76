"""The JWKS as a dependency: outages, rotation, made-up kids and non-RSA keys.

A JWKS server on loopback that a test can break stands in for the issuer's;
the profile function is the real functions-framework app. Time is moved on the
app's key set by hand, so "after the cache lifetime" takes no waiting.
"""

from __future__ import annotations

import base64
import json
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from shared.auth import FETCH_TIMEOUT, KEYS_LIFESPAN, RETRY_SECONDS, UNKNOWN_KID_INTERVAL
from shared.local.issuer import LOCAL_AUDIENCE, LOCAL_ISSUER, LocalIssuer

HMAC_SECRET = b"a shared secret that must never verify an RS256 token"


class Jwks:
    """A JWKS endpoint on loopback; ``mode`` says how it answers."""

    def __init__(self, keys: list[dict[str, Any]]) -> None:
        self.keys = keys
        self.mode = "ok"
        self.requests = 0
        self.release = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.requests += 1
                status, kind, body = owner.answer()
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/.well-known/jwks.json"

    def answer(self) -> tuple[int, str, bytes]:
        good = json.dumps({"keys": self.keys}).encode()
        if self.mode == "error":
            return 503, "text/plain", b"upstream unavailable"
        if self.mode == "garbage":
            return 200, "text/html", b"<html>maintenance</html>"
        if self.mode == "not_an_object":
            return 200, "application/json", b"[]"
        if self.mode == "no_rsa_keys":
            only_hmac = [key for key in self.keys if key["kty"] != "RSA"]
            return 200, "application/json", json.dumps({"keys": only_hmac}).encode()
        if self.mode == "hang":
            self.release.wait(timeout=15)
        return 200, "application/json", good

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


class Monotonic:
    """A monotonic clock moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _hmac_jwk() -> dict[str, Any]:
    k = base64.urlsafe_b64encode(HMAC_SECRET).decode().rstrip("=")
    return {"kty": "oct", "k": k, "kid": "hmac", "alg": "HS256", "use": "sig"}


@pytest.fixture(scope="module")
def jwks(issuer: LocalIssuer) -> Iterator[Jwks]:
    server = Jwks([*issuer.jwks()["keys"], _hmac_jwk()])
    yield server
    server.close()


@pytest.fixture(scope="module")
def jwks_url(jwks: Jwks) -> str:
    """This module's functions fetch their keys from the breakable server."""
    return jwks.url


@pytest.fixture(autouse=True)
def _healthy(jwks: Jwks) -> Iterator[None]:
    jwks.mode = "ok"
    jwks.release.clear()
    yield
    jwks.mode = "ok"
    jwks.release.set()


@pytest.fixture
def profile(function_client: Callable[[str], Any]) -> tuple[Any, Monotonic]:
    """A freshly loaded profile function (no keys fetched yet) and its key set's clock."""
    client = function_client("profile")
    module = sys.modules["main"]
    assert str(module.__file__).endswith("functions/profile/main.py")
    clock = Monotonic()
    module.router.authenticator.keys.clock = clock
    return client, clock


@pytest.fixture
def headers(user_token: Callable[..., Any]) -> dict[str, str]:
    authorization: dict[str, str] = user_token()[1]
    return authorization


def _me(client: Any, headers: dict[str, str]) -> Any:
    return client.get("/me", headers=headers)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _claims(subject: str) -> dict[str, Any]:
    now = int(time.time())
    return {
        "sub": subject,
        "email": f"{subject.partition('|')[2]}@example.edu",
        "email_verified": True,
        "iss": LOCAL_ISSUER,
        "aud": LOCAL_AUDIENCE,
        "iat": now,
        "exp": now + 3600,
    }


def test_keys_outlive_a_jwks_outage_longer_than_the_cache_lifetime(
    profile: tuple[Any, Monotonic], jwks: Jwks, headers: dict[str, str]
) -> None:
    client, clock = profile
    before = jwks.requests
    assert _me(client, headers).status_code == 200
    assert jwks.requests == before + 1

    for mode in ("error", "garbage", "not_an_object", "no_rsa_keys"):
        jwks.mode = mode
        clock.advance(KEYS_LIFESPAN + 1)
        attempts = jwks.requests
        response = _me(client, headers)
        assert response.status_code == 200, (mode, response.json)
        assert jwks.requests == attempts + 1, mode  # the refresh was tried, and failed
        # While it is down, the issuer is asked at most once per RETRY_SECONDS.
        for _ in range(10):
            assert _me(client, headers).status_code == 200
        assert jwks.requests == attempts + 1, mode
        clock.advance(RETRY_SECONDS + 1)
        assert _me(client, headers).status_code == 200
        assert jwks.requests == attempts + 2, mode

    # Back up: the next attempt succeeds and the fresh set is cached for its lifetime.
    jwks.mode = "ok"
    clock.advance(RETRY_SECONDS + 1)
    assert _me(client, headers).status_code == 200
    recovered = jwks.requests
    clock.advance(KEYS_LIFESPAN - 10)
    assert _me(client, headers).status_code == 200
    assert jwks.requests == recovered
    clock.advance(20)
    assert _me(client, headers).status_code == 200
    assert jwks.requests == recovered + 1


@pytest.mark.parametrize("mode", ["error", "garbage", "not_an_object", "no_rsa_keys"])
def test_with_no_keys_ever_fetched_a_down_jwks_is_503_with_retry_after(
    profile: tuple[Any, Monotonic], jwks: Jwks, headers: dict[str, str], mode: str
) -> None:
    client, clock = profile
    jwks.mode = mode
    before = jwks.requests
    response = _me(client, headers)
    assert response.status_code == 503, response.json
    assert response.json["error"]["code"] == "service_unavailable"
    assert response.headers["Retry-After"] == str(RETRY_SECONDS)
    assert jwks.requests == before + 1
    # Within Retry-After the issuer is not asked again: 503 at once.
    assert _me(client, headers).status_code == 503
    assert jwks.requests == before + 1
    jwks.mode = "ok"
    clock.advance(RETRY_SECONDS)
    assert _me(client, headers).status_code == 200


def test_a_hanging_jwks_is_given_up_well_within_the_function_timeout(
    profile: tuple[Any, Monotonic], jwks: Jwks, headers: dict[str, str]
) -> None:
    client, _ = profile
    assert FETCH_TIMEOUT <= 5
    jwks.mode = "hang"
    started = time.monotonic()
    response = _me(client, headers)
    elapsed = time.monotonic() - started
    assert response.status_code == 503
    assert FETCH_TIMEOUT - 0.5 <= elapsed < FETCH_TIMEOUT + 2


def test_a_rotated_key_is_fetched_but_made_up_kids_cannot_hammer_the_issuer(
    profile: tuple[Any, Monotonic], jwks: Jwks, issuer: LocalIssuer, headers: dict[str, str]
) -> None:
    client, clock = profile
    assert _me(client, headers).status_code == 200
    rotated = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(rotated.public_key(), as_dict=True)
    jwks.keys.append({**jwk, "kid": "rotated", "use": "sig", "alg": "RS256"})
    try:
        before = jwks.requests
        token = jwt.encode(
            _claims("auth0|rotated"), rotated, algorithm="RS256", headers={"kid": "rotated"}
        )
        assert _me(client, _bearer(token)).status_code == 200
        assert jwks.requests == before + 1  # the unknown kid forced one refresh

        def made_up() -> Any:
            forged = jwt.encode(
                _claims("auth0|kid-flood"),
                rotated,
                algorithm="RS256",
                headers={"kid": uuid.uuid4().hex},
            )
            return _me(client, _bearer(forged))

        for _ in range(20):
            response = made_up()
            assert (response.status_code, response.json["error"]["code"]) == (
                401,
                "invalid_token",
            )
        assert jwks.requests == before + 1
        clock.advance(UNKNOWN_KID_INTERVAL + 1)
        for _ in range(20):
            assert made_up().status_code == 401
        assert jwks.requests == before + 2
        # Known keys keep working throughout.
        assert _me(client, headers).status_code == 200
        assert _me(client, _bearer(token)).status_code == 200
    finally:
        jwks.keys.pop()


def test_an_hmac_key_in_the_jwks_never_verifies_a_token(
    profile: tuple[Any, Monotonic], jwks: Jwks, issuer: LocalIssuer
) -> None:
    client, _ = profile
    claims = _claims("auth0|hmac")
    hs256 = jwt.encode(claims, HMAC_SECRET, algorithm="HS256", headers={"kid": "hmac"})
    # The forgery is sound: with the JWKS's oct key as an HMAC key it verifies.
    assert jwt.decode(hs256, HMAC_SECRET, algorithms=["HS256"], audience=LOCAL_AUDIENCE)
    # An RS256 header naming the oct key, signed with a key the issuer never published.
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rs256 = jwt.encode(claims, stranger, algorithm="RS256", headers={"kid": "hmac"})
    # And RS256 naming the oct key but signed by the real issuer key.
    mislabelled = jwt.encode(claims, issuer.private_key, algorithm="RS256", headers={"kid": "hmac"})
    for token in (hs256, rs256, mislabelled):
        response = _me(client, _bearer(token))
        assert (response.status_code, response.json["error"]["code"]) == (401, "invalid_token")
