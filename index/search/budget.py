"""What one query may cost: its size, a deadline, a memory bound and a cancel flag,
checked where the work is done.

A search page is shared: one query must not hold everyone up. So a query has a budget
(its length, its number of words, a time limit, a bound on the arrays it builds, and a
cancel flag for a caller that has gone). Every loop that grows with the index or the
query calls :meth:`Budget.check` (the NumPy evaluator per node and per posting walk, the
expansions, the Whoosh collectors through :func:`bounded_collector`); the arrays it builds
are charged to it (:meth:`Budget.charge`). The clock starts when the work starts (:meth:`Budget.start`),
not when the request arrived: time spent waiting for a thread is reported
(:attr:`Budget.queued`), never charged. :func:`cost` tells cheap queries from expensive ones
before any of them runs, so that a server can keep them apart.
"""

from __future__ import annotations

import contextlib
import itertools
import re
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from whoosh import collectors, matching
from whoosh import query as Q

from index import _whoosh  # noqa: F401  (applies the project's Whoosh fixes)
from index.api import QueryError
from index.cache import Cache

__all__ = [
    "CHEAP_COST",
    "MAX_QUERY_CHARS",
    "MAX_QUERY_TERMS",
    "Budget",
    "BudgetExceeded",
    "Cancelled",
    "Recording",
    "bounded_collector",
    "bounded_query",
    "check_size",
    "cost",
    "resumable",
]

MAX_QUERY_CHARS = 1_000
MAX_QUERY_TERMS = 32
# Whoosh's collectors and every other per-item walk check the budget every this many items.
CHECK_EVERY = 64

T = TypeVar("T")


class BudgetExceeded(Exception):
    """The query used up its time or memory; ``str()`` is the message for the user."""


class Cancelled(Exception):
    """The caller went away (a closed browser tab); nobody wants the answer."""


@dataclass
class Budget:
    """A deadline (``seconds`` from :meth:`start`; ``None``: no limit), a bound on the
    bytes of the arrays one query builds (``max_bytes``; ``None``: no bound) and a cancel
    flag."""

    seconds: float | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    max_bytes: int | None = None
    # When the request arrived, and when its work started (None: not yet; the first
    # check starts it).
    created: float = field(default_factory=time.monotonic)
    started: float | None = None
    spent_bytes: int = 0
    # Shared by the searches of one server: how many may walk matches one by one in
    # Whoosh's searcher (phrases, sorted searches) at once. The others wait for a turn,
    # and the searches the NumPy path answers never do, so slow queries cannot take
    # every thread (and the interpreter lock) from the fast ones.
    slow_lane: threading.Semaphore | None = None

    def start(self) -> None:
        """The work starts now: the deadline counts from here (once)."""
        if self.started is None:
            self.started = time.monotonic()

    @property
    def queued(self) -> float:
        """Seconds between the request's arrival and the start of its work."""
        return (self.started if self.started is not None else time.monotonic()) - self.created

    def check(self) -> None:
        if self.cancel.is_set():
            raise Cancelled("the client went away")
        if self.seconds is None:
            return
        if self.started is None:
            self.start()
        if time.monotonic() - self.started > self.seconds:  # type: ignore[operator]
            raise BudgetExceeded(f"query stopped after {self.seconds:g} s: make it more specific")

    def charge(self, nbytes: int) -> None:
        """Count ``nbytes`` more of arrays built for this query, then :meth:`check`."""
        if self.max_bytes is None:
            self.check()
            return
        self.spent_bytes += int(nbytes)
        if self.spent_bytes > self.max_bytes:
            raise BudgetExceeded(
                f"query stopped after {self.max_bytes / 2**20:g} MB of intermediate results: make it more specific"
            )
        self.check()

    def part(self, share: float) -> Budget:
        """A budget for work a search can do without (an exact count where an estimate
        will do): this one's looks, and a deadline of its own at ``share`` of the time this
        one has left. Past that deadline it raises :class:`BudgetExceeded` while this one
        may still have time: the caller catches it, looks at this budget, and answers
        without that work."""
        return _Part(self, share)

    def between(self) -> None:
        """A look at the budget where the work holds nothing another search waits for
        (between two steps of a resumable build): where a background warm-up gives way."""
        self.check()

    def walk(self, items: Iterable[T], every: int = CHECK_EVERY) -> Iterator[T]:
        """``items``, checking the budget every ``every`` of them (and before the first)."""
        check = self.check
        for n, item in enumerate(items):
            if not n % every:
                check()
            yield item

    @contextlib.contextmanager
    def slow(self) -> Iterator[None]:
        """Hold a turn in the slow lane (if any) for the block. The wait for a turn is
        not charged to the query's work (a cheap phrase behind a slow one is not "too
        expensive"), but it is bounded by the same number of seconds, and a caller that
        has gone stops it."""
        lane = self.slow_lane
        if lane is None:
            yield
            return
        waiting = time.monotonic()
        while not lane.acquire(timeout=0.05):
            if self.cancel.is_set():
                raise Cancelled("the client went away")
            if self.seconds is not None and time.monotonic() - waiting > self.seconds:
                raise BudgetExceeded(
                    f"no turn for a slow query within {self.seconds:g} s: the server is busy, try again"
                )
        if self.started is not None:
            self.started += time.monotonic() - waiting
        try:
            yield
        finally:
            lane.release()


