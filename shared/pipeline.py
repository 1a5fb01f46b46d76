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
import queue
import threading
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

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
    material = session.scalar(select(Material).where(Material.id == material_id).with_for_update())
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
    """The material, locked, if this notice is still the one to ingest."""
    material = session.scalar(select(Material).where(Material.id == material_id).with_for_update())
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


PAGES_PER_BATCH = 20


class _ChunkWriter:
    """Writes one material's chunk set in a single transaction, on its own thread.

    The transaction opens at the first batch, replaces the earlier set, and
    commits only at ``finish``; anything else rolls it back. Inserting in a
    thread lets PostgreSQL maintain the HNSW index on the second core while
    this one extracts and embeds the next pages.
    """

    _DONE = object()

    def __init__(
        self, settings: Settings, notice: ObjectNotice, material_id: uuid.UUID, model: str
    ) -> None:
        self._settings = settings
        self._notice = notice
        self._material_id = material_id
        self._model = model
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=4)
        self._error: BaseException | None = None
        self._commit = False
        self._finished = False
        self.superseded = False
        self.written = 0
        self._thread = threading.Thread(target=self._run, name="chunk-writer", daemon=True)
        self._thread.start()

    def put(self, chunks: list[Chunk], vectors: list[list[float]]) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put((chunks, vectors))

    def finish(self, *, commit: bool) -> None:
        """Commit (or roll back) and wait; re-raises the writer's own failure."""
        if not self._thread.is_alive() and self._finished:
            return
        self._finished = True
        self._commit = commit
        self._queue.put(self._DONE)
        self._thread.join()
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        try:
            with transaction(self._settings) as session:
                material = _current(session, self._notice, self._material_id)
                if material is None:
                    self.superseded = True
                else:
                    session.execute(
                        delete(MaterialChunk).where(MaterialChunk.material_id == self._material_id)
                    )
                while (item := self._queue.get()) is not self._DONE:
                    if material is not None:
                        self._insert(session, *item)
                if material is None:
                    return
                if not self._commit:
                    raise _RollBack
                material.chunk_count = self.written
                material.ingest_status = "ready"
                material.ingest_error = None
                material.ingest_finished_at = clock.now()
        except _RollBack:
            pass
        except BaseException as error:
            self._error = error
            # Keep draining so the producer never blocks on a full queue.
            while self._queue.get() is not self._DONE:
                pass

    def _insert(self, session: Session, chunks: list[Chunk], vectors: list[list[float]]) -> None:
        if not chunks:
            return
        session.execute(
            insert(MaterialChunk),
            [
                {
                    "id": uuid.uuid4(),
                    "material_id": self._material_id,
                    "chunk_index": chunk.index,
                    "content": chunk.text,
                    "embedding": vector,
                    "embedding_model": self._model,
                    "page_number": chunk.page_number,
                }
                for chunk, vector in zip(chunks, vectors, strict=True)
            ],
        )
        self.written += len(chunks)


class _RollBack(Exception):
    pass


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
            log.info("skipped: the object generation is gone", extra=context)
            return "skipped: the object generation is gone"
        outcome = _extract_embed_write(settings, notice, claim, data, embedder)
    except PdfProblem as problem:
        _finish(settings, notice, material_id, problem.status, problem.reason)
        log.info("ingest ended %s: %s", problem.status, problem.reason, extra=context)
        return problem.status
    except Exception as error:
        _note_transient(settings, notice, material_id, claim.attempt, error)
        raise
    log.info("ingest: %s", outcome, extra=context)
    return outcome


def _extract_embed_write(
    settings: Settings, notice: ObjectNotice, claim: _Claim, data: bytes, embedder: Embedder
) -> str:
    writer = _ChunkWriter(settings, notice, claim.material_id, embedder.model)
    committed = False
    try:
        pages: list[str] = []
        page_number = 1
        next_index = 0
        for text in iter_pages(data):
            pages.append(text)
            if len(pages) == PAGES_PER_BATCH:
                next_index = _send(writer, embedder, claim, pages, page_number, next_index)
                page_number += len(pages)
                pages = []
        total = _send(writer, embedder, claim, pages, page_number, next_index)
        if total == 0:
            # Nothing to insert: roll back, and _finish records no_text.
            raise no_text()
        writer.finish(commit=True)
        committed = True
    finally:
        if not committed:
            writer.finish(commit=False)
    if writer.superseded:
        return "skipped: superseded while processing"
    return f"ready: {writer.written} chunks"


def _send(
    writer: _ChunkWriter,
    embedder: Embedder,
    claim: _Claim,
    pages: list[str],
    first_page: int,
    first_index: int,
) -> int:
    chunks = chunk_pages(pages, first_page=first_page, first_index=first_index)
    if chunks:
        texts = [embedding_text(chunk, title=claim.title, course=claim.course) for chunk in chunks]
        writer.put(chunks, embedder.embed_documents(texts))
    return first_index + len(chunks)
