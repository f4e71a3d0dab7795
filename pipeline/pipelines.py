"""Item pipelines: thin Scrapy classes over the pure functions in ``pipeline.steps`` and
``index``. Each one reads and writes the item through ItemAdapter."""

from __future__ import annotations

import logging
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Self

from itemadapter import ItemAdapter
from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.exceptions import CloseSpider, DropItem, NotConfigured
from scrapy.settings import BaseSettings
from scrapy.statscollectors import StatsCollector
from scrapy.utils.defer import deferred_from_coro

from index.admin import record_crawl
from index.deletion import canonical_start, collapsed
from index.errors import IndexLocked, WriterError
from index.model.contract import page_problem
from index.model.documents import page_documents
from index.model.state import load_page_states
from index.options import DeletionGuard, WriterOptions
from index.writing.lock import SessionLock
from index.writing.memory import peak_rss_kb
from index.writing.pagewriter import PageWriter
from index.writing.process import WriterProcess
from pipeline import settings as defaults
from pipeline.refresh import RefreshState
from pipeline.steps import mark_duplicates, normalize_captions, normalize_domains, now, stamped_page

__all__ = [
    "DeduplicateImages",
    "IndexWriter",
    "NormalizeCaptions",
    "NormalizeDomains",
    "ValidatePage",
    "deletion_guard",
    "stamped_page",
    "writer_options",
]

logger = logging.getLogger(__name__)

# CPU-seconds of the writer side, as the writer reports them, and the crawl's stat for
# each (the scaling model's inputs, bench/scaling.py).
_WRITER_CPU_STATS = {
    "cpu_s": "index/writer_cpu_s",
    "subwriter_cpu_s": "index/subwriter_cpu_s",
    "commit_cpu_s": "index/commit_cpu_s",
}


def writer_options(settings: BaseSettings) -> WriterOptions:
    """The ``INDEX_*`` settings of a crawl as writer options (defaults: WriterOptions')."""
    return WriterOptions.from_settings({name: settings.get(name) for name in WriterOptions.settings()})


def deletion_guard(settings: BaseSettings) -> DeletionGuard:
    """The ``REFRESH_*`` settings of a crawl as the mass-deletion guard (defaults: DeletionGuard's)."""
    return DeletionGuard.from_settings({name: settings.get(name) for name in DeletionGuard.settings()})


class _StatsPipeline:
    def __init__(self, stats: StatsCollector | None = None) -> None:
        self.stats = stats

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        return cls(stats=crawler.stats)

    def inc(self, key: str, count: int = 1) -> None:
        if self.stats is not None and count:
            self.stats.inc_value(key, count)


class ValidatePage(_StatsPipeline):
    """Drops items that break the contract (logged with URL and reason, counted)."""

    def process_item(self, item: Any) -> Any:
        adapter = ItemAdapter(item)
        problem = page_problem(adapter)
        if problem:
            self.inc(f"pages/invalid/{problem}")
            self.inc("pages/invalid")
            raise DropItem(f"invalid page {adapter.get('url')!r}: {problem}")
        return item


class NormalizeDomains(_StatsPipeline):
    """Cleans image URLs and fills image_host, domain and site (the platform, if any):
    :func:`pipeline.steps.normalize_domains`."""

    def process_item(self, item: Any) -> Any:
        adapter = ItemAdapter(item)
        self.inc("images/bad_url", normalize_domains(adapter["url"], adapter["images"]))
        return item


class NormalizeCaptions(_StatsPipeline):
    """Fills caption, headline, site, board and tags from caption_raw:
    :func:`pipeline.steps.normalize_captions`."""

    def process_item(self, item: Any) -> Any:
        adapter = ItemAdapter(item)
        normalize_captions(adapter["url"], adapter["images"])
        return item


class DeduplicateImages(_StatsPipeline):
    """Marks repeats of one image URL inside a page with the first one's position:
    :func:`pipeline.steps.mark_duplicates`."""

    def process_item(self, item: Any) -> Any:
        self.inc("images/duplicates", mark_duplicates(ItemAdapter(item)["images"]))
        return item


