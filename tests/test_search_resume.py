"""Issue 30 at 10M documents: per-index builds resumable within a query's budget.

The invariant: a search stopped at any look at its budget, in the middle of any build
(a term's arrays over the index, a segment's image ordinals, the global ones, facet
ordinals, merged word lists), leaves no wrong answer: the next search, unbounded,
answers exactly what an untouched process answers. And a build longer than one search's
budget makes progress across searches (each resumes the partial the last one left), so
that repeating a search cut short always ends in its answer. The cases are generated:
every look of each query's cold search is tripped in turn (sampled evenly past
SAMPLED looks), with the builds' steps made tiny so that every kind has many steps."""

from __future__ import annotations

import contextlib
import dataclasses
import random
import threading
import time
from pathlib import Path

import pytest

from helpers import item, write
from index.cache import clear_caches
from index.fast import arrays as fastsearch
from index.search import collect, expand
from index.search import run as search_run
from index.search.budget import Budget, Recording
from index.search.run import SearchCancelled, search

# A search's looks past this many are sampled evenly (make test's time).
SAMPLED = 40
WORDS = "chair stretch yoga desk neck shoulder upper back seated gentle".split()
DOMAINS = ["example.com", "youtube.com", "pinterest.com", "flickr.com"]
# Each build kind on the path of at least one query: terms and collapsed totals (every
# query), facet ordinals (facets), merged word lists (typos, word starts).
QUERIES = {
    "two words, facets": ("chair stretch", {"facets": ("domain", "site")}),
    "a typo": ("chiar strech", {}),
    "a word start, facet": ("stre", {"facets": ("domain",)}),
    "collapse off, facet": ("yoga OR neck", {"collapse": False, "facets": ("domain",)}),
}


@pytest.fixture(scope="module")
def index(tmp_path_factory) -> Path:
    """Four segments; images shared between pages (collapsing counts them once) and
    spread over several domains (facets)."""
    index = tmp_path_factory.mktemp("resume") / "ix"
    rng = random.Random(30)
    for batch in range(4):
        pages = []
        for n in range(12):
            captions = [" ".join(rng.sample(WORDS, 3)) for _ in range(6)]
            page = item(f"file:///b{batch}/p{n}.md", captions)
            for image in page["images"]:
                image["domain"] = rng.choice(DOMAINS)
                image["image_url"] = f"https://img.example.com/{rng.randrange(60)}.jpg"
            pages.append(page)
        write(index, *pages)
    return index


@pytest.fixture(autouse=True)
def tiny_steps(monkeypatch):
    """Every build in many steps, as a million-document segment is; built, not read
    back from the array store (tests/test_fast_store.py covers that), and the image
    URLs' ordinals built rather than looked up one by one."""
    monkeypatch.setattr(fastsearch, "VALUE_STEP", 5)
    monkeypatch.setattr(fastsearch, "FACET_STEP_POSTINGS", 3)
    monkeypatch.setattr(fastsearch, "_lookup_instead", lambda reader, fieldname, hits: False)
    monkeypatch.setenv("PAGES_ARRAY_STORE_MB", "0")
    clear_caches()
    yield
    clear_caches()


def answer(index: Path, query: str, options: dict, budget: Budget | None = None) -> object:
    """What a search answers, less its timings."""
    found = search(index, query, budget=budget, **options)
    return dataclasses.replace(found, elapsed_ms=0.0, queued_ms=0.0)


def untouched(index: Path, query: str, options: dict) -> object:
    clear_caches()
    return answer(index, query, options)


def looks_of_a_cold_search(index: Path, query: str, options: dict) -> int:
    clear_caches()
    budget = Recording()
    search(index, query, budget=budget, **options)
    return len(budget.times)


def sampled(looks: int) -> list[int]:
    if looks <= SAMPLED:
        return list(range(looks))
    return sorted({round(i * (looks - 1) / (SAMPLED - 1)) for i in range(SAMPLED)})


def test_the_index_has_the_shapes_the_builds_need(index):
    from whoosh import index as whoosh_index

    assert len(whoosh_index.open_dir(str(index))._segments()) == 4
    found = untouched(index, "chair stretch", {"facets": ("domain",)})
    assert 1 < found.total < found.total * 2 and len(found.facets["domain"]) > 1


@pytest.mark.parametrize("name", list(QUERIES))
def test_a_search_stopped_at_any_look_leaves_no_wrong_answer(index, name):
    query, options = QUERIES[name]
    expected = untouched(index, query, options)
    looks = looks_of_a_cold_search(index, query, options)
    assert looks > 20, "the builds' steps should be many looks"
    for trip in sampled(looks):
        clear_caches()
        with pytest.raises(SearchCancelled):
            answer(index, query, options, budget=Recording(trip_after=trip))
        assert answer(index, query, options) == expected, f"stopped at look {trip} of {looks}"


