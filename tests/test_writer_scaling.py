"""INDEX_WRITER_PROCS=0 follows the CPUs this process may use, and a writer with more
sub-writers than the two measured before writes the same index as one plain writer."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from whoosh import index as whoosh_index

from index import pagewriter
from index.admin import check
from index.documents import page_documents
from index.pagewriter import MAX_AUTO_PROCS, PageWriter, auto_procs
from pipeline import steps
from pipeline.items import PageItem
from pipeline.parsing import parse_page

SEED = Path(__file__).resolve().parent.parent / "examples" / "pages" / "chair-exercises-upper-back.md"


@pytest.mark.parametrize(("cpus", "procs"), [(1, 1), (2, 2), (4, 3), (16, MAX_AUTO_PROCS), (64, MAX_AUTO_PROCS)])
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
    assert auto_procs(0) == 3


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
    write(one, 1)
    assert write(three, 3).stats["documents"] == images == 4 * 88
    assert len(whoosh_index.open_dir(str(three))._segments()) == 3  # one per sub-writer
    assert _stored(three) == _stored(one)
    for field in ("caption", "text", "domain"):
        assert _postings(three, field) == _postings(one, field), field
    assert check(three) == []
