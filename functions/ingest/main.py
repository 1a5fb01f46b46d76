"""ingest: bucket notifications (through Pub/Sub, or Eventarc) become searchable chunks.

Pub/Sub redelivers anything not answered 2xx until the dead letter, so only a
transient failure may fail the request. An event that can never be processed
(malformed data, or a body functions-framework cannot read as a CloudEvent or
a Pub/Sub push) is acknowledged with one log line saying why.
"""

from __future__ import annotations

import logging
from typing import Any

import flask
import functions_framework
from cloudevents.http import CloudEvent
from werkzeug.exceptions import BadRequest

from shared import pipeline
from shared.config import Needs, load_settings_or_exit
from shared.embeddings import get_embedder
from shared.log import configure_logging
from shared.storage import get_bucket

settings = load_settings_or_exit(Needs.DATABASE | Needs.STORAGE | Needs.EMBEDDINGS)
configure_logging(settings.LOG_LEVEL)
log = logging.getLogger("lectern.ingest")


def unreadable(error: BadRequest | None = None) -> tuple[str, int]:
    # functions-framework answers 400 for a body that is neither a CloudEvent
    # nor a Pub/Sub push; a redelivery would be the same bytes, so acknowledge.
    # (Its description quotes the whole request, headers included: not logged.)
    log.warning("permanent: acknowledged an unreadable event: not a CloudEvent or Pub/Sub push")
    return "acknowledged: not a CloudEvent", 200


def not_an_object() -> tuple[str, int] | None:
    """Acknowledge a JSON body that is not an object before functions-framework reads it.

    Without ``ce-`` headers it takes any JSON body for a background event and
    unpacks it with ``**``: a list or a string there is a TypeError, a 500
    that Pub/Sub would redeliver until the dead letter.
    """
    if flask.request.headers.get("ce-specversion") is not None:
        return None  # a binary CloudEvent: its data may be anything
    body = flask.request.get_json(silent=True)
    if body is None or isinstance(body, dict):
        return None  # unreadable bodies get functions-framework's 400, handled above
    return unreadable()


# The app being built (a no-op outside create_app, e.g. a bare import).
register_error_handler: Any = functions_framework.errorhandler
register_error_handler(BadRequest)(unreadable)
if flask.has_app_context():  # create_app runs this module inside its app's context
    flask.current_app.before_request(not_an_object)


@functions_framework.cloud_event
def ingest(event: CloudEvent) -> None:
    context = {"type": event["type"], "event_id": event["id"]}
    try:
        notice = pipeline.notice_from_event(event["type"], event.data)
    except pipeline.MalformedEvent as problem:
        log.warning(
            "permanent: acknowledged a malformed event: %s",
            problem,
            extra={**context, "outcome": "malformed", "reason": str(problem)},
        )
        return
    if notice is None:
        log.info("skipped: not an object-finalized event", extra=context)
        return
    # Raising makes the delivery fail, so Pub/Sub redelivers (transient errors only).
    pipeline.ingest(settings, notice, bucket=get_bucket(settings), embedder=get_embedder(settings))
