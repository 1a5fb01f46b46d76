"""ingest: a malformed event is acknowledged and logged as permanent, never failed.

Pub/Sub redelivers every non-2xx answer until the dead letter, so an event
that can never be read must be answered 2xx with one log line saying why.
Each malformed shape goes through the real app, in the binary and structured
CloudEvent wirings and, for Pub/Sub, as the raw push body the subscription
sends (functions-framework converts it). The events name a real, queued
material, so an event parsed too leniently would show: the material would be
claimed, ingested or the request would fail.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from cloudevents.http import CloudEvent
from sqlalchemy.orm import Session, sessionmaker

from shared import pipeline
from shared.db.models import Material, MaterialChunk
from shared.log import JsonFormatter
from shared.storage import META_REQUEST_ID
from tests.conftest import REPO
from tests.events import deliver, pubsub_event, resource_of, storage_event
from tests.factories import make_material
from tests.pdfs import make_pdf

TOPIC_PATH = "/projects/p/topics/lectern-ingest"


@pytest.fixture(scope="module")
def apps(function_client: Callable[[str], Any]) -> dict[str, Any]:
    return {"ingest": function_client("ingest")}


@pytest.fixture
def placed(bucket: Any, sessions: sessionmaker[Session]) -> dict[str, Any]:
    """A queued material and its object resource, as a notification would describe it."""
    with sessions.begin() as session:
        material = make_material(session)
        material_id, name = str(material.id), material.file_url
    blob = bucket.blob(name)
    blob.metadata = {META_REQUEST_ID: material_id}
    blob.upload_from_string(make_pdf(["Tonic water glows under ultraviolet light."]))
    return {"id": material_id, "resource": resource_of(bucket, name)}


@pytest.fixture
def warnings(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="lectern")
    return caplog


def untouched(sessions: sessionmaker[Session], material_id: str) -> bool:
    with sessions.begin() as session:
        material = session.get(Material, uuid.UUID(material_id))
        assert material is not None
        chunks = session.query(MaterialChunk).filter_by(material_id=material.id).count()
        return (
            material.ingest_status,
            material.ingest_attempts,
            material.ingest_started_at,
            chunks,
        ) == ("queued", 0, None, 0)


def permanent_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    """The permanent-problem log lines, as the JSON Cloud Logging would receive."""
    lines = [
        JsonFormatter().format(record)
        for record in caplog.records
        if record.name == "lectern.ingest" and record.getMessage().startswith("permanent:")
    ]
    assert all("\n" not in line for line in lines)
    return [json.loads(line) for line in lines]


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


# Each case: how to spoil a valid Pub/Sub envelope, and words the reason must contain.
PUBSUB_CASES: dict[str, tuple[Callable[[dict[str, Any]], Any], str]] = {
    "data not base64": (lambda e: e["message"].update(data="%%% not base64 %%%"), "base64"),
    "data not JSON": (lambda e: e["message"].update(data=b64(b"<xml/>")), "base64-encoded JSON"),
    "data not UTF-8": (lambda e: e["message"].update(data=b64(b"\xff\xfe{")), "JSON"),
    "data a JSON list": (lambda e: e["message"].update(data=b64(b"[1, 2]")), "not a JSON object"),
    "data a number": (lambda e: e["message"].update(data=5), "message.data"),
    "no generation": (
        lambda e: (
            e["message"]["attributes"].pop("objectGeneration"),
            e["message"].update(data=b64(json.dumps(_without(e, "generation")).encode())),
        ),
        "generation",
    ),
    "non-numeric generation": (
        lambda e: e["message"]["attributes"].update(objectGeneration="12a"),
        "generation",
    ),
    "negative generation": (
        lambda e: e["message"]["attributes"].update(objectGeneration="-5"),
        "generation",
    ),
    "fractional generation": (
        lambda e: e["message"]["attributes"].update(objectGeneration="1.5"),
        "generation",
    ),
    "generation past BIGINT": (
        lambda e: e["message"]["attributes"].update(objectGeneration="9" * 19),
        "generation",
    ),
    "metadata a list": (lambda e: _resource_edit(e, metadata=["lectern-request-id"]), "metadata"),
    "metadata not strings": (
        lambda e: _resource_edit(e, metadata={META_REQUEST_ID: 7}),
        "metadata",
    ),
    "no name": (
        lambda e: (
            e["message"]["attributes"].pop("objectId"),
            e["message"].update(data=b64(json.dumps(_without(e, "name")).encode())),
        ),
        "name",
    ),
    "no bucket": (
        lambda e: (
            e["message"]["attributes"].pop("bucketId"),
            e["message"].update(data=b64(json.dumps(_without(e, "bucket")).encode())),
        ),
        "bucket",
    ),
    "attributes not strings": (
        lambda e: e["message"]["attributes"].update(objectGeneration=17),
        "attributes",
    ),
    "attributes a list": (lambda e: e["message"].update(attributes=["x"]), "attributes"),
}


def _decoded(envelope: dict[str, Any]) -> dict[str, Any]:
    return dict(json.loads(base64.b64decode(envelope["message"]["data"])))


def _without(envelope: dict[str, Any], key: str) -> dict[str, Any]:
    resource = _decoded(envelope)
    del resource[key]
    return resource


def _resource_edit(envelope: dict[str, Any], **changes: Any) -> None:
    envelope["message"]["data"] = b64(json.dumps({**_decoded(envelope), **changes}).encode())


def spoiled_pubsub(resource: dict[str, Any], case: str) -> dict[str, Any]:
    envelope = json.loads(json.dumps(pubsub_event(resource).data))
    PUBSUB_CASES[case][0](envelope)
    return dict(envelope)


def as_pubsub_event(envelope: Any) -> CloudEvent:
    return CloudEvent(
        {
            "type": pipeline.PUBSUB_PUBLISHED,
            "source": "//pubsub.googleapis.com/projects/p/topics/lectern-ingest",
            "datacontenttype": "application/json",
        },
        envelope,
    )


def push(apps: dict[str, Any], body: bytes) -> int:
    """POST the body a Pub/Sub push subscription sends (the production wiring)."""
    response = apps["ingest"].post(
        TOPIC_PATH, data=body, headers={"Content-Type": "application/json"}
    )
    return int(response.status_code)


@pytest.mark.parametrize("wiring", ["binary", "structured", "push"])
@pytest.mark.parametrize("case", sorted(PUBSUB_CASES))
def test_a_malformed_pubsub_notification_is_acknowledged_and_logged_once(
    apps: dict[str, Any],
    placed: dict[str, Any],
    sessions: sessionmaker[Session],
    warnings: pytest.LogCaptureFixture,
    case: str,
    wiring: str,
) -> None:
    envelope = spoiled_pubsub(placed["resource"], case)
    if wiring == "push":
        envelope["message"]["messageId"] = "m-1"  # functions-framework needs one
        status = push(apps, json.dumps(envelope).encode())
    else:
        status = deliver(apps, as_pubsub_event(envelope), binary=wiring == "binary")
    assert status == 200
    lines = permanent_lines(warnings)
    assert len(lines) == 1, lines
    assert lines[0]["severity"] == "WARNING"
    assert lines[0]["outcome"] == "malformed"
    assert PUBSUB_CASES[case][1] in lines[0]["reason"]
    assert untouched(sessions, placed["id"])


@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize(
    ("envelope", "reason"),
    [
        ({"message": "hello"}, "message"),
        ({"message": ["data"]}, "message"),
        ({"message": None}, "message"),
        ({}, "message"),
        (["message"], "not a JSON object"),
        ("message", "not a JSON object"),
        (None, "not a JSON object"),
    ],
)
def test_a_pubsub_event_without_a_message_object_is_acknowledged(
    apps: dict[str, Any],
    warnings: pytest.LogCaptureFixture,
    envelope: Any,
    reason: str,
    binary: bool,
) -> None:
    assert deliver(apps, as_pubsub_event(envelope), binary=binary) == 200
    lines = permanent_lines(warnings)
    assert len(lines) == 1
    assert reason in lines[0]["reason"]


STORAGE_CASES: dict[str, tuple[Callable[[dict[str, Any]], Any], str]] = {
    "no generation": (lambda r: r.pop("generation"), "generation"),
    "non-numeric generation": (lambda r: r.update(generation="abc"), "generation"),
    "negative generation": (lambda r: r.update(generation=-1), "generation"),
    "boolean generation": (lambda r: r.update(generation=True), "generation"),
    "metadata a list": (lambda r: r.update(metadata=[["lectern-request-id", "x"]]), "metadata"),
    "metadata not strings": (lambda r: r.update(metadata={META_REQUEST_ID: None}), "metadata"),
    "no name": (lambda r: r.pop("name"), "name"),
    "empty bucket": (lambda r: r.update(bucket=""), "bucket"),
}


@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize("case", sorted(STORAGE_CASES))
def test_a_malformed_storage_event_is_acknowledged_and_logged_once(
    apps: dict[str, Any],
    placed: dict[str, Any],
    sessions: sessionmaker[Session],
    warnings: pytest.LogCaptureFixture,
    case: str,
    binary: bool,
) -> None:
    resource = dict(placed["resource"])
    event = storage_event(resource)  # the attributes of the valid event
    STORAGE_CASES[case][0](resource)
    spoiled = CloudEvent(
        {key: event[key] for key in ("type", "source", "subject", "datacontenttype")}, resource
    )
    assert deliver(apps, spoiled, binary=binary) == 200
    lines = permanent_lines(warnings)
    assert len(lines) == 1
    assert STORAGE_CASES[case][1] in lines[0]["reason"]
    assert untouched(sessions, placed["id"])


@pytest.mark.parametrize("data", [[1, 2], "object", None])
def test_a_storage_event_whose_data_is_not_an_object_is_acknowledged(
    apps: dict[str, Any], warnings: pytest.LogCaptureFixture, data: Any
) -> None:
    event = CloudEvent(
        {
            "type": pipeline.STORAGE_FINALIZED,
            "source": "//storage.googleapis.com/projects/_/buckets/lectern-test",
            "datacontenttype": "application/json",
        },
        data,
    )
    assert deliver(apps, event) == 200
    assert len(permanent_lines(warnings)) == 1


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"",
        json.dumps({"message": "x", "subscription": "s"}).encode(),
        # JSON, not an object: functions-framework unpacks these with ** (a 500).
        b"[1, 2]",
        b'"a string"',
        b"5",
    ],
)
def test_a_body_that_is_neither_a_cloudevent_nor_a_push_is_acknowledged(
    apps: dict[str, Any], warnings: pytest.LogCaptureFixture, body: bytes
) -> None:
    # functions-framework itself refuses these (400), which Pub/Sub would redeliver.
    assert push(apps, body) == 200
    assert len(permanent_lines(warnings)) == 1


@pytest.mark.parametrize("wiring", ["pubsub-binary", "pubsub-structured", "push", "storage"])
def test_a_valid_notification_still_ingests(
    apps: dict[str, Any],
    placed: dict[str, Any],
    sessions: sessionmaker[Session],
    warnings: pytest.LogCaptureFixture,
    wiring: str,
) -> None:
    resource = placed["resource"]
    if wiring == "push":
        body = {
            "message": {**pubsub_event(resource).data["message"], "messageId": "m-2"},
            "subscription": "projects/p/subscriptions/lectern-ingest",
        }
        assert push(apps, json.dumps(body).encode()) == 200
    elif wiring == "storage":
        assert deliver(apps, storage_event(resource), binary=False) == 200
    else:
        assert deliver(apps, pubsub_event(resource), binary=wiring == "pubsub-binary") == 200
    assert permanent_lines(warnings) == []
    with sessions.begin() as session:
        material = session.get(Material, uuid.UUID(placed["id"]))
        assert material is not None
        assert (material.ingest_status, material.chunk_count) == ("ready", 1)
        assert material.ingest_generation == int(resource["generation"])


def test_other_events_are_skipped_not_called_malformed(
    apps: dict[str, Any], placed: dict[str, Any], warnings: pytest.LogCaptureFixture
) -> None:
    assert deliver(apps, pubsub_event(placed["resource"], event_type="OBJECT_DELETE")) == 200
    other = CloudEvent({"type": "google.cloud.audit.log.v1.written", "source": "x"}, {"a": 1})
    assert deliver(apps, other) == 200
    assert permanent_lines(warnings) == []
    skipped = [r for r in warnings.records if r.getMessage().startswith("skipped: not an object")]
    assert len(skipped) == 2


def test_the_lease_is_shorter_than_the_ingest_timeout() -> None:
    """The lease must expire before Pub/Sub's ack deadline (the function's timeout)
    redelivers an unanswered push, or that redelivery would be taken for a duplicate."""
    terraform = (REPO / "infra" / "functions.tf").read_text()
    ingest = re.search(r"\n    ingest = \{(.*?)\n    \}", terraform, re.DOTALL)
    assert ingest is not None
    timeout = re.search(r"timeout_seconds\s*=\s*(\d+)", ingest.group(1))
    assert timeout is not None
    assert pipeline.LEASE.total_seconds() < int(timeout.group(1))
    assert pipeline.LEASE.total_seconds() >= 0.8 * int(timeout.group(1))