UNBOUNDED = Budget()  # what a loop checks when its caller gave no budget (never stops)


class _Part(Budget):
    """:meth:`Budget.part`."""

    def __init__(self, whole: Budget, share: float) -> None:
        whole.start()
        left = None
        if whole.seconds is not None:
            left = max(0.0, whole.seconds - (time.monotonic() - whole.started)) * share  # type: ignore[operator]
        super().__init__(left, cancel=whole.cancel, slow_lane=whole.slow_lane)
        self.whole = whole
        self.started = time.monotonic()

    def check(self) -> None:
        self.whole.check()
        super().check()

    def charge(self, nbytes: int) -> None:
        self.whole.charge(nbytes)
        super().check()

    def between(self) -> None:
        self.whole.between()
        super().check()


class Partial(Protocol):
    """A build done in steps (:func:`resumable`): each :meth:`step` does a bounded chunk
    and commits it only at its end (it may look at the budget; stopped inside, the
    partial is as it was before the step)."""

    def step(self, source: Any, budget: Budget) -> bool:
        """Do the next chunk, reading ``source`` (the caller's reader: a partial keeps no
        reader alive); True when the build is complete."""
        ...

    def nbytes(self) -> int:
        """What the partial state keeps alive (charged to the cache)."""
        ...

    def result(self) -> tuple[Any, int]:
        """The complete value and its size in bytes (only after a step returned True)."""
        ...


# Two threads must never advance the same partial at once: a build holds one of these
# locks (picked by its key) for one step, so builds of different keys rarely wait.
_BUILDING = [threading.Lock() for _ in range(64)]


def resumable(cache: Cache[Any], key: Any, start: Callable[[], Partial], source: Any, budget: Budget) -> Any:
    """The value kept in ``cache`` under ``key``, built if it is not there by the
    :class:`Partial` ``start()`` makes, a step at a time within ``budget``.

    A build longer than one query's budget makes progress across queries: its partial
    state is kept in the same byte-bounded cache under ``("partial", key)``, and the next
    query (or the server's warm-up, :func:`index.search.run.warm`) resumes it. An evicted
    partial starts again from nothing (memory stays bounded); a partial is never kept
    under ``key``, so it is never read as complete; a step that fails for any reason
    other than the budget drops the partial."""
    partial_key = ("partial", key)
    held: Partial | None = None  # kept by this call if the cache evicts it meanwhile
    while True:
        found = cache.get(key)
        if found is not None:
            return found
        budget.between()
        lock = _BUILDING[hash(key) % len(_BUILDING)]
        while not lock.acquire(timeout=0.02):
            budget.check()
        try:
            found = cache.get(key)
            if found is not None:
                return found
            partial = cache.get(partial_key) or held or start()
            held = partial
            try:
                done = partial.step(source, budget)
            except (BudgetExceeded, Cancelled):
                cache.put(partial_key, partial, partial.nbytes())
                raise
            except BaseException:
                cache.discard(partial_key)
                raise
            if done:
                value, nbytes = partial.result()
                cache.discard(partial_key)
                return cache.put(key, value, nbytes)
            cache.put(partial_key, partial, partial.nbytes())
        finally:
            lock.release()


