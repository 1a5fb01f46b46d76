"""The XP ledger and audit log are append-only in the database itself, and
users.total_points always equals the sum of the user's ledger rows."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from shared.db.models import AuditLog, PointsTransaction, User
from tests.factories import make_user
from tests.parallel import run_together


def _award(session: Session, user_id: uuid.UUID, amount: int, source_id: str) -> bool:
    result = session.execute(
        insert(PointsTransaction)
        .values(
            user_id=user_id,
            amount=amount,
            action="file_completed",
            reason="test",
            source_id=source_id,
        )
        .on_conflict_do_nothing(index_elements=["source_id"])
        .returning(PointsTransaction.id)
    )
    return result.first() is not None


def _ledger_sum(session: Session, user_id: uuid.UUID) -> int:
    total = session.scalar(
        select(func.coalesce(func.sum(PointsTransaction.amount), 0)).where(
            PointsTransaction.user_id == user_id
        )
    )
    return int(total or 0)


def test_a_ledger_row_updates_total_points_in_the_same_transaction(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as session:
        user_id = make_user(session).id
    with sessions.begin() as session:
        assert _award(session, user_id, 10, f"test:{uuid.uuid4()}")
        assert _award(session, user_id, -4, f"test:{uuid.uuid4()}")
    with sessions.begin() as session:
        user = session.get(User, user_id)
        assert user is not None
        assert user.total_points == 6 == _ledger_sum(session, user_id)


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE points_transactions SET amount = 1000",
        "DELETE FROM points_transactions",
        "TRUNCATE points_transactions CASCADE",
        "UPDATE audit_logs SET actor_name = 'someone else'",
        "DELETE FROM audit_logs",
        "TRUNCATE audit_logs",
    ],
)
def test_append_only_rows_cannot_be_changed(
    sessions: sessionmaker[Session], statement: str
) -> None:
    with sessions.begin() as session:
        user = make_user(session, role="ADMIN")
        _award(session, user.id, 5, f"test:{uuid.uuid4()}")
        session.add(
            AuditLog(actor_id=user.id, actor_name=user.name, action="approve", target_ids=[])
        )
    with pytest.raises(DBAPIError, match="append-only"), sessions.begin() as session:
        session.execute(text(statement))


def test_total_points_cannot_be_written_directly(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        user_id = make_user(session).id
    with pytest.raises(DBAPIError, match="follows the ledger"), sessions.begin() as session:
        session.execute(text("UPDATE users SET total_points = 999 WHERE id = :id"), {"id": user_id})
    with pytest.raises(DBAPIError, match="starts with 0 points"), sessions.begin() as session:
        make_user(session, total_points=50)


def test_parallel_awards_and_retries_keep_total_equal_to_ledger(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as session:
        user_id = make_user(session).id
    # 8 threads each try the same 20 idempotency keys: every key lands once.
    keys = [f"test:parallel:{user_id}:{n}" for n in range(20)]

    def worker() -> list[bool]:
        landed = []
        for key in keys:
            with sessions.begin() as session:
                landed.append(_award(session, user_id, 3, key))
        return landed

    written = [landed for batch in run_together([worker] * 8) for landed in batch]
    assert written.count(True) == len(keys)
    with sessions.begin() as session:
        user = session.get(User, user_id)
        assert user is not None
        assert user.total_points == 3 * len(keys) == _ledger_sum(session, user_id)
