"""Index writer and search library, without Scrapy."""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from whoosh import index as whoosh_index

from conftest import SEED, crawl_in_process, fuzz, image_documents, page_documents
from helpers import item, write
from index.admin import check
from index.api import IndexMissing, QueryError
from index.errors import IndexLocked, WriterError
from index.model.documents import page_documents as build_documents
from index.model.schema import make_schema
from index.search.run import search
from index.writing.lock import SessionLock
from index.writing.pagewriter import PageWriter
from index.writing.process import WriterProcess


def test_documents_carry_page_fields_and_tag_union():
    docs = build_documents(item("file:///a.md", ["Chair yoga"]))
    assert [d["kind"] for d in docs] == ["page", "image"]
    assert docs[1]["id"] == "file:///a.md#0"
    assert docs[1]["tags"] == "ImageTag,page-tag"
    assert docs[1]["title"] == "T" and docs[1]["author"] == "Ann"


def test_rewriting_a_page_replaces_its_documents(tmp_path):
    index = tmp_path / "ix"
    write(index, item("file:///a.md", ["one", "two", "three"]), item("file:///b.md", ["bee"]))
    assert len(image_documents(index)) == 4
    write(index, item("file:///a.md", ["only one now"]))
    docs = image_documents(index)
    assert sorted(d["id"] for d in docs) == ["file:///a.md#0", "file:///b.md#0"]
    assert {d["caption"] for d in docs} == {"only one now", "bee"}
    assert len(page_documents(index)) == 2


def test_commits_are_batched(tmp_path):
    index = tmp_path / "ix"
    pages = [item(f"file:///p{i}.md", ["x"] * 10) for i in range(20)]
    stats = write(index, *pages, commit_docs=50, procs=1)  # batching is the PageWriter's, whatever writes
    assert stats["documents"] == 200
    # 220 documents (pages + images) in batches of >= 50: a handful of commits, not 20.
    assert 2 <= stats["commits"] <= 5
    assert len(image_documents(index)) == 200


def test_same_page_twice_in_one_session_is_written_once(tmp_path):
    index = tmp_path / "ix"
    write(index, item("file:///a.md", ["x", "y"]), item("file:///a.md", ["x", "y"]))
    assert len(image_documents(index)) == 2


def test_second_writer_is_refused_and_killed_owner_releases(tmp_path):
    index = tmp_path / "ix"
    first = PageWriter(index)
    first.open()
    with pytest.raises(IndexLocked, match="another process"):
        PageWriter(index).open()
    first.cancel()
    lock = SessionLock(index)
    lock.acquire()  # free again
    lock.release()


def test_cancel_keeps_last_committed_state(tmp_path):
    index = tmp_path / "ix"
    write(index, item("file:///a.md", ["kept"]))
    writer = PageWriter(index)
    writer.open()
    writer.add_page(build_documents(item("file:///b.md", ["lost"])))
    writer.cancel()
    assert [d["caption"] for d in image_documents(index)] == ["kept"]


def _multiprocess_batch(index: Path) -> PageWriter:
    """A multiprocess writer holding 330 uncommitted documents, on an index holding one."""
    write(index, item("file:///a.md", ["kept"]))
    writer = PageWriter(index, procs=2)
    writer.open()
    for i in range(30):  # jobs of 100 documents: both sub-writers start
        writer.add_page(build_documents(item(f"file:///p{i}.md", ["lost"] * 10)))
    return writer


def test_multiprocess_writer_commits_from_both_sub_writers(tmp_path):
    index = tmp_path / "ix"
    writer = _multiprocess_batch(index)
    assert writer.procs == 2 and len(writer._writer.tasks) == 2
    writer.close()
    assert len(image_documents(index)) == 301
    assert len(whoosh_index.open_dir(str(index))._segments()) == 3  # one per sub-writer
    assert check(index) == []


def test_multiprocess_writer_cancel_stops_its_sub_writers(tmp_path):
    index = tmp_path / "ix"
    writer = _multiprocess_batch(index)
    tasks = list(writer._writer.tasks)
    assert len(tasks) == 2 and all(t.is_alive() for t in tasks)
    writer.cancel()
    # Whoosh's own cancel left them waiting for work forever (and the writer process
    # hanging on exit, joining them).
    assert not any(t.is_alive() for t in tasks)
    assert [d["caption"] for d in image_documents(index)] == ["kept"]
    write(index, item("file:///b.md", ["next"]), procs=2)  # both locks were released
    assert len(image_documents(index)) == 2
    assert not list(index.glob("*.tmp"))  # the killed sub-writers' sort folders too


def test_a_dead_sub_writer_fails_the_commit_instead_of_losing_its_documents(tmp_path):
    index = tmp_path / "ix"
    writer = _multiprocess_batch(index)
    os.kill(writer._writer.tasks[0].pid, signal.SIGKILL)  # as the OOM killer would
    with pytest.raises(WriterError, match="sub-writer died"):
        writer.close()
    assert [d["caption"] for d in image_documents(index)] == ["kept"]
    assert check(index) == []
    write(index, *(item(f"file:///p{i}.md", ["again"] * 10) for i in range(30)), procs=2)
    assert len(image_documents(index)) == 301