class IndexWriter(_StatsPipeline):
    """Hands each page's documents to the index writer (batched, off the hot path) and
    runs the refresh rules.

    Opening the spider takes the index's session lock (failing fast when another crawl
    holds it) and reads the page states a refresh needs. The writer process starts at the
    first write, so a refresh that finds nothing changed writes nothing. When the spider
    closes, a crawl that *finished* deletes the pages its completed starts no longer
    reach; any other ending deletes nothing."""

    def __init__(
        self,
        index_dir: str,
        *,
        stats: StatsCollector | None = None,
        in_process: bool = False,
        queue_pages: int = 64,
        lock_wait: bool = False,
        guard: DeletionGuard | None = None,
        **writer_options: Any,
    ) -> None:
        super().__init__(stats)
        self.index_dir = index_dir
        self.in_process = in_process
        self.queue_pages = queue_pages
        self.writer_options = writer_options
        self.lock = SessionLock(index_dir, wait=lock_wait)
        self.locked = False
        self.writer: PageWriter | WriterProcess | None = None
        # The spider's record of what it listed and saw (its own when it has one).
        self.refresh = RefreshState()
        self.guard = guard or DeletionGuard()
        self.crawler: Crawler | None = None
        self.counts = {"new": 0, "changed": 0, "images": 0, "images_replaced": 0}
        # Collapsed pages (index.deletion.collapsed) wait here for the guard's word: url → documents.
        self.held: dict[str, list[dict[str, Any]]] = {}

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        s = crawler.settings
        if not s.getbool("INDEX_ENABLED", defaults.INDEX_ENABLED):
            raise NotConfigured("INDEX_ENABLED is False")
        if s.get("REDIS_URL"):
            raise NotConfigured("REDIS_URL is set: pages go to Redis, `python -m index ingest` writes the index")
        if not s.get("INDEX_DIR"):
            raise NotConfigured("INDEX_DIR is not set")
        options = writer_options(s)
        pipeline = cls(
            s.get("INDEX_DIR"),
            stats=crawler.stats,
            in_process=not options.writer_process,
            queue_pages=options.queue_pages,
            guard=deletion_guard(s),
            **options.page_writer(),
        )
        pipeline.crawler = crawler
        crawler.signals.connect(pipeline.spider_closed, signal=signals.spider_closed)
        return pipeline

    def open_spider(self) -> None:
        spider = self.crawler.spider if self.crawler is not None else None
        if isinstance(getattr(spider, "refresh", None), RefreshState):
            self.refresh = spider.refresh
        try:
            self.lock.acquire()
            self.locked = True
            self.refresh.states = load_page_states(self.index_dir)
        except (IndexLocked, OSError) as exc:
            logger.error("cannot write the index: %s", exc)
            self.inc("index/errors")
            # Scrapy closes the spider once it is open (closing it from here, before the
            # spider_opened signal, broke CoreStats: an AssertionError and exit 1, not 75).
            raise CloseSpider("index_locked" if isinstance(exc, IndexLocked) else "index_error") from None
        jobdir = self.crawler.settings.get("JOBDIR") if self.crawler is not None else None
        if jobdir:
            self.refresh.resume(Path(jobdir) / "pages-seen.txt")
        logger.info("index %s: %d pages known", self.index_dir, len(self.refresh.states))

    def _writer(self) -> PageWriter | WriterProcess:
        if self.writer is None:
            options = dict(self.writer_options, lock=False)  # we hold the session lock
            if self.in_process:
                writer: PageWriter | WriterProcess = PageWriter(self.index_dir, **options)
                writer.open()
            else:
                writer = WriterProcess(self.index_dir, queue_pages=self.queue_pages, **options)
                writer.start()
            self.writer = writer
        return self.writer

    def _close_crawl(self, reason: str) -> None:
        # Nothing this crawl finds could be stored: stop it rather than parse in vain.
        engine = self.crawler.engine if self.crawler is not None else None
        if engine is None:
            return
        # Imported here: importing the reactor at module level would install Twisted's
        # default reactor before Scrapy installs the one its settings name.
        from twisted.internet import reactor

        reactor.callLater(0, lambda: deferred_from_coro(engine.close_spider_async(reason=reason)))

    def process_item(self, item: Any) -> Any:
        if not self.locked:
            raise DropItem("the index is not open for writing")
        page = stamped_page(item)
        docs = page_documents(page)
        old = self.refresh.states.get(page["url"])
        start = (page.get("fetch") or {}).get("start") or (old or {}).get("start")
        if old is not None and start and collapsed(old, page):
            # A maintenance page or a login wall answered 200, or the file was truncated:
            # written at the end, if the guard lets its start lose that many pages.
            self.held[page["url"]] = docs
            self.refresh.collapsed[page["url"]] = start
            return item
        if not self._write(docs):
            raise DropItem("not indexed: the index writer failed")
        return item

    def _write(self, docs: list[dict[str, Any]], closing: bool = False) -> bool:
        url = docs[0]["id"]
        try:
            self._writer().add_page(docs)
        except Exception as exc:  # noqa: BLE001 - any writer failure ends the crawl, never a page's error
            exc = _writer_error(exc)
            logger.error("cannot write the index: %s", exc)
            self.inc("index/errors")
            if not closing:
                self.locked = False
                self._close_crawl("index_error")
            return False
        old = self.refresh.states.get(url)
        kind = "changed" if old is not None else "new"
        images = len(docs) - 1
        self.counts[kind] += 1
        self.counts["images"] += images
        self.inc(f"pages/{kind}")
        self.inc("images/indexed", images)
        if old is not None:
            # Replacing a page removes its old images: those it no longer has are gone.
            self.counts["images_replaced"] += max(0, int(old.get("image_count") or 0) - images)
        return True

    def spider_closed(self, reason: str) -> None:
        if not self.locked:
            return
        try:
            self._finish(reason)
        finally:
            self.refresh.close()
            self.lock.release()
            self.locked = False

    def _finish(self, reason: str) -> None:
        finished = reason == "finished"
        plan = self.refresh.deletions(finished, self.guard)
        vanished = plan.delete
        images_deleted = sum(int(self.refresh.states[url].get("image_count") or 0) for url in vanished)
        held_by = Counter(canonical_start(self.refresh.collapsed[url]) for url in plan.hold)
        for start, (would, known) in plan.refused.items():
            emptied = held_by[start]
            logger.warning(
                "refused to delete or replace %d of the %d pages of %s (%d vanished, %d came back without their "
                "images or front matter: a maintenance page, a login wall, truncated files?): more than "
                "REFRESH_MAX_DELETE_SHARE=%s, or its listing came back empty; nothing of it deleted or emptied. "
                "If this is real, crawl once more with -s REFRESH_ACCEPT_MASS_DELETE=True",
                would,
                known,
                start,
                would - emptied,
                emptied,
                self.guard.max_share,
            )
        self.inc("pages/delete_refused", plan.refused_pages)
        self.inc("pages/kept/collapsed", len(plan.hold))
        hold = set(plan.hold)
        for url, docs in self.held.items():
            if url not in hold and not self._write(docs, closing=True):
                break
        self.held.clear()
        images_deleted += self.counts["images_replaced"]
        if vanished:
            try:
                self._writer().delete_pages(vanished)
            except Exception as exc:  # noqa: BLE001 - keep the pages: a failed deletion deletes nothing
                logger.error("cannot delete vanished pages; they stay in the index: %s", _writer_error(exc))
                self.inc("index/errors")
                vanished, images_deleted = [], 0
            for url in vanished:
                logger.info("vanished, deleted from the index: %s", url)
        result: dict[str, int] = {}
        if self.writer is not None:
            writer, self.writer = self.writer, None
            try:
                result = writer.close()
            except Exception as exc:  # noqa: BLE001 - with the writer in this process, Whoosh's own errors
                logger.error("index writer failed; the index keeps its last commit: %s", _writer_error(exc))
                self.inc("index/errors")
                return
        self.inc("pages/deleted", len(vanished))
        self.inc("images/deleted", images_deleted)
        self.inc("index/commits", result.get("commits", 0))
        if self.stats is not None:
            if "max_rss_kb" in result:
                self.stats.set_value("index/writer_max_rss", result["max_rss_kb"] * 1024)
            if result.get("procs", 1) > 1:
                # Each Whoosh sub-writer is a process of its own: the writer's memory is
                # at most its own peak plus procs times the largest sub-writer's.
                self.stats.set_value("index/writer_procs", result["procs"])
                self.stats.set_value("index/subwriter_max_rss", result.get("subwriter_max_rss_kb", 0) * 1024)
            for key, stat in _WRITER_CPU_STATS.items():
                if key in result:
                    self.stats.set_value(stat, round(result[key], 3))
            self.stats.set_value("crawl/max_rss", peak_rss_kb() * 1024)
        if finished and self.refresh.seen_log is not None:
            self.refresh.seen_log.unlink(missing_ok=True)  # the job is complete
        get = self.stats.get_value if self.stats is not None else (lambda key, default=0: default)
        incomplete = len(self.refresh.unfinished_starts())
        counts = {
            "seen": get("pages/seen", 0),
            "new": self.counts["new"],
            "changed": self.counts["changed"],
            "unchanged": get("pages/unchanged", 0),
            "deleted": len(vanished),
            "invalid": get("pages/invalid", 0),
            "images_indexed": self.counts["images"],
            "images_deleted": images_deleted,
            "delete_refused": plan.refused_pages,
            "starts_incomplete": incomplete,
        }
        record_crawl(
            self.index_dir, {"finished_at": now(), "reason": reason, "starts": self.refresh.starts, "counts": counts}
        )
        summary = (
            f"crawl {reason}: pages seen {get('pages/seen', 0)}, new {self.counts['new']}, "
            f"changed {self.counts['changed']}, unchanged {get('pages/unchanged', 0)}, deleted {len(vanished)}, "
            f"invalid {get('pages/invalid', 0)}; images indexed {self.counts['images']}, deleted {images_deleted}; "
            f"index {self.index_dir} ({result.get('commits', 0)} commits)"
            + _deletion_note(finished, plan.refused_pages, incomplete)
        )
        logger.info("%s", summary)
        if self.crawler is not None and _level(self.crawler.settings.get("LOG_LEVEL")) > logging.INFO:
            # `-L WARNING` keeps a cron job's mail short, but the one line that says how the
            # crawl went must still be there (without making it a warning in every run).
            sys.stderr.write(summary + "\n")


def _level(name: Any) -> int:
    value = logging.getLevelName(str(name).upper()) if not isinstance(name, int) else name
    return value if isinstance(value, int) else logging.INFO


def _deletion_note(finished: bool, refused: int, incomplete: int) -> str:
    if not finished:
        return "; nothing deleted: the crawl did not finish"
    notes = []
    if incomplete:
        notes.append(f"{incomplete} starts incomplete, none of their pages deleted")
    if refused:
        notes.append(f"{refused} deletions refused (REFRESH_MAX_DELETE_SHARE)")
    return "".join(f"; {n}" for n in notes)


def _writer_error(exc: Exception) -> Exception:
    """A writer failure as the writer process reports it (``OSError: [Errno 28] ...``),
    whether the writer runs in a process of its own or, with INDEX_WRITER_PROCESS=False,
    in this one (where Whoosh's own exceptions arrive unwrapped: a full disk went by as
    an item error per page, and the crawl ended "finished", exit 0, with nothing committed)."""
    if isinstance(exc, (IndexLocked, WriterError)):
        return exc
    return WriterError(f"{type(exc).__name__}: {exc}")
