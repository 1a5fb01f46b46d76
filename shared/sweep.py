"""The sweep: what a crash between a bucket call and its transaction left behind.

Run on a schedule (Cloud Scheduler → Pub/Sub → the ``sweep`` function, every
10 minutes in ``infra/``; ``lectern dev`` runs it too). Two jobs:

- **objects**: every ``ObjectIntent`` older than ``ABANDONED_AFTER`` belongs
  to a call that ended long ago (HTTP functions time out after 60 s). Its
  object is deleted unless a request or a material refers to the name (then
  only the intent goes). This removes uploads whose request never committed,
  copies of transitions that never committed, and old objects whose deletion
  after a committed transition did not run — so, after the sweep, no object
  exists without a row.
- **ingestion**: materials left ``queued`` or ``processing`` past
  ``INGEST_STALE_AFTER`` are ingested again (``shared.pipeline.redrive_stale``).

Each object is handled in its own short transactions with no transaction
open during the bucket call, and a failure moves on to the next.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select

from shared import clock
from shared.db.engine import transaction
from shared.db.models import ObjectIntent
from shared.moderation import may_delete
from shared.submissions import drop_intent

if TYPE_CHECKING:
    from shared.config import Settings
    from shared.storage import Bucket

__all__ = ["ABANDONED_AFTER", "INGEST_STALE_AFTER", "SweepReport", "sweep_objects"]

log = logging.getLogger("lectern.sweep")

# Well past the longest HTTP function timeout (60 s) and its storage budget.
ABANDONED_AFTER = timedelta(minutes=10)
# Past Pub/Sub's retry schedule for one notice, and the ingestion lease.
INGEST_STALE_AFTER = timedelta(minutes=30)


@dataclass
class SweepReport:
    deleted: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def sweep_objects(
    settings: Settings, bucket: Bucket, *, older_than: timedelta = ABANDONED_AFTER, limit: int = 500
) -> SweepReport:
    """Resolve up to ``limit`` abandoned intents, oldest first."""
    cutoff = clock.now() - older_than
    report = SweepReport()
    with transaction(settings) as session:
        abandoned = session.execute(
            select(ObjectIntent.id, ObjectIntent.name, ObjectIntent.generation)
            .where(ObjectIntent.created_at < cutoff)
            .order_by(ObjectIntent.created_at, ObjectIntent.id)
            .limit(limit)
        ).all()
    for intent_id, name, generation in abandoned:
        try:
            if generation is None:
                # Pin what is there now: a write that starts after the check
                # below makes a newer generation, which this delete leaves.
                generation = bucket.generation(name)
            with transaction(settings) as session:
                # Claimed by removing the intent: a call that outlived the
                # cut-off finds its intent gone at commit and refuses to name
                # the object (``drop_intent``), and one that committed first
                # leaves nothing to claim. Both wait on the row here.
                if not drop_intent(session, intent_id):
                    continue
                deletable = generation is not None and may_delete(
                    session, intent_id=intent_id, name=name, abandoned_before=cutoff
                )
            if not deletable:
                (report.kept if generation is not None else report.deleted).append(name)
                continue
            try:
                bucket.delete(name, generation=generation)
            except Exception:
                # Claimed but not deleted: the next run tries again.
                with transaction(settings) as session:
                    session.add(ObjectIntent(name=name, generation=generation, request_id=None))
                raise
            report.deleted.append(name)
        except Exception as error:
            log.warning("sweep: %s left for the next run: %s", name, type(error).__name__)
            report.failed.append(name)
    log.info(
        "sweep: objects",
        extra={
            "deleted": len(report.deleted),
            "kept": len(report.kept),
            "failed": len(report.failed),
        },
    )
    return report
