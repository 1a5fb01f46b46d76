"""ingest: bucket notifications (through Pub/Sub, or Eventarc) become searchable chunks."""

from __future__ import annotations

import logging

import functions_framework
from cloudevents.http import CloudEvent

from shared import pipeline
from shared.config import Needs, load_settings_or_exit
from shared.embeddings import get_embedder
from shared.log import configure_logging
from shared.storage import get_bucket

settings = load_settings_or_exit(Needs.DATABASE | Needs.STORAGE | Needs.EMBEDDINGS)
configure_logging(settings.LOG_LEVEL)
log = logging.getLogger("lectern.ingest")


@functions_framework.cloud_event
def ingest(event: CloudEvent) -> None:
    notice = pipeline.notice_from_event(event["type"], event.data)
    if notice is None:
        log.info("skipped: not an object-finalized event", extra={"type": event["type"]})
        return
    # Raising makes the delivery fail, so Pub/Sub redelivers (transient errors only).
    pipeline.ingest(settings, notice, bucket=get_bucket(settings), embedder=get_embedder(settings))