def test_a_dead_sub_writer_does_not_leave_the_commit_waiting_for_a_stuck_one(tmp_path):
    # A sub-writer killed while holding the job queue's lock leaves its sibling waiting
    # for that lock forever (seen once in the full suite); a stopped process stands in
    # for the stuck one here.
    index = tmp_path / "ix"
    writer = _multiprocess_batch(index)
    stuck, dead = writer._writer.tasks
    os.kill(stuck.pid, signal.SIGSTOP)
    os.kill(dead.pid, signal.SIGKILL)
    with pytest.raises(WriterError, match="sub-writer died"):
        writer.close()
    assert not stuck.is_alive()
    assert [d["caption"] for d in image_documents(index)] == ["kept"]


def test_writer_process_end_to_end(tmp_path):
    index = tmp_path / "ix"
    proc = WriterProcess(index, queue_pages=2)
    proc.start()
    for i in range(10):
        proc.add_page(build_documents(item(f"file:///p{i}.md", ["a", "b"])))
    stats = proc.close()
    assert stats["pages"] == 10 and stats["documents"] == 20
    assert len(image_documents(index)) == 20


def test_writer_process_reports_lock(tmp_path):
    index = tmp_path / "ix"
    lock = SessionLock(index)
    lock.acquire()
    try:
        with pytest.raises(IndexLocked):
            WriterProcess(index).start()
    finally:
        lock.release()


# -- search ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_index(tmp_path_factory) -> Path:
    index = tmp_path_factory.mktemp("search") / "ix"
    write(
        index,
        item("file:///a.md", ["Upper back stretch", "Chair yoga for seniors"], title="Chair exercises"),
        item("file:///b.md", ["Épinglé sur bureau"], title="Office", author="Bob", date="2019-05-01"),
    )
    return index


def test_search_finds_stemmed_and_accent_folded_words(small_index):
    assert [h["caption"] for h in search(small_index, "stretches").hits] == ["Upper back stretch"]
    assert [h["caption"] for h in search(small_index, "epingle").hits] == ["Épinglé sur bureau"]


def test_search_fields_and_filters(small_index):
    assert {h["page_url"] for h in search(small_index, 'title:"chair exercises"').hits} == {"file:///a.md"}
    assert [h["caption"] for h in search(small_index, "author:bob").hits] == ["Épinglé sur bureau"]
    assert len(search(small_index, "tag:imagetag").hits) == 3
    assert len(search(small_index, "tag:page-tag").hits) == 3
    assert [h["caption"] for h in search(small_index, "date:2019").hits] == ["Épinglé sur bureau"]


def test_search_hit_has_contract_fields(small_index):
    hit = search(small_index, "yoga").hits[0]
    for key in ("position", "image_url", "caption", "headline", "site", "domain", "title", "page_url", "score"):
        assert key in hit


def test_search_errors(tmp_path, small_index):
    with pytest.raises(IndexMissing, match="no index"):
        search(tmp_path / "nothing", "x")
    for bad in ("title:(", "date:[x to", '"unclosed', "title:"):
        with pytest.raises(QueryError):
            search(small_index, bad)


def test_search_during_a_write_sees_the_last_commit_without_waiting(tmp_path):
    index = tmp_path / "ix"
    write(index, item("file:///a.md", ["committed stretch"]))
    writer = PageWriter(index)
    writer.open()  # holds the writer lock with an uncommitted batch
    writer.add_page(build_documents(item("file:///b.md", ["uncommitted stretch"])))
    try:
        assert [h["caption"] for h in search(index, "stretch").hits] == ["committed stretch"]
    finally:
        writer.close()
    assert sorted(h["caption"] for h in search(index, "stretch").hits) == ["committed stretch", "uncommitted stretch"]


@dataclass
class FakeSegment:
    docs: int
    deleted: int = 0

    def doc_count_all(self) -> int:
        return self.docs

    def doc_count(self) -> int:
        return self.docs - self.deleted

    def deleted_count(self) -> int:
        return self.deleted

    def has_deletions(self) -> bool:
        return self.deleted > 0


_SEGMENT = st.integers(1, 200).flatmap(lambda n: st.builds(FakeSegment, st.just(n), st.integers(0, n)))


