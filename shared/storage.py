"""The materials bucket.

The google-cloud-storage client is created on first use and reused: it costs
~230 ms to import, and functions that never touch the bucket never pay it.
``STORAGE_EMULATOR_HOST`` (read by the client itself) points it at an emulator.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    from shared.config import Settings

__all__ = ["download_url", "get_bucket", "reset_client"]

DOWNLOAD_URL_LIFETIME = timedelta(minutes=15)

_lock = threading.Lock()
_client: Any = None


def _storage_client() -> Any:
    global _client
    if _client is None:
        with _lock:
            if _client is None:
                from google.cloud import storage  # type: ignore[attr-defined]

                _client = storage.Client()
    return _client


def reset_client() -> None:
    """Forget the cached client (tests switch emulators)."""
    global _client
    _client = None


def get_bucket(settings: Settings) -> Any:
    return _storage_client().bucket(settings.GCS_BUCKET)


def download_url(settings: Settings, object_name: str) -> str:
    """A URL the browser can fetch the object from for the next 15 minutes.

    In production a V4 signed URL. Cloud Functions hold no private key, so the
    signature comes from the IAM signBlob API with the function's own service
    account (it needs roles/iam.serviceAccountTokenCreator on itself only).
    Against the emulator, its plain download URL, which the local stack serves.
    """
    if settings.STORAGE_EMULATOR_HOST:
        host = settings.STORAGE_EMULATOR_HOST.rstrip("/")
        if "://" not in host:
            host = f"http://{host}"
        return (
            f"{host}/download/storage/v1/b/{settings.GCS_BUCKET}/o/"
            f"{quote(object_name, safe='')}?alt=media"
        )
    import google.auth
    from google.auth.transport.requests import Request

    credentials: Any
    credentials, _ = google.auth.default()
    credentials.refresh(Request())
    blob = get_bucket(settings).blob(object_name)
    url: str = blob.generate_signed_url(
        version="v4",
        expiration=DOWNLOAD_URL_LIFETIME,
        method="GET",
        service_account_email=credentials.service_account_email,
        access_token=credentials.token,
    )
    return url
