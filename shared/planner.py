"""The study planner: what is left to read, placed in free half-hour slots.

Pure functions over plain values (no database, no clock), so the HTTP handler
feeds it what it read in one transaction and the property tests can drive it
through thousands of calendars in a second.

The rule (docs/frontend.md, "Study plans"):

- Time is cut into half-hour slots; slot ``s`` of a day starts at ``s / 2``
  o'clock. A slot is usable on a day when it lies inside the study window
  (``window_start`` ≤ s < ``window_end``), is not taken by an existing task
  or a busy interval, and, today, does not start before now.
- Each day holds at most ``daily_slots`` of planned study, counting the study
  slots other plans already put on that day (``used``).
- The review block (``review_slots``, or the whole budget if that is smaller)
  goes on the day before the exam, at the latest run of consecutive usable
  slots that fits: the review comes last.
- Reading fills the usable slots from now on, day by day, earliest first,
  file after file in the order given; on the day before the exam, only slots
  before the review. Consecutive slots of one file on one day make one block.

Earliest-first leaves the days before the exam free as slack for whatever
goes wrong. Slots are interchangeable units of one file's reading, so this
greedy filling places as much as any placement could: the plan fits exactly
when the usable capacity covers the need, and the shortfall is the need minus
that capacity.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

__all__ = [
    "SLOTS_PER_DAY",
    "SLOT_SECONDS",
    "Block",
    "Calendar",
    "Plan",
    "Reading",
    "Shortfall",
    "make_plan",
    "slots_for",
    "slots_of_task",
]

SLOT_SECONDS = 30 * 60
SLOTS_PER_DAY = 48
ONE_DAY = timedelta(days=1)


def slots_for(seconds: int) -> int:
    """Half-hour slots that cover ``seconds`` of reading (rounded up)."""
    return math.ceil(max(0, seconds) / SLOT_SECONDS)


def slots_of_task(start_hour: float, duration: float) -> range:
    """The slots a task of the day touches: even a quarter hour takes its slot."""
    first = math.floor(start_hour * 2)
    last = math.ceil((start_hour + duration) * 2)
    return range(max(0, first), min(SLOTS_PER_DAY, last))


@dataclass(frozen=True)
class Reading:
    """One file still to read: ``seconds`` of required reading left."""

    key: Hashable
    seconds: int


@dataclass(frozen=True)
class Calendar:
    """Everything about the caller's days that the plan depends on."""

    today: date
    # The first slot today that starts at or after now (48 when today is over).
    first_slot: int
    exam_date: date
    daily_slots: int
    window_start: int = 16
    window_end: int = 44
    review_slots: int = 2
    # Slots taken by existing tasks and busy intervals, by day.
    occupied: Mapping[date, frozenset[int]] = field(default_factory=dict)
    # Slots of study other plans already hold, by day (they count toward the budget).
    used: Mapping[date, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Block:
    """Consecutive slots of one day: reading of ``key`` (``part`` of ``parts``), or the review."""

    day: date
    start_slot: int
    slots: int
    key: Hashable | None  # None: the review block
    part: int = 1
    parts: int = 1

    @property
    def start_hour(self) -> float:
        return self.start_slot / 2

    @property
    def hours(self) -> float:
        return self.slots / 2


@dataclass(frozen=True)
class Plan:
    blocks: list[Block]


@dataclass(frozen=True)
class Shortfall:
    """The plan does not fit: ``slots`` of it found no place."""

    slots: int
    # The first later exam date with which everything would fit (None: none within the horizon).
    earliest_exam_date: date | None


def _usable(calendar: Calendar, day: date) -> list[int]:
    """The day's free slots inside the window, in order (today: from now on)."""
    start = calendar.window_start
    if day == calendar.today:
        start = max(start, calendar.first_slot)
    taken = calendar.occupied.get(day, frozenset())
    return [slot for slot in range(start, calendar.window_end) if slot not in taken]


def _budget(calendar: Calendar, day: date) -> int:
    return max(0, calendar.daily_slots - calendar.used.get(day, 0))


def _review_length(calendar: Calendar) -> int:
    return max(1, min(calendar.review_slots, calendar.daily_slots))


def _review_start(usable: Sequence[int], length: int, budget: int) -> int | None:
    """The start of the latest run of ``length`` consecutive usable slots, if the budget allows."""
    if length > budget:
        return None
    free = set(usable)
    for start in sorted(usable, reverse=True):
        if all(slot in free for slot in range(start, start + length)):
            return start
    return None


def _days(first: date, last: date) -> Iterator[date]:
    day = first
    while day <= last:
        yield day
        day += ONE_DAY


def _reading_slots(
    calendar: Calendar, exam_date: date, review_start: int | None
) -> Iterator[tuple[date, list[int]]]:
    """The slots reading may take, day by day, before an exam on ``exam_date``."""
    eve = exam_date - ONE_DAY
    for day in _days(calendar.today, eve):
        usable = _usable(calendar, day)
        budget = _budget(calendar, day)
        if day == eve and review_start is not None:
            usable = [slot for slot in usable if slot < review_start]
            budget -= _review_length(calendar)
        yield day, usable[: max(0, budget)]


def _eve(calendar: Calendar, eve: date) -> tuple[int, int | None]:
    """(reading slots, review start or None) on the day before an exam."""
    usable = _usable(calendar, eve)
    budget = _budget(calendar, eve)
    length = _review_length(calendar)
    review_start = _review_start(usable, length, budget)
    if review_start is None:
        # The review finds no place; reading may still use the day as any other.
        return min(len(usable), budget), None
    before = sum(1 for slot in usable if slot < review_start)
    return min(before, budget - length), review_start


def _capacity(calendar: Calendar, day: date) -> int:
    return min(len(_usable(calendar, day)), _budget(calendar, day))


def make_plan(
    readings: Sequence[Reading], calendar: Calendar, *, horizon: date | None = None
) -> Plan | Shortfall:
    """Blocks for every reading and the review, or how much does not fit.

    ``horizon`` is the last exam date tried for ``earliest_exam_date`` (the
    caller must have given ``occupied`` and ``used`` up to the day before it).
    """
    if calendar.exam_date <= calendar.today:
        raise ValueError("the exam must be after today")
    needed = [slots_for(reading.seconds) for reading in readings]
    total = sum(needed)
    eve = calendar.exam_date - ONE_DAY
    # Days before the eve, as one running sum: the earliest-date search below
    # extends it a day at a time instead of recounting (a year is ~17k slot checks).
    before_eve = sum(_capacity(calendar, day) for day in _days(calendar.today, eve - ONE_DAY))
    eve_slots, review_start = _eve(calendar, eve)
    if review_start is not None and before_eve + eve_slots >= total:
        return Plan(_place(readings, needed, calendar, review_start))
    placed = min(total, before_eve + eve_slots)
    missing = total - placed + (0 if review_start is not None else _review_length(calendar))
    earliest = None
    if horizon is not None:
        for exam_date in _days(calendar.exam_date + ONE_DAY, horizon):
            before_eve += _capacity(calendar, exam_date - 2 * ONE_DAY)
            eve_slots, review_start = _eve(calendar, exam_date - ONE_DAY)
            if review_start is not None and before_eve + eve_slots >= total:
                earliest = exam_date
                break
    return Shortfall(missing, earliest)


def _place(
    readings: Sequence[Reading], needed: Sequence[int], calendar: Calendar, review_start: int
) -> list[Block]:
    # (day, slot, reading index) for every slot given to reading, in time order.
    taken: list[tuple[date, int, int]] = []
    queue = iter([index for index, count in enumerate(needed) for _ in range(count)])
    remaining = sum(needed)
    for day, slots in _reading_slots(calendar, calendar.exam_date, review_start):
        for slot in slots[:remaining]:
            taken.append((day, slot, next(queue)))
        remaining -= min(remaining, len(slots))
        if remaining == 0:
            break
    runs: list[tuple[date, int, int, int]] = []  # day, start, length, reading index
    for day, slot, index in taken:
        if runs and runs[-1][0] == day and runs[-1][3] == index:
            last_day, start, length, _ = runs[-1]
            if start + length == slot:
                runs[-1] = (last_day, start, length + 1, index)
                continue
        runs.append((day, slot, 1, index))
    parts = {index: sum(1 for run in runs if run[3] == index) for index in range(len(readings))}
    seen: dict[int, int] = {}
    blocks: list[Block] = []
    for day, start, length, index in runs:
        seen[index] = seen.get(index, 0) + 1
        blocks.append(Block(day, start, length, readings[index].key, seen[index], parts[index]))
    eve = calendar.exam_date - ONE_DAY
    blocks.append(Block(eve, review_start, _review_length(calendar), None))
    return blocks
