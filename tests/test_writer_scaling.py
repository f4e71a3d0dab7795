"""INDEX_WRITER_PROCS=0 follows the CPUs this process may use, and a writer with more
sub-writers than the two measured before writes the same index as one plain writer."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from whoosh import index as whoosh_index

from index.admin import check
from index.model.documents import page_documents
from index.writing import pagewriter
from index.writing.merging import merge_bounded
from index.writing.pagewriter import MAX_AUTO_PROCS, PageWriter, auto_procs
from pipeline import steps
from pipeline.items import PageItem
from pipeline.parsing import parse_page

SEED = Path(__file__).resolve().parent.parent / "examples" / "pages" / "chair-exercises-upper-back.md"


@pytest.mark.parametrize(
    ("cpus", "procs"), [(1, 1), (2, 2), (4, 4), (8, 8), (16, MAX_AUTO_PROCS), (64, MAX_AUTO_PROCS)]
)
def test_the_default_follows_the_cpus_this_process_may_use(monkeypatch, cpus, procs):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cpus)), raising=False)
    assert auto_procs(0) == procs
    assert PageWriter("/nonexistent/ix", procs=0, lock=False).procs == procs
    # A number given is kept, whatever the machine.
    assert auto_procs(5) == 5
    assert PageWriter("/nonexistent/ix", procs=1, lock=False).procs == 1


def test_without_affinity_the_cpu_count_is_used(monkeypatch):
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    assert pagewriter.available_cpus() == 4
    assert auto_procs(0) == 4


def _stored(index: Path) -> list[dict]:
    with whoosh_index.open_dir(str(index)).searcher() as searcher:
        return sorted((dict(fields) for fields in searcher.all_stored_fields()), key=lambda d: d["id"])


def _postings(index: Path, field: str) -> dict[bytes, list[str]]:
    """Each term of ``field`` → the ids of the documents holding it."""
    with whoosh_index.open_dir(str(index)).searcher() as searcher:
        reader = searcher.reader()
        return {
            term: sorted(searcher.stored_fields(n)["id"] for n in reader.postings(field, term).all_ids())
            for term in reader.lexicon(field)
        }


def _documents(url: str) -> list[dict]:
    """The seed page's documents as the crawl builds them, under another URL."""
    item = PageItem.from_page(parse_page(url, SEED.read_bytes()), fetch={"start": "/pages", "size": 1, "mtime": 1})
    steps.normalize_domains(item.url, item.images)
    steps.normalize_captions(item.url, item.images)
    steps.mark_duplicates(item.images)
    return page_documents(steps.stamped_page(item))


def test_three_sub_writers_write_the_same_documents_as_one(tmp_path):
    # 4 pages × 88 image documents, in jobs of 100 documents: all three sub-writers work.
    docs = [_documents(f"file:///pages/copy{copy}.md") for copy in range(4)]
    images = sum(len(page) - 1 for page in docs)

    def write(index: Path, procs: int) -> PageWriter:
        writer = PageWriter(index, procs=procs)
        writer.open()
        for page in docs:
            writer.add_page(page)
        if procs > 1:
            assert len(writer._writer.tasks) == procs  # type: ignore[attr-defined]
        writer.close()
        return writer

    one, three = tmp_path / "one", tmp_path / "three"
    # With one plain writer, its commit sorts and writes the segment: CPU-seconds counted.
    assert write(one, 1).stats["commit_cpu_s"] > 0
    assert write(three, 3).stats["documents"] == images == 4 * 88
    assert len(whoosh_index.open_dir(str(three))._segments()) == 3  # one per sub-writer
    assert _stored(three) == _stored(one)
    for field in ("caption", "text", "domain"):
        assert _postings(three, field) == _postings(one, field), field
    assert check(three) == []


class _Segment:
    def __init__(self, docs: int) -> None:
        self.docs = docs

    def doc_count_all(self) -> int:
        return self.docs

    doc_count = doc_count_all

    def deleted_count(self) -> int:
        return 0

    def has_deletions(self) -> bool:
        return False

    def close(self) -> None:
        pass


class _Merger:
    storage = schema = None

    def __init__(self) -> None:
        self.merged: list[_Segment] = []

    def add_reader(self, reader: _Segment) -> None:
        self.merged.append(reader)


def _segments_after(procs: int, commits: int, monkeypatch) -> tuple[int, int]:
    """Segments left, and documents merged again, after ``commits`` commits of 100,000
    documents by ``procs`` sub-writers under the default merge policy."""
    import whoosh.reading

    monkeypatch.setattr(whoosh.reading, "SegmentReader", lambda storage, schema, segment: segment)
    policy = merge_bounded(100_000)
    segments: list[_Segment] = []
    merged = 0
    for _ in range(commits):
        # As MpWriter._commit: the policy sees the segments of earlier commits; this
        # commit's sub-writer segments (and the merged one) are added after it.
        merger = _Merger()
        segments = policy(merger, segments)
        if merger.merged:
            merged += sum(s.docs for s in merger.merged)
            segments.append(_Segment(sum(s.docs for s in merger.merged)))
        segments += [_Segment(100_000 // procs) for _ in range(procs)]
    return len(segments), merged


def test_the_cap_keeps_commits_segments_out_of_the_merge_policy(monkeypatch):
    # Up to ten sub-writers, a commit's segments stay as written: one per sub-writer.
    assert _segments_after(MAX_AUTO_PROCS, 10, monkeypatch) == (10 * MAX_AUTO_PROCS, 0)
    # At sixteen, each is under a tenth of INDEX_SEGMENT_MAX_DOCS: every commit merges
    # the previous one's again, in the feeding process, while the sub-writers wait.
    assert _segments_after(16, 10, monkeypatch) == (9 + 16, 9 * 100_000)