@settings(max_examples=fuzz(200), deadline=None)
@given(max_docs=st.integers(10, 150), segments=st.lists(_SEGMENT, max_size=12))
def test_the_merge_policy_never_builds_a_segment_above_the_bound(max_docs, segments):
    """Whatever segments an index has, a commit's merge adds at most ``max_docs`` live
    documents (to the writer's own batch), keeps every segment it does not merge, and
    merges once four are small."""
    import whoosh.reading

    from index.writing.merging import merge_bounded

    merged: list[FakeSegment] = []

    class Reader:
        def __init__(self, storage, schema, segment) -> None:
            merged.append(segment)

        def close(self) -> None:
            pass

    class Writer:
        storage = schema = None

        def add_reader(self, reader: Reader) -> None:
            pass

    with mock.patch.object(whoosh.reading, "SegmentReader", Reader):
        kept = merge_bounded(max_docs)(Writer(), list(segments))
    assert sum(seg.doc_count() for seg in merged) <= max_docs
    assert sorted(map(id, kept + merged)) == sorted(map(id, segments))  # nothing lost, nothing twice
    small = [seg for seg in segments if seg.doc_count_all() < max(1, max_docs // 10)]
    if len(small) >= 4 and sum(seg.doc_count() for seg in sorted(small, key=FakeSegment.doc_count)[:2]) <= max_docs:
        assert len(merged) >= 2


def test_commits_merge_small_segments(tmp_path):
    index = tmp_path / "ix"
    pages = [item(f"file:///p{i}.md", ["x"] * 2) for i in range(30)]
    # One plain writer: the merge policy is the same for both, and two sub-writers started
    # at each of the 15 commits made this test 20 times slower.
    write(index, *pages, commit_docs=4, segment_max_docs=100, procs=1)
    sizes = [s.doc_count_all() for s in whoosh_index.open_dir(str(index))._segments()]
    # 15 commits of 6 documents (two pages and their images), each under a tenth of the
    # bound: merged once four wait, never past the bound (its every case: the test above).
    assert len(sizes) < 15 and max(sizes) <= 100
    assert len(image_documents(index)) == 60


def test_a_small_refresh_does_not_rewrite_big_segments(tmp_path):
    # Found by the 100k bench: a 1%-changed refresh took 44 s of a 67 s crawl because
    # every commit merged all the segments that fit under the bound.
    from whoosh import index as wi

    index = tmp_path / "ix"
    pages = [item(f"file:///p{i}.md", ["x"] * 10) for i in range(40)]
    # One plain writer: two sub-writers would put p0-p8 in one segment, and six changed
    # pages would then rightly count as a third of it deleted and reclaim it.
    write(index, *pages, commit_docs=200, segment_max_docs=1000, procs=1)
    segments = wi.open_dir(str(index))._segments()
    before = {s.segment_id() for s in segments if s.doc_count_all() >= 100}  # a tenth of the bound
    assert len(before) >= 2
    for round_ in range(6):  # six small refreshes, one changed page each
        write(index, item(f"file:///p{round_}.md", ["changed"] * 10), segment_max_docs=1000, procs=1)
    after = wi.open_dir(str(index))._segments()
    assert before <= {s.segment_id() for s in after}  # the big ones are untouched
    assert len(after) <= len(segments) + 3  # small ones get merged together
    assert len(image_documents(index)) == 400


def test_an_index_from_an_older_schema_is_refused_with_advice(tmp_path):
    index = tmp_path / "index"
    index.mkdir()
    old = make_schema()
    old.remove("text")  # as built before the combined search field existed
    whoosh_index.create_in(str(index), old)
    # The command's default writer, a process of its own, is the one that finds out.
    result = crawl_in_process(index, str(SEED), settings={"INDEX_WRITER_PROCESS": True})
    assert result.returncode == 1
    assert f"index at {index} was built by an older version (no field text): move it away and crawl again" in (
        result.stderr
    )


def test_compound_segment_files_are_read_in_place_like_bytesio():
    # index._whoosh.fixes: Whoosh's BufferFile copied each opened part of a segment into
    # a BytesIO; MemoryCursor reads the memory map in place and must behave the same.
    import io

    from index._whoosh.fixes import MemoryCursor

    data = b"first line\nsecond\n\nlast without newline"
    ours, theirs = MemoryCursor(memoryview(data)), io.BytesIO(data)
    steps = [("read", 5), ("readline", -1), ("tell",), ("seek", 3), ("read", -1), ("seek", 0), ("readline", 4)]
    steps += [("seek", -4, 2), ("read", 10), ("seek", 2, 1), ("tell",), ("read", 0)]
    for op, *args in steps:
        assert getattr(ours, op)(*args) == getattr(theirs, op)(*args), (op, args)
    assert list(MemoryCursor(data)) == list(io.BytesIO(data))


def test_cached_analyzer_gives_the_same_tokens_and_pickles_without_its_cache():
    import pickle

    from index.model.schema import text_analyzer

    cached = text_analyzer()
    plain = cached.inner
    strings = ["Chair Yoga for SENIORS", "the a an", "", "Épinglé sur bureau", "stretches stretching", "x" * 300]
    for text in strings * 2:  # the second round comes from the cache
        for kwargs in ({"positions": True, "boosts": True, "mode": "index"}, {"mode": "index"}, {"mode": "query"}):
            ours = [(t.text, t.pos if kwargs.get("positions") else None, t.stopped) for t in cached(text, **kwargs)]
            theirs = [(t.text, t.pos if kwargs.get("positions") else None, t.stopped) for t in plain(text, **kwargs)]
            assert ours == theirs, (text, kwargs)
    chars = [(t.text, t.startchar, t.endchar) for t in cached("Neck stretch", chars=True, mode="index")]
    assert chars == [("neck", 0, 4), ("stretch", 5, 12)]
    clone = pickle.loads(pickle.dumps(cached))
    assert clone == cached
    assert len(pickle.dumps(cached)) < len(pickle.dumps(plain)) + 200  # no cache inside
