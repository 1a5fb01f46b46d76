"""Running calls at the same moment, for the concurrency tests."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

Result = TypeVar("Result")


def run_together(calls: Sequence[Callable[[], Result]]) -> list[Result]:
    """Run each call on its own thread, all released at once by a barrier.

    Returns the results in the order of ``calls``; the first exception any
    call raised is raised here, after every thread has finished.
    """
    barrier = threading.Barrier(len(calls))
    results: list[Result | None] = [None] * len(calls)
    errors: list[BaseException] = []

    def run(index: int, call: Callable[[], Result]) -> None:
        barrier.wait()
        try:
            results[index] = call()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run, args=(index, call)) for index, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results  # type: ignore[return-value]
