"""Batched index writing, optionally in a process of its own.

Whoosh is pure Python and the slowest stage of a crawl, so the crawl hands finished
documents to :class:`WriterProcess` through a bounded queue: parsing/normalizing in the
crawl process overlaps indexing in the writer process, and the queue bound keeps memory
flat when the writer falls behind. :class:`PageWriter` is the same logic in-process.

One writer per index at a time: a session lock (``.writer.lock``, an ``flock`` held for
the whole session, released by the kernel when the process dies, so a killed crawl never
leaves a stale lock) plus Whoosh's own lock around each writer. Commits are batched by
document count and by time; a crash loses at most the uncommitted batch, never the
index (Whoosh switches to a new table of contents only once a commit is complete).
"""

from __future__ import annotations

import fcntl
import logging
import multiprocessing as mp
import os
import queue
import resource
import shutil
import signal
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from whoosh import index as whoosh_index
from whoosh.index import LockError
from whoosh.multiproc import MpWriter, SubWriterTask
from whoosh.writing import IndexWriter as WhooshWriter

from index import _whoosh_fixes  # noqa: F401 - applies a Whoosh fix on import
from index.schema import make_schema

__all__ = [
    "IndexLocked",
    "PageWriter",
    "WriterError",
    "WriterProcess",
    "auto_procs",
    "children_peak_rss_kb",
    "open_or_create",
    "peak_rss_kb",
]

logger = logging.getLogger(__name__)

LOCK_NAME = ".writer.lock"


def peak_rss_kb() -> int:
    """Peak resident memory of this process in KiB. VmHWM, not ru_maxrss: Linux carries
    ru_maxrss over fork+exec, so a child of a big process would report the parent's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def children_peak_rss_kb() -> int:
    """Peak resident memory of the largest child process that has ended (the Whoosh
    sub-writers of the multiprocess writer), in KiB. Counted high: Linux carries the
    starting process's ru_maxrss over fork+exec, and this process is small when it
    starts them (~30 MB against their ~200 MB)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss


