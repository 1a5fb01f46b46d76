"""Who is an ADMIN: the one rule both the CLI and the API follow, and the CLI's commands.

``lock_admins`` + ``demotable`` are the last-admin rule, used by
``lectern admin revoke`` and ``PATCH /moderate/users/{id}`` alike: role
changes take turns under a transaction-scoped advisory lock, then every ADMIN
row is locked (in id order), so two demotions at once (from either side)
cannot each see another admin left and leave none.

``lectern admin grant|revoke``: who is an ADMIN, decided by an operator.

How a fresh install gets its first admin: nobody can call the moderation API
before an admin exists. An email that has already signed in is promoted (or
demoted) at once; an email not seen yet gets a ``role_grants`` row, which
first sight (``shared.auth.get_or_create_user``) turns into the new user's
role and deletes.

Each change writes one audit row (no actor: ``actor_name`` names the command)
in the same transaction; a call that changes nothing writes none.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from sqlalchemy import delete, func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from shared import audit
from shared.db.models import RoleGrant, User
from shared.errors import Conflict

__all__ = [
    "AdminChange",
    "grant_admin",
    "lock_admins",
    "normalized_email",
    "refuse_last_admin",
    "revoke_admin",
]

GRANT_COMMAND = "cli: lectern admin grant"
REVOKE_COMMAND = "cli: lectern admin revoke"
# The same bound as a token's email claim (shared.auth.MAX_EMAIL_CHARACTERS).
MAX_EMAIL_CHARACTERS = 320
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+")


# The advisory lock every role change takes first (see ``lock_admins``).
_ADMINS_LOCK = "lectern:admins"


def lock_admins(session: Session) -> list[uuid.UUID]:
    """Serialise role changes, then lock every ADMIN row; the admins' ids, in id order.

    Call first in the transaction, before the actor's own row is touched
    (``current_user`` may update its ``last_login_at``): two admins demoting
    each other then cannot deadlock on each other's rows; the second waits
    here and sees the first's commit.
    """
    session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": _ADMINS_LOCK})
    return list(
        session.scalars(
            select(User.id).where(User.role == "ADMIN").order_by(User.id).with_for_update()
        )
    )


def refuse_last_admin(admins: list[uuid.UUID], user: User) -> None:
    """409 ``last_admin`` when demoting ``user`` would leave no admin (after ``lock_admins``)."""
    if user.role == "ADMIN" and len(admins) <= 1:
        raise Conflict(
            f"{user.email} is the last admin; make another user an admin first",
            code="last_admin",
        )


@dataclass(frozen=True)
class AdminChange:
    """What a grant or revoke did, in one line for the operator."""

    changed: bool
    message: str


def normalized_email(raw: str) -> str:
    """The email as users.email stores it (trimmed, lower-cased); ValueError if it is none."""
    email = raw.strip().lower()
    if len(email) > MAX_EMAIL_CHARACTERS or not _EMAIL.fullmatch(email):
        raise ValueError(f"{raw!r} is not an email address")
    return email


def _user_by_email(session: Session, email: str, *, lock: bool) -> User | None:
    # func.lower on both sides: PostgreSQL's lower() is what users.email is checked against.
    statement = select(User).where(User.email == func.lower(email))
    if lock:
        statement = statement.with_for_update()
    return session.scalar(statement)


def grant_admin(session: Session, email: str) -> AdminChange:
    """Make ``email`` an ADMIN now, or on first sight if nobody has signed in with it."""
    user = _user_by_email(session, email, lock=True)
    if user is not None:
        if user.role == "ADMIN":
            return AdminChange(False, f"{email} is already an ADMIN; nothing changed")
        previous = user.role
        user.role = "ADMIN"
        session.flush()
        audit.record(
            session,
            actor=None,
            actor_name=GRANT_COMMAND,
            action="grant_admin",
            target_type="user",
            target_ids=[user.id],
            meta={"email": email, "previous_role": previous},
        )
        return AdminChange(True, f"{email} is now an ADMIN (was {previous})")
    created = session.scalar(
        insert(RoleGrant)
        .values(email=func.lower(email), role="ADMIN", granted_by=GRANT_COMMAND)
        .on_conflict_do_nothing()
        .returning(RoleGrant.email)
    )
    if created is None:
        return AdminChange(
            False, f"{email} already has a pending ADMIN grant (not signed in yet); nothing changed"
        )
    audit.record(
        session,
        actor=None,
        actor_name=GRANT_COMMAND,
        action="grant_admin",
        target_type="user",
        target_ids=[],
        meta={"email": email, "pending": True},
    )
    return AdminChange(
        True, f"{email} has not signed in yet: they become an ADMIN when they first sign in"
    )


def revoke_admin(session: Session, email: str) -> AdminChange:
    """Make ``email`` a STUDENT again and drop any pending grant.

    409 ``last_admin`` (and nothing changed) when it is the only admin left."""
    admins = lock_admins(session)
    withdrawn = session.scalar(
        delete(RoleGrant).where(RoleGrant.email == func.lower(email)).returning(RoleGrant.role)
    )
    user = _user_by_email(session, email, lock=True)
    if user is not None and user.role == "ADMIN":
        refuse_last_admin(admins, user)
        user.role = "STUDENT"
        session.flush()
        audit.record(
            session,
            actor=None,
            actor_name=REVOKE_COMMAND,
            action="revoke_admin",
            target_type="user",
            target_ids=[user.id],
            meta={"email": email, "previous_role": "ADMIN"},
        )
        return AdminChange(True, f"{email} is now a STUDENT (was ADMIN)")
    if withdrawn is not None:
        audit.record(
            session,
            actor=None,
            actor_name=REVOKE_COMMAND,
            action="revoke_admin",
            target_type="user",
            target_ids=[],
            meta={"email": email, "pending": True},
        )
        return AdminChange(True, f"removed the pending {withdrawn} grant of {email}")
    if user is not None:
        return AdminChange(False, f"{email} is not an admin ({user.role}); nothing changed")
    return AdminChange(False, f"no user and no pending grant for {email}; nothing changed")
