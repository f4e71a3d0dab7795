"""Item pipelines: thin Scrapy classes over the pure functions in ``pipeline.normalize``
and ``index``. Each one reads and writes the item through ItemAdapter."""

from __future__ import annotations

import datetime as dt
import logging
import sys
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
from index.contract import page_problem
from index.documents import page_documents
from index.options import WriterOptions
from index.state import load_page_states
from index.writer import IndexLocked, PageWriter, SessionLock, WriterError, WriterProcess, peak_rss_kb
from pipeline.normalize.captions import normalize_caption
from pipeline.normalize.domains import host_of, normalize_image_url, registrable_domain
from pipeline.refresh import RefreshState

logger = logging.getLogger(__name__)


def writer_options(settings: BaseSettings) -> WriterOptions:
    """The ``INDEX_*`` settings of a crawl as writer options (defaults: WriterOptions')."""
    return WriterOptions.from_settings({name: settings.get(name) for name in WriterOptions.settings()})


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
    """Cleans image URLs and fills image_host, domain and site_hint."""

    def process_item(self, item: Any) -> Any:
        adapter = ItemAdapter(item)
        base = adapter["url"]
        bad = 0
        for image in adapter["images"]:
            info = normalize_image_url(image["image_url"], base)
            image["image_url"] = info.image_url
            image["image_host"] = info.image_host
            image["domain"] = info.domain
            image["site_hint"] = info.site_hint
            bad += info.bad_url
        self.inc("images/bad_url", bad)
        return item


class NormalizeCaptions(_StatsPipeline):
    """Fills caption, headline, site, board and tags from caption_raw."""

    def process_item(self, item: Any) -> Any:
        adapter = ItemAdapter(item)
        page_host = host_of(adapter["url"])
        page_domain = registrable_domain(page_host) if page_host else None
        for image in adapter["images"]:
            info = normalize_caption(
                image.get("caption_raw") or "",
                image_domain=image.get("domain"),
                page_domain=page_domain,
                site_hint=image.pop("site_hint", None),
            )
            image["caption"] = info.caption
            image["headline"] = info.headline
            image["site"] = info.site
            image["board"] = info.board
            image["tags"] = list(info.tags)
        return item


class DeduplicateImages(_StatsPipeline):
    """Marks repeats of one image URL inside a page with the first one's position."""

    def process_item(self, item: Any) -> Any:
        first: dict[str, int] = {}
        repeats = 0
        for image in ItemAdapter(item)["images"]:
            position = first.setdefault(image["image_url"], image["position"])
            image["duplicate_of"] = position if position != image["position"] else None
            repeats += position != image["position"]
        self.inc("images/duplicates", repeats)
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
        guard: dict[str, Any] | None = None,
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
        self.guard = guard or {}
        self.crawler: Crawler | None = None
        self.counts = {"new": 0, "changed": 0, "images": 0}

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        s = crawler.settings
        if not s.getbool("INDEX_ENABLED", True):
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
            guard={
                "max_share": s.getfloat("REFRESH_MAX_DELETE_SHARE", 0.2),
                "few": s.getint("REFRESH_MAX_DELETE_FEW", 5),
                "accept_mass_delete": s.getbool("REFRESH_ACCEPT_MASS_DELETE", False),
            },
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
        try:
            self._writer().add_page(docs)
        except (IndexLocked, WriterError) as exc:
            logger.error("cannot write the index: %s", exc)
            self.inc("index/errors")
            self.locked = False
            self._close_crawl("index_error")
            raise DropItem(f"not indexed: {exc}") from None
        kind = "changed" if page["url"] in self.refresh.states else "new"
        self.counts[kind] += 1
        self.counts["images"] += len(docs) - 1
        self.inc(f"pages/{kind}")
        self.inc("images/indexed", len(docs) - 1)
        return item

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
        plan = self.refresh.deletions(finished, **self.guard)
        vanished = plan.delete
        images_deleted = sum(int(self.refresh.states[url].get("image_count") or 0) for url in vanished)
        for start, (would, known) in plan.refused.items():
            logger.warning(
                "refused to delete %d of the %d pages of %s: more than REFRESH_MAX_DELETE_SHARE=%s, or its "
                "listing came back empty; nothing of it deleted. If this is real, crawl once more with "
                "-s REFRESH_ACCEPT_MASS_DELETE=True",
                would,
                known,
                start,
                self.guard.get("max_share", 0.2),
            )
        self.inc("pages/delete_refused", plan.refused_pages)
        if vanished:
            self._writer().delete_pages(vanished)
            for url in vanished:
                logger.info("vanished, deleted from the index: %s", url)
        result: dict[str, int] = {}
        if self.writer is not None:
            writer, self.writer = self.writer, None
            try:
                result = writer.close()
            except WriterError as exc:
                logger.error("index writer failed; the index keeps its last commit: %s", exc)
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
            self.index_dir, {"finished_at": _now(), "reason": reason, "starts": self.refresh.starts, "counts": counts}
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


def stamped_page(item: Any) -> dict[str, Any]:
    """The item as a plain dict, its fetch facts stamped with when this crawl saw it.

    A shallow copy: what reads it (page documents, the Redis stream's JSON) only reads.
    ItemAdapter.asdict() rebuilt every image record value by value, which cost more per
    image than parsing it (issue 19). Only ``fetch`` is changed, so only it is copied:
    the item itself is left as the spider made it."""
    page = dict(ItemAdapter(item).items())
    page["fetch"] = {**(page.get("fetch") or {}), "last_seen": _now()}
    return page


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
