"""Bucket notifications for the local stack.

gcp-storage-emulator sends no notifications, so the local stack watches the
bucket instead: every half second it lists the objects, and for each new
(name, generation) it POSTs to ``/ingest`` the same Pub/Sub CloudEvent the
cloud would (``google.cloud.pubsub.topic.v1.messagePublished``, the object
resource base64 in ``message.data``, attributes ``eventType``, ``bucketId``,
``objectId``, ``objectGeneration``). A delivery that fails is retried with
backoff, as Pub/Sub would. On start every existing object is announced once;
the pipeline skips what it has already ingested.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import uuid
from datetime import UTC, datetime
from typing import Any

__all__ = ["BucketWatcher", "pubsub_event"]

log = logging.getLogger("lectern.dev.notifications")

POLL_SECONDS = 0.5
MAX_DELIVERIES = 5


def pubsub_event(resource: dict[str, Any]) -> tuple[dict[str, str], bytes]:
    """Headers and body of a binary-mode Pub/Sub CloudEvent announcing ``resource``."""
    from cloudevents.conversion import to_binary
    from cloudevents.http import CloudEvent

    attributes = {
        "type": "google.cloud.pubsub.topic.v1.messagePublished",
        "source": "//pubsub.googleapis.com/projects/lectern-local/topics/lectern-ingest",
        "id": uuid.uuid4().hex,
        "time": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "datacontenttype": "application/json",
    }
    data = {
        "message": {
            "data": base64.b64encode(json.dumps(resource).encode()).decode(),
            "attributes": {
                "eventType": "OBJECT_FINALIZE",
                "payloadFormat": "JSON_API_V1",
                "bucketId": resource["bucket"],
                "objectId": resource["name"],
                "objectGeneration": str(resource["generation"]),
            },
            "messageId": attributes["id"],
            "publishTime": attributes["time"],
        },
        "subscription": "projects/lectern-local/subscriptions/lectern-ingest",
    }
    headers, body = to_binary(CloudEvent(attributes, data))
    return dict(headers), body if isinstance(body, bytes) else str(body).encode()


class BucketWatcher:
    def __init__(self, bucket: Any, target_url: str) -> None:
        self._bucket = bucket
        self._target_url = target_url
        self._seen: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bucket-watcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._poll()
            except Exception:
                log.warning("could not list the bucket", exc_info=True)
            self._stop.wait(POLL_SECONDS)

    def _poll(self) -> None:
        for blob in self._bucket.list_blobs():
            generation = int(blob.generation)
            if self._seen.get(blob.name) == generation:
                continue
            self._seen[blob.name] = generation
            resource = {
                "kind": "storage#object",
                "bucket": self._bucket.name,
                "name": blob.name,
                "generation": str(generation),
                "contentType": blob.content_type,
                "size": str(blob.size),
                "metadata": dict(blob.metadata or {}),
            }
            threading.Thread(target=self._deliver, args=(resource,), daemon=True).start()

    def _deliver(self, resource: dict[str, Any]) -> None:
        import requests

        headers, body = pubsub_event(resource)
        for attempt in range(1, MAX_DELIVERIES + 1):
            try:
                response = requests.post(self._target_url, headers=headers, data=body, timeout=300)
                if response.status_code < 300:
                    return
                reason = f"HTTP {response.status_code}"
            except requests.RequestException as error:
                reason = str(error)
            log.warning("delivery %d of %s failed: %s", attempt, resource["name"], reason)
            if self._stop.wait(min(2**attempt, 30)):
                return
        log.error("gave up delivering %s", resource["name"])
