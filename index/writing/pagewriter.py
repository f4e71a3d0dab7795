"""Adds pages (a page document + its image documents) to the index, with batched
commits: by document count and by time. A crash loses at most the uncommitted batch,
never the index (Whoosh switches to a new table of contents only once a commit is
complete). :class:`index.writing.process.WriterProcess` runs this in a process of its own."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from whoosh import index as whoosh_index
from whoosh.index import LockError
from whoosh.writing import IndexWriter as WhooshWriter

from index._whoosh.mpwriter import SafeMpWriter
from index.errors import IndexLocked, WriterError
from index.model.schema import SCHEMA_VERSION, make_schema, schema_version
from index.options import DEFAULTS
from index.writing.lock import SessionLock
from index.writing.merging import merge_bounded

__all__ = ["MAX_AUTO_PROCS", "PageWriter", "auto_procs", "available_cpus", "open_or_create"]


# Sub-writers INDEX_WRITER_PROCS=0 starts at most (bench/scaling.py measures why).
MAX_AUTO_PROCS = 8


def available_cpus() -> int:
    """CPUs this process may run on (its affinity: a container's or taskset's limit), not
    the machine's count."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def auto_procs(procs: int, cpus: int | None = None) -> int:
    """``INDEX_WRITER_PROCS``: N > 0 is N; 0 is one sub-writer per CPU this process may
    use (one CPU: one plain writer), at most :data:`MAX_AUTO_PROCS`.

    Measured in CPU-seconds per document (bench/scaling.py): a sub-writer needs ~87% of a
    document's CPU, the crawl process ~11% and the process feeding the sub-writers ~2%,
    so no core is set aside for those two. The cap: one crawl process keeps about eight
    sub-writers busy, no more; beyond ten, each commit's segments (``INDEX_COMMIT_DOCS``
    / sub-writers) fall under the merge policy's small-segment size and are all merged
    again, serially in the feeding process (index.writing.merging); and every sub-writer is one
    more Python process's memory."""
    if procs > 0:
        return procs
    cpus = available_cpus() if cpus is None else max(1, cpus)
    return min(cpus, MAX_AUTO_PROCS)


def open_or_create(index_dir: str | os.PathLike[str]) -> whoosh_index.Index:
    path = Path(index_dir)
    path.mkdir(parents=True, exist_ok=True)
    if whoosh_index.exists_in(str(path)):
        ix = whoosh_index.open_dir(str(path))
        missing = set(make_schema().names()) - set(ix.schema.names())
        version = schema_version(ix.schema)
        if missing or version != SCHEMA_VERSION:
            # Documents of this version would not fit, or would be analysed another way
            # than the ones already there; half-updated indexes help no one.
            why = f"schema {version}, this one writes {SCHEMA_VERSION}"
            if missing:
                why = f"no field {', '.join(sorted(missing))}"
            age = "a newer" if version > SCHEMA_VERSION else "an older"
            raise WriterError(f"index at {path} was built by {age} version ({why}): move it away and crawl again")
        return ix
    return whoosh_index.create_in(str(path), make_schema())


def _remove_stale_temp(index_dir: Path, ix: whoosh_index.Index) -> None:
    """Whoosh writers sort postings in ``<name>.tmp`` folders inside the index (the main
    writer's is always ``MAIN.tmp``) and write a new segment's files before the commit
    names them; a run that failed (a full disk, a kill) leaves both behind, and the next
    run needed their space again on top (148 MB of sort runs kept a disk full). None of
    it is part of a commit. Called holding the session lock before our writer exists, so
    nothing there is in use; the segment files are those Whoosh itself removes after a
    commit (any not named by the latest table of contents)."""
    for folder in index_dir.glob("*.tmp"):
        if folder.is_dir():
            shutil.rmtree(folder, ignore_errors=True)
    toc = ix._read_toc()
    whoosh_index.clean_files(ix.storage, ix.indexname, toc.generation, toc.segments)


