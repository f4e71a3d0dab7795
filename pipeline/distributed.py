"""Distributed crawling on Redis with scrapy-redis, turned on by one setting, REDIS_URL.

With ``-s REDIS_URL=redis://host:6379/0`` every crawler process, on any machine:

- shares scrapy-redis's scheduler queue and duplicate filter (:class:`RedisAddon`), and
  takes starts from the Redis list ``pages:start_urls`` when idle (``python -m index
  enqueue START...``), besides its own ``-a start=``;
- does not write the index: :class:`RedisItemStream`, the last item pipeline, adds each
  normalized page item to the Redis Stream ``pages:items`` for the one indexer
  (``python -m index ingest``, see :mod:`index.ingest`), waiting while the stream is
  longer than ``REDIS_STREAM_MAXLEN`` (backpressure instead of filling Redis' memory);
- loads the indexer's published page states (``pages:state``) to skip unchanged pages,
  and reports what it saw to the run (``pages:run:*``) so that ``ingest --finish``
  applies the vanished-pages rule once the whole run is over.

Without REDIS_URL none of this is active and Redis is never imported.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from typing import Any, Self

from itemadapter import ItemAdapter
from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured
from scrapy.settings import BaseSettings

from index.ingest import KEYS, connect
from pipeline.refresh import RefreshState

__all__ = ["RedisAddon", "RedisItemStream", "enabled"]

logger = logging.getLogger(__name__)


def enabled(settings: BaseSettings) -> bool:
    return bool(settings.get("REDIS_URL"))


class RedisAddon:
    """Shares the scheduler queue and duplicate filter through scrapy-redis when
    REDIS_URL is set; leaves every setting alone otherwise."""

    def update_settings(self, settings: BaseSettings) -> None:
        if not enabled(settings):
            return
        settings.set("SCHEDULER", "scrapy_redis.scheduler.Scheduler", priority="addon")
        settings.set("DUPEFILTER_CLASS", "scrapy_redis.dupefilter.RFPDupeFilter", priority="addon")
        # The queue outlives a crawler: others may still be working on it.
        settings.set("SCHEDULER_PERSIST", True, priority="addon")
        settings.set("REDIS_START_URLS_KEY", KEYS.start_urls, priority="addon")


def _now() -> str:
    import datetime as dt

    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class RedisItemStream:
    """The last item pipeline of a distributed crawler: page items go to a Redis Stream."""

    def __init__(self, crawler: Crawler) -> None:
        s = crawler.settings
        self.crawler = crawler
        self.stats = crawler.stats
        self.url = s.get("REDIS_URL")
        self.maxlen = s.getint("REDIS_STREAM_MAXLEN", 10_000)
        self.redis: Any = None
        self.refresh = RefreshState()
        # Present in the run's "incomplete" set while this crawler runs: a crawler that
        # dies before it reports what it saw blocks the run's deletions, as an
        # interrupted local crawl does.
        self.token = f"crawler:{socket.gethostname()}-{os.getpid()}"
        self.counts = {"new": 0, "changed": 0, "images": 0, "waits": 0}

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        if not enabled(crawler.settings):
            raise NotConfigured("REDIS_URL is not set")
        pipeline = cls(crawler)
        crawler.signals.connect(pipeline.spider_closed, signal=signals.spider_closed)
        return pipeline

    def inc(self, key: str, n: int = 1) -> None:
        if self.stats is not None and n:
            self.stats.inc_value(key, n)

    def open_spider(self) -> None:
        self.redis = connect(self.url)
        self.redis.sadd(KEYS.incomplete, self.token)
        self.refresh.states = {url: json.loads(v) for url, v in self.redis.hgetall(KEYS.state).items()}
        spider = self.crawler.spider
        if spider is not None and hasattr(spider, "starts"):
            self.refresh.starts = list(spider.starts)
            spider.refresh = self.refresh
            if spider.starts:
                self.redis.sadd(KEYS.starts, *spider.starts_keys())
        logger.info("redis %s: %d pages known, items to %s", self.url, len(self.refresh.states), KEYS.stream)

    async def process_item(self, item: Any) -> Any:
        page = ItemAdapter(item).asdict()
        page.setdefault("fetch", {})["last_seen"] = _now()
        # Backpressure: the indexer (one Whoosh writer) sets the pace.
        while self.redis.xlen(KEYS.stream) >= self.maxlen:
            self.counts["waits"] += 1
            await asyncio.sleep(0.2)
        self.redis.xadd(KEYS.stream, {"page": json.dumps(page, ensure_ascii=False)})
        kind = "changed" if page["url"] in self.refresh.states else "new"
        self.counts[kind] += 1
        self.counts["images"] += len(page.get("images") or [])
        self.inc(f"pages/{kind}")
        self.inc("images/queued", len(page.get("images") or []))
        return item

    def spider_closed(self, reason: str) -> None:
        if self.redis is None:
            return
        with self.redis.pipeline() as pipe:
            if self.refresh.seen:
                pipe.sadd(KEYS.seen, *self.refresh.seen)
            if self.refresh.incomplete:
                pipe.sadd(KEYS.incomplete, *self.refresh.incomplete)
            if reason != "finished":
                pipe.sadd(KEYS.incomplete, "*")
            pipe.srem(KEYS.incomplete, self.token)
            pipe.execute()
        self.inc("redis/backpressure_waits", self.counts["waits"])
        logger.info(
            "crawl finished (%s): pages seen %d, new %d, changed %d; images queued %d for the indexer",
            reason,
            len(self.refresh.seen),
            self.counts["new"],
            self.counts["changed"],
            self.counts["images"],
        )
