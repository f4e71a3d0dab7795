""":class:`~index.writing.pagewriter.PageWriter` in a process of its own.

Whoosh is pure Python and the slowest stage of a crawl, so the crawl hands finished
documents to :class:`WriterProcess` through a bounded queue: parsing/normalizing in the
crawl process overlaps indexing in the writer process, and the queue bound keeps memory
flat when the writer falls behind.

Messages are tuples whose first element is a kind (:class:`Ask` parent → writer,
:class:`Reply` writer → parent); the parent acts on the kind, never on message text.
"""

from __future__ import annotations

import enum
import logging
import multiprocessing as mp
import os
import queue
import resource
import signal
import time
from typing import Any

from index.errors import IndexLocked, WriterError
from index.writing.memory import children_peak_rss_kb, peak_rss_kb
from index.writing.pagewriter import PageWriter
from index.writing.parentwatch import die_with_parent

__all__ = ["Ask", "Reply", "WriterProcess"]

logger = logging.getLogger(__name__)


class Ask(enum.Enum):
    """What the parent sends: ``(PAGE, docs)``, ``(DELETE, urls)``, ``(CLOSE,)``."""

    PAGE = "page"
    DELETE = "delete"
    CLOSE = "close"  # commit what is pending, answer DONE with the stats, exit


class Reply(enum.Enum):
    """What the writer answers: ``(READY, pid)`` once the index is open, then one of
    ``(DONE, stats)``, ``(LOCKED, message)`` or ``(FAILED, message)``."""

    READY = "ready"
    DONE = "done"
    LOCKED = "locked"  # another process writes the index (raised as IndexLocked)
    FAILED = "failed"  # anything else (raised as WriterError)


def _cpu_s(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def _serve(index_dir: str, options: dict[str, Any], inbox: Any, outbox: Any, parent: int) -> None:
    """Child process main loop: messages in, one final message out."""
    # Ctrl-C reaches the whole process group; the crawl decides how to stop, not us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent(parent)
    writer = PageWriter(index_dir, **options)
    try:
        writer.open()
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which decides
        outbox.put((Reply.LOCKED if isinstance(exc, IndexLocked) else Reply.FAILED, f"{exc}"))
        return
    outbox.put((Reply.READY, os.getpid()))
    try:
        while True:
            try:
                msg = inbox.get(timeout=1.0)
            except queue.Empty:
                writer.tick()
                continue
            kind = msg[0]
            if kind is Ask.PAGE:
                writer.add_page(msg[1])
            elif kind is Ask.DELETE:
                writer.delete_pages(msg[1])
            elif kind is Ask.CLOSE:
                stats = writer.close()
                stats["max_rss_kb"] = peak_rss_kb()
                stats["subwriter_max_rss_kb"] = children_peak_rss_kb()
                stats["procs"] = writer.procs
                # CPU-seconds (user + system) of this process, and of its sub-writers
                # (ended and joined at each commit, so all of them are counted).
                stats["cpu_s"] = _cpu_s(resource.RUSAGE_SELF)
                stats["subwriter_cpu_s"] = _cpu_s(resource.RUSAGE_CHILDREN)
                outbox.put((Reply.DONE, stats))
                return
    except Exception as exc:
        if isinstance(exc, OSError):
            # Disk full, permissions: the message says it all; a traceback would only
            # bury it. Anything else is a bug and keeps its traceback.
            logger.error("index writer failed: %s", exc)
        else:
            logger.exception("index writer failed")
        writer.cancel()
        outbox.put((Reply.FAILED, f"{type(exc).__name__}: {exc}"))


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
        if kind is not Reply.READY:
            self._proc.join(5)
            raise (IndexLocked if kind is Reply.LOCKED else WriterError)(value)

    def _receive(self, timeout: float) -> tuple[Reply, Any]:
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
        self._send((Ask.PAGE, docs))

    def delete_pages(self, urls: list[str]) -> None:
        self._send((Ask.DELETE, urls))

    def close(self) -> dict[str, float]:
        """Commit what is pending, stop the process and return its stats."""
        self._send((Ask.CLOSE,))
        kind, value = self._receive(timeout=24 * 3600)
        self._proc.join(30)
        if kind is not Reply.DONE:
            raise WriterError(value)
        return value
