"""The one place that knows Whoosh's private API (index._whoosh), and the writer
process's message kinds."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

import numpy as np
import pytest
from whoosh import index as whoosh_index
from whoosh.codec import whoosh3
from whoosh.filedb import structfile
from whoosh.util.numeric import byte_to_length

import index
from index import _whoosh
from index._whoosh import fixes
from index.errors import IndexLocked, WriterError
from index.model.documents import page_documents
from index.writing.lock import SessionLock
from index.writing.pagewriter import PageWriter
from index.writing.process import Ask, Reply, WriterProcess, _serve


def _page(url: str, captions: list[str]) -> dict:
    return {
        "url": url,
        "title": "T",
        "author": "Ann",
        "date": "2020-11-09T06:14:50",
        "tags": [],
        "format": "yaml",
        "front_matter": {},
        "content_hash": "0" * 64,
        "images": [
            {
                "position": i,
                "image_url": f"https://img.example.com/{i}.jpg",
                "link_url": None,
                "alt": "",
                "caption_raw": c,
                "caption": c,
                "headline": c,
                "site": None,
                "board": None,
                "tags": [],
                "image_host": "img.example.com",
                "domain": "example.com",
                "duplicate_of": None,
            }
            for i, c in enumerate(captions)
        ],
    }


@pytest.fixture(scope="module")
def one_segment(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("whoosh") / "ix"
    writer = PageWriter(path, procs=1)  # one segment
    writer.open()
    # Enough postings of `chair` for several of Whoosh's blocks (128 postings each).
    captions = ["chair yoga chair", "desk", *(f"chair {'chair ' * (i % 3)}{i}" for i in range(300))]
    writer.add_page(page_documents(_page("file:///a.md", captions)))
    writer.close()
    return path


def test_importing_the_package_applies_the_fixes_once():
    assert index._whoosh is _whoosh
    assert whoosh3.W3PerDocReader._cached_reader is fixes._cached_reader
    assert structfile.BufferFile.__init__ is fixes._buffer_file_init
    assert whoosh_index.FileIndex._reader.__func__ is fixes._reader
    _whoosh.apply()  # a second call changes nothing
    assert structfile.BufferFile.__init__ is fixes._buffer_file_init


def test_searcher_serials_are_unique_and_go_with_the_searcher(one_segment):
    ix = whoosh_index.open_dir(str(one_segment))
    a, b = ix.searcher(), ix.searcher()
    assert _whoosh.searcher_serial(a) == _whoosh.searcher_serial(a) != _whoosh.searcher_serial(b)
    gone = weakref.ref(b)
    b.close()
    del b
    gc.collect()
    assert gone() is None  # the weak map does not keep it
    a.close()


def test_per_searcher_builds_once_and_lets_the_searcher_go(one_segment):
    searcher = whoosh_index.open_dir(str(one_segment)).searcher()
    calls = []
    proxy = weakref.proxy(searcher)

    def build() -> list:
        calls.append(1)
        return [proxy]  # a value that refers back to its searcher only weakly

    for _ in range(2):
        value = _whoosh.per_searcher(searcher, "x", build)
    assert len(calls) == 1 and len(value) == 1
    gone = weakref.ref(searcher)
    searcher.close()
    del searcher, value
    gc.collect()
    assert gone() is None


def test_accessors_read_what_whoosh_reads(one_segment):
    with whoosh_index.open_dir(str(one_segment)).searcher() as searcher:
        reader = searcher.reader()
        assert _whoosh.is_segment_reader(reader)
        ids, weights = [], []
        for block_ids, block_weights in _whoosh.posting_blocks(reader, "caption", b"chair"):
            ids += list(block_ids)
            weights += list(block_weights)
        matcher, expected = reader.postings("caption", b"chair"), []
        while matcher.is_active():
            expected.append((matcher.id(), matcher.weight()))
            matcher.next()
        assert len(expected) > 256 and list(zip(ids, weights, strict=True)) == expected
        count = reader.doc_count_all()
        codes = _whoosh.length_codes(reader, "caption", count)
        assert codes is not None
        decoded = [byte_to_length(c) for c in np.frombuffer(codes, dtype=np.uint8)]
        assert decoded == [reader.doc_field_length(d, "caption", 0) or 0 for d in range(len(codes))]
        assert _whoosh.length_codes(reader, "kind", count) is None  # no lengths kept
        B, K1 = _whoosh.bm25_params(searcher.weighting, "caption")
        assert (B, K1) == (searcher.weighting.B, searcher.weighting.K1)


def test_the_writer_process_answers_with_kinds(tmp_path, monkeypatch):
    # _serve in this process: without its child-only parts (ignoring Ctrl-C, dying with
    # the parent), which would stay with the test process.
    monkeypatch.setattr("index.writing.process.die_with_parent", lambda parent: None)
    monkeypatch.setattr("index.writing.process.signal.signal", lambda *args: None)
    index_dir = tmp_path / "ix"

    class Box(list):
        def put(self, msg):
            self.append(msg)

        def get(self, timeout):
            return self.pop(0)

    inbox, outbox = Box([(Ask.PAGE, page_documents(_page("file:///a.md", ["x"]))), (Ask.CLOSE,)]), Box()
    _serve(str(index_dir), {}, inbox, outbox, parent=0)
    assert [kind for kind, _ in outbox] == [Reply.READY, Reply.DONE]
    assert outbox[1][1]["pages"] == 1

    lock = SessionLock(index_dir)
    lock.acquire()
    try:
        outbox = Box()
        _serve(str(index_dir), {}, Box(), outbox, parent=0)
        assert [kind for kind, _ in outbox] == [Reply.LOCKED]
    finally:
        lock.release()


def test_a_writer_that_cannot_open_the_index_is_a_writer_error_not_a_lock(tmp_path):
    (tmp_path / "ix").write_text("a file where the index folder should be")
    with pytest.raises(WriterError) as raised:
        WriterProcess(tmp_path / "ix").start()
    assert not isinstance(raised.value, IndexLocked)


def test_wildcard_pattern_is_whooshs_translation():
    import re

    from whoosh import query

    pattern = re.compile(_whoosh.wildcard_pattern(query.Wildcard("caption", "ch?ir*")))
    assert pattern.match("chairs") and pattern.match("chair") and not pattern.match("cheer")


def _write(path: Path, *pages: dict, delete: tuple[str, ...] = ()) -> None:
    writer = PageWriter(path, procs=1)
    writer.open()
    writer.delete_pages(delete)
    for page in pages:
        writer.add_page(page_documents(page))
    writer.close()


def _image_ids(searcher) -> list[str]:
    return sorted(searcher.stored_fields(d)["id"] for d in searcher.document_numbers(kind="image"))


def test_a_refreshed_searcher_sees_what_a_new_one_sees(tmp_path):
    # Whoosh's refresh reused a segment's reader by segment id: the deletions a later
    # commit made in it were never seen, and whoosh-reloaded put back the segments a
    # merge had replaced (each merged document twice).
    path = tmp_path / "ix"
    _write(path, _page("file:///a.md", ["alpha one", "alpha two"]), _page("file:///b.md", ["beta"]))
    ix = whoosh_index.open_dir(str(path))
    searcher = ix.searcher()

    def check() -> None:
        nonlocal searcher
        searcher = searcher.refresh()
        with whoosh_index.open_dir(str(path)).searcher() as fresh:
            assert _image_ids(searcher) == _image_ids(fresh)
            assert searcher.doc_count() == fresh.doc_count()

    _write(path, _page("file:///c.md", ["gamma"]))  # a second segment: readers reused
    check()
    _write(path, delete=("file:///a.md",))  # deletions in a reused segment
    check()
    assert "file:///a.md#0" not in _image_ids(searcher)
    ix.optimize()  # segments merged away
    check()
    assert _image_ids(searcher) == ["file:///b.md#0", "file:///c.md#0"]
