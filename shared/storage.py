"""The materials bucket: object names, metadata, and the few operations we use.

Layout:
    uploads/<upload_id>/<filename>     a direct upload, written by the browser
    pending/<request_id>/<filename>    a submission awaiting moderation
    rejected/<request_id>/<filename>   a rejected submission (lifecycle-deleted)
    <CourseName>/<filename>            a published material (the seed's file_url)

Every object carries metadata tying it to its request, so the ingestion
pipeline maps an object to its material without parsing its path.

The google-cloud-storage client is created on first use and reused: it costs
~230 ms to import, and functions that never touch the bucket never pay it.
``STORAGE_EMULATOR_HOST`` points it at an emulator (anonymous credentials).
"""

from __future__ import annotations

import io
import re
import threading
import unicodedata
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

from shared.errors import ServiceUnavailable

if TYPE_CHECKING:
    from shared.config import Settings

__all__ = [
    "META_COURSE_ID",
    "META_REQUEST_ID",
    "META_SHA256",
    "META_UPLOADER_ID",
    "META_UPLOAD_ID",
    "UPLOADS_PREFIX",
    "Bucket",
    "ObjectInfo",
    "RangeReader",
    "StorageUnavailable",
    "course_object",
    "download_lifetime",
    "download_url",
    "get_bucket",
    "in_course_folder",
    "numbered",
    "pending_object",
    "rejected_object",
    "request_metadata",
    "reset_client",
    "safe_filename",
    "safe_segment",
    "upload_object",
]

# A download URL outlives the file's required reading time twice over, plus a
# margin, so a reader who pauses is not cut off mid-file (PDF.js keeps reading
# ranges as pages are turned). Never shorter than an hour, never longer than
# the 7 days a V4 signed URL may live. Reading the resource again gives a new URL.
DOWNLOAD_URL_MINIMUM = timedelta(hours=1)
DOWNLOAD_URL_MARGIN = timedelta(minutes=30)
DOWNLOAD_URL_MAXIMUM = timedelta(days=7)
MAX_NAME_LENGTH = 120

META_REQUEST_ID = "lectern-request-id"
META_SHA256 = "lectern-sha256"
META_UPLOADER_ID = "lectern-uploader-id"
META_COURSE_ID = "lectern-course-id"
# On a direct upload's object (no request exists yet, so the pipeline skips it).
META_UPLOAD_ID = "lectern-upload-id"

_lock = threading.Lock()
_client: Any = None

_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\]")
_SPACES = re.compile(r"\s+")


def safe_segment(text: str, *, fallback: str, max_length: int = MAX_NAME_LENGTH) -> str:
    """One readable path segment: no separators, control characters or dot-only names."""
    text = unicodedata.normalize("NFC", text)
    text = _UNSAFE.sub(" ", text)
    text = _SPACES.sub(" ", text).strip(" .")
    text = text[:max_length].rstrip(" .")
    return text or fallback


def safe_filename(filename: str | None) -> str:
    """A user's filename made safe for an object name, always ending in .pdf."""
    name = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    stem = name[:-4] if name.lower().endswith(".pdf") else name
    return safe_segment(stem, fallback="file", max_length=MAX_NAME_LENGTH - 4) + ".pdf"


def numbered(filename: str, number: int) -> str:
    """``notes.pdf`` -> ``notes (2).pdf``: the name for the Nth clash in a folder."""
    if number <= 1:
        return filename
    stem = filename[:-4]
    return f"{stem} ({number}).pdf"


def request_metadata(
    *, request_id: uuid.UUID, sha256: str, uploader_id: uuid.UUID, course_id: uuid.UUID
) -> dict[str, str]:
    """The metadata every object of a file request carries (copies keep it)."""
    return {
        META_REQUEST_ID: str(request_id),
        META_SHA256: sha256,
        META_UPLOADER_ID: str(uploader_id),
        META_COURSE_ID: str(course_id),
    }


def pending_object(request_id: uuid.UUID, filename: str) -> str:
    return f"pending/{request_id}/{filename}"


def rejected_object(request_id: uuid.UUID, filename: str) -> str:
    return f"rejected/{request_id}/{filename}"


# Where browsers write direct uploads; the bucket's lifecycle rule deletes
# what stays here a day (infra/storage.tf), so no course may be named so.
UPLOADS_PREFIX = "uploads/"


def upload_object(upload_id: uuid.UUID, filename: str) -> str:
    return f"{UPLOADS_PREFIX}{upload_id}/{filename}"


# Top-level names that are not course folders (``withdrawn/`` names no object:
# it is the file_url of a withdrawn request, see shared.submissions).
RESERVED_FOLDERS = frozenset({"pending", "rejected", "withdrawn", "uploads"})


