"""The leaderboard stays an index read with 100k users (plans, not timings)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from shared.db.models import User
from shared.leaderboard import leaderboard

USERS = 100_000
MAJOR = "00000000-0000-0000-0000-0000000000aa"


@pytest.fixture(scope="module")
def crowd(engine: Engine) -> Engine:
    with engine.begin() as connection:
        connection.execute(
            text("INSERT INTO majors (id, name, slug) VALUES (:major, 'Crowd', 'crowd')"),
            {"major": MAJOR},
        )
        connection.execute(
            text(
                """
                INSERT INTO users (id, auth0_id, email, name, major_id)
                SELECT gen_random_uuid(), 'crowd|' || n, 'crowd' || n || '@example.edu',
                       'Crowd ' || n,
                       CASE WHEN mod(n, 100) = 0 THEN CAST(:major AS uuid) END
                  FROM generate_series(1, :users) AS n
                """
            ),
            {"users": USERS, "major": MAJOR},
        )
        # Through the ledger, as in production: the trigger keeps total_points.
        connection.execute(
            text(
                """
                INSERT INTO points_transactions (id, user_id, amount, action, reason, source_id)
                SELECT gen_random_uuid(), id, 1 + (hashtext(email) & 1023), 'file_completed',
                       'crowd', 'crowd:' || id
                  FROM users WHERE auth0_id LIKE 'crowd|%'
                """
            )
        )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        # What autovacuum does in production: statistics and the visibility map.
        connection.execute(text("VACUUM ANALYZE users"))
    return engine


def _plan(engine: Engine, sql: str, **params: Any) -> str:
    with engine.connect() as connection:
        rows = connection.execute(text("EXPLAIN " + sql), params)
        return "\n".join(row[0] for row in rows)


def test_top_page_reads_the_leaderboard_index(crowd: Engine) -> None:
    plan = _plan(
        crowd,
        "SELECT id, name, total_points FROM users "
        "ORDER BY total_points DESC, points_reached_at, id LIMIT 20",
    )
    assert "ix_users_leaderboard" in plan
    assert "Sort" not in plan.split("\n")[1]


def test_major_page_reads_the_major_index(crowd: Engine) -> None:
    plan = _plan(
        crowd,
        "SELECT id, name, total_points FROM users WHERE major_id = :major "
        "ORDER BY total_points DESC, points_reached_at, id LIMIT 20",
        major=MAJOR,
    )
    assert "ix_users_major_leaderboard" in plan


def test_own_rank_is_an_index_range_count(crowd: Engine) -> None:
    # A user in the top few percent: the count walks a short index range. (For
    # someone near the bottom the planner rightly prefers one sequential pass.)
    plan = _plan(crowd, "SELECT count(*) FROM users WHERE total_points > 1000")
    assert "Index Only Scan using ix_users_leaderboard" in plan


def test_ranks_over_the_crowd_match_a_full_sort(
    crowd: Engine, sessions: sessionmaker[Session]
) -> None:
    with sessions.begin() as session:
        me = session.query(User).filter(User.auth0_id == "crowd|777").one()
        board = leaderboard(session, me=me, major_id=None, limit=100)
        expected = session.execute(
            text(
                "SELECT rank FROM (SELECT id, RANK() OVER (ORDER BY total_points DESC) AS rank "
                "FROM users) ranked WHERE id = :id"
            ),
            {"id": me.id},
        ).scalar_one()
        top = (
            session.execute(
                text(
                    "SELECT RANK() OVER (ORDER BY total_points DESC) FROM users "
                    "ORDER BY total_points DESC, points_reached_at, id LIMIT 100"
                )
            )
            .scalars()
            .all()
        )
    assert board.me is not None
    assert board.me.rank == expected
    assert [entry.rank for entry in board.entries] == list(top)


def test_a_deep_page_reads_the_index_from_its_cursor(crowd: Engine) -> None:
    # The shape of a later page (shared.leaderboard): an index range from the
    # cursor's points, the tie ordered by (points_reached_at, id), no sort.
    plan = _plan(
        crowd,
        "SELECT id, name, total_points, points_reached_at FROM users "
        "WHERE total_points <= 600 AND (total_points < 600 OR "
        "(points_reached_at, id) > (now(), CAST(:last AS uuid))) "
        "ORDER BY total_points DESC, points_reached_at, id LIMIT 101",
        last=MAJOR,
    )
    assert "ix_users_leaderboard" in plan
    assert "Sort" not in plan.split("\n")[1]


def test_paging_with_cursors_gives_the_full_sort_and_its_ranks(
    crowd: Engine, sessions: sessionmaker[Session]
) -> None:
    with sessions.begin() as session:
        me = session.query(User).filter(User.auth0_id == "crowd|777").one()
        seen: list[tuple[int, str]] = []
        cursor = None
        for _ in range(5):  # 5 pages of 97: page boundaries fall inside ties
            board = leaderboard(session, me=me, major_id=None, limit=97, cursor=cursor)
            seen += [(entry.rank, str(entry.user_id)) for entry in board.entries]
            cursor = board.next_cursor
            assert cursor is not None
        expected = session.execute(
            text(
                "SELECT RANK() OVER (ORDER BY total_points DESC), id FROM users "
                "ORDER BY total_points DESC, points_reached_at, id LIMIT 485"
            )
        ).all()
    assert seen == [(rank, str(user_id)) for rank, user_id in expected]
