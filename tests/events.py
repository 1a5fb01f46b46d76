"""CloudEvents as the cloud delivers them, built with the cloudevents SDK."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

from cloudevents.conversion import to_binary, to_structured
from cloudevents.http import CloudEvent


def resource_of(bucket: Any, name: str) -> dict[str, Any]:
    blob = bucket.get_blob(name)
    assert blob is not None, name
    return {
        "kind": "storage#object",
        "bucket": bucket.name,
        "name": blob.name,
        "generation": str(blob.generation),
        "metadata": dict(blob.metadata or {}),
    }


def pubsub_event(resource: dict[str, Any], event_type: str = "OBJECT_FINALIZE") -> CloudEvent:
    return CloudEvent(
        {
            "type": "google.cloud.pubsub.topic.v1.messagePublished",
            "source": "//pubsub.googleapis.com/projects/p/topics/lectern-ingest",
            "datacontenttype": "application/json",
        },
        {
            "message": {
                "data": base64.b64encode(json.dumps(resource).encode()).decode(),
                "attributes": {
                    "eventType": event_type,
                    "payloadFormat": "JSON_API_V1",
                    "bucketId": resource["bucket"],
                    "objectId": resource["name"],
                    "objectGeneration": resource["generation"],
                },
                "messageId": uuid.uuid4().hex,
            },
            "subscription": "projects/p/subscriptions/lectern-ingest",
        },
    )


def storage_event(resource: dict[str, Any]) -> CloudEvent:
    return CloudEvent(
        {
            "type": "google.cloud.storage.object.v1.finalized",
            "source": f"//storage.googleapis.com/projects/_/buckets/{resource['bucket']}",
            "subject": f"objects/{resource['name']}",
            "datacontenttype": "application/json",
        },
        resource,
    )


def deliver(apps: dict[str, Any], event: CloudEvent, *, binary: bool = True) -> int:
    """POST the event to the ingest function; its HTTP status."""
    headers, body = to_binary(event) if binary else to_structured(event)
    response = apps["ingest"].post("/", headers=headers, data=body)
    return int(response.status_code)
