"""Issue 30 #1-3: every query is bounded where the work is done.

The invariant: however the query is shaped, the search never works long without asking
its budget (a check, or a charge of the arrays it built), so that it stops within the
budget and a margin; the budget's clock starts when the work does, and one budget covers
both evaluations of typo tolerance. Checked on the review's shapes (negated ranges, NOT a
range, 32 random long words, deep nesting) and on generated queries with those shapes in
their grammar."""

from __future__ import annotations

import contextlib
import random
import string
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import fuzz
from helpers import item, write
from index.cache import clear_caches
from index.fast import arrays as fastsearch
from index.search.budget import CHEAP_COST, Budget, Recording, cost
from index.search.run import QueryError, SearchCancelled, search

# The longest stretch of work (CPU time) allowed between two checks of the budget: a search
# stops at most this long after its deadline (the margin is 0.5 s). The longest one
# left is one Levenshtein automaton walk of the suggestion for a 30-letter word (0.2-0.3 s).
MAX_GAP = 0.4
MARGIN = 0.5
# What stopping may cost once a look at the budget has seen the deadline pass (unwinding,
# the answer's error): with MAX_GAP, the margin. Both in CPU time, because on a busy
# machine the wall clock measures the neighbours' work as well as the search's.
STOP = MARGIN - MAX_GAP

_rng = random.Random(30)
RANDOM_WORDS = " ".join("".join(_rng.choice(string.ascii_lowercase) for _ in range(30)) for _ in range(32))
SHAPES = {
    "fifteen negated ranges": "chair " + " ".join(f"-text:>{i}" for i in range(1, 16)),
    "NOT a range": "chair NOT text:[a TO z]",
    "one negated range": "chair -text:>2",
    "32 random 30-letter words": RANDOM_WORDS,
    "negated wildcards": "chair -*a* -*e* -*i* -*o*",
    "nested negations": "chair " + "-(" * 19 + "stretch" + ")" * 19,
}


@pytest.fixture(scope="module")
def index(tmp_path_factory) -> Path:
    """Enough distinct words that a range over the text field walks thousands of them."""
    index = tmp_path_factory.mktemp("bounds") / "ix"
    rng = random.Random(7)

    def word() -> str:
        return "".join(rng.choice("abcdefghiklmnoprstuy") for _ in range(rng.randint(4, 9)))

    pages = [
        item(f"file:///p{n}.md", [f"Chair {word()} {word()} {word()} stretch {word()}" for _ in range(30)])
        for n in range(120)
    ]
    write(index, *pages)
    return index


def assert_ends_within_its_budget(budget: Recording, began: float, ended: float, query: str) -> None:
    """A search ends within MARGIN of its deadline: it looks at the budget at least every
    MAX_GAP of work, and stops within STOP once it sees the deadline passed."""
    gap = budget.longest_gap(began, ended)
    assert gap < MAX_GAP, f"{query}: {gap:.2f} s of work without a look at the budget"
    stop = budget.spent_after_deadline(ended)
    assert stop < STOP, f"{query}: {stop:.2f} s of work after the deadline was seen"


def _cold() -> None:
    # Every search starts from nothing: a warm cache would hide the walks.
    clear_caches()


@pytest.mark.parametrize("shape", list(SHAPES))
def test_each_shape_checks_its_budget_while_it_works(index, shape):
    search(index, "warm up the searcher")
    _cold()
    budget = Recording(2.0)
    began = time.thread_time()
    with contextlib.suppress(QueryError):
        search(index, SHAPES[shape], budget=budget)
    gap = budget.longest_gap(began, time.thread_time())
    assert gap < MAX_GAP, f"{shape}: {gap:.2f} s of work without a look at the budget"


@pytest.mark.parametrize("shape", list(SHAPES))
def test_each_shape_ends_within_its_budget(index, shape):
    _cold()
    budget = Recording(0.05)
    began = time.thread_time()
    try:
        search(index, SHAPES[shape], budget=budget)
    except QueryError as exc:
        assert "stopped after" in str(exc) or "nested" in str(exc)
    assert_ends_within_its_budget(budget, began, time.thread_time(), shape)


