"""The process clock.

Reading time is judged against wall-clock time, so code that needs "now" asks
this module rather than ``datetime.now``. Tests and simulations install their
own clock with ``use``; production never does.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol

__all__ = ["Clock", "SystemClock", "now", "use"]


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


_clock: Clock = SystemClock()


def now() -> datetime:
    return _clock.now()


def use(clock: Clock) -> Clock:
    """Install ``clock``; returns the one it replaces."""
    global _clock
    previous, _clock = _clock, clock
    return previous
