"""The local token issuer: an RSA key in the data directory and its JWKS.

It stands in for Auth0 locally and in tests; tokens are RS256 like Auth0's,
so the code path that verifies them is the production one.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

__all__ = ["LOCAL_AUDIENCE", "LOCAL_ISSUER", "LocalIssuer"]

# Fixed so tokens survive a restart on another port.
LOCAL_ISSUER = "https://lectern.local/"
LOCAL_AUDIENCE = "https://api.lectern.local"


class LocalIssuer:
    def __init__(self, key_path: Path) -> None:
        if key_path.exists():
            loaded = serialization.load_pem_private_key(key_path.read_bytes(), None)
            if not isinstance(loaded, rsa.RSAPrivateKey):
                raise ValueError(f"{key_path} does not hold an RSA private key")
            self.private_key = loaded
        else:
            self.private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            key_path.parent.mkdir(parents=True, exist_ok=True)
            pem = self.private_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            descriptor = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as file:
                file.write(pem)
        public = self.private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.kid = hashlib.sha256(public).hexdigest()[:16]

    def jwks(self) -> dict[str, Any]:
        key = jwt.algorithms.RSAAlgorithm.to_jwk(self.private_key.public_key(), as_dict=True)
        key.update({"kid": self.kid, "use": "sig", "alg": "RS256"})
        return {"keys": [key]}

    def token(
        self,
        *,
        subject: str,
        email: str,
        name: str = "",
        lifetime_seconds: int = 12 * 3600,
        issuer: str = LOCAL_ISSUER,
        audience: str = LOCAL_AUDIENCE,
        **claims: Any,
    ) -> str:
        now = int(time.time())
        payload = {
            "iss": issuer,
            "aud": audience,
            "sub": subject,
            "email": email,
            "name": name,
            "iat": now,
            "exp": now + lifetime_seconds,
            **claims,
        }
        return jwt.encode(payload, self.private_key, algorithm="RS256", headers={"kid": self.kid})


def local_subject(email: str) -> str:
    """The ``sub`` the local issuer gives an email, stable across runs."""
    return f"local|{email.strip().lower()}"