def auto_procs(procs: int) -> int:
    """``INDEX_WRITER_PROCS``: 0 means one sub-writer per CPU, at most two. Two wrote 1M
    documents 1.5x faster than one plain writer on a 2-core machine (bench/RESULTS.md);
    more than two was not measured, and every sub-writer adds a segment per commit."""
    if procs > 0:
        return procs
    return max(1, min(2, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


class IndexLocked(RuntimeError):
    """Another process is writing this index."""


class WriterError(RuntimeError):
    """The writer process failed; the message says why."""


def open_or_create(index_dir: str | os.PathLike[str]) -> whoosh_index.Index:
    path = Path(index_dir)
    path.mkdir(parents=True, exist_ok=True)
    if whoosh_index.exists_in(str(path)):
        ix = whoosh_index.open_dir(str(path))
        missing = set(make_schema().names()) - set(ix.schema.names())
        if missing:
            # Documents of this version would not fit; half-updated indexes help no one.
            raise WriterError(
                f"index at {path} was built by an older version (no field {', '.join(sorted(missing))}): "
                f"move it away and crawl again"
            )
        return ix
    return whoosh_index.create_in(str(path), make_schema())


def merge_bounded(max_docs: int) -> Any:
    """A Whoosh merge policy for an index that is refreshed often: a commit merges the
    *small* segments (under a tenth of ``max_docs``) together once there are a few, and
    rewrites a big segment only when a third of it is deleted documents; it never builds
    a segment bigger than ``max_docs``.

    Whoosh's MERGE_SMALL keeps merging into ever larger segments, and an earlier version
    of this policy merged every segment that fit under ``max_docs``: either way a refresh
    that changed 1% of the pages rewrote most of the index (44 s of a 67 s crawl at 100k
    documents). Now such a commit writes its own small segment and marks deletions in the
    big ones. `python -m index optimize` merges everything."""
    from whoosh.reading import SegmentReader

    small = max(1, max_docs // 10)

    def policy(writer: Any, segments: list[Any]) -> list[Any]:
        candidates = [s for s in segments if s.doc_count_all() < small]
        candidates += [s for s in segments if s.doc_count_all() >= small and s.deleted_count() * 3 > s.doc_count_all()]
        reclaim = any(s.doc_count_all() >= small for s in candidates)
        if len(candidates) < 4 and not reclaim:
            return segments
        merge, total = [], 0
        for seg in sorted(candidates, key=lambda s: s.doc_count()):
            if total + seg.doc_count() <= max_docs:
                merge.append(seg)
                total += seg.doc_count()
        if len(merge) < 2 and not any(seg.has_deletions() for seg in merge):
            return segments
        for seg in merge:
            reader = SegmentReader(writer.storage, writer.schema, seg)
            writer.add_reader(reader)
            reader.close()
        merged = {id(seg) for seg in merge}
        return [seg for seg in segments if id(seg) not in merged]

    return policy


def _remove_stale_temp(index_dir: Path, keep: Path) -> None:
    """Whoosh writers sort postings in ``<random>.tmp`` folders inside the index and
    remove them when they finish; a killed writer leaves its folder behind. Called while
    holding Whoosh's write lock, so every such folder but our own is stale."""
    for folder in index_dir.glob("*.tmp"):
        if folder.is_dir() and folder != keep:
            shutil.rmtree(folder, ignore_errors=True)


class SessionLock:
    """An exclusive flock on ``<index>/.writer.lock`` holding the owner's pid."""

    def __init__(self, index_dir: str | os.PathLike[str], wait: bool = False) -> None:
        self.path = Path(index_dir) / LOCK_NAME
        self.wait = wait
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if self.wait else fcntl.LOCK_NB))
        except BlockingIOError:
            owner = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise IndexLocked(
                f"index {self.path.parent} is being written by another process (pid {owner}); "
                "wait for it to finish or set INDEX_LOCK_WAIT=True"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


class _SubWriter(SubWriterTask):
    """A Whoosh sub-writer that dies with the writer process that started it (an orphan
    would go on waiting for work forever after a kill -9)."""

    def __init__(self, *args: Any, siblings: list[Any]) -> None:
        super().__init__(*args)
        self.parent = os.getpid()
        self.siblings = siblings

    # Spawned, never forked: the writer may run inside the crawl process (Twisted's
    # threads, which a fork would copy mid-flight), and a fork would hand the sub-writer
    # copies of the lock file descriptors.
    _Popen = staticmethod(mp.get_context("spawn").Process._Popen)

    def __getstate__(self) -> dict[str, Any]:
        # Spawning pickles this object; the siblings (started processes) stay here.
        return {k: v for k, v in self.__dict__.items() if k != "siblings"}

    def run(self) -> None:
        _die_with_parent(self.parent)
        super().run()

    def join(self, timeout: float | None = None) -> None:
        """``MpWriter._commit`` joins each sub-writer without a timeout. A sub-writer
        killed while it held the job queue's lock leaves the others waiting for that
        lock forever, so once a sibling has died, stop waiting and stop this one too:
        the commit then fails for want of their results (see :class:`_Guarded`)."""
        if timeout is not None:
            return super().join(timeout)
        while self.exitcode is None:
            super().join(0.5)
            if self.exitcode is None and any(t.exitcode not in (None, 0) for t in self.siblings):
                self.kill()
                super().join()
        return None


class _Guarded:
    """A queue between ``MpWriter`` and its sub-writers, as the parent uses it, that
    notices dead sub-writers. Whoosh commits without the documents of a sub-writer that
    sent no result (it died: out of memory, disk full), and waits forever to hand a job
    to sub-writers that are all dead. Both raise here instead, before the new table of
    contents is written, so the index keeps its last commit."""

    def __init__(self, real: Any, tasks: list[Any]) -> None:
        self.real = real
        self.tasks = tasks

    def _died(self) -> WriterError:
        codes = ", ".join(str(t.exitcode) for t in self.tasks)
        return WriterError(f"a Whoosh sub-writer died (exit codes {codes}); nothing of this batch was committed")

    def get(self, timeout: float) -> Any:
        try:
            return self.real.get(timeout=timeout)
        except queue.Empty:
            raise self._died() from None

    def put(self, job: Any) -> None:
        while True:
            try:
                return self.real.put(job, timeout=1.0)
            except queue.Full:
                if not any(t.is_alive() for t in self.tasks):
                    raise self._died() from None


class SafeMpWriter(MpWriter):
    """Whoosh's multiprocess writer (``procs`` sub-writer processes, one segment each per
    commit) made safe to fail: sub-writers are spawned and die with their parent
    (:class:`_SubWriter`); a sub-writer that dies fails the writer instead of losing its
    documents silently, and does not leave the commit waiting on a stuck sibling
    (:class:`_Guarded`, ``_SubWriter.join``); and ``cancel`` stops the sub-writers
    (Whoosh's only sets a flag on its own copy of them, so they wait forever and the
    writer process hangs on exit)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The sub-writers get the real queues (of the spawn context, like the processes);
        # this process uses them through the guard.
        spawn = mp.get_context("spawn")
        self.jobs, self.results = spawn.Queue(self.procs * 4), spawn.Queue()
        self.jobqueue, self.resultqueue = _Guarded(self.jobs, self.tasks), _Guarded(self.results, self.tasks)

    def _new_task(self) -> Any:
        args = (self.storage, self.indexname, self.jobs, self.results, self.subargs, self.multisegment)
        task = _SubWriter(*args, siblings=self.tasks)
        task.start()
        self.tasks.append(task)
        return task

    def _commit(self, mergetype: Any, optimize: Any, merge: Any) -> None:
        try:
            super()._commit(mergetype, optimize, merge)
        except BaseException:
            self.cancel()
            raise

    def cancel(self) -> None:
        for task in self.tasks:
            if task.is_alive():
                task.kill()  # its work is being thrown away
        for task in self.tasks:
            task.join(10)
        self.tasks.clear()
        if not self.is_closed:
            super(MpWriter, self).cancel()


class PageWriter:
    """Adds pages (a page document + its image documents) with batched commits."""

    def __init__(
        self,
        index_dir: str | os.PathLike[str],
        *,
        commit_docs: int = 100_000,
        commit_seconds: float = 60.0,
        limitmb: int = 256,
        procs: int = 0,
        multisegment: bool = True,
        lock_wait: bool = False,
        lock: bool = True,
        segment_max_docs: int = 100_000,
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
        self.stats = {"pages": 0, "documents": 0, "commits": 0, "deleted_pages": 0, "deleted_documents": 0}
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
            # Pages the index holds now: only they can have documents to replace. Every
            # other page skips the delete lookup, which opens a reader over every segment
            # (at 1M documents, most of the writer's time and memory went there).
            with self._ix.reader() as reader:
                if reader.doc_count_all():
                    self._known = {t.decode("utf-8") for t in reader.lexicon("page_url")}
            self._writer = self._new_writer()
            _remove_stale_temp(Path(self.index_dir), keep=Path(self._writer.temp_storage().folder))
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
        self._writer.commit(mergetype=self.mergetype)
        # Committed pages can be replaced from now on (a long-running indexer sees the
        # same page again on the next refresh).
        self._known |= self._seen
        self._seen.clear()
        self.stats["commits"] += 1
        self._pending = 0
        self._last_commit = time.monotonic()
        self._writer = self._new_writer() if reopen else None

    def close(self) -> dict[str, int]:
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


# -- the writer process ----------------------------------------------------------------

_STOP = "close"


def _die_with_parent(parent: int) -> None:
    """Exit at once when the crawl process dies (kill -9): no orphan keeps the index
    locked. Exiting mid-batch is safe: it is what a kill of the writer itself does, and
    the index keeps its last commit. (Cancelling politely is not possible: a parent
    killed mid-message leaves this process blocked reading the rest of it.)"""
    try:  # Linux: the kernel does it.
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass

    def watch() -> None:  # elsewhere, and as a backstop: poll.
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(3)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
    if os.getppid() != parent:  # died before we got here
        os._exit(3)


def _serve(index_dir: str, options: dict[str, Any], inbox: Any, outbox: Any, parent: int) -> None:
    """Child process main loop: messages in, one final stats message out."""
    # Ctrl-C reaches the whole process group; the crawl decides how to stop, not us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent(parent)
    writer = PageWriter(index_dir, **options)
    try:
        writer.open()
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which decides
        outbox.put(("error", f"{exc}"))
        return
    outbox.put(("ready", os.getpid()))
    try:
        while True:
            try:
                msg = inbox.get(timeout=1.0)
            except queue.Empty:
                writer.tick()
                continue
            kind = msg[0]
            if kind == "page":
                writer.add_page(msg[1])
            elif kind == "delete":
                writer.delete_pages(msg[1])
            elif kind == "commit":
                writer.commit()
            elif kind == "abort":
                writer.cancel()
                outbox.put(("done", writer.stats))
                return
            elif kind == _STOP:
                stats = writer.close()
                stats["max_rss_kb"] = peak_rss_kb()
                stats["subwriter_max_rss_kb"] = children_peak_rss_kb()
                stats["procs"] = writer.procs
                outbox.put(("done", stats))
                return
    except Exception as exc:
        if isinstance(exc, OSError):
            # Disk full, permissions: the message says it all; a traceback would only
            # bury it. Anything else is a bug and keeps its traceback.
            logger.error("index writer failed: %s", exc)
        else:
            logger.exception("index writer failed")
        writer.cancel()
        outbox.put(("error", f"{type(exc).__name__}: {exc}"))


class WriterProcess:
    """:class:`PageWriter` in a child process, fed through a bounded queue."""

    def __init__(self, index_dir: str | os.PathLike[str], *, queue_pages: int = 64, **options: Any) -> None:
        self.index_dir = str(index_dir)
        self.options = options
        self.queue_pages = queue_pages
        # spawn, not fork: the crawl process runs threads (Twisted's pool) that a fork
        # would copy mid-flight.
        self._ctx = mp.get_context("spawn")
        self._proc: Any = None
        self._inbox: Any = None
        self._outbox: Any = None

    def start(self, timeout: float = 120.0) -> None:
        self._inbox = self._ctx.Queue(maxsize=self.queue_pages)
        self._outbox = self._ctx.Queue()
        self._proc = self._ctx.Process(
            target=_serve,
            args=(self.index_dir, self.options, self._inbox, self._outbox, os.getpid()),
            name="index-writer",
        )
        self._proc.start()
        kind, value = self._receive(timeout)
        if kind == "error":
            self._proc.join(5)
            if "another process" in value or "locked" in value:
                raise IndexLocked(value)
            raise WriterError(value)

    def _receive(self, timeout: float) -> tuple[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self._outbox.get(timeout=0.5)
            except queue.Empty:
                if not self._proc.is_alive():
                    # It may have put its last words just before exiting.
                    try:
                        return self._outbox.get(timeout=0.5)
                    except queue.Empty:
                        raise self._died() from None
                if time.monotonic() > deadline:
                    raise WriterError("index writer did not answer") from None

    def _send(self, msg: tuple[Any, ...]) -> None:
        while True:
            try:
                self._inbox.put(msg, timeout=1.0)
                return
            except queue.Full:
                if not self._proc.is_alive():
                    raise self._died() from None

    def _died(self) -> WriterError:
        # What we queued will never be read: without this, exiting would wait forever
        # for the queue's feeder thread, blocked on a full pipe (seen in a kill test).
        self._inbox.cancel_join_thread()
        return WriterError(f"index writer exited with code {self._proc.exitcode}")

    def add_page(self, docs: list[dict[str, Any]]) -> None:
        self._send(("page", docs))

    def delete_pages(self, urls: list[str]) -> None:
        self._send(("delete", urls))

    def commit(self) -> None:
        self._send(("commit",))

    def _finish(self, msg: str) -> dict[str, int]:
        self._send((msg,))
        kind, value = self._receive(timeout=24 * 3600)
        self._proc.join(30)
        if kind == "error":
            raise WriterError(value)
        return value

    def close(self) -> dict[str, int]:
        return self._finish(_STOP)

    def cancel(self) -> dict[str, int]:
        return self._finish("abort")
