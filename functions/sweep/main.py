"""sweep: scheduled repairs — abandoned objects and stuck ingestions (see shared.sweep)."""

from __future__ import annotations

import functions_framework
from cloudevents.http import CloudEvent

from shared import pipeline
from shared.config import Needs, load_settings_or_exit
from shared.embeddings import get_embedder
from shared.log import configure_logging
from shared.storage import get_bucket
from shared.sweep import INGEST_STALE_AFTER, sweep_objects

settings = load_settings_or_exit(Needs.DATABASE | Needs.STORAGE | Needs.EMBEDDINGS)
configure_logging(settings.LOG_LEVEL)

# Ingestions re-driven per run: each may take a while, and the function's timeout is fixed.
REDRIVE_LIMIT = 5


@functions_framework.cloud_event
def sweep(event: CloudEvent) -> None:
    """Any event (the scheduler's tick) runs one sweep; failures wait for the next tick."""
    bucket = get_bucket(settings)
    sweep_objects(settings, bucket)
    pipeline.redrive_stale(
        settings,
        bucket=bucket,
        embedder=get_embedder(settings),
        stale_after=INGEST_STALE_AFTER,
        limit=REDRIVE_LIMIT,
    )
