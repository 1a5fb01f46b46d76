"""Ingestion: an object-finalized notice becomes a material's chunk set.

    notice ─► claim ─► download ─► extract ─► chunk ─► embed ─► write
              (tx 1)   (the exact generation)                   (tx 2)

*Claim* locks the file request (which waits for a moderation transaction in
flight on it, so an event racing its own approval sees the committed row) and
the material, and decides whether this notice is current:

- no request, or no material: not an approved material (pending, rejected,
  undone, unknown) → skipped;
- the material's ``file_url`` is another object → skipped;
- an older generation than the one already recorded → skipped (stale);
- the recorded generation already finished (ready, no_text, failed) →
  skipped (a duplicate delivery);
- otherwise the attempt is counted per (material, generation); past
  ``INGEST_MAX_ATTEMPTS`` the material ends ``failed`` and the notice is
  acknowledged instead of looping.

*Write* locks the material again, re-checks that the notice is still current,
and replaces the material's chunks in one transaction (one bulk INSERT), so
redelivered, duplicated or out-of-order notices leave exactly one chunk set
matching the latest generation.

Transient failures (the embedding API throttled or down, the database
unreachable) propagate: the function fails and Pub/Sub redelivers. Permanent
ones (encrypted, damaged, textless PDFs) are recorded and acknowledged.
"""

from __future__ import annotations

import base64
import json
import logging
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pgvector import Vector
from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from shared import clock
from shared.chunking import Chunk, chunk_pages, embedding_text
from shared.db.engine import transaction
from shared.db.models import Course, FileRequest, Material, MaterialChunk
from shared.pdf import PdfProblem, iter_pages, no_text
from shared.storage import META_REQUEST_ID

if TYPE_CHECKING:
    from shared.config import Settings
    from shared.embeddings import Embedder
    from shared.storage import Bucket

__all__ = ["ObjectNotice", "ingest", "notice_from_event"]

log = logging.getLogger("lectern.pipeline")

PUBSUB_PUBLISHED = "google.cloud.pubsub.topic.v1.messagePublished"
STORAGE_FINALIZED = "google.cloud.storage.object.v1.finalized"
FINISHED = ("ready", "no_text", "failed")


@dataclass(frozen=True)
class ObjectNotice:
    bucket: str
    name: str
    generation: int
    metadata: dict[str, str]


def notice_from_event(event_type: str, data: Any) -> ObjectNotice | None:
    """The finalized object a CloudEvent announces, or None for any other event.

    Accepts the bucket notification delivered through Pub/Sub (the object
    resource, JSON_API_V1, base64 in ``message.data``) and a direct Eventarc
    storage event (the object resource as the event's data).
    """
    if event_type == PUBSUB_PUBLISHED:
        message = (data or {}).get("message") or {}
        attributes = message.get("attributes") or {}
        if attributes.get("eventType") != "OBJECT_FINALIZE":
            return None
        resource = json.loads(base64.b64decode(message.get("data") or b"e30=") or b"{}")
        return ObjectNotice(
            bucket=attributes.get("bucketId") or resource.get("bucket", ""),
            name=attributes.get("objectId") or resource.get("name", ""),
            generation=int(attributes.get("objectGeneration") or resource.get("generation")),
            metadata=dict(resource.get("metadata") or {}),
        )
    if event_type == STORAGE_FINALIZED:
        resource = data or {}
        return ObjectNotice(
            bucket=resource.get("bucket", ""),
            name=resource.get("name", ""),
            generation=int(resource["generation"]),
            metadata=dict(resource.get("metadata") or {}),
        )
    return None


@dataclass
class _Claim:
    material_id: uuid.UUID
    title: str
    course: str
    attempt: int


