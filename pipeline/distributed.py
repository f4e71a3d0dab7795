"""Distributed crawling on Redis with scrapy-redis, turned on by one setting, REDIS_URL.

With ``-s REDIS_URL=redis://host:6379/0`` every crawler process, on any machine:

- shares scrapy-redis's scheduler queue and duplicate filter (:class:`RedisAddon`), and
  takes starts from the Redis list ``pages:start_urls`` when idle (``python -m index
  enqueue START...``), besides its own ``-a start=``;
- does not write the index: :class:`RedisItemStream`, the last item pipeline, adds each
  normalized page item to the Redis Stream ``pages:items`` for the one indexer
  (``python -m index ingest``, see :mod:`index.distributed.ingest`), waiting while the stream is
  longer than ``REDIS_STREAM_MAXLEN`` (backpressure instead of filling Redis' memory);
- loads the indexer's published page states (``pages:state``) to skip unchanged pages,
  and reports what it saw to the run (``pages:run:*``) so that ``ingest --finish``
  applies the vanished-pages rule once the whole run is over.

Without REDIS_URL none of this is active and Redis is never imported.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import pickle
import socket
from typing import Any, Self

from itemadapter import is_item
from scrapy import Request, signals
from scrapy.crawler import Crawler
from scrapy.exceptions import DropItem, NotConfigured
from scrapy.settings import BaseSettings
from scrapy.utils.defer import deferred_from_coro

from index.distributed.ingest import DUPEFILTER_KEY, KEYS, connect, ensure_group
from pipeline import settings as defaults
from pipeline.refresh import RefreshState
from pipeline.steps import stamped_page

__all__ = ["InflightRequests", "RedisAddon", "RedisItemStream", "enabled"]

logger = logging.getLogger(__name__)


def enabled(settings: BaseSettings) -> bool:
    return bool(settings.get("REDIS_URL"))


class RedisAddon:
    """With REDIS_URL set: shares the scheduler queue and duplicate filter through
    scrapy-redis, and swaps the IndexWriter pipeline for :class:`RedisItemStream`.
    Leaves every setting alone otherwise, so a plain crawl loads nothing of Redis."""

    def update_settings(self, settings: BaseSettings) -> None:
        if not enabled(settings):
            return
        settings.set("SCHEDULER", "scrapy_redis.scheduler.Scheduler", priority="addon")
        settings.set("DUPEFILTER_CLASS", "scrapy_redis.dupefilter.RFPDupeFilter", priority="addon")
        # The queue outlives a crawler: others may still be working on it.
        settings.set("SCHEDULER_PERSIST", True, priority="addon")
        settings.set("REDIS_START_URLS_KEY", KEYS.start_urls, priority="addon")
        settings.set("SCHEDULER_DUPEFILTER_KEY", DUPEFILTER_KEY, priority="addon")  # enqueue clears it
        settings["DOWNLOADER_MIDDLEWARES"]["pipeline.distributed.InflightRequests"] = 50
        settings["SPIDER_MIDDLEWARES"]["pipeline.distributed.InflightRequests"] = 50
        # Pages go to the Redis Stream; the one indexer (`python -m index ingest`) writes.
        pipelines = settings["ITEM_PIPELINES"]
        order = pipelines.pop("pipeline.pipelines.IndexWriter", None) or 900
        pipelines["pipeline.distributed.RedisItemStream"] = order


def crawler_token() -> str:
    return f"crawler:{socket.gethostname()}-{os.getpid()}"


INFLIGHT_PREFIX = f"{KEYS.prefix}:inflight:"
ALIVE_PREFIX = f"{KEYS.prefix}:alive:"


class InflightRequests:
    """Requests this crawler took from the shared queue and has not finished, kept in
    Redis, so that a crawler killed with ``kill -9`` loses none of them.

    scrapy-redis pops a request from the shared queue and forgets it; if the crawler dies
    before the page reaches the stream, nobody fetches it again in this run. Here each
    request is recorded (``pages:inflight:<crawler>``) when it goes to the downloader and
    removed when it is done: when its page is in the stream (:class:`RedisItemStream`), or
    when its callback ended without a page (unchanged, invalid, a sitemap). Every crawler
    keeps ``pages:alive:<crawler>`` fresh; any crawler that finds the in-flight record of
    a crawler that is no longer alive claims it (an atomic RENAME) and schedules its
    requests again. A request recovered twice costs a second fetch, never a second
    document (pages are replaced by URL)."""

    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        self.token = crawler_token()
        self.key = INFLIGHT_PREFIX + self.token
        self.redis: Any = None
        self.heartbeat: Any = None
        # A crawler silent for this long is gone; its in-flight requests are recovered.
        self.ttl = max(1, crawler.settings.getint("REDIS_CRAWLER_TTL", defaults.REDIS_CRAWLER_TTL))

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        if not enabled(crawler.settings):
            raise NotConfigured("REDIS_URL is not set")
        existing = cls.of(crawler)
        if existing is not None:  # the same object serves both middleware chains
            return existing
        ext = cls(crawler)
        crawler.signals.connect(ext.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(ext.spider_idle, signal=signals.spider_idle)
        crawler.signals.connect(ext.spider_closed, signal=signals.spider_closed)
        # One instance for both middleware roles: remember it for the item pipeline.
        crawler._pages_inflight = ext  # type: ignore[attr-defined]
        return ext

    @classmethod
    def of(cls, crawler: Crawler) -> InflightRequests | None:
        return getattr(crawler, "_pages_inflight", None)

    def _beat(self) -> None:
        self.redis.set(ALIVE_PREFIX + self.token, "1", ex=self.ttl)

    def spider_opened(self) -> None:
        from twisted.internet import task

        self.redis = connect(self.crawler.settings.get("REDIS_URL"))
        self._beat()
        self.heartbeat = task.LoopingCall(self._beat)
        self.heartbeat.start(self.ttl / 4, now=False)
        # After the engine has finished opening: recovered requests go to its scheduler.
        from twisted.internet import reactor

        reactor.callLater(0.5, self.recover)

    def spider_idle(self) -> None:
        self.recover()

    def spider_closed(self, reason: str) -> None:
        if self.heartbeat is not None and self.heartbeat.running:
            self.heartbeat.stop()
        if self.redis is None:
            return
        if reason == "finished":
            self.redis.delete(self.key)
        # Otherwise (Ctrl-C, CLOSESPIDER_*) the record stays for another crawler.
        self.redis.delete(ALIVE_PREFIX + self.token)

    def recover(self) -> int:
        """Schedule again the in-flight requests of crawlers that are gone."""
        if self.redis is None:
            return 0
        from scrapy.utils.request import request_from_dict

        spider = self.crawler.spider
        recovered = 0
        for key in self.redis.scan_iter(match=INFLIGHT_PREFIX + "*"):
            token = key[len(INFLIGHT_PREFIX) :]
            if token == self.token or self.redis.exists(ALIVE_PREFIX + token):
                continue
            claimed = f"{KEYS.prefix}:recovering:{self.token}:{token}"
            try:
                self.redis.rename(key, claimed)  # atomic: one crawler wins
            except Exception:  # noqa: BLE001 - another crawler claimed it first
                continue
            for url, blob in self.redis.hgetall(claimed).items():
                request = request_from_dict(pickle.loads(base64.b64decode(blob)), spider=spider)
                self.crawler.engine.crawl(request.replace(dont_filter=True))
                recovered += 1
                logger.info("recovered %s from stopped crawler %s", url, token)
            self.redis.delete(claimed)
        if recovered and self.crawler.stats is not None:
            self.crawler.stats.inc_value("redis/recovered_requests", recovered)
        return recovered

    def done(self, *urls: str) -> None:
        if self.redis is not None and urls:
            self.redis.hdel(self.key, *urls)

    # -- downloader middleware ---------------------------------------------------------
    def process_request(self, request: Request) -> None:
        if self.redis is None or request.meta.get("dont_track"):
            return
        try:
            blob = base64.b64encode(pickle.dumps(request.to_dict(spider=self.crawler.spider), protocol=4))
        except (ValueError, pickle.PicklingError):
            return  # a callback Scrapy cannot name: not one of ours
        self.redis.hset(self.key, request.url, blob.decode("ascii"))

    # -- spider middleware -------------------------------------------------------------
    def process_spider_output(self, response: Any, result: Any) -> Any:
        produced = False
        for element in result:
            produced = produced or is_item(element)
            yield element
        if not produced:
            # Nothing for the stream: the request is done once its callback is.
            self.done(response.url, *response.request.meta.get("redirect_urls", []))

    async def process_spider_output_async(self, response: Any, result: Any) -> Any:
        produced = False
        async for element in result:
            produced = produced or is_item(element)
            yield element
        if not produced:
            self.done(response.url, *response.request.meta.get("redirect_urls", []))


class RedisItemStream:
    """The last item pipeline of a distributed crawler: page items go to a Redis Stream."""

    def __init__(self, crawler: Crawler) -> None:
        s = crawler.settings
        self.crawler = crawler
        self.stats = crawler.stats
        self.url = s.get("REDIS_URL")
        self.maxlen = s.getint("REDIS_STREAM_MAXLEN", defaults.REDIS_STREAM_MAXLEN)
        self.redis: Any = None
        self.refresh = RefreshState()
        # Present in the run's "incomplete" set while this crawler runs: a crawler that
        # dies before it reports what it saw blocks the run's deletions, as an
        # interrupted local crawl does.
        self.token = crawler_token()
        self.lost = False
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
        spider = self.crawler.spider
        if isinstance(getattr(spider, "refresh", None), RefreshState):
            self.refresh = spider.refresh
        self.redis = connect(self.url)
        # From here on, pages are added only to an existing stream: if Redis loses it
        # (a restart without persistence), the crawler notices instead of starting anew.
        ensure_group(self.redis, KEYS)
        self.redis.sadd(KEYS.incomplete, self.token)
        self.refresh.states = {url: json.loads(v) for url, v in self.redis.hgetall(KEYS.state).items()}
        if spider is not None and getattr(spider, "starts", None):
            self.redis.sadd(KEYS.starts, *spider.starts_keys())
        logger.info("redis %s: %d pages known, items to %s", self.url, len(self.refresh.states), KEYS.stream)

    async def process_item(self, item: Any) -> Any:
        page = stamped_page(item)
        # Backpressure: the indexer (one Whoosh writer) sets the pace.
        while self.redis.xlen(KEYS.stream) >= self.maxlen:
            self.counts["waits"] += 1
            await asyncio.sleep(0.2)
        try:
            added = self.redis.xadd(KEYS.stream, {"page": json.dumps(page, ensure_ascii=False)}, nomkstream=True)
        except Exception as exc:  # noqa: BLE001 - redis' errors (connection, OOM, READONLY...)
            added = None
            detail = f"{type(exc).__name__}: {exc}"
        else:
            detail = f"the stream {KEYS.stream} is gone (Redis restarted without persistence?)"
        if added is None:
            self._lost_redis(detail)
            raise DropItem(f"not queued: {detail}")
        inflight = InflightRequests.of(self.crawler)
        if inflight is not None:
            inflight.done(page["url"])
        kind = "changed" if page["url"] in self.refresh.states else "new"
        self.counts[kind] += 1
        self.counts["images"] += len(page.get("images") or [])
        self.inc(f"pages/{kind}")
        self.inc("images/queued", len(page.get("images") or []))
        return item

    def _lost_redis(self, detail: str) -> None:
        """Pages can no longer reach the indexer: stop, exit 1, and let the run be
        incomplete (this crawler's token stays in the incomplete set)."""
        self.inc("redis/errors")
        if self.lost:
            return
        self.lost = True
        logger.error("lost Redis at %s: %s; stopping (the run stays incomplete)", self.url, detail)
        engine = self.crawler.engine
        if engine is not None:
            from twisted.internet import reactor

            reactor.callLater(0, lambda: deferred_from_coro(engine.close_spider_async(reason="redis_error")))

    def spider_closed(self, reason: str) -> None:
        if self.redis is None:
            return
        try:
            self._report(reason)
        except Exception as exc:  # noqa: BLE001 - redis' errors: the token stays, the run is incomplete
            self._lost_redis(f"{type(exc).__name__}: {exc}")
            return

    def _report(self, reason: str) -> None:
        with self.redis.pipeline() as pipe:
            if self.refresh.seen:
                pipe.sadd(KEYS.seen, *self.refresh.seen)
            if self.refresh.incomplete:
                pipe.sadd(KEYS.incomplete, *self.refresh.incomplete)
            for start, n in self.refresh.open_listings.items():
                pipe.hincrby(KEYS.listings, start, n)
            for start, n in self.refresh.listed.items():
                pipe.hincrby(KEYS.listed, start, n)
            if reason != "finished" or self.lost:
                pipe.sadd(KEYS.incomplete, "*")
            else:
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
