"""The disk store of decoded arrays (index.fast.store): a new process finds the same
results reading the arrays back as decoding them, and a store that cannot be used (read
only, damaged, locked, full) only costs decoding again."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from whoosh import index as whoosh_index

from bench.corpus import generate
from conftest import ROOT, crawl_in_process, fuzz
from index.cache import clear_caches
from index.fast import arrays as fastsearch
from index.fast import store as arraystore
from index.search import expand
from index.search.run import search

QUERIES = ["stretch", "upper back", "neck OR shoulder", "chair -desk", "strech", "stretc", "yoga pose"]


@pytest.fixture(scope="module")
def index(tmp_path_factory) -> Path:
    """Two crawls (two commits), so the search sees several segments."""
    root = tmp_path_factory.mktemp("store")
    first, second = root / "first", root / "second"
    generate(first, 16, seed=21)
    generate(second, 8, seed=22)
    index = root / "index"
    small = {"INDEX_COMMIT_DOCS": "500", "INDEX_SEGMENT_MAX_DOCS": "10"}
    assert crawl_in_process(index, str(first), settings=small).returncode == 0
    assert crawl_in_process(index, str(ROOT / "examples" / "pages"), str(second), settings=small).returncode == 0
    assert len(whoosh_index.open_dir(str(index))._segments()) >= 2
    return index


def new_process() -> None:
    """What a new search process starts without: every array, searcher and result."""
    clear_caches()


def answers(index: Path) -> list[tuple]:
    out = []
    for text in QUERIES:
        r = search(index, text, limit=20, facets=("domain", "site"))
        out.append(
            (text, r.total, [(h["page_url"], h["position"], round(h["score"], 9), h["uses"]) for h in r.hits], r.facets)
        )
    return out


@pytest.fixture
def every_array(monkeypatch):
    """Every posting list goes through the store, however short, and every segment's
    image URL ordinals are built (not a few hits' URLs looked up)."""
    monkeypatch.setattr(fastsearch, "STORE_MIN_POSTINGS", 1)
    monkeypatch.setattr(fastsearch, "DISTINCT_LOOKUP_LIMIT", 0)
    monkeypatch.setattr(expand, "MERGE_LEXICON_SEGMENTS", 0)  # merged word lists however few segments
    new_process()
    yield
    new_process()


def test_a_new_process_reads_the_arrays_back_and_finds_the_same(index, every_array, monkeypatch):
    store_file = index / arraystore.FILENAME
    store_file.unlink(missing_ok=True)
    monkeypatch.setenv("PAGES_ARRAY_STORE_MB", "0")
    new_process()
    without = answers(index)
    assert not store_file.exists()

    monkeypatch.delenv("PAGES_ARRAY_STORE_MB")
    new_process()
    first = answers(index)
    kinds = {k for (k,) in sqlite3.connect(store_file).execute("SELECT DISTINCT kind FROM arrays")}
    assert kinds == {"p", "o", "v", "m"}  # postings, facet and URL ordinals, merged word lists

    new_process()
    # The second process decodes none of the arrays its queries need: postings, facet
    # values, the image URLs' ordinals and the merged word lists of typo and word-start
    # expansion all come from the store (the top hits' own URLs are still read, one by
    # one, for collapsing).
    decoded: list[tuple] = []
    real_decode = fastsearch._decode_postings
    monkeypatch.setattr(fastsearch, "_decode_postings", lambda *a: decoded.append(a) or real_decode(*a))
    monkeypatch.setattr(fastsearch, "_value_hash", lambda v: pytest.fail(f"image URL {v!r} hashed again"))
    monkeypatch.setattr(
        expand._MergedWords, "step", lambda self, *a: pytest.fail(f"{self.fieldname} words merged again")
    )
    second = answers(index)
    assert decoded == []
    assert second == first == without


def test_a_damaged_store_is_replaced_and_costs_nothing_else(index, every_array):
    new_process()
    expected = answers(index)
    store_file = index / arraystore.FILENAME
    for suffix in ("-wal", "-shm"):
        Path(f"{store_file}{suffix}").unlink(missing_ok=True)
    store_file.write_bytes(b"not a database at all" * 100)
    new_process()
    assert answers(index) == expected
    # Started over: a sound store holding this process's arrays.
    assert sqlite3.connect(store_file).execute("SELECT COUNT(*) FROM arrays").fetchone()[0] > 0


def test_a_read_only_folder_without_a_store_searches_as_before(index, every_array, monkeypatch):
    new_process()
    expected = answers(index)
    store_file = index / arraystore.FILENAME
    for suffix in ("", "-wal", "-shm"):
        Path(f"{store_file}{suffix}").unlink(missing_ok=True)
    real_access = arraystore.os.access
    monkeypatch.setattr(arraystore.os, "access", lambda p, mode: mode != arraystore.os.W_OK and real_access(p, mode))
    new_process()
    assert answers(index) == expected
    assert not store_file.exists()


def test_a_locked_store_drops_the_writes_and_recovers(tmp_path):
    store = arraystore.ArrayStore(tmp_path, 2**20)
    other = sqlite3.connect(tmp_path / arraystore.FILENAME, isolation_level=None)
    store.put("MAIN_a", "p", "caption", b"x", [np.arange(5)])
    store.flush()  # creates the file
    other.execute("BEGIN EXCLUSIVE")
    store.put("MAIN_a", "p", "caption", b"y", [np.arange(3)])
    store.flush()  # busy: dropped, not raised
    assert not store.disabled
    other.execute("ROLLBACK")
    assert store.get("MAIN_a", "p", "caption", b"y") is None
    store.put("MAIN_a", "p", "caption", b"y", [np.arange(3)])
    store.flush()
    assert store.get("MAIN_a", "p", "caption", b"y")[0].tolist() == [0, 1, 2]


def test_the_store_keeps_under_its_bound_newest_first(tmp_path):
    store = arraystore.ArrayStore(tmp_path, 40_000)
    for n in range(30):
        store.put("MAIN_a", "p", "caption", str(n).encode(), [np.full(1000, n, dtype=np.int32)])
        store.flush()
    conn = sqlite3.connect(tmp_path / arraystore.FILENAME)
    total = conn.execute("SELECT SUM(LENGTH(data)) FROM arrays").fetchone()[0]
    kept = sorted(int(t) for (t,) in conn.execute("SELECT term FROM arrays"))
    assert total <= 40_000
    assert kept == list(range(30 - len(kept), 30)) and len(kept) >= 5


def test_rows_of_segments_merged_away_are_dropped(tmp_path):
    (tmp_path / "MAIN_here.seg").write_bytes(b"")
    store = arraystore.ArrayStore(tmp_path, 2**20)
    for segment in ("MAIN_here", "MAIN_gone"):
        store.put(segment, "v", "image_url", b"", [np.arange(4, dtype=np.int32)])
    store.flush()
    later = arraystore.ArrayStore(tmp_path, 2**20)  # the next process prunes once
    later.put("MAIN_here", "p", "caption", b"x", [np.arange(2)])
    later.flush()
    rows = sqlite3.connect(tmp_path / arraystore.FILENAME).execute("SELECT DISTINCT segment FROM arrays")
    assert {s for (s,) in rows} == {"MAIN_here"}


def test_weights_that_float32_cannot_hold_are_kept_exactly():
    ids = np.array([1, 5, 9], dtype=np.int64)
    for weights in (np.array([1.0, 2.0, 7.0]), np.array([0.1, 1.0 / 3.0, 2.5])):
        stored_ids, stored_weights = arraystore.unpack(*arraystore.pack(fastsearch._compact(ids, weights)))
        assert stored_ids.astype(np.int64).tolist() == ids.tolist()
        assert stored_weights.astype(np.float64).tolist() == weights.tolist()


_dtypes = st.sampled_from([np.int32, np.int64, np.float32, np.float64, np.uint8])


@settings(max_examples=fuzz(80), deadline=None)
@given(arrays=st.lists(_dtypes.flatmap(lambda t: hnp.arrays(t, st.integers(0, 40))), max_size=4))
def test_pack_and_unpack_round_trip(arrays):
    back = arraystore.unpack(*arraystore.pack(arrays))
    assert len(back) == len(arrays)
    for a, b in zip(arrays, back, strict=True):
        assert a.dtype == b.dtype and np.array_equal(a, b, equal_nan=a.dtype.kind == "f")


def test_a_range_walk_writes_none_of_its_words_to_the_store(index, every_array, monkeypatch):
    """A range over every word (`NOT text:[a TO z]`) would otherwise write every common
    word's postings: they evict what plain words need, and at 10M documents the search
    wrote them for 0.78 s after its deadline (bench.gaps). Its plain word still goes."""
    written: list[tuple[str, bytes]] = []
    real = arraystore.ArrayStore.put

    def put(self, segment, kind, field, term, arrays, **kwargs):
        written.append((kind, term))
        return real(self, segment, kind, field, term, arrays, **kwargs)

    monkeypatch.setattr(arraystore.ArrayStore, "put", put)
    search(index, "stretch NOT text:[a TO z]", exact=True)
    words = {term for kind, term in written if kind == "p"}
    assert words == {b"stretch", b"page"}  # the query's word, the page documents' kind