KINDS = {
    "two words, facets": {"_TermArrays", "_ValueOrdinals", "_FacetOrdinals"},
    "a typo": {"_TermArrays", "_ValueOrdinals", "_MergedWords"},
    "a word start, facet": {"_TermArrays", "_ValueOrdinals", "_FacetOrdinals", "_MergedWords"},
    "collapse off, facet": {"_TermArrays", "_FacetOrdinals"},
}
PARTIALS = [fastsearch._TermArrays, fastsearch._ValueOrdinals, fastsearch._FacetOrdinals, expand._MergedWords]


@pytest.fixture
def started(monkeypatch) -> list[str]:
    """The builds started from nothing, by kind, in order."""
    begun: list[str] = []
    for kind in PARTIALS:
        real = kind.__init__

        def counted(self, *args, _real=real, **kwargs):
            begun.append(type(self).__name__)
            _real(self, *args, **kwargs)

        monkeypatch.setattr(kind, "__init__", counted)
    return begun


class Steps(Recording):
    """A budget that allows ``steps`` steps of builds (the looks between two steps),
    then stops the search at its next look."""

    def __init__(self, steps: int | None = None) -> None:
        super().__init__()
        self.steps = steps
        self.taken = 0

    def between(self) -> None:
        self.taken += 1
        if self.steps is not None and self.taken > self.steps:
            self.cancel.set()
        super().between()


@pytest.mark.parametrize("name", list(QUERIES))
@pytest.mark.parametrize("steps", [1, 3])
def test_a_search_cut_short_again_and_again_ends_in_its_answer(index, name, steps, started):
    """Each search of the same query may take only a few steps of its builds: each
    resumes what the last left, so the query is answered after as many tries as its
    builds have steps (a few more), and no build is ever started over (a 10M server
    would otherwise answer 400 for ever)."""
    query, options = QUERIES[name]
    expected = untouched(index, query, options)
    clear_caches()
    started.clear()
    cold = Steps()
    answer(index, query, options, budget=cold)
    builds = sorted(started)
    assert cold.taken > 3 * steps, "the query should need builds of many steps"
    assert set(builds) == KINDS[name]
    started.clear()
    clear_caches()
    tries, got = 0, None
    while got is None:
        tries += 1
        assert tries <= cold.taken + 1, f"no answer after {tries - 1} searches of {steps} steps"
        with contextlib.suppress(SearchCancelled):
            got = answer(index, query, options, budget=Steps(steps))
    assert tries > 1
    assert got == expected
    assert sorted(started) == builds, "a build was started over"


def test_a_collapsed_total_out_of_time_is_an_estimate_never_remembered(index, monkeypatch):
    """Counting distinct images gets a share of the time left; past it the search answers
    "about N" (the documents: an upper bound), and the next search counts again."""
    query, options = "chair stretch", {"facets": ("domain",)}
    expected = untouched(index, query, options)
    assert expected.total_exact
    clear_caches()
    monkeypatch.setattr(collect, "COUNT_SHARE", 0.0)
    estimated = answer(index, query, options, budget=Budget(60))
    assert not estimated.total_exact
    assert estimated.total > expected.total
    assert estimated.hits == expected.hits and estimated.facets == expected.facets
    monkeypatch.setattr(collect, "COUNT_SHARE", 0.5)
    assert answer(index, query, options) == expected


def test_an_evicted_partial_starts_again_and_memory_stays_bounded(index, monkeypatch):
    """A partial the cache cannot keep is not kept: the search that holds it finishes
    the build, the next one starts from nothing; the answer is the same."""
    query, options = "chiar strech", {"facets": ("domain",)}
    expected = untouched(index, query, options)
    clear_caches()
    monkeypatch.setattr(fastsearch._CACHE, "max_bytes", 1)
    monkeypatch.setattr(expand._LEXICONS, "max_bytes", 1)
    assert answer(index, query, options) == expected
    assert fastsearch._CACHE.bytes <= 1 and expand._LEXICONS.bytes <= 1


def test_the_warm_up_builds_what_a_search_needs_and_gives_way(index, monkeypatch):
    query, options = "chiar strech", {"facets": ("domain", "site")}
    expected = untouched(index, query, options)
    clear_caches()
    # A search in flight: the warm-up waits between its steps.
    search_run._in_flight(+1)
    stop = search_run.start_warming(index, ("domain", "site"))
    try:
        time.sleep(0.2)
        assert not any(key[0] in ("v", "g", "f") for key in list(fastsearch._CACHE._items)), "did not give way"
        search_run._in_flight(-1)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            keys = {key[0] for key in list(fastsearch._CACHE._items)}
            if {"g", "f"} <= keys:
                break
            time.sleep(0.02)
        else:
            pytest.fail("the warm-up did not build the global and facet ordinals")
        # The warm-up's arrays answer as a search's own would.
        assert answer(index, query, options) == expected
    finally:
        stop.set()
    names = [t.name for t in threading.enumerate()]
    deadline = time.monotonic() + 10
    while "warm-up" in names and time.monotonic() < deadline:
        time.sleep(0.02)
        names = [t.name for t in threading.enumerate()]
    assert "warm-up" not in names