class PageWriter:
    """Adds pages (a page document + its image documents) with batched commits.

    The keyword arguments are :class:`index.options.WriterOptions`' (``page_writer()``)
    plus ``lock``: False when the caller holds the session lock itself."""

    def __init__(
        self,
        index_dir: str | os.PathLike[str],
        *,
        commit_docs: int = DEFAULTS.commit_docs,
        commit_seconds: float = DEFAULTS.commit_seconds,
        limitmb: int = DEFAULTS.limitmb,
        procs: int = DEFAULTS.procs,
        multisegment: bool = DEFAULTS.multisegment,
        lock_wait: bool = DEFAULTS.lock_wait,
        lock: bool = True,
        segment_max_docs: int = DEFAULTS.segment_max_docs,
    ) -> None:
        self.index_dir = str(index_dir)
        self.commit_docs = commit_docs
        self.commit_seconds = commit_seconds
        self.limitmb = limitmb
        self.procs = auto_procs(procs)
        self.multisegment = multisegment
        self.mergetype = merge_bounded(segment_max_docs)
        # The caller may hold the session lock itself (the crawl does, for its whole run).
        self.lock: SessionLock | None = SessionLock(index_dir, wait=lock_wait) if lock else None
        self.stats: dict[str, float] = {
            "pages": 0,
            "documents": 0,
            "commits": 0,
            "deleted_pages": 0,
            "deleted_documents": 0,
            # CPU-seconds of this process inside commits (with more than one sub-writer,
            # the merge of earlier segments and the table of contents; with one plain
            # writer, also sorting and writing the segment): the serial part of the
            # scaling model (bench/scaling.py).
            "commit_cpu_s": 0.0,
        }
        self._ix: whoosh_index.Index | None = None
        self._writer: WhooshWriter | None = None
        self._known: set[str] = set()
        self._seen: set[str] = set()
        self._pending = 0
        self._last_commit = time.monotonic()

    # -- lifecycle -------------------------------------------------------------------
    def open(self) -> None:
        if self.lock is not None:
            self.lock.acquire()
        try:
            self._ix = open_or_create(self.index_dir)
            _remove_stale_temp(Path(self.index_dir), self._ix)
            # Pages the index holds now: only they can have documents to replace. Every
            # other page skips the delete lookup, which opens a reader over every segment
            # (at 1M documents, most of the writer's time and memory went there).
            with self._ix.reader() as reader:
                if reader.doc_count_all():
                    self._known = {t.decode("utf-8") for t in reader.lexicon("page_url")}
            self._writer = self._new_writer()
        except BaseException:
            self._release()
            raise

    def _release(self) -> None:
        if self.lock is not None:
            self.lock.release()

    def _new_writer(self) -> WhooshWriter:
        assert self._ix is not None
        try:
            # A writer process of a crawl that was just killed may still be cancelling
            # (it notices its parent is gone within a second): wait briefly for its lock.
            if self.procs > 1:
                # The sub-writers share the memory budget; the parent's own pool only
                # ever holds the segments a commit merges.
                return SafeMpWriter(
                    self._ix,
                    procs=self.procs,
                    multisegment=self.multisegment,
                    subargs={"limitmb": max(32, self.limitmb // self.procs)},
                    limitmb=self.limitmb,
                    timeout=10.0,
                    delay=0.25,
                )
            return self._ix.writer(timeout=10.0, delay=0.25, limitmb=self.limitmb)
        except LockError:
            raise IndexLocked(f"index {self.index_dir} is locked by another writer") from None

    def commit(self, reopen: bool = True) -> None:
        assert self._writer is not None
        cpu = time.process_time()
        self._writer.commit(mergetype=self.mergetype)
        self.stats["commit_cpu_s"] += time.process_time() - cpu
        # Committed pages can be replaced from now on (a long-running indexer sees the
        # same page again on the next refresh).
        self._known |= self._seen
        self._seen.clear()
        self.stats["commits"] += 1
        self._pending = 0
        self._last_commit = time.monotonic()
        self._writer = self._new_writer() if reopen else None

    def close(self) -> dict[str, float]:
        """Commit what is pending and release the index."""
        try:
            if self._writer is not None:
                self.commit(reopen=False)
        finally:
            self._release()
        return dict(self.stats)

    def cancel(self) -> None:
        """Drop the uncommitted batch (the index keeps its last committed state)."""
        try:
            if self._writer is not None:
                self._writer.cancel()
                self._writer = None
        finally:
            self._release()

    # -- writing ---------------------------------------------------------------------
    def add_page(self, docs: list[dict[str, Any]]) -> int:
        """Replace a page's documents; ``docs[0]`` is the page document."""
        assert self._writer is not None
        url = docs[0]["page_url"]
        if url in self._seen:
            # Uncommitted documents cannot be deleted; a page reached twice in one
            # session (overlapping starts) is the same page: keep the first.
            return 0
        self._seen.add(url)
        if url in self._known:
            self._writer.delete_by_term("page_url", url)
        add = self._writer.add_document
        for doc in docs:
            add(**doc)
        self.stats["pages"] += 1
        self.stats["documents"] += len(docs) - 1
        self._pending += len(docs)
        self._maybe_commit()
        return len(docs) - 1

    def delete_pages(self, urls: Iterable[str]) -> int:
        assert self._writer is not None
        deleted = 0
        for url in urls:
            n = self._writer.delete_by_term("page_url", url)
            deleted += n
            self.stats["deleted_pages"] += 1
            self.stats["deleted_documents"] += max(n - 1, 0)
        self._pending += deleted
        return deleted

    def _maybe_commit(self) -> None:
        if self._pending >= self.commit_docs or (
            self._pending and time.monotonic() - self._last_commit >= self.commit_seconds
        ):
            self.commit()

    def tick(self) -> None:
        """Commit on time even when no page arrives (a slow HTTP crawl)."""
        if self._writer is not None:
            self._maybe_commit()