def in_course_folder(object_name: str) -> bool:
    """A published name (``course_object`` never makes a reserved folder)."""
    return object_name.split("/", 1)[0] not in RESERVED_FOLDERS


def course_object(course_name: str, filename: str) -> str:
    folder = safe_segment(course_name, fallback="course")
    if folder in RESERVED_FOLDERS:
        folder = f"{folder} course"
    return f"{folder}/{filename}"


def _storage_client(settings: Settings) -> Any:
    global _client
    if _client is None:
        with _lock:
            if _client is None:
                from google.cloud import storage  # type: ignore[attr-defined]

                if settings.STORAGE_EMULATOR_HOST:
                    from google.auth.credentials import AnonymousCredentials

                    anonymous = AnonymousCredentials()  # type: ignore[no-untyped-call]
                    _client = storage.Client(project="lectern-local", credentials=anonymous)
                else:
                    _client = storage.Client()
    return _client


def reset_client() -> None:
    """Forget the cached client (tests switch emulators)."""
    global _client
    _client = None


class StorageUnavailable(ServiceUnavailable):
    """The bucket did not answer within ``STORAGE_TIMEOUT_S``; nothing depends on it yet."""

    def __init__(self, detail: str) -> None:
        super().__init__(
            "file storage is unavailable; try again shortly",
            code="storage_unavailable",
            detail=detail,
        )


def _transient_errors() -> tuple[type[BaseException], ...]:
    import requests
    from google.api_core import exceptions as api
    from google.auth.exceptions import TransportError

    return (
        api.ServiceUnavailable,
        api.InternalServerError,
        api.BadGateway,
        api.GatewayTimeout,
        api.TooManyRequests,
        api.RetryError,
        requests.ConnectionError,
        requests.Timeout,
        requests.exceptions.ChunkedEncodingError,
        TransportError,
        ConnectionError,
        TimeoutError,
    )


Result = TypeVar("Result")