class Recording(Budget):
    """A budget that remembers when it was asked (in this thread's CPU time: the
    machine's other work does not count; and on the clock its deadline is on), and can
    trip after some checks: what the tests (tests/test_search_bounds.py) and the gap
    scanner (bench/gaps.py) measure the longest stretch of work between two looks with.
    With ``stacks``, it keeps the call stack of the look that ended the longest stretch so
    far (where the unchecked work was)."""

    def __init__(
        self, seconds: float | None = None, trip_after: int | None = None, *, stacks: bool = False, **kw: Any
    ) -> None:
        super().__init__(seconds, **kw)
        self.times: list[float] = []
        self.clock: list[float] = []
        self.trip_after = trip_after
        self.stacks = stacks
        self.began = time.thread_time()
        self.worst = 0.0
        self.worst_stack: list[str] = []

    def check(self) -> None:
        now = time.thread_time()
        if self.stacks:
            gap = now - (self.times[-1] if self.times else self.began)
            if gap > self.worst:
                self.worst = gap
                self.worst_stack = traceback.format_list(traceback.extract_stack(limit=14)[:-1])
        self.times.append(now)
        self.clock.append(time.monotonic())
        if self.trip_after is not None and len(self.times) > self.trip_after:
            self.cancel.set()
        super().check()

    def longest_gap(self, began: float, ended: float) -> float:
        """The most CPU time the search spent between two looks at its budget (or its
        start ``began`` and first look, or its last look and its end ``ended``)."""
        marks = [began, *self.times, ended]
        return max(b - a for a, b in itertools.pairwise(marks))

    def spent_after_deadline(self, ended: float) -> float:
        """The CPU time the search spent after its first look at the budget past the
        deadline (0 if it ended before one): what stopping costs once it knows. The work
        before that look is ``longest_gap``'s."""
        if self.started is None or self.seconds is None:
            return 0.0
        deadline = self.started + self.seconds
        for cpu, clock in zip(self.times, self.clock, strict=True):
            if clock > deadline:
                return ended - cpu
        return 0.0


class _Bounded(collectors.WrappingCollector):
    """Whoosh's collector, checking the budget as the matches are walked (a phrase or a
    collapse over much-shared images can walk many documents). It sits under the
    filter collector, so filtered-out matches count too."""

    def __init__(self, child: Any, budget: Budget) -> None:
        super().__init__(child)
        self.budget = budget

    def set_subsearcher(self, subsearcher: Any, offset: int) -> None:
        # Moving to the next segment makes its matcher and, for a sorted search, reads
        # the segment's sort column: a look on each side of it.
        self.budget.check()
        super().set_subsearcher(subsearcher, offset)
        self.budget.check()

    def matches(self) -> Any:
        return self.budget.walk(self.child.matches())

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


class _Checked(Q.WrappingQuery):
    """A query whose matcher is made only after a look at the budget."""

    def __init__(self, child: Q.Query, budget: Budget) -> None:
        super().__init__(child)
        self.budget = budget

    def _rewrap(self, child: Q.Query) -> Q.Query:
        return self.__class__(child, self.budget)

    def matcher(self, searcher: Any, context: Any = None) -> Any:
        self.budget.check()
        return self.child.matcher(searcher, context)


