"""The study planner, driven by hypothesis through random calendars, budgets and reading.

Every plan must keep every rule (no overlap, window, budget, exact coverage,
file order, the review last); every refusal must name exactly the shortfall
that a plain, separately written count finds, and an earliest exam date
that really is the first one that fits.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.planner import (
    SLOT_SECONDS,
    SLOTS_PER_DAY,
    Block,
    Calendar,
    Plan,
    Reading,
    Shortfall,
    make_plan,
    slots_for,
    slots_of_task,
)

TODAY = date(2026, 3, 1)
HORIZON_DAYS = 14
HORIZON = TODAY + timedelta(days=HORIZON_DAYS)


@st.composite
def calendars(draw: st.DrawFn) -> Calendar:
    window_start = draw(st.integers(0, SLOTS_PER_DAY - 1))
    window_end = draw(st.integers(window_start + 1, SLOTS_PER_DAY))
    days = [TODAY + timedelta(days=offset) for offset in range(HORIZON_DAYS)]
    occupied = draw(
        st.dictionaries(
            st.sampled_from(days),
            st.frozensets(st.integers(0, SLOTS_PER_DAY - 1), max_size=30),
            max_size=HORIZON_DAYS,
        )
    )
    used = draw(st.dictionaries(st.sampled_from(days), st.integers(0, 8), max_size=6))
    return Calendar(
        today=TODAY,
        first_slot=draw(st.integers(0, SLOTS_PER_DAY)),
        exam_date=TODAY + timedelta(days=draw(st.integers(1, 8))),
        daily_slots=draw(st.integers(1, 12)),
        window_start=window_start,
        window_end=window_end,
        review_slots=draw(st.integers(1, 4)),
        occupied=occupied,
        used=used,
    )


readings_lists = st.lists(st.integers(1, 6 * SLOT_SECONDS), max_size=6).map(
    lambda seconds: [Reading(index, value) for index, value in enumerate(seconds)]
)


def expected_shortfall(readings: list[Reading], calendar: Calendar, exam_date: date) -> int:
    """Slots that cannot be placed, counted slot by slot with no shared code."""
    need = sum(-(-reading.seconds // SLOT_SECONDS) for reading in readings)
    review = max(1, min(calendar.review_slots, calendar.daily_slots))
    capacity = 0
    review_fits = False
    day = calendar.today
    while day < exam_date:
        free = [
            slot
            for slot in range(SLOTS_PER_DAY)
            if calendar.window_start <= slot < calendar.window_end
            and slot not in calendar.occupied.get(day, frozenset())
            and (day != calendar.today or slot >= calendar.first_slot)
        ]
        budget = max(0, calendar.daily_slots - calendar.used.get(day, 0))
        if day == exam_date - timedelta(days=1):
            runs = [s for s in free if all(s + k in free for k in range(review))]
            if runs and review <= budget:
                review_fits = True
                capacity += min(len([s for s in free if s < max(runs)]), budget - review)
            else:
                capacity += min(len(free), budget)
        else:
            capacity += min(len(free), budget)
        day += timedelta(days=1)
    return max(0, need - capacity) + (0 if review_fits else review)


def check_plan(plan: Plan, readings: list[Reading], calendar: Calendar) -> None:
    eve = calendar.exam_date - timedelta(days=1)
    taken: dict[date, set[int]] = defaultdict(set)
    for block in plan.blocks:
        slots = set(range(block.start_slot, block.start_slot + block.slots))
        assert block.slots > 0
        assert TODAY <= block.day <= eve
        # Inside the window, so never past midnight.
        assert calendar.window_start <= block.start_slot
        assert block.start_slot + block.slots <= calendar.window_end <= SLOTS_PER_DAY
        if block.day == TODAY:
            assert block.start_slot >= calendar.first_slot
        assert not slots & calendar.occupied.get(block.day, frozenset()), "on a taken slot"
        assert not slots & taken[block.day], "blocks overlap"
        taken[block.day] |= slots
    for day, slots in taken.items():
        assert len(slots) + calendar.used.get(day, 0) <= calendar.daily_slots, day

    reviews = [block for block in plan.blocks if block.key is None]
    assert len(reviews) == 1
    review = reviews[0]
    assert review.day == eve
    assert review.slots == max(1, min(calendar.review_slots, calendar.daily_slots))

    reading = sorted(
        (block for block in plan.blocks if block.key is not None),
        key=lambda block: (block.day, block.start_slot),
    )
    for block in reading:
        assert (block.day, block.start_slot) < (review.day, review.start_slot), "review is last"
    covered: dict[object, list[Block]] = defaultdict(list)
    for block in reading:
        covered[block.key].append(block)
    for item in readings:
        blocks = covered.pop(item.key, [])
        # Exactly the remaining reading, rounded up to half hours.
        assert sum(block.slots for block in blocks) == slots_for(item.seconds)
        assert [(block.part, block.parts) for block in blocks] == [
            (part, len(blocks)) for part in range(1, len(blocks) + 1)
        ]
    assert not covered
    # Files are read in the order given.
    keys = [int(str(block.key)) for block in reading]
    assert keys == sorted(keys)


@settings(max_examples=300, deadline=None)
@given(readings=readings_lists, calendar=calendars())
def test_a_plan_keeps_every_rule_or_refuses_with_the_true_shortfall(
    readings: list[Reading], calendar: Calendar
) -> None:
    result = make_plan(readings, calendar, horizon=HORIZON)
    missing = expected_shortfall(readings, calendar, calendar.exam_date)
    if isinstance(result, Plan):
        assert missing == 0
        check_plan(result, readings, calendar)
        return
    assert result.slots == missing > 0
    later = [
        calendar.exam_date + timedelta(days=offset)
        for offset in range(1, (HORIZON - calendar.exam_date).days + 1)
    ]
    if result.earliest_exam_date is None:
        assert all(expected_shortfall(readings, calendar, day) > 0 for day in later)
        return
    assert result.earliest_exam_date in later
    for day in later:
        if day < result.earliest_exam_date:
            assert expected_shortfall(readings, calendar, day) > 0
    moved = Calendar(**{**calendar.__dict__, "exam_date": result.earliest_exam_date})
    plan = make_plan(readings, moved)
    assert isinstance(plan, Plan)
    check_plan(plan, readings, moved)


@settings(max_examples=100, deadline=None)
@given(readings=readings_lists, calendar=calendars())
def test_more_budget_never_turns_a_plan_into_a_refusal(
    readings: list[Reading], calendar: Calendar
) -> None:
    before = make_plan(readings, calendar)
    wider = Calendar(**{**calendar.__dict__, "daily_slots": calendar.daily_slots + 2})
    after = make_plan(readings, wider)
    # Review length grows with a small budget, so only compare once it is capped.
    if calendar.daily_slots >= calendar.review_slots and isinstance(before, Plan):
        assert isinstance(after, Plan)


def test_the_readme_example() -> None:
    sunday = date(2026, 3, 1)
    calendar = Calendar(
        today=sunday,
        first_slot=20,  # 10:00 local
        exam_date=date(2026, 3, 5),
        daily_slots=4,
        occupied={sunday: frozenset(slots_of_task(10, 1))},  # the gym, 10:00-11:00
    )
    readings = [Reading("lecture 1", 1080), Reading("lecture 2", 1800), Reading("lecture 3", 5400)]
    plan = make_plan(readings, calendar)
    assert isinstance(plan, Plan)
    assert [(b.day.day, b.start_hour, b.hours, b.key, b.part, b.parts) for b in plan.blocks] == [
        (1, 11.0, 0.5, "lecture 1", 1, 1),
        (1, 11.5, 0.5, "lecture 2", 1, 1),
        (1, 12.0, 1.0, "lecture 3", 1, 2),
        (2, 8.0, 0.5, "lecture 3", 2, 2),
        (4, 21.0, 1.0, None, 1, 1),
    ]
    tomorrow = Calendar(**{**calendar.__dict__, "exam_date": date(2026, 3, 2)})
    assert make_plan(readings, tomorrow, horizon=date(2026, 12, 31)) == Shortfall(
        3, date(2026, 3, 3)
    )


@pytest.mark.parametrize(
    ("start_hour", "duration", "slots"),
    [(9, 1, [18, 19]), (9.5, 0.25, [19]), (23.5, 0.5, [47]), (0, 24, list(range(48)))],
)
def test_a_task_takes_every_slot_it_touches(
    start_hour: float, duration: float, slots: list[int]
) -> None:
    assert list(slots_of_task(start_hour, duration)) == slots


def test_a_year_of_refusals_is_quick() -> None:
    """The earliest-date search over a year of full days stays well under a request's budget."""
    import time

    full = {TODAY + timedelta(days=d): frozenset(range(SLOTS_PER_DAY)) for d in range(366)}
    calendar = Calendar(
        today=TODAY, first_slot=0, exam_date=TODAY + timedelta(days=1), daily_slots=4, occupied=full
    )
    started = time.perf_counter()
    result = make_plan([Reading(0, 3600)], calendar, horizon=TODAY + timedelta(days=365))
    assert result == Shortfall(4, None)
    assert time.perf_counter() - started < 1.0
