"""What one query may cost: its size, a deadline and a cancel flag, checked while
Whoosh collects.

A search page is shared: one query must not hold everyone up. So a query has a budget
(its length, its number of words, a time limit, and a cancel flag for a caller that has
gone); :func:`bounded_collector` checks it as Whoosh walks matches.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from whoosh import collectors

from index import _whoosh  # noqa: F401  (applies the project's Whoosh fixes)
from index.api import QueryError

__all__ = [
    "MAX_QUERY_CHARS",
    "MAX_QUERY_TERMS",
    "Budget",
    "BudgetExceeded",
    "Cancelled",
    "bounded_collector",
    "check_size",
]

MAX_QUERY_CHARS = 1_000
MAX_QUERY_TERMS = 32
# Whoosh's collectors check the budget every this many matches.
CHECK_EVERY = 64


class BudgetExceeded(Exception):
    """The query used up its time; ``str()`` is the message for the user."""


class Cancelled(Exception):
    """The caller went away (a closed browser tab); nobody wants the answer."""


@dataclass
class Budget:
    """A deadline (``seconds`` from creation; ``None``: no limit) and a cancel flag."""

    seconds: float | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    started: float = field(default_factory=time.monotonic)
    # Shared by the searches of one server: how many may walk matches one by one in
    # Whoosh's searcher (phrases, sorted searches) at once. The others wait for a turn,
    # and the searches the NumPy path answers never do, so slow queries cannot take
    # every thread (and the interpreter lock) from the fast ones.
    slow_lane: threading.Semaphore | None = None

    def check(self) -> None:
        if self.cancel.is_set():
            raise Cancelled("the client went away")
        if self.seconds is not None and time.monotonic() - self.started > self.seconds:
            raise BudgetExceeded(f"query stopped after {self.seconds:g} s: make it more specific")

    @contextlib.contextmanager
    def slow(self) -> Iterator[None]:
        """Hold a turn in the slow lane (if any) for the block, checking the budget
        while waiting for one."""
        lane = self.slow_lane
        if lane is None:
            yield
            return
        while not lane.acquire(timeout=0.05):
            self.check()
        try:
            yield
        finally:
            lane.release()


class _Bounded(collectors.WrappingCollector):
    """Whoosh's collector, checking the budget as the matches are walked (a phrase or a
    collapse over much-shared images can walk many documents). It sits under the
    filter collector, so filtered-out matches count too."""

    def __init__(self, child: Any, budget: Budget) -> None:
        super().__init__(child)
        self.budget = budget

    def matches(self) -> Any:
        check = self.budget.check
        for n, sub_docnum in enumerate(self.child.matches()):
            if not n % CHECK_EVERY:
                check()
            yield sub_docnum

    def collect_matches(self) -> None:
        collect = self.child.collect
        for sub_docnum in self.matches():
            collect(sub_docnum)


def bounded_collector(searcher: Any, budget: Budget, **kwargs: Any) -> Any:
    allow, restrict = kwargs.pop("filter", None), kwargs.pop("mask", None)
    collector: Any = _Bounded(searcher.collector(**kwargs), budget)
    if allow is not None or restrict is not None:
        collector = collectors.FilterCollector(collector, allow, restrict)
    return collector


_WORDISH = re.compile(r"\w+")


def check_size(text: str) -> None:
    """Refuse what no person types and what would cost every other user: a pasted page
    of text, thousands of words, keeps a search thread busy long after anyone waits."""
    if len(text) > MAX_QUERY_CHARS:
        raise QueryError(f"query too long: {len(text)} characters (at most {MAX_QUERY_CHARS})")
    words = len(_WORDISH.findall(text))
    if words > MAX_QUERY_TERMS:
        raise QueryError(f"query has {words} words (at most {MAX_QUERY_TERMS})")
