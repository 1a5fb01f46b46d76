"""Announce an object to the ingestion pipeline again, as its bucket notification would.

``POST /moderate/materials/{id}/reingest`` puts a material back to ``queued``
(``shared.admin.queue_reingest``), then sends the notice the bucket sent when
the object was written: an ``OBJECT_FINALIZE`` notification of the object's
current generation, with the object resource (JSON_API_V1) as its data. The
pipeline's claim takes the same generation again because the material is
``queued`` (only ``ready``, ``no_text`` and ``failed`` count as done).

- **Production**: published with google-cloud-pubsub to the ingest topic
  (``INGEST_TOPIC``, ``projects/P/topics/T``), the topic the bucket notifies,
  so the message takes the same push subscription, retries and dead letter.
- **Local stack and tests** (``STORAGE_EMULATOR_HOST`` set): POSTed as the
  binary-mode Pub/Sub CloudEvent the push would become, to
  ``LECTERN_INGEST_URL`` (``lectern dev`` sets ``<base>/ingest``), in a
  background thread with retries, as Pub/Sub delivers after the publish.

A notice that cannot be sent is not lost for good: the material stays
``queued`` and the sweep re-drives it after ``INGEST_STALE_AFTER``.

Rewriting the object instead (a copy onto itself makes a new generation, and
so a real notification) was not chosen: it changes the generation that
moderation's pending deletions and intents compare against, for no gain. A
metadata patch makes no new generation and GCS announces it as
``OBJECT_METADATA_UPDATE``, which the pipeline (rightly) skips.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shared.config import Settings

__all__ = ["Notification", "announce", "notification"]

log = logging.getLogger("lectern.reingest")

# Until these move into shared.config.Settings.

LOCAL_DELIVERIES = 5

_publisher_lock = threading.Lock()
_publisher: Any = None


@dataclass(frozen=True)
class Notification:
    """A bucket notification: the object resource and the Pub/Sub attributes."""

    resource: dict[str, Any]
    attributes: dict[str, str]

    @property
    def data(self) -> bytes:
        return json.dumps(self.resource, separators=(",", ":")).encode()


def notification(
    *, bucket: str, name: str, generation: int, metadata: dict[str, str]
) -> Notification:
    """The OBJECT_FINALIZE notification of one object generation, as GCS sends it."""
    resource = {
        "kind": "storage#object",
        "bucket": bucket,
        "name": name,
        "generation": str(generation),
        "contentType": "application/pdf",
        "metadata": dict(metadata),
    }
    attributes = {
        "eventType": "OBJECT_FINALIZE",
        "payloadFormat": "JSON_API_V1",
        "bucketId": bucket,
        "objectId": name,
        "objectGeneration": str(generation),
    }
    return Notification(resource, attributes)


def announce(settings: Settings, notice: Notification) -> bool:
    """Send the notice (see the module docstring); False if it could not be handed over."""
    try:
        if settings.STORAGE_EMULATOR_HOST:
            return _deliver_locally(settings, notice)
        return _publish(settings, notice)
    except Exception:
        log.exception(
            "re-ingest notice not sent; the sweep will re-drive it",
            extra={"object": notice.attributes["objectId"]},
        )
        return False


def _publisher_client() -> Any:
    global _publisher
    if _publisher is None:
        with _publisher_lock:
            if _publisher is None:
                from google.cloud import pubsub_v1  # type: ignore[attr-defined]

                _publisher = pubsub_v1.PublisherClient()
    return _publisher


def _publish(settings: Settings, notice: Notification) -> bool:
    topic = settings.INGEST_TOPIC
    if not topic:
        log.error("INGEST_TOPIC is not set: re-ingest notices cannot be published")
        return False
    future = _publisher_client().publish(topic, notice.data, **notice.attributes)
    # Bounded like a storage call: the handler answers well inside its timeout.
    message_id = future.result(timeout=settings.STORAGE_TIMEOUT_S)
    log.info("re-ingest notice published", extra={"message_id": str(message_id)})
    return True


def local_event(notice: Notification) -> tuple[dict[str, str], bytes]:
    """Headers and body of the binary-mode CloudEvent a Pub/Sub push of ``notice`` becomes."""
    import base64

    event_id = uuid.uuid4().hex
    moment = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    headers = {
        "Content-Type": "application/json",
        "ce-specversion": "1.0",
        "ce-type": "google.cloud.pubsub.topic.v1.messagePublished",
        "ce-source": "//pubsub.googleapis.com/projects/lectern-local/topics/lectern-ingest",
        "ce-id": event_id,
        "ce-time": moment,
    }
    body = {
        "message": {
            "data": base64.b64encode(notice.data).decode(),
            "attributes": notice.attributes,
            "messageId": event_id,
            "publishTime": moment,
        },
        "subscription": "projects/lectern-local/subscriptions/lectern-ingest",
    }
    return headers, json.dumps(body).encode()


def _deliver_locally(settings: Settings, notice: Notification) -> bool:
    url = settings.LECTERN_INGEST_URL
    if not url:
        log.warning("LECTERN_INGEST_URL is not set: the sweep will re-drive the material")
        return False
    thread = threading.Thread(
        target=_post_with_retries, args=(url, notice), name="reingest", daemon=True
    )
    thread.start()
    return True


def _post_with_retries(url: str, notice: Notification) -> None:
    headers, body = local_event(notice)
    for attempt in range(1, LOCAL_DELIVERIES + 1):
        request = urllib.request.Request(url, data=body, method="POST", headers=headers)  # noqa: S310 (a local URL the stack sets)
        try:
            with urllib.request.urlopen(request, timeout=300):  # noqa: S310 (a local URL the stack sets)
                return
        except (urllib.error.URLError, OSError) as error:
            log.warning("re-ingest delivery %d failed: %s", attempt, error)
        time.sleep(min(2**attempt, 30))
    log.error("gave up delivering the re-ingest notice of %s", notice.attributes["objectId"])
