"""Issue 30: every cache is charged what its entries really hold, and nothing outside the
caches grows with the queries.

A cache's byte bound is only a bound if each entry is charged at least what keeping it
costs: an entry charged a fifth of its memory lets the cache hold five times its bound.
Measured with tracemalloc (NumPy reports its arrays to it): the memory a cache's entries
hold is what the process gives back when they are dropped. Checked per cache and, in the
arrays cache, per kind of array, over every kind a storm of generated query shapes makes
(not a few picked entries); and a new storm, with new words, leaves the memory outside the
caches where it was."""

from __future__ import annotations

import gc
import random
import threading
import tracemalloc

import pytest

from helpers import item, write
from index import cache as cache_module
from index.cache import _CACHES, Cache, clear_caches
from index.fast import arrays
from index.search import run
from index.search.budget import Budget
from index.search.run import search

WORDS = ["chair", "yoga", "desk", "stretch", "office", "neck", "shoulder", "standing", "posture", "break"]
# The arrays cache's kinds a storm must have made (index.fast.arrays: the key's first letter);
# "o" and "f" come from facets, "v" and "g" from collapsing, "c" from the hits' use counts.
ARRAY_KINDS = {"p", "l", "s", "L", "c", "o", "v", "g", "f"}
# Charged / really held, per cache or kind: what a bound in bytes can promise.
LOW, HIGH = 0.6, 1.67
# A cache holding less than this is all overhead and noise (a dict or two): not compared.
NOISE = 16 * 1024


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    ix = tmp_path_factory.mktemp("charges") / "ix"
    rng = random.Random(3)
    for commit in range(3):  # several segments, as a crawled index has
        pages = [
            item(
                f"https://example{p % 4}.com/{commit}-{p}",
                [" ".join(rng.sample(WORDS, 3)) + f" rare{commit}x{p}x{k} w{rng.randrange(400)}" for k in range(10)],
            )
            for p in range(40)
        ]
        write(ix, *pages, procs=1)
    return ix


