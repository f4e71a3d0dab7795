"""Item pipelines: thin Scrapy classes over the pure functions in ``pipeline.normalize``
and ``index``. Each one reads and writes the item through ItemAdapter."""

from __future__ import annotations

import logging
from typing import Any, Self

from itemadapter import ItemAdapter
from scrapy.crawler import Crawler
from scrapy.exceptions import DropItem, NotConfigured
from scrapy.statscollectors import StatsCollector
from scrapy.utils.defer import deferred_from_coro

from index.documents import page_documents
from index.writer import IndexLocked, PageWriter, WriterError, WriterProcess
from pipeline.normalize.captions import normalize_caption
from pipeline.normalize.domains import host_of, normalize_image_url, registrable_domain

logger = logging.getLogger(__name__)

_FORMATS = frozenset({"toml", "yaml", "json", "none"})


class _StatsPipeline:
    def __init__(self, stats: StatsCollector | None = None) -> None:
        self.stats = stats

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        return cls(stats=crawler.stats)

    def inc(self, key: str, count: int = 1) -> None:
        if self.stats is not None and count:
            self.stats.inc_value(key, count)


def contract_problem(adapter: ItemAdapter) -> str | None:
    """Why an item breaks the item contract, as a stats slug, or None."""
    if not isinstance(adapter.get("url"), str) or not adapter.get("url"):
        return "no_url"
    if adapter.get("format") not in _FORMATS:
        return "bad_format"
    content_hash = adapter.get("content_hash")
    if not isinstance(content_hash, str) or len(content_hash) != 64:
        return "no_content_hash"
    images = adapter.get("images")
    if not isinstance(images, list):
        return "bad_images"
    for i, image in enumerate(images):
        if not isinstance(image, dict) or image.get("position") != i or not isinstance(image.get("image_url"), str):
            return "bad_image_record"
    return None


class ValidatePage(_StatsPipeline):
    """Drops items that break the contract (logged with URL and reason, counted)."""

    def process_item(self, item: Any) -> Any:
        adapter = ItemAdapter(item)
        problem = contract_problem(adapter)
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
    """Hands each page's documents to the index writer (batched, off the hot path).

    Opens the writer when the spider opens (failing fast when another crawl holds the
    index), commits in batches while crawling and once more when the spider closes."""

    def __init__(
        self,
        index_dir: str,
        *,
        stats: StatsCollector | None = None,
        in_process: bool = False,
        queue_pages: int = 64,
        **writer_options: Any,
    ) -> None:
        super().__init__(stats)
        self.index_dir = index_dir
        self.in_process = in_process
        self.queue_pages = queue_pages
        self.writer_options = writer_options
        self.writer: PageWriter | WriterProcess | None = None
        self.crawler: Crawler | None = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        s = crawler.settings
        if not s.getbool("INDEX_ENABLED", True):
            raise NotConfigured("INDEX_ENABLED is False")
        if not s.get("INDEX_DIR"):
            raise NotConfigured("INDEX_DIR is not set")
        pipeline = cls(
            s.get("INDEX_DIR"),
            stats=crawler.stats,
            in_process=not s.getbool("INDEX_WRITER_PROCESS", True),
            queue_pages=s.getint("INDEX_QUEUE_PAGES", 64),
            commit_docs=s.getint("INDEX_COMMIT_DOCS", 50_000),
            commit_seconds=s.getfloat("INDEX_COMMIT_SECONDS", 60.0),
            limitmb=s.getint("INDEX_WRITER_LIMITMB", 256),
            procs=s.getint("INDEX_WRITER_PROCS", 1),
            multisegment=s.getbool("INDEX_WRITER_MULTISEGMENT", False),
            lock_wait=s.getbool("INDEX_LOCK_WAIT", False),
        )
        pipeline.crawler = crawler
        return pipeline

    def open_spider(self) -> None:
        if self.in_process:
            writer: PageWriter | WriterProcess = PageWriter(self.index_dir, **self.writer_options)
            opener = writer.open
        else:
            writer = WriterProcess(self.index_dir, queue_pages=self.queue_pages, **self.writer_options)
            opener = writer.start
        try:
            opener()
        except (IndexLocked, WriterError, OSError) as exc:
            logger.error("cannot write the index: %s", exc)
            self.inc("index/errors")
            self._close_crawl("index_locked" if isinstance(exc, IndexLocked) else "index_error")
            return
        self.writer = writer
        logger.info("writing index %s", self.index_dir)

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
        if self.writer is None:
            raise DropItem("index writer is not open")
        adapter = ItemAdapter(item)
        docs = page_documents(adapter.asdict())
        self.writer.add_page(docs)
        self.inc("images/indexed", len(docs) - 1)
        self.inc("pages/indexed")
        return item

    def close_spider(self) -> None:
        if self.writer is None:
            return
        writer, self.writer = self.writer, None
        try:
            result = writer.close()
        except WriterError as exc:
            logger.error("index writer failed; the index keeps its last commit: %s", exc)
            self.inc("index/errors")
            return
        self.inc("index/commits", result.get("commits", 0))
        if self.stats is not None and "max_rss_kb" in result:
            self.stats.set_value("index/writer_max_rss", result["max_rss_kb"] * 1024)
        logger.info(
            "index %s: %d pages, %d image documents written in %d commits",
            self.index_dir,
            result.get("pages", 0),
            result.get("documents", 0),
            result.get("commits", 0),
        )