def _material_id(notice: ObjectNotice) -> uuid.UUID | None:
    try:
        return uuid.UUID(notice.metadata.get(META_REQUEST_ID, ""))
    except ValueError:
        return None


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
    if request is None or material is None:
        return "not an approved material"
    if material.file_url != notice.name:
        return "not the material's current object"
    recorded = material.ingest_generation
    if recorded is not None and notice.generation < recorded:
        return "stale generation"
    if notice.generation == recorded and material.ingest_status in FINISHED:
        return "already ingested"
    now = clock.now()
    if notice.generation != recorded:
        material.ingest_generation = notice.generation
        material.ingest_attempts = 0
    material.ingest_attempts += 1
    if material.ingest_attempts > max_attempts:
        material.ingest_status = "failed"
        last = material.ingest_error or "unknown"
        material.ingest_error = f"gave up after {max_attempts} attempts; last error: {last}"
        material.ingest_finished_at = now
        return "attempts exhausted"
    material.ingest_status = "processing"
    material.ingest_started_at = now
    course = session.scalar(select(Course.name).where(Course.id == material.course_id))
    return _Claim(material.id, material.title, course or "", material.ingest_attempts)


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
    settings: Settings, notice: ObjectNotice, material_id: uuid.UUID, status: str, error: str | None
) -> None:
    with transaction(settings) as session:
        material = _current(session, notice, material_id)
        if material is None:
            return
        if status != "ready":
            session.execute(delete(MaterialChunk).where(MaterialChunk.material_id == material_id))
            material.chunk_count = 0
        material.ingest_status = status
        material.ingest_error = error
        material.ingest_finished_at = clock.now()


def _note_transient(
    settings: Settings,
    notice: ObjectNotice,
    material_id: uuid.UUID,
    attempt: int,
    error: BaseException,
) -> None:
    """Make a retrying failure visible on the material; the notice will come back."""
    try:
        with transaction(settings) as session:
            material = _current(session, notice, material_id)
            if material is not None:
                material.ingest_error = f"attempt {attempt} failed, will retry: {error}"[:500]
    except Exception:
        log.warning("could not record the failure", exc_info=True)


# Chunks embedded per provider call (the Gemini API takes at most 100 texts).
EMBED_BATCH = 100


def ingest(settings: Settings, notice: ObjectNotice, *, bucket: Bucket, embedder: Embedder) -> str:
    """Process one notice; returns what happened. Raises on transient failure."""
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
            _finish(settings, notice, material_id, "failed", "the stored file no longer exists")
            log.info("ended: the object generation is gone", extra=context)
            return "failed: the object generation is gone"
        chunks, vectors = _extract_and_embed(claim, data, embedder)
        outcome = _write(settings, notice, material_id, chunks, vectors, embedder.model)
    except PdfProblem as problem:
        _finish(settings, notice, material_id, problem.status, problem.reason)
        log.info("ingest ended %s: %s", problem.status, problem.reason, extra=context)
        return problem.status
    except Exception as error:
        _note_transient(settings, notice, material_id, claim.attempt, error)
        raise
    log.info("ingest: %s", outcome, extra=context)
    return outcome


def _extract_and_embed(
    claim: _Claim, data: bytes, embedder: Embedder
) -> tuple[list[Chunk], list[Vector]]:
    """Every chunk of the file and its vector, with no transaction open meanwhile.

    Vectors are kept as float32 arrays (pgvector's ``Vector``): a 1000-page
    book's ~2000 vectors take 12 MB instead of 100 MB of Python floats.
    """
    chunks = chunk_pages(list(iter_pages(data)))
    if not chunks:
        raise no_text()
    vectors: list[Vector] = []
    for start in range(0, len(chunks), EMBED_BATCH):
        batch = chunks[start : start + EMBED_BATCH]
        texts = [embedding_text(chunk, title=claim.title, course=claim.course) for chunk in batch]
        vectors += [Vector(vector) for vector in embedder.embed_documents(texts)]
    return chunks, vectors


def _write(
    settings: Settings,
    notice: ObjectNotice,
    material_id: uuid.UUID,
    chunks: list[Chunk],
    vectors: list[Vector],
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
        material.ingest_error = None
        material.ingest_finished_at = clock.now()
    return f"ready: {len(chunks)} chunks"
