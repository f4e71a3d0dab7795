"""Issue 30: a long-running server's memory stays flat after the first storm.

What a search keeps between queries is keyed by what it is (the index folder's segment and
the word), never by the searcher that read it: each server thread has its own searcher and
a thread pool replaces idle threads, so a key of the searcher's own made every new thread
decode and keep every array again. And a range walk over the index's words keeps only the
common ones, so that each query the budget stops does not keep a little more of the
lexicon."""

from __future__ import annotations

import threading

import pytest

from helpers import item, write
from index.cache import cache_stats, clear_caches
from index.fast import arrays
from index.search.run import search

QUERIES = ["chair", "chair yoga", "yoga -desk", "chair NOT text:[a TO m]", "desk OR yoga", "cha*"]
WORDS = ["chair", "yoga", "desk", "stretch", "office", "neck"]


@pytest.fixture
def index(tmp_path):
    ix = tmp_path / "ix"
    for commit in range(3):  # several segments, as a crawled index has
        pages = [
            item(
                f"https://example.com/{commit}-{p}",
                [f"{WORDS[(p + k) % len(WORDS)]} {WORDS[(p * k) % len(WORDS)]} rare{commit}x{p}x{k}" for k in range(6)],
            )
            for p in range(8)
        ]
        write(ix, *pages)
    clear_caches()
    yield ix
    clear_caches()


def storm(ix) -> None:
    """Every query, each in a thread of its own (a new searcher each)."""
    for query in QUERIES:
        thread = threading.Thread(target=search, args=(ix, query), kwargs={"facets": ("domain",)})
        thread.start()
        thread.join()


def test_the_caches_stop_growing_after_the_first_storm(index):
    storm(index)
    first = {name: stats["bytes"] for name, stats in cache_stats().items()}
    assert first["arrays"] > 0
    for _ in range(2):
        storm(index)
    again = {name: stats["bytes"] for name, stats in cache_stats().items()}
    # The results are remembered per searcher (a new searcher may see a newer commit): the
    # arrays, the costly part, are shared by every searcher of the same segments.
    assert again["arrays"] == first["arrays"], (first, again)


def test_a_range_walk_keeps_only_the_common_words(index, monkeypatch):
    monkeypatch.setattr(arrays, "STORE_MIN_POSTINGS", 3)
    search(index, "chair -text:[a TO z]")
    kept = {key[3]: value for key, (value, _) in arrays._CACHE._items.items() if key[0] == "p" and key[2] == "text"}
    assert kept, "the walk kept no common word at all"
    assert all(len(ids) >= 3 for ids, _ in kept.values()), {k: len(v[0]) for k, v in kept.items()}
    assert not any(word.startswith(b"rare") for word in kept)
