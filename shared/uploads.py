"""Direct uploads: the browser sends the bytes to the bucket, ``complete`` checks them.

``POST /submit/uploads`` opens a ``DirectUpload`` and a GCS resumable upload
session for ``uploads/<upload id>/<filename>``, bound to the declared size and
content type; the browser sends the bytes there, in as many chunks and
attempts as it needs. ``POST /submit/uploads/{id}/complete`` then checks the
object as the multipart path checks a file, without ever holding it whole:

1. its size, from its metadata (nothing yet: 409 ``upload_incomplete``, the
   upload stays open; another size than declared: 422, or 413 over the cap);
2. one pass over its bytes in ``READ_CHUNK`` ranges: SHA-256, and the PDF
   header from the first range (415 ``not_a_pdf`` before reading further);
3. the page count: pypdf reads the object through a ``RangeReader``, which
   fetches only the blocks pypdf asks for (the trailer, the cross-reference
   table, the page tree) and keeps at most ``CACHED_BLOCKS`` of them. Not a
   temporary file: Cloud Functions' disk is memory, so a spooled 200 MB file
   would cost the function 200 MB of it.

Every read names the generation measured in step 1, so the bytes hashed are
the bytes counted and the bytes copied. The caller (``functions/submit``)
holds no transaction during any of this; see ``complete_upload`` there.

An upload is settled once: ``completed`` (it became a request) or ``failed``
(its file was refused, or it expired), and a repeated ``complete`` answers
what the first one did.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import IO, TYPE_CHECKING, Any, cast

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.db.models import DirectUpload
from shared.errors import (
    Conflict,
    LecternError,
    NotFound,
    PayloadTooLarge,
    UnsupportedMediaType,
    ValidationFailed,
)
from shared.pdf import HEADER_WINDOW, TooDamaged, check_header, count_pages_in
from shared.storage import RangeReader, StorageUnavailable
from shared.submissions import record_intent

if TYPE_CHECKING:
    from shared.config import Settings
    from shared.storage import Bucket

__all__ = [
    "BLOCK_SIZE",
    "CACHED_BLOCKS",
    "CHUNK_MULTIPLE",
    "CONTENT_TYPE",
    "READ_BUDGET_SECONDS",
    "READ_CHUNK",
    "WHOLE_READ_LIMIT",
    "CheckedFile",
    "ObjectGone",
    "check_object",
    "error_to_json",
    "expired_error",
    "is_expired",
    "lock_own",
    "mark_completed",
    "mark_failed",
    "new_upload",
    "stored_error",
    "too_large_error",
    "upload_to_json",
]

CONTENT_TYPE = "application/pdf"
# GCS takes the chunks of a resumable upload in multiples of 256 KiB (all but the last).
CHUNK_MULTIPLE = 256 * 1024
# One ranged read of the hashing pass: the most of the file in memory at once.
READ_CHUNK = 8 * 1024 * 1024
# pypdf's reads of small objects all over the file: blocks fetched and kept.
BLOCK_SIZE = 256 * 1024
CACHED_BLOCKS = 32
# A read larger than this is pypdf rebuilding a broken cross-reference table
# from the whole file. Above the multipart path's default cap (25 MB), so
# every file that path accepts is judged the same here; a larger damaged file
# is refused as damaged rather than read into memory.
WHOLE_READ_LIMIT = 32 * 1024 * 1024
# The hashing pass gives up (503) past this, so a bucket that answers slowly
# but never stalls still leaves complete inside the function's timeout.
READ_BUDGET_SECONDS = 60.0


class UploadIncomplete(Conflict):
    def __init__(self) -> None:
        super().__init__(
            "the file has not arrived in full yet; finish sending it, then complete again",
            code="upload_incomplete",
        )


class ObjectGone(Exception):
    """The generation being checked disappeared (a concurrent complete settled it)."""


@dataclass(frozen=True)
class CheckedFile:
    generation: int
    size: int
    sha256: str
    page_count: int


def too_large_error(settings: Settings) -> PayloadTooLarge:
    """The multipart path's 413, word for word."""
    return PayloadTooLarge(f"the file is larger than {settings.MAX_UPLOAD_MB} MB")


def expired_error() -> Conflict:
    return Conflict(
        "this upload expired before it was completed; start a new one",
        code="upload_expired",
    )


def new_upload(
    session: Session,
    *,
    upload_id: uuid.UUID,
    user_id: uuid.UUID,
    object_name: str,
    filename: str,
    size_bytes: int,
    now: datetime,
    settings: Settings,
) -> DirectUpload:
    upload = DirectUpload(
        id=upload_id,
        user_id=user_id,
        object_name=object_name,
        filename=filename,
        size_bytes=size_bytes,
        content_type=CONTENT_TYPE,
        status="open",
        created_at=now,
        expires_at=now + timedelta(hours=settings.UPLOAD_EXPIRY_HOURS),
    )
    session.add(upload)
    session.flush()
    return upload


