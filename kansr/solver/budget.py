"""Time: the search's budget, passed explicitly, and the first Ctrl-C as a soft stop.

A `Budget` is the only clock of a search. Stages ask it for deadlines by named share of
`max_time`; a sub-problem gets a `slice` of its parent's budget. The first Ctrl-C (SIGINT)
during a search raises `SearchInterrupted`; whoever catches it calls `Budget.interrupt`, after
which every deadline has already passed, so the remaining stages wrap up with what they have.
The second Ctrl-C raises a plain KeyboardInterrupt and aborts.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Iterator

#: Share of max_time by which network training ends (the shapes split it 1/2, 1/4, ...).
TRAIN_SHARE = 0.5
#: Share by which per-edge trials end (edges then take their best library match untuned).
SYMBOLIC_SHARE = 0.8
#: Share by which refitting and snapping constants end.
POLISH_SHARE = 0.95
#: Without max_time, refitting and snapping one network's formulas stops after this many
#: seconds: a formula with many constants can otherwise refit for many minutes.
POLISH_BUDGET_S = 120.0


class SearchInterrupted(KeyboardInterrupt):
    """The first Ctrl-C of a search: stop searching, keep and return what is done."""


@dataclass
class Budget:
    """Wall-clock budget of one search (or sub-problem), from `start` (perf_counter).

    max_time None means no time limit: only step counts bound the search, and a fixed seed
    then gives a bit-identical result.
    """

    max_time: float | None = None
    start: float = field(default_factory=time.perf_counter)
    # shared by a budget and its slices: Ctrl-C in a sub-problem stops the whole search
    _stop: dict = field(default_factory=lambda: {"interrupted": False}, repr=False)

    def __post_init__(self) -> None:
        # the whole search's end, shared with every slice (`slice`'s at_least draws on it)
        self._stop.setdefault("end", None if self.max_time is None
                              else self.start + self.max_time)

    @property
    def interrupted(self) -> bool:
        return self._stop["interrupted"]

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def deadline(self, share: float) -> float | None:
        """perf_counter value at `share` of max_time (None: no limit; past once interrupted)."""
        if self.interrupted:
            return -math.inf
        return None if self.max_time is None else self.start + share * self.max_time

    def expired(self, share: float) -> bool:
        d = self.deadline(share)
        return d is not None and time.perf_counter() > d

    def polish_deadline(self) -> float | None:
        """When refitting and snapping constants must stop (see `POLISH_BUDGET_S`)."""
        if self.interrupted:
            return -math.inf
        if self.max_time is None:
            return time.perf_counter() + POLISH_BUDGET_S
        return self.deadline(POLISH_SHARE)

    def slice(self, share: float, at_least: float = 0.0) -> "Budget":
        """A sub-budget: `share` of what is left of this one, starting now, but at least
        `at_least` seconds while the whole search has them (a sub-problem that must not be
        starved however deep it sits: it may outlast this budget, whose later stages then
        find their deadlines passed)."""
        if self.max_time is None:
            return Budget(None, _stop=self._stop)
        left = max(self.max_time - self.elapsed(), 0.0)
        whole_left = max(self._stop["end"] - time.perf_counter(), 0.0)
        return Budget(max(share * left, min(at_least, whole_left)), _stop=self._stop)

    def interrupt(self) -> None:
        """Make every deadline pass (here and in every slice): the search wraps up."""
        self._stop["interrupted"] = True


@contextlib.contextmanager
def soft_interrupts() -> Iterator[None]:
    """Within this block the first Ctrl-C raises `SearchInterrupted`, later ones abort.

    Only the main thread receives signals; elsewhere (a Dask worker, a thread pool) this
    does nothing and Ctrl-C keeps its usual meaning.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def first(signum, frame):  # noqa: ANN001 - signal handler signature
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second press aborts
        raise SearchInterrupted()

    try:
        previous = signal.signal(signal.SIGINT, first)
    except ValueError:  # not the main interpreter
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