class Bucket:
    """The operations Lectern performs on the materials bucket.

    Every call is bounded by ``STORAGE_TIMEOUT_S``: each HTTP attempt times out
    after it and the client's retries (on 408, 429, 5xx and broken
    connections, with backoff) stop once that much time has passed, so a
    frozen or unreachable bucket costs a request at most about twice that
    before it becomes ``StorageUnavailable`` (503). Callers hold no
    transaction while they wait (see ``shared.moderation``).
    """

    def __init__(self, settings: Settings) -> None:
        from google.cloud.storage.retry import DEFAULT_RETRY  # type: ignore[import-untyped]

        self._bucket = _storage_client(settings).bucket(settings.GCS_BUCKET)
        self._timeout = settings.STORAGE_TIMEOUT_S
        # Uploads and deletes are retried too: their object names are fixed by
        # the request id, so a repeated write writes the same thing.
        self._retry = DEFAULT_RETRY.with_timeout(settings.STORAGE_TIMEOUT_S)

    @contextmanager
    def _bounded(self, operation: str) -> Iterator[None]:
        try:
            yield
        except _transient_errors() as error:
            raise StorageUnavailable(f"{operation}: {type(error).__name__}: {error}") from error

    def _call(self, operation: str, function: Callable[[], Result]) -> Result:
        with self._bounded(operation):
            return function()

    @property
    def name(self) -> str:
        return str(self._bucket.name)

    def upload(self, name: str, data: bytes, metadata: dict[str, str]) -> int:
        """Write a new object; returns its generation."""
        blob = self._bucket.blob(name)
        blob.metadata = metadata
        self._call(
            "upload",
            lambda: blob.upload_from_string(
                data, content_type="application/pdf", timeout=self._timeout, retry=self._retry
            ),
        )
        return int(blob.generation)

    def copy(self, source: str, destination: str) -> tuple[int, int]:
        """Copy an object with its metadata; (the copy's generation, the source's)."""
        with self._bounded("copy"):
            blob = self._bucket.get_blob(source, timeout=self._timeout, retry=self._retry)
            if blob is None:
                raise FileNotFoundError(source)
            copied = self._bucket.copy_blob(
                blob, self._bucket, destination, timeout=self._timeout, retry=self._retry
            )
            if copied.metadata != blob.metadata:
                # Some servers (the emulator) drop metadata on copy; GCS keeps it.
                copied.metadata = blob.metadata
                copied.patch(timeout=self._timeout, retry=self._retry)
        return int(copied.generation), int(blob.generation)

    def delete(self, name: str, *, generation: int | None = None) -> bool:
        """Delete an object; True if it was deleted, False if already gone.

        With ``generation``, only that generation: an object written again
        since (by a later move back to the same name) is another file and stays.
        GCS enforces the precondition; the emulator ignores it, so the current
        generation is also checked first.
        """
        from google.api_core.exceptions import NotFound, PreconditionFailed

        with self._bounded("delete"):
            if generation is not None:
                current = self._bucket.get_blob(name, timeout=self._timeout, retry=self._retry)
                if current is None or int(current.generation) != generation:
                    return False
            try:
                self._bucket.blob(name).delete(
                    if_generation_match=generation, timeout=self._timeout, retry=self._retry
                )
            except (NotFound, PreconditionFailed):
                return False
        return True

    def generation(self, name: str) -> int | None:
        """The object's current generation, or None when it does not exist."""
        blob = self._call(
            "stat", lambda: self._bucket.get_blob(name, timeout=self._timeout, retry=self._retry)
        )
        return None if blob is None else int(blob.generation)

    def metadata(self, name: str) -> dict[str, str] | None:
        """The object's metadata, or None when it does not exist."""
        blob = self._call(
            "stat", lambda: self._bucket.get_blob(name, timeout=self._timeout, retry=self._retry)
        )
        return None if blob is None else dict(blob.metadata or {})

    def list_names(self, prefix: str) -> list[tuple[str, int]]:
        """(name, generation) of every object under ``prefix``."""
        with self._bounded("list"):
            return [
                (blob.name, int(blob.generation))
                for blob in self._bucket.list_blobs(
                    prefix=prefix, timeout=self._timeout, retry=self._retry
                )
            ]

    def create_upload_session(
        self,
        name: str,
        *,
        size: int,
        content_type: str,
        origin: str | None,
        metadata: dict[str, str],
    ) -> str:
        """A resumable upload session for a new object ``name``; returns its URL.

        The session is bound to the object name, ``content_type`` and
        ``size`` (GCS refuses more bytes than declared; the emulator does not,
        so whoever completes the upload compares the object's size too).
        With ``origin``, GCS answers the browser's requests to the session URL
        with CORS headers for that origin. The URL is the only credential the
        browser needs: whoever holds it can write this one object, for a week.
        """
        blob = self._bucket.blob(name)
        blob.metadata = metadata
        url: str = self._call(
            "create upload session",
            lambda: blob.create_resumable_upload_session(
                content_type=content_type,
                size=size,
                origin=origin,
                timeout=self._timeout,
                checksum=None,
                # Never over an existing object: the name holds a fresh upload id.
                if_generation_match=0,
                retry=self._retry,
            ),
        )
        return url

    def stat(self, name: str) -> ObjectInfo | None:
        """The object's generation, size, type and metadata, or None when it does not exist."""
        blob = self._call(
            "stat", lambda: self._bucket.get_blob(name, timeout=self._timeout, retry=self._retry)
        )
        if blob is None:
            return None
        return ObjectInfo(
            generation=int(blob.generation),
            size=int(blob.size),
            content_type=blob.content_type,
            metadata=dict(blob.metadata or {}),
        )

    def read_range(self, name: str, *, generation: int, start: int, end: int) -> bytes:
        """Bytes ``start`` to ``end`` (inclusive) of that generation.

        ``FileNotFoundError`` when the generation is gone (deleted or replaced).
        """
        from google.api_core.exceptions import NotFound

        try:
            with self._bounded("read"):
                data: bytes = self._bucket.blob(name, generation=generation).download_as_bytes(
                    start=start,
                    end=end,
                    # A range has no whole-object checksum to compare with.
                    checksum=None,
                    timeout=self._timeout,
                    retry=self._retry,
                )
        except NotFound:
            raise FileNotFoundError(name) from None
        return data

    def copy_as(
        self, source: str, *, generation: int, destination: str, metadata: dict[str, str]
    ) -> int:
        """Copy that generation of ``source`` to ``destination`` with ``metadata``.

        Returns the copy's generation; ``FileNotFoundError`` when the source
        generation is gone.
        """
        from google.api_core.exceptions import NotFound

        with self._bounded("copy"):
            try:
                copied = self._bucket.copy_blob(
                    self._bucket.blob(source),
                    self._bucket,
                    destination,
                    source_generation=generation,
                    timeout=self._timeout,
                    retry=self._retry,
                )
            except NotFound:
                raise FileNotFoundError(source) from None
            copied.metadata = metadata
            copied.patch(timeout=self._timeout, retry=self._retry)
        return int(copied.generation)

    def read(self, name: str, *, generation: int | None = None) -> bytes | None:
        """The object's bytes (that generation's, if given), or None when it is gone."""
        from google.api_core.exceptions import NotFound

        try:
            with self._bounded("read"):
                data: bytes = self._bucket.blob(name, generation=generation).download_as_bytes(
                    timeout=self._timeout, retry=self._retry
                )
        except NotFound:
            return None
        return data