@pytest.mark.parametrize("shape", ["fifteen negated ranges", "NOT a range"])
def test_a_client_gone_stops_the_work_inside_the_evaluator(index, shape, monkeypatch):
    """Cancelled at each of the evaluator's checks in turn: the search stops at the next
    one, never after the evaluation has run to its end."""
    _cold()
    full = Recording(1.0)
    # The whole walk may take longer than that: its checks so far are enough.
    with contextlib.suppress(QueryError):
        search(index, SHAPES[shape], budget=full, exact=True)
    total = len(full.times)
    assert total > 3
    for trip in sorted({1, 2, total // 3, total // 2}):
        _cold()
        budget = Recording(trip_after=trip)
        with pytest.raises(SearchCancelled):
            search(index, SHAPES[shape], budget=budget, exact=True)
        assert len(budget.times) == trip + 1  # stopped at the first check after the cancel


def test_arrays_past_the_memory_bound_stop_the_query(index):
    _cold()
    with pytest.raises(QueryError, match="MB of intermediate results"):
        search(index, SHAPES["NOT a range"], budget=Budget(max_bytes=10_000))
    assert search(index, "chair stretch", budget=Budget(max_bytes=10_000_000)).hits


def test_the_budget_starts_when_the_work_starts(index):
    """Waiting in a queue is reported, not charged (review: a `chair` probe that waited
    18 s was answered 'query stopped after 3 s')."""
    budget = Budget(0.2)
    time.sleep(0.35)  # queued behind others
    results = search(index, "chair stretch", budget=budget)
    assert results.hits
    assert results.queued_ms >= 300


def test_typo_tolerance_evaluates_within_the_same_budget(index, monkeypatch):
    seen: list[object] = []
    real = fastsearch.evaluate

    def spy(*args, **kwargs):
        seen.append(kwargs.get("budget"))
        return real(*args, **kwargs)

    monkeypatch.setattr(fastsearch, "evaluate", spy)
    budget = Budget(5)
    search(index, "chiar strech", budget=budget)
    assert len(seen) == 2 and all(b is budget for b in seen)


def test_nesting_too_deep_is_a_query_error(index):
    with pytest.raises(QueryError, match="nested"):
        search(index, "-(" * 330 + "chair" + ")" * 330)


def test_cost_tells_the_review_shapes_from_plain_words():
    assert cost("chair") <= CHEAP_COST and cost("chair yoga stretch") <= CHEAP_COST
    for shape in SHAPES.values():
        assert cost(shape) > CHEAP_COST, shape
    assert cost("chair", page=400, limit=50) > CHEAP_COST
    assert cost("chair", sort="-date") <= CHEAP_COST + 4


# -- generated queries -------------------------------------------------------------------------

_WORD = st.sampled_from(["chair", "stretch", "yoga", "a", "zz", "chiar", "strech", "ab*", "*e*", "c?air", "chair~2"])
_LONG = st.text(alphabet=string.ascii_lowercase, min_size=20, max_size=30)
_RANGE = st.one_of(
    st.integers(0, 20).map(lambda n: f"text:>{n}"),
    st.just("text:[a TO z]"),
    st.just("text:{b TO y}"),
    st.just("date:>2000"),
)
_ATOM = st.one_of(_WORD, _LONG, _RANGE)
_CLAUSE = st.one_of(
    _ATOM,
    _ATOM.map(lambda a: f"-{a}"),
    _ATOM.map(lambda a: f"NOT {a}"),
    st.tuples(st.integers(1, 22), _ATOM).map(lambda p: "-(" * p[0] + p[1] + ")" * p[0]),
    st.lists(_ATOM, min_size=2, max_size=3).map(lambda xs: "(" + " OR ".join(xs) + ")"),
)
_QUERY = st.lists(_CLAUSE, min_size=1, max_size=16).map(" ".join)


@settings(max_examples=fuzz(20), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=_QUERY, exact=st.booleans())
def test_generated_queries_end_within_the_budget(index, query, exact):
    budget = Recording(0.2)
    began = time.thread_time()
    with contextlib.suppress(QueryError):
        search(index, query, budget=budget, exact=exact, facets=("domain",))
    assert_ends_within_its_budget(budget, began, time.thread_time(), query)


@pytest.mark.slow
@pytest.mark.parametrize("shape", list(SHAPES))
def test_each_shape_ends_within_the_server_budget_at_100k_documents(shape):
    """On the bench's index (`python -m bench.corpus --pages 1250` crawled: 98,656
    documents), set by $PAGES_BENCH_INDEX: the server's 3 s and the issue's margin."""
    import os

    path = os.environ.get("PAGES_BENCH_INDEX")
    if not path:
        pytest.skip("set PAGES_BENCH_INDEX to a bench index (see bench/load.py)")
    began = time.monotonic()
    with contextlib.suppress(QueryError):
        search(path, SHAPES[shape], budget=Budget(3.0))
    assert time.monotonic() - began < 3.0 + MARGIN