def shapes(rng: random.Random, n: int) -> list[tuple[str, dict]]:
    """Generated queries over the shapes a search takes: words, typos, word starts, OR,
    negations, ranges, rare words, facets, exact."""

    def word() -> str:
        w = rng.choice(WORDS) if rng.random() < 0.7 else f"w{rng.randrange(400)}"
        form = rng.random()
        if form < 0.15 and len(w) > 4:
            i = rng.randrange(1, len(w) - 1)
            return w[:i] + w[i + 1 :]  # a typo
        if form < 0.3:
            return w[: max(2, len(w) // 2)] + "*"
        return w

    out = []
    for _ in range(n):
        q = " ".join(word() for _ in range(rng.randint(1, 3)))
        extra = rng.random()
        if extra < 0.2:
            q += f" OR {word()}"
        elif extra < 0.35:
            q += f" -{rng.choice(WORDS)}"
        elif extra < 0.45:
            q += f" NOT text:[{rng.choice('abcd')} TO {rng.choice('mnop')}]"
        options = {"facets": ("domain",)} if rng.random() < 0.4 else {}
        if rng.random() < 0.2:
            options["exact"] = True
        out.append((q, options))
    return out


def storm(ix, queries: list[tuple[str, dict]], threads: int = 2) -> None:
    """The queries over ``threads`` new threads (a server's pool replaces its threads)."""

    def run(part: list[tuple[str, dict]]) -> None:
        for q, options in part:
            search(ix, q, budget=Budget(30.0), **options)

    workers = [threading.Thread(target=run, args=(queries[k::threads],)) for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()


def _traced() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def _drop(cache: Cache, keep: object = None) -> tuple[int, int]:
    """(charged bytes, bytes freed) of dropping the cache's entries (those whose key's
    first item is ``keep``, if given)."""
    before = _traced()
    with cache._lock:
        keys = [k for k in cache._items if keep is None or (isinstance(k, tuple) and k[0] == keep)]
        charged = sum(cache._items[k][1] for k in keys)
        for k in keys:
            cache.bytes -= cache._items.pop(k)[1]
        # A dict's table does not shrink when entries go: rebuilt, the part of it the
        # dropped entries took is freed too (it is what keeping them cost).
        cache._items = type(cache._items)(cache._items)
    return charged, before - _traced()


@pytest.fixture
def traced(monkeypatch):
    # No later look for freed memory: its timer thread, ending between two readings,
    # would count as memory an entry held.
    monkeypatch.setattr(cache_module, "_look_later", lambda every: None)
    clear_caches()
    tracemalloc.start()
    try:
        yield
    finally:
        tracemalloc.stop()
        clear_caches()


def test_each_cache_is_charged_what_its_entries_hold(index, traced, monkeypatch):
    # Collapsing's per-segment ordinals from a few hits on (a small index's counts would
    # otherwise all read their values one by one, and make no "v" or "g" arrays).
    monkeypatch.setattr(arrays, "DISTINCT_LOOKUP_LIMIT", 8)
    storm(index, shapes(random.Random(1), 120), threads=1)
    kinds = {k[0] for k in arrays._CACHE._items if isinstance(k, tuple)}
    assert kinds >= ARRAY_KINDS, f"the storm made no {sorted(ARRAY_KINDS - kinds)} arrays"
    measured: dict[str, tuple[int, int]] = {}
    for kind in sorted(kinds):
        measured[f"arrays/{kind}"] = _drop(arrays._CACHE, kind)
    for cache in _CACHES:
        measured[cache.name] = _drop(cache)
    compared = {name: (charged, freed) for name, (charged, freed) in measured.items() if max(charged, freed) > NOISE}
    assert len(compared) >= len(ARRAY_KINDS), measured  # most kinds hold more than noise
    wrong = {
        name: f"charged {charged:,}, holds {freed:,} ({charged / max(freed, 1):.2f}x)"
        for name, (charged, freed) in compared.items()
        if not LOW <= charged / max(freed, 1) <= HIGH
    }
    assert not wrong, wrong


def test_nothing_outside_the_caches_grows_storm_after_storm(index, traced):
    rng = random.Random(2)

    def outside() -> int:
        """What the process holds once every cache's entries are dropped (and the ended
        storm threads' searchers closed, as the next new thread's search does)."""
        run._forget_ended_threads()
        for cache in _CACHES:
            _drop(cache)
        return _traced()

    storm(index, shapes(rng, 60))
    first = outside()
    for _ in range(3):
        storm(index, shapes(rng, 60))  # new words, new shapes, new threads (new searchers)
    last = outside()
    assert last - first < 64 * 1024, f"outside the caches: {first:,} -> {last:,} bytes"


def test_threads_share_one_column_reader_per_segment(index):
    """Each thread's searcher has its own segment readers; the columns they read (the
    image URLs collapsing compares, the stored fields) are opened once per segment."""
    clear_caches()
    storm(index, [("chair yoga", {}), ("desk", {"facets": ("domain",)})], threads=1)
    columns = next(c for c in _CACHES if c.name == "columns")
    one = (len(columns), columns.bytes)
    assert one[0] > 0
    for _ in range(3):
        storm(index, [("chair yoga", {}), ("desk", {"facets": ("domain",)})], threads=2)
    assert (len(columns), columns.bytes) == one


def test_an_ended_threads_searcher_is_closed(index):
    clear_caches()
    search(index, "chair")
    ended = (next(iter(run._SEARCHERS))[0], -1)  # as an ended thread's would be kept
    run._SEARCHERS[ended] = searcher = run._open(index).searcher()
    storm(index, [("yoga", {})], threads=1)  # a new thread opens its searcher
    assert ended not in run._SEARCHERS and searcher.is_closed


def test_freed_memory_goes_back_to_the_system():
    """Chunks under malloc's mmap threshold stay in its arenas when freed; past
    KEEP_FREE_BYTES of them, free_unused gives them back."""
    import numpy as np

    from index import cache

    if cache.malloc_free_bytes() is None:
        pytest.skip("not glibc")
    cache.free_unused(every=0, now=True)  # start from a trimmed process
    blocks = [np.ones(12_000) for _ in range(3_000)]  # 96 KB each, 288 MB
    del blocks[::2]  # freed between live ones: not at the top of the heap
    assert cache._resident_free() - cache._trim_state[1] > cache.KEEP_FREE_BYTES
    assert cache.free_unused(every=0) > cache.KEEP_FREE_BYTES
    assert cache._resident_free() - cache._trim_state[1] < cache.KEEP_FREE_BYTES
    assert cache.free_unused(every=0) == 0  # nothing more to give back
    del blocks


@pytest.mark.parametrize("query", ["chair yoga desk", "chair NOT text:[a TO z]", "cha* -(((("])
def test_a_stopped_searchs_error_holds_none_of_its_frames(index, query):
    """Whoever keeps a search's error (a server's idle worker thread keeps its last one)
    must not keep the stopped search's frames, and with them its arrays."""
    from index.api import SearchError

    clear_caches()
    with pytest.raises(SearchError) as raised:
        search(index, query, budget=Budget(30.0, max_bytes=1))  # stopped at its first array
    error = raised.value
    assert error.__context__ is None and error.__cause__ is None
    frames = []
    tb = error.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame.f_code.co_filename)
        tb = tb.tb_next
    assert all(f in (__file__, run.__file__) for f in frames), frames


def test_looks_after_a_quiet_spell_come_from_one_thread(monkeypatch):
    """A search too soon after the last look asks for one later: many such searches get
    one look, made by one long-lived thread (a thread started per look was started in a
    search's own time), and the next quiet spell gets its own."""
    import time

    from index import cache

    looks: list[float] = []
    monkeypatch.setattr(cache, "free_unused", lambda **kw: looks.append(time.monotonic()))
    before = {t.ident for t in threading.enumerate()}
    for _ in range(20):
        cache._look_later(0.05)
    deadline = time.monotonic() + 5
    while not looks and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)
    assert len(looks) == 1
    started = [t for t in threading.enumerate() if t.ident not in before]
    assert len(started) <= 1  # the looking thread, once per process
    cache._look_later(0.05)
    deadline = time.monotonic() + 5
    while len(looks) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(looks) == 2
    assert {t.ident for t in threading.enumerate()} - before <= {t.ident for t in started}