@dataclass(frozen=True)
class ObjectInfo:
    generation: int
    size: int
    content_type: str | None
    metadata: dict[str, str]


class RangeReader(io.RawIOBase):
    """One object generation as a seekable read-only file, fetched in ranges on demand.

    For parsers that need random access (pypdf) to a file too large to hold:
    blocks of ``block_size`` bytes are fetched when first read and the last
    ``cached_blocks`` are kept, so memory stays bounded whatever the object's
    size. A read of more than ``max_read`` bytes at once raises
    ``too_large()`` instead (a parser asking for the whole file).
    """

    def __init__(
        self,
        bucket: Bucket,
        name: str,
        *,
        generation: int,
        size: int,
        block_size: int,
        cached_blocks: int,
        max_read: int,
        too_large: Callable[[], Exception],
    ) -> None:
        super().__init__()
        self._bucket = bucket
        self._name = name
        self._generation = generation
        self._size = size
        self._block_size = block_size
        self._cached_blocks = cached_blocks
        self._max_read = max_read
        self._too_large = too_large
        self._blocks: OrderedDict[int, bytes] = OrderedDict()
        self._position = 0
        self.fetches = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._position = base + offset
        return self._position

    def _block(self, number: int) -> bytes:
        block = self._blocks.get(number)
        if block is None:
            start = number * self._block_size
            end = min(start + self._block_size, self._size) - 1
            block = self._bucket.read_range(
                self._name, generation=self._generation, start=start, end=end
            )
            self.fetches += 1
            self._blocks[number] = block
            if len(self._blocks) > self._cached_blocks:
                self._blocks.popitem(last=False)
        else:
            self._blocks.move_to_end(number)
        return block

    def read(self, size: int | None = -1) -> bytes:
        remaining = max(0, self._size - self._position)
        wanted = remaining if size is None or size < 0 else min(size, remaining)
        if wanted > self._max_read:
            raise self._too_large()
        parts: list[bytes] = []
        while wanted > 0:
            number, offset = divmod(self._position, self._block_size)
            part = self._block(number)[offset : offset + wanted]
            if not part:
                break
            parts.append(part)
            self._position += len(part)
            wanted -= len(part)
        return b"".join(parts)

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def get_bucket(settings: Settings) -> Bucket:
    return Bucket(settings)


def download_lifetime(page_count: int) -> timedelta:
    """How long a download URL of a file of ``page_count`` pages works."""
    from shared.reading import required_seconds

    reading = timedelta(seconds=required_seconds(page_count))
    return min(DOWNLOAD_URL_MAXIMUM, max(DOWNLOAD_URL_MINIMUM, 2 * reading + DOWNLOAD_URL_MARGIN))


def download_url(settings: Settings, object_name: str, *, page_count: int) -> tuple[str, datetime]:
    """A URL the browser can fetch the object from, and until when it works.

    In production a V4 signed URL. Cloud Functions hold no private key, so the
    signature comes from the IAM signBlob API with the function's own service
    account (it needs roles/iam.serviceAccountTokenCreator on itself only).
    Against the emulator, its plain download URL through the local stack's
    storage proxy (CORS and HTTP Range for PDF.js); it never expires there,
    but the same time is given so a client behaves alike in both.
    """
    from shared import clock

    lifetime = download_lifetime(page_count)
    # Whole seconds, a little before the signature's own end: the client's
    # refresh comes first.
    expires_at = clock.now().replace(microsecond=0) + lifetime - timedelta(seconds=1)
    if settings.STORAGE_EMULATOR_HOST:
        host = settings.STORAGE_EMULATOR_HOST.rstrip("/")
        if "://" not in host:
            host = f"http://{host}"
        url = (
            f"{host}/download/storage/v1/b/{settings.GCS_BUCKET}/o/"
            f"{quote(object_name, safe='')}?alt=media"
        )
        return url, expires_at
    import google.auth
    from google.auth.transport.requests import Request

    credentials: Any
    credentials, _ = google.auth.default()
    credentials.refresh(Request())
    blob = _storage_client(settings).bucket(settings.GCS_BUCKET).blob(object_name)
    signed: str = blob.generate_signed_url(
        version="v4",
        expiration=lifetime,
        method="GET",
        service_account_email=credentials.service_account_email,
        access_token=credentials.token,
    )
    return signed, expires_at