class _Walked(_Checked):
    """A range, prefix or wildcard (what the expansions leave to Whoosh) matched as
    Whoosh matches it, but a word at a time within the budget: Whoosh's own matcher makes
    a sub-matcher for every word of the range (every word of the index for `text:>1`)
    before its first document, and nothing can stop it."""

    def _words(self, reader: Any) -> list[bytes]:
        return [w for w in self.budget.walk(self.child._btexts(reader), every=16) if w]

    def estimate_size(self, ixreader: Any) -> int:
        fieldname = self.child.field()
        return sum(ixreader.doc_frequency(fieldname, w) for w in self._words(ixreader))

    def matcher(self, searcher: Any, context: Any = None) -> Any:
        q = self.child
        words = self._words(searcher.reader())
        if not words:
            return matching.NullMatcher()
        terms = [Q.Term(q.field(), w) for w in words]
        if len(terms) == 1:
            return terms[0].matcher(searcher, context)
        if q.constantscore:
            from whoosh.searching import SearchContext

            context = context.set(weighting=None) if context else SearchContext(weighting=None)
        return Q.Or([_Checked(t, self.budget) for t in terms], boost=q.boost).matcher(searcher, context)


def bounded_query(q: Q.Query, budget: Budget) -> Q.Query:
    """``q`` with every range, prefix and wildcard left in it matched within ``budget``
    (for Whoosh's searcher: the NumPy evaluator checks the budget itself)."""
    if isinstance(q, Q.MultiTerm) and not isinstance(q, Q.Variations):
        return _Walked(q, budget)
    if q.is_leaf():
        return q
    return q.apply(lambda sub: bounded_query(sub, budget))


_WORDISH = re.compile(r"\w+")


def check_size(text: str) -> None:
    """Refuse what no person types and what would cost every other user: a pasted page
    of text, thousands of words, keeps a search thread busy long after anyone waits."""
    if len(text) > MAX_QUERY_CHARS:
        raise QueryError(f"query too long: {len(text)} characters (at most {MAX_QUERY_CHARS})")
    words = len(_WORDISH.findall(text))
    if words > MAX_QUERY_TERMS:
        raise QueryError(f"query has {words} words (at most {MAX_QUERY_TERMS})")


# A query's cost, read from its text before anything runs: what makes the evaluator, the
# expansions and typo tolerance work (see :func:`cost`). At most this much is "cheap".
CHEAP_COST = 8
_NEGATION = re.compile(r"(?:^|\s|\()-\S|\bNOT\b")
_RANGE = re.compile(r"\w:[<>]|\[|\{|\bTO\b")
_MULTITERM = re.compile(r"[*?~]")
# Typo tolerance and suggestions look up every long word's neighbours in the index.
_LONG_WORD = 10
# From this many results on (page × limit) a page is deep: every hit before it is ranked.
_DEEP = 200


def cost(text: str, *, page: int = 1, limit: int = 10, sort: str = "relevance", exact: bool = False) -> int:
    """A rough price of running ``text``: 1 per word, more for what multiplies the work
    (negations and ranges walk the index, wildcards and fuzzy terms expand, quoted phrases
    walk positions, long words cost typo tolerance, sorting and deep pages rank more).

    >>> cost("chair yoga")
    2
    >>> cost("chair NOT text:[a TO z]") > CHEAP_COST
    True
    >>> cost(" ".join(["abcdefghijklmnopqrstuvwxyzabcd"] * 4)) > CHEAP_COST
    True
    """
    words = _WORDISH.findall(text)
    price = len(words)
    price += 4 * len(_NEGATION.findall(text))
    price += 8 * len(_RANGE.findall(text))
    price += 3 * len(_MULTITERM.findall(text))
    price += 3 * text.count('"') // 2
    if not exact:
        price += sum(2 for w in words if len(w) >= _LONG_WORD)
    if sort != "relevance":
        price += 4
    if page * limit > _DEEP:
        price += 4 + page * limit // _DEEP
    return price
