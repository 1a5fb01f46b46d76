"""Ingestion: an object-finalized notice becomes a material's chunk set.

    notice ─► claim ─► download ─► extract ─► chunk ─► embed ─► write
              (tx 1)   (the exact generation)                   (tx 2)

*Parse* (``notice_from_event``) validates the event with pydantic: the Pub/Sub
``messagePublished`` envelope wrapping a JSON_API_V1 object resource, or the
Eventarc storage ``finalized`` event. A malformed event (data not base64, not
JSON, not an object, a missing or impossible generation, non-string metadata,
…) raises ``MalformedEvent``: it can never succeed, so the function
acknowledges it and logs why instead of failing until the dead letter.

*Claim* locks the file request (which waits for a moderation transaction in
flight on it, so an event racing its own approval sees the committed row) and
the material, and decides whether this notice is current:

- no request, or no material: not an approved material (pending, rejected,
  undone, unknown) → skipped;
- the material's ``file_url`` is another object → skipped;
- an older generation than the one already recorded → skipped (stale);
- the recorded generation already finished (ready, no_text, failed) →
  skipped (a duplicate delivery);
- the recorded generation is ``processing`` under a live lease (its
  ``ingest_started_at`` is younger than ``LEASE``) → skipped without counting
  anything: another delivery of the same notice is working on it;
- a ``processing`` claim whose lease expired never recorded its end (the
  instance crashed, was killed at its timeout, or lost the database): that
  counts as one failed attempt, and this delivery takes over.

``ingest_attempts`` counts *failed* attempts of the recorded generation, not
deliveries: duplicates cost nothing. A failure is counted where it happens
(``_record_failure``) or, if nothing could be recorded, when its lease is
found expired. The failure that reaches ``INGEST_MAX_ATTEMPTS`` ends the
material ``failed`` and is acknowledged. A transient failure below the budget
puts the material back to ``queued`` (releasing the lease, so the redelivery
claims at once) and propagates, so Pub/Sub redelivers.

*Write* locks the material again, re-checks that the notice is still current,
and replaces the material's chunks in one transaction (one bulk INSERT), so
redelivered, duplicated or out-of-order notices leave exactly one chunk set
matching the latest generation.

Errors shown to users are an ``ingest_error_code`` and a fixed sentence for it
(``ERROR_MESSAGES``) in ``ingest_error``: exception text can carry SQL and its
parameters, or an upstream API's answer, so it goes only to the log.
Permanent problems (encrypted, damaged, textless PDFs, a vanished object) are
recorded and acknowledged.

*Sweep* (``redrive_stale``) re-drives materials left ``queued`` or
``processing`` past a bound: a notification lost, or dead-lettered by a
database outage longer than Pub/Sub's retry schedule, or a crashed attempt.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

from pgvector import HalfVector
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from sqlalchemy import delete, func, insert, select
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session

from shared import clock
from shared.chunking import Chunk, chunk_pages, embedding_text
from shared.db.engine import transaction
from shared.db.models import Course, FileRequest, Material, MaterialChunk
from shared.db.outage import is_unavailable
from shared.embeddings import EmbeddingUnavailable
from shared.pdf import PdfProblem, iter_pages, no_text
from shared.storage import META_REQUEST_ID, StorageUnavailable

if TYPE_CHECKING:
    from shared.config import Settings
    from shared.embeddings import Embedder
    from shared.storage import Bucket

__all__ = [
    "ERROR_MESSAGES",
    "LEASE",
    "MalformedEvent",
    "ObjectNotice",
    "ingest",
    "notice_from_event",
    "redrive_stale",
]

log = logging.getLogger("lectern.pipeline")

PUBSUB_PUBLISHED = "google.cloud.pubsub.topic.v1.messagePublished"
STORAGE_FINALIZED = "google.cloud.storage.object.v1.finalized"
FINISHED = ("ready", "no_text", "failed")
PENDING = ("queued", "processing")

# How long a claim keeps other deliveries of the same generation away. Just
# under the ingest function's timeout (540 s in infra/functions.tf, also the
# push ack deadline; a test checks the two): an attempt still holding its lease
# is either running or about to be killed by the timeout, and the redelivery
# Pub/Sub sends after an unanswered push (ack deadline passed) finds the lease
# expired and takes over, counting the lost attempt as a failure.
LEASE = timedelta(seconds=500)

# ingest_error_code → the sentence users see in ingest_error. Stable: clients
# may branch on the code; the database checks it is one of these.
ERROR_MESSAGES: dict[str, str] = {
    "pdf_encrypted": "The PDF is encrypted, so its text cannot be read.",
    "pdf_damaged": "The PDF is damaged and its text cannot be read.",
    "no_text": "The PDF has no extractable text (a scan without OCR?).",
    "object_missing": "The stored file no longer exists.",
    "embedding_unavailable": "The embedding service was unavailable.",
    "storage_unavailable": "The file storage was unavailable.",
    "database_unavailable": "The database was unavailable.",
    "interrupted": "Processing stopped before it finished.",
    "internal": "An internal error stopped processing.",
}


def _retrying(code: str) -> str:
    return f"{ERROR_MESSAGES[code]} Processing will be tried again."


def _gave_up(code: str, attempts: int) -> str:
    return f"{ERROR_MESSAGES[code]} Processing gave up after {attempts} attempts."


# -- events --------------------------------------------------------------------


class MalformedEvent(ValueError):
    """An event that can never be processed; acknowledged, never retried."""


_INT64_MAX = 2**63 - 1  # materials.ingest_generation is a BIGINT


def _generation(value: Any) -> Any:
    # GCS sends generations as decimal strings (JSON_API_V1); accept ints too,
    # never bools, floats or "1e9"; pydantic then checks the range.
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 19:
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ValueError("must be a decimal integer")


Generation = Annotated[int, BeforeValidator(_generation), Field(ge=1, le=_INT64_MAX)]
Text = Annotated[str, Field(min_length=1, max_length=1024)]


class _ObjectResource(BaseModel):
    """The fields of a storage object resource (JSON_API_V1) the pipeline reads."""

    model_config = ConfigDict(strict=True, extra="ignore")

    bucket: Text
    name: Text
    generation: Generation
    metadata: dict[str, str] | None = None


class _PubSubMessage(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")

    data: str | None = None
    attributes: dict[str, str] | None = None


class _PubSubEnvelope(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")

    message: _PubSubMessage


@dataclass(frozen=True)
class ObjectNotice:
    bucket: str
    name: str
    generation: int
    metadata: dict[str, str]


def _why(error: ValidationError) -> str:
    """What is wrong, by field; never the input values."""
    return "; ".join(
        f"{'.'.join(str(part) for part in problem['loc']) or 'data'}: {problem['msg']}"
        for problem in error.errors(include_url=False, include_input=False)[:3]
    )


def _resource(data: Any, where: str) -> _ObjectResource:
    try:
        return _ObjectResource.model_validate(data)
    except ValidationError as error:
        raise MalformedEvent(f"{where}: {_why(error)}") from None


def notice_from_event(event_type: str, data: Any) -> ObjectNotice | None:
    """The finalized object a CloudEvent announces, or None for any other event.

    Accepts the bucket notification delivered through Pub/Sub (the object
    resource, JSON_API_V1, base64 in ``message.data``; bucket, name and
    generation in the attributes) and a direct Eventarc storage event (the
    object resource as the event's data). Raises ``MalformedEvent`` for an
    event of either type that cannot be read.
    """
    if event_type == PUBSUB_PUBLISHED:
        if not isinstance(data, dict):
            raise MalformedEvent("the Pub/Sub event's data is not a JSON object")
        try:
            message = _PubSubEnvelope.model_validate(data).message
        except ValidationError as error:
            raise MalformedEvent(f"Pub/Sub envelope: {_why(error)}") from None
        attributes = message.attributes or {}
        if attributes.get("eventType") != "OBJECT_FINALIZE":
            return None
        resource = _decode_payload(message.data)
        # The attributes name the object even without a payload (payloadFormat NONE).
        for key, attribute in (
            ("bucket", "bucketId"),
            ("name", "objectId"),
            ("generation", "objectGeneration"),
        ):
            if attribute in attributes:
                resource[key] = attributes[attribute]
        parsed = _resource(resource, "Pub/Sub object resource")
    elif event_type == STORAGE_FINALIZED:
        parsed = _resource(data, "storage event")
    else:
        return None
    return ObjectNotice(parsed.bucket, parsed.name, parsed.generation, dict(parsed.metadata or {}))


def _decode_payload(data: str | None) -> dict[str, Any]:
    if not data:
        return {}
    try:
        decoded = json.loads(base64.b64decode(data, validate=True))
    except (binascii.Error, ValueError):
        # ValueError covers JSONDecodeError and bytes that are not UTF-8.
        raise MalformedEvent("message.data is not base64-encoded JSON") from None
    if not isinstance(decoded, dict):
        raise MalformedEvent("message.data is not a JSON object")
    return decoded


# -- claim, failures -------------------------------------------------------------


@dataclass
class _Claim:
    material_id: uuid.UUID
    title: str
    course: str
    # The claim's identity: a takeover after the lease always starts later.
    started_at: datetime


def _material_id(notice: ObjectNotice) -> uuid.UUID | None:
    try:
        return uuid.UUID(notice.metadata.get(META_REQUEST_ID, ""))
    except ValueError:
        return None


def _give_up(session: Session, material: Material, code: str, error: str) -> None:
    """End the material ``failed``: no chunks of a version that has no usable text."""
    session.execute(delete(MaterialChunk).where(MaterialChunk.material_id == material.id))
    material.chunk_count = 0
    material.ingest_status = "failed"
    material.ingest_error_code = code
    material.ingest_error = error
    material.ingest_finished_at = clock.now()


def _claim(
    session: Session, notice: ObjectNotice, material_id: uuid.UUID, max_attempts: int
) -> _Claim | str:
    """Lock and check the material; the claim, or why the notice is skipped."""
    request = session.scalar(
        select(FileRequest).where(FileRequest.id == material_id).with_for_update()
    )
    material = session.scalar(
        select(Material).where(Material.id == material_id).with_for_update(key_share=True)
    )
    if request is None or material is None or not material.is_published:
        # Hidden (unpublished) materials follow their object through rejected/
        # and pending/: none of those copies is worth embedding.
        return "not an approved material"
    if material.file_url != notice.name:
        return "not the material's current object"
    recorded = material.ingest_generation
    if recorded is not None and notice.generation < recorded:
        return "stale generation"
    now = clock.now()
    if notice.generation != recorded:
        # A new generation starts from zero; an attempt on the old one is
        # superseded at its write.
        material.ingest_generation = notice.generation
        material.ingest_attempts = 0
        material.ingest_error_code = material.ingest_error = None
    elif material.ingest_status in FINISHED:
        return "already ingested"
    elif material.ingest_status == "processing":
        started = material.ingest_started_at
        if started is not None and now < started + LEASE:
            # Pub/Sub delivers at least once, sometimes in parallel: the
            # holder of the lease is doing the work. Acknowledge, count nothing.
            return "in progress under another delivery"
        # The lease expired with nothing recorded: that attempt failed.
        material.ingest_attempts += 1
        material.ingest_error_code = "interrupted"
        material.ingest_error = _retrying("interrupted")
        log.warning(
            "the previous attempt's lease expired without an outcome; counted as failed",
            extra={"object": notice.name, "generation": notice.generation},
        )
    if material.ingest_attempts >= max_attempts:
        code = material.ingest_error_code or "internal"
        _give_up(session, material, code, _gave_up(code, max_attempts))
        return "attempts exhausted"
    material.ingest_status = "processing"
    material.ingest_started_at = now
    course = session.scalar(select(Course.name).where(Course.id == material.course_id))
    return _Claim(material.id, material.title, course or "", now)


def _current(session: Session, notice: ObjectNotice, material_id: uuid.UUID) -> Material | None:
    """The material, locked, if this notice is still the one to ingest.

    FOR NO KEY UPDATE: it serialises ingestion writes without blocking the
    foreign-key checks of rows that refer to the material (reading sessions,
    notes, recent files).
    """
    material = session.scalar(
        select(Material).where(Material.id == material_id).with_for_update(key_share=True)
    )
    if material is None or material.file_url != notice.name:
        return None
    if material.ingest_generation != notice.generation:
        return None
    return material


def _finish(
    settings: Settings, notice: ObjectNotice, material_id: uuid.UUID, status: str, code: str
) -> None:
    """Record a permanent outcome (no_text or failed) with its code and sentence."""
    with transaction(settings) as session:
        material = _current(session, notice, material_id)
        if material is None:
            return
        _give_up(session, material, code, ERROR_MESSAGES[code])
        material.ingest_status = status


def _error_code(error: BaseException) -> str:
    """The code of a transient failure; its text goes to the log only."""
    if isinstance(error, EmbeddingUnavailable):
        return "embedding_unavailable"
    from google.api_core.exceptions import GoogleAPIError
    from google.auth.exceptions import TransportError
    from requests import RequestException

    if isinstance(error, StorageUnavailable | GoogleAPIError | TransportError | RequestException):
        return "storage_unavailable"
    from_database = isinstance(error, sa_exc.SQLAlchemyError) or type(error).__module__.startswith(
        "pg8000"
    )
    if from_database and is_unavailable(error):
        return "database_unavailable"
    return "internal"


def _record_failure(
    settings: Settings,
    notice: ObjectNotice,
    claim: _Claim,
    error: BaseException,
    max_attempts: int,
) -> bool:
    """Count a failed attempt; True if it was the last one allowed (now ``failed``).

    Counts only if this attempt still holds the claim: one that was taken
    over after its lease expired was already counted by the taker.
    """
    code = _error_code(error)
    log.warning(
        "attempt failed (%s): %s: %s",
        code,
        type(error).__name__,
        error,
        extra={"object": notice.name, "generation": notice.generation},
    )
    try:
        with transaction(settings) as session:
            material = _current(session, notice, claim.material_id)
            if (
                material is None
                or material.ingest_status != "processing"
                or material.ingest_started_at != claim.started_at
            ):
                return False
            material.ingest_attempts += 1
            if material.ingest_attempts >= max_attempts:
                _give_up(session, material, code, _gave_up(code, max_attempts))
                return True
            material.ingest_status = "queued"  # releases the lease for the redelivery
            material.ingest_error_code = code
            material.ingest_error = _retrying(code)
    except Exception:
        # Nothing recorded: the lease stays, and its expiry counts this attempt.
        log.warning("could not record the failure", exc_info=True)
    return False


# Chunks embedded per provider call (the Gemini API takes at most 100 texts).
EMBED_BATCH = 100


def ingest(settings: Settings, notice: ObjectNotice, *, bucket: Bucket, embedder: Embedder) -> str:
    """Process one notice; returns what happened. Raises on transient failure
    (unless it exhausted the attempts: then the material is ``failed`` and the
    notice done)."""
    context = {"object": notice.name, "generation": notice.generation}
    material_id = _material_id(notice)
    if material_id is None or notice.bucket != bucket.name:
        log.info("skipped: not a Lectern material object", extra=context)
        return "skipped: not a Lectern material object"
    with transaction(settings) as session:
        claim = _claim(session, notice, material_id, settings.INGEST_MAX_ATTEMPTS)
    if isinstance(claim, str):
        log.info("skipped: %s", claim, extra=context)
        return f"skipped: {claim}"
    try:
        data = bucket.read(notice.name, generation=notice.generation)
        if data is None:
            # Replaced or removed since the notice: a newer notice (if any) takes over;
            # if none comes, the material must not stay "processing".
            _finish(settings, notice, material_id, "failed", "object_missing")
            log.info("ended: the object generation is gone", extra=context)
            return "failed: object_missing"
        chunks, vectors = _extract_and_embed(claim, data, embedder)
        outcome = _write(settings, notice, material_id, chunks, vectors, embedder.model)
    except PdfProblem as problem:
        code = _pdf_code(problem)
        _finish(settings, notice, material_id, problem.status, code)
        # The reason may quote pypdf's message: the log has it, users get the code's sentence.
        log.info("ingest ended %s (%s): %s", problem.status, code, problem.reason, extra=context)
        return f"{problem.status}: {code}"
    except Exception as error:
        if _record_failure(settings, notice, claim, error, settings.INGEST_MAX_ATTEMPTS):
            log.error("ingest failed: attempts exhausted", extra=context)
            return "failed: attempts exhausted"
        raise
    log.info("ingest: %s", outcome, extra=context)
    return outcome


def _pdf_code(problem: PdfProblem) -> str:
    if problem.status == "no_text":
        return "no_text"
    return "pdf_encrypted" if "encrypted" in problem.reason else "pdf_damaged"


def _extract_and_embed(
    claim: _Claim, data: bytes, embedder: Embedder
) -> tuple[list[Chunk], list[HalfVector]]:
    """Every chunk of the file and its vector, with no transaction open meanwhile.

    Vectors are kept as float16 arrays (pgvector's ``HalfVector``, the column's
    type): a 1000-page book's ~2000 vectors take 6 MB instead of 100 MB of
    Python floats.
    """
    chunks = chunk_pages(list(iter_pages(data)))
    if not chunks:
        raise no_text()
    vectors: list[HalfVector] = []
    for start in range(0, len(chunks), EMBED_BATCH):
        batch = chunks[start : start + EMBED_BATCH]
        texts = [embedding_text(chunk, title=claim.title, course=claim.course) for chunk in batch]
        vectors += [HalfVector(vector) for vector in embedder.embed_documents(texts)]
    return chunks, vectors


def _write(
    settings: Settings,
    notice: ObjectNotice,
    material_id: uuid.UUID,
    chunks: list[Chunk],
    vectors: list[HalfVector],
    model: str,
) -> str:
    """Replace the material's chunk set in one short transaction."""
    with transaction(settings) as session:
        material = _current(session, notice, material_id)
        if material is None:
            return "skipped: superseded while processing"
        session.execute(delete(MaterialChunk).where(MaterialChunk.material_id == material_id))
        # RETURNING makes SQLAlchemy batch the rows into multi-row INSERTs;
        # without it pg8000's executemany sends one statement per row.
        session.execute(
            insert(MaterialChunk).returning(MaterialChunk.id),
            [
                {
                    "id": uuid.uuid4(),
                    "material_id": material_id,
                    "chunk_index": chunk.index,
                    "content": chunk.text,
                    "embedding": vector,
                    "embedding_model": model,
                    "page_number": chunk.page_number,
                }
                for chunk, vector in zip(chunks, vectors, strict=True)
            ],
        )
        material.chunk_count = len(chunks)
        material.ingest_status = "ready"
        material.ingest_error = material.ingest_error_code = None
        material.ingest_finished_at = clock.now()
    return f"ready: {len(chunks)} chunks"


# -- sweep ---------------------------------------------------------------------


def redrive_stale(
    settings: Settings,
    *,
    bucket: Bucket,
    embedder: Embedder,
    stale_after: timedelta,
    limit: int,
) -> list[str]:
    """Ingest, inline, up to ``limit`` materials stuck ``queued`` or ``processing``.

    Stuck means no claim (``ingest_started_at``, else the approval's
    ``created_at``) for ``stale_after``: the notification was lost, or
    dead-lettered through a database outage longer than Pub/Sub's retries, or
    an attempt crashed. Oldest first, so a backlog drains in order. The notice
    is rebuilt from the object as it is now in the bucket and goes through the
    normal claim, so a material another delivery is working on (live lease)
    is left alone and an expired lease counts as a failed attempt; every
    re-drive of a failing material thus spends the attempts budget and the
    sweep cannot loop on it forever. One failing material does not stop the
    others. Returns one line per material: ``"<id>: <outcome>"``.
    """
    since = func.coalesce(Material.ingest_started_at, Material.created_at)
    with transaction(settings) as session:
        stuck = session.execute(
            select(Material.id, Material.file_url)
            .where(
                Material.ingest_status.in_(PENDING),
                Material.is_published,
                since < clock.now() - stale_after,
            )
            .order_by(since, Material.id)
            .limit(limit)
        ).all()
    outcomes: list[str] = []
    for material_id, name in stuck:
        context = {"material_id": str(material_id), "object": name}
        try:
            outcome = _redrive(settings, material_id, name, bucket=bucket, embedder=embedder)
        except Exception as error:
            # ingest recorded the failure (or its lease will); next material.
            log.warning("sweep: re-drive failed: %s", type(error).__name__, extra=context)
            outcome = f"error: {_error_code(error)}"
        log.info("sweep: %s", outcome, extra=context)
        outcomes.append(f"{material_id}: {outcome}")
    return outcomes


def _redrive(
    settings: Settings, material_id: uuid.UUID, name: str, *, bucket: Bucket, embedder: Embedder
) -> str:
    generation = bucket.generation(name)
    metadata = bucket.metadata(name) if generation is not None else None
    if generation is None or metadata is None or metadata.get(META_REQUEST_ID) != str(material_id):
        # No object, or one that no longer belongs to this material: nothing
        # will ever be ingested for it; end it rather than re-drive forever.
        with transaction(settings) as session:
            material = session.scalar(
                select(Material).where(Material.id == material_id).with_for_update(key_share=True)
            )
            if material is None or material.ingest_status not in PENDING:
                return "skipped: no longer pending"
            if material.file_url != name:
                return "skipped: not the material's current object"
            _give_up(session, material, "object_missing", ERROR_MESSAGES["object_missing"])
        return "failed: object_missing"
    notice = ObjectNotice(bucket.name, name, generation, metadata)
    return ingest(settings, notice, bucket=bucket, embedder=embedder)