def upload_to_json(upload: DirectUpload, upload_url: str) -> dict[str, Any]:
    """What the browser needs to send the bytes: where, how, until when."""
    return {
        "id": upload.id,
        "upload_url": upload_url,
        "method": "PUT",
        "headers": {"Content-Type": upload.content_type},
        "chunk_multiple": CHUNK_MULTIPLE,
        "filename": upload.filename,
        "size_bytes": upload.size_bytes,
        "content_type": upload.content_type,
        "status": upload.status,
        "created_at": upload.created_at,
        "expires_at": upload.expires_at,
    }


def lock_own(session: Session, *, user_id: uuid.UUID, upload_id: uuid.UUID) -> DirectUpload:
    """The user's own upload, locked for this transaction; another user's is 404 like none."""
    upload = session.scalar(
        select(DirectUpload)
        .where(DirectUpload.id == upload_id, DirectUpload.user_id == user_id)
        .with_for_update()
    )
    if upload is None:
        raise NotFound("no such upload")
    return upload


def is_expired(upload: DirectUpload, now: datetime) -> bool:
    return now >= upload.expires_at


def error_to_json(error: LecternError) -> dict[str, Any]:
    body: dict[str, Any] = {"status": error.status, "code": error.code, "message": error.message}
    if error.fields is not None:
        body["fields"] = error.fields
    return body


_REPLAYABLE: dict[int, type[LecternError]] = {
    409: Conflict,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
}


def stored_error(data: dict[str, Any]) -> LecternError:
    """The error a failed upload's first complete answered, to answer it again."""
    if data["status"] == 422:
        return ValidationFailed(dict(data.get("fields") or {}), data["message"])
    return _REPLAYABLE[int(data["status"])](data["message"], code=data["code"])


def mark_failed(
    session: Session, upload: DirectUpload, error: LecternError, now: datetime
) -> uuid.UUID:
    """Settle the upload as refused and announce its object's deletion; the intent's id."""
    upload.status = "failed"
    upload.error = error_to_json(error)
    upload.finished_at = now
    session.flush()
    return record_intent(session, name=upload.object_name, request_id=None)


def mark_completed(
    session: Session, upload: DirectUpload, request_id: uuid.UUID, now: datetime
) -> uuid.UUID:
    """Settle the upload as the request it became; the intent for deleting its object."""
    upload.status = "completed"
    upload.request_id = request_id
    upload.finished_at = now
    session.flush()
    return record_intent(session, name=upload.object_name, request_id=request_id)


def check_object(
    bucket: Bucket, *, name: str, declared_size: int, settings: Settings
) -> CheckedFile:
    """The multipart path's file checks, run on the object by streaming it (see above).

    Raises ``UploadIncomplete`` (nothing there yet), ``StorageUnavailable``,
    ``ObjectGone``, or the file's verdict: 413, 415, or 422 naming ``file``.
    """
    info = bucket.stat(name)
    if info is None:
        raise UploadIncomplete
    if info.size > settings.max_upload_bytes:
        raise too_large_error(settings)
    if info.size != declared_size:
        raise ValidationFailed(
            {"file": f"the upload has {info.size} bytes, not the {declared_size} declared"}
        )
    deadline = time.monotonic() + READ_BUDGET_SECONDS
    digest = hashlib.sha256()
    try:
        for start in range(0, info.size, READ_CHUNK):
            end = min(start + READ_CHUNK, info.size) - 1
            chunk = bucket.read_range(name, generation=info.generation, start=start, end=end)
            if start == 0:
                # Refused before the rest of a non-PDF is read.
                check_header(chunk[:HEADER_WINDOW])
            digest.update(chunk)
            if time.monotonic() > deadline:
                raise StorageUnavailable(f"read: {name} not read within {READ_BUDGET_SECONDS} s")
        reader = RangeReader(
            bucket,
            name,
            generation=info.generation,
            size=info.size,
            block_size=BLOCK_SIZE,
            cached_blocks=CACHED_BLOCKS,
            max_read=WHOLE_READ_LIMIT,
            too_large=TooDamaged,
        )
        # A RawIOBase is the file pypdf reads; typeshed calls that IO[bytes].
        page_count = count_pages_in(cast(IO[bytes], reader))
    except FileNotFoundError:
        raise ObjectGone(name) from None
    return CheckedFile(
        generation=info.generation,
        size=info.size,
        sha256=digest.hexdigest(),
        page_count=page_count,
    )
