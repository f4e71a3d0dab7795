"""Distributed crawling on Redis with scrapy-redis, turned on by one setting, REDIS_URL.

With ``-s REDIS_URL=redis://host:6379/0`` every crawler process, on any machine:

- shares scrapy-redis's scheduler and duplicate filter (:class:`RedisAddon`), with a queue
  of its own (:class:`LeasedQueue`): taking a request moves it, in one Lua script, from
  the shared queue to this crawler's taken requests, where it stays until its page is in
  the stream (or its callback ended without a page). Starts (``python -m index enqueue``)
  are taken the same way and stay taken until every request they produce is queued;
- keeps a heartbeat (``pages:alive:<token>``, a key with a TTL): the taken work of a
  crawler whose heartbeat expired goes back to the queue (:data:`index.distributed.keys.RECOVER`), so a crawler
  killed with ``kill -9`` at any moment loses nothing;
- does not write the index: :class:`RedisItemStream`, the last item pipeline, adds each
  normalized page item to the Redis Stream ``pages:items`` for the one indexer
  (``python -m index ingest``, see :mod:`index.distributed.ingest`), waiting while the stream is
  longer than ``REDIS_STREAM_MAXLEN``;
- belongs to one run (``pages:run``) from the first work it takes, and reports what it
  saw into that run's keys, so that ``ingest --finish`` applies the vanished-pages rule
  once the run is over;
- treats any Redis error as losing Redis (:class:`CrawlerRedis`): it stops, exits 1, and
  its run stays incomplete.

Without REDIS_URL none of this is active and Redis is never imported.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterable
from typing import Any, Self

from itemadapter import ItemAdapter, is_item
from scrapy import Request, signals
from scrapy.crawler import Crawler
from scrapy.exceptions import DontCloseSpider, DropItem, NotConfigured
from scrapy.settings import BaseSettings
from scrapy.utils.defer import deferred_from_coro

from index.distributed.keys import (
    DUPEFILTER_KEY,
    JOIN_WITH_STARTS,
    KEYS,
    PUSH_ITEM,
    PUSH_REQUEST,
    RECOVER,
    REPLACED_RUN_TTL,
    REPORT,
    REQUESTS_KEY,
    TAKE_REQUEST,
    TAKE_START,
    crawler_token,
    ensure_group,
    forget_replaced_run,
    new_run_id,
)
from pipeline import settings as defaults
from pipeline.refresh import RefreshState
from pipeline.steps import stamped_page

# Also CrawlerRedis, LeasedQueue and LeasedScheduler, built on first use (see __getattr__).
__all__ = ["InflightRequests", "RedisAddon", "RedisItemStream", "enabled", "work_of"]

logger = logging.getLogger(__name__)

# The meta key of a taken request: its lease id in this crawler's taken requests.
LEASE = "pages_lease"
# The meta key of a request a callback yielded: the lease of the request it came from,
# which is released only once every request it yielded is queued.
PARENT_LEASE = "pages_parent_lease"
# Seconds between two looks at Redis of an idle crawler (a start enqueued, work recovered
# from a dead crawler, requests another crawler queued, REDIS_IDLE_CLOSE reached): Scrapy
# itself looks again only at its engine's 5 s heartbeat.
IDLE_POLL = 0.5


def enabled(settings: BaseSettings) -> bool:
    return bool(settings.get("REDIS_URL"))


class RedisAddon:
    """With REDIS_URL set: shares the scheduler queue and duplicate filter through
    scrapy-redis, and swaps the IndexWriter pipeline for :class:`RedisItemStream`.
    Leaves every setting alone otherwise, so a plain crawl loads nothing of Redis."""

    def update_settings(self, settings: BaseSettings) -> None:
        if not enabled(settings):
            return
        settings.set("SCHEDULER", "pipeline.distributed.LeasedScheduler", priority="addon")
        settings.set("DUPEFILTER_CLASS", "scrapy_redis.dupefilter.RFPDupeFilter", priority="addon")
        settings.set("SCHEDULER_QUEUE_CLASS", "pipeline.distributed.LeasedQueue", priority="addon")
        settings.set("SCHEDULER_QUEUE_KEY", REQUESTS_KEY, priority="addon")
        # The queue outlives a crawler: others may still be working on it.
        settings.set("SCHEDULER_PERSIST", True, priority="addon")
        settings.set("SCHEDULER_DUPEFILTER_KEY", DUPEFILTER_KEY, priority="addon")  # a run clears it
        # Every connection scrapy-redis opens is a CrawlerRedis: no silent retry, and any
        # error stops the crawler.
        params = dict(settings.getdict("REDIS_PARAMS"), redis_cls="pipeline.distributed.CrawlerRedis")
        settings.set("REDIS_PARAMS", params, priority="addon")
        settings["SPIDER_MIDDLEWARES"]["pipeline.distributed.InflightRequests"] = 50
        # Pages go to the Redis Stream; the one indexer (`python -m index ingest`) writes.
        pipelines = settings["ITEM_PIPELINES"]
        order = pipelines.pop("pipeline.pipelines.IndexWriter", None) or 900
        pipelines["pipeline.distributed.RedisItemStream"] = order


# --- the Redis client of a crawler ------------------------------------------------------
# Called with what failed, by every CrawlerRedis of the process, scrapy-redis' own included
# (its scheduler and duplicate filter): a distributed crawler is one crawl per process.
_lost_handlers: list[Any] = []


def _crawler_redis_class() -> type:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    def same_server(connection: Any, known: dict[str, str]) -> None:
        # redis-py reconnects, without a word, a connection that the server closed: after
        # an idle timeout that is harmless, after a restart it may hide lost data (a
        # restart faster than a crawler's next command went unnoticed; found by the
        # restart test on a busy machine). The server's run_id tells them apart.
        connection.on_connect()
        try:
            connection.send_command("INFO", "server")
            info = connection.read_response()
        except redis.ResponseError:
            return  # INFO renamed or forbidden: nothing to compare
        info = info.decode() if isinstance(info, bytes) else str(info)
        run_id = next((line[7:].strip() for line in info.splitlines() if line.startswith("run_id:")), "")
        if known.setdefault("run_id", run_id) != run_id:
            raise redis.ConnectionError("Redis was restarted (another run_id); not reconnecting")

    class CrawlerRedis(redis.Redis):
        """A crawler's Redis client: any error is losing Redis (the crawler stops, exits
        1, its run stays incomplete), and it never retries on its own nor reconnects to
        a restarted server: that could hide a restart that lost data."""

        @classmethod
        def from_url(cls, url: str, **kwargs: Any) -> Any:
            kwargs.pop("retry_on_timeout", None)
            kwargs["retry"] = Retry(NoBackoff(), 0)
            known: dict[str, str] = {}  # the server this client first connected to
            kwargs["redis_connect_func"] = lambda connection: same_server(connection, known)
            return super().from_url(url, **kwargs)

        def execute_command(self, *args: Any, **options: Any) -> Any:
            try:
                reply = super().execute_command(*args, **options)
            except redis.RedisError as exc:
                for handler in list(_lost_handlers):
                    handler(f"{type(exc).__name__}: {exc}")
                raise
            return reply

    return CrawlerRedis


_CLASSES: dict[str, type] = {}


def __getattr__(name: str) -> Any:
    # CrawlerRedis subclasses redis.Redis, LeasedQueue and LeasedScheduler scrapy-redis'
    # queue and scheduler: built on first use, so that a crawl without REDIS_URL imports
    # none of them (Scrapy and scrapy-redis load them by this module's path).
    builders = {"CrawlerRedis": _crawler_redis_class, "LeasedQueue": _queue_class, "LeasedScheduler": _scheduler_class}
    if name not in builders:
        raise AttributeError(name)
    if name not in _CLASSES:
        _CLASSES[name] = builders[name]()
    return _CLASSES[name]


def redis_errors() -> tuple[type[BaseException], ...]:
    import redis

    return (redis.RedisError,)


# --- the crawler's side of the protocol --------------------------------------------------
def work_of(crawler: Crawler) -> InflightRequests:
    """The one :class:`InflightRequests` of a crawler (middleware, pipeline and spider share it)."""
    work = getattr(crawler, "_pages_work", None)
    if work is None:
        work = InflightRequests(crawler)
        crawler._pages_work = work  # type: ignore[attr-defined]
    return work


class InflightRequests:
    """This crawler's work in Redis: the run it belongs to, its heartbeat, the requests
    and starts it took (see the scripts above), and the rule that losing Redis stops it.

    Requests are released when their page is in the stream (:class:`RedisItemStream`),
    when their callback ended without a page (unchanged, invalid, a sitemap) and every
    request it yielded is queued, when their successor (a retry, a redirect) is queued, or
    all at once when the crawler finishes.
    A request taken twice (its crawler was thought dead) costs a second fetch, never a
    second document: pages are replaced by URL."""

    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        self.token = crawler_token()
        self.ttl = max(1, crawler.settings.getint("REDIS_CRAWLER_TTL", defaults.REDIS_CRAWLER_TTL))
        self.url = crawler.settings.get("REDIS_URL")
        self.redis: Any = __getattr__("CrawlerRedis").from_url(self.url, decode_responses=True)
        self.run = ""  # the run this crawler works for, from the first work it takes
        self.epoch = ""  # the state epoch its page states came with
        self.lost = False
        self.run_over = False
        self.heartbeat: Any = None
        self.wake: Any = None  # the idle crawler's next look at Redis (a reactor call)
        self.leases: dict[str, str] = {}  # page URL -> lease of the request that produced it
        # Lease -> requests its callback yielded that are not queued yet, and the leases
        # whose callbacks are over: Scrapy may finish iterating a callback's output before
        # it has queued what it took from it (async output is consumed in parallel), and a
        # lease released first, then a kill, lost every page a sitemap listed.
        self.children: dict[str, int] = {}
        self.output_over: set[str] = set()
        _lost_handlers.append(self.lose)
        crawler.signals.connect(self.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(self.spider_idle, signal=signals.spider_idle)
        crawler.signals.connect(self.spider_closed, signal=signals.spider_closed)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        if not enabled(crawler.settings):
            raise NotConfigured("REDIS_URL is not set")
        return work_of(crawler)  # type: ignore[return-value]

    def args(self) -> list[Any]:
        return [KEYS.prefix, self.token, self.run, self.ttl]

    def inc(self, key: str, n: int = 1) -> None:
        if self.crawler.stats is not None and n:
            self.crawler.stats.inc_value(key, n)

    # -- losing Redis ------------------------------------------------------------------
    def lose(self, detail: str) -> None:
        """Pages can no longer reach the indexer safely: stop, exit 1, and let the run be
        incomplete (this crawler's token stays in its incomplete set)."""
        self.inc("redis/errors")
        if self.lost:
            return
        self.lost = True
        logger.error("lost Redis at %s: %s; stopping (the run stays incomplete)", self.url, detail)
        self._close("redis_error")

    def _close(self, reason: str) -> None:
        engine = self.crawler.engine
        if engine is not None:
            from twisted.internet import reactor

            reactor.callLater(0, lambda: deferred_from_coro(engine.close_spider_async(reason=reason)))

    def _answer(self, reply: list[Any]) -> bool:
        """The common part of a take's answer: whether work was taken."""
        status = _text(reply[0])
        if status == "over" and not self.run_over:
            self.run_over = True
            logger.info(
                "run %s is over (the current run is %s): this crawler reports and stops", self.run, _text(reply[1])
            )
            self._close("finished")
        if status == "norun" and not self.run_over:
            logger.warning("no run in Redis (pages:run): nothing taken; was Redis flushed?")
        if status != "ok":
            return False
        if not self.run:
            self.run = _text(reply[1])
            logger.info("working for run %s", self.run)
        return True

    # -- taking work ---------------------------------------------------------------------
    def take_request(self, server: Any) -> tuple[str, bytes] | None:
        """(lease, encoded request), taken atomically from the queue; None when empty."""
        if self.lost or self.run_over:
            return None
        reply = server.eval(TAKE_REQUEST, 0, *self.args())
        if not self._answer(reply):
            return None
        return _text(reply[2]), reply[3]

    def take_start(self) -> str | None:
        if self.lost or self.run_over:
            return None
        reply = self.redis.eval(TAKE_START, 0, *self.args())
        if not self._answer(reply):
            return None
        start, epoch = reply[2], reply[3]
        if epoch != self.epoch:
            self.load_states()  # the indexer replaced them (a new or restored index)
        return start

    def queue_next_start(self, requests_of: Callable[[str], Iterable[Request]]) -> str | None:
        """Take the next waiting start and queue its requests; the start stays taken
        until the last of them is in the queue. The start, or None."""
        try:
            start = self.take_start()
            if start is None:
                return None
            logger.info("took start %s from Redis", start)
            for request in requests_of(start):
                self.crawler.engine.crawl(request)  # into the Redis queue, before the next
                if self.lost:
                    return start  # the start stays taken: another crawler walks it again
            self.redis.lrem(KEYS.taken_starts(self.token), 1, start)
        except redis_errors():
            return None  # lose() stops the crawler
        return start

    def join_with_starts(self, starts: list[str]) -> None:
        run, replaced = self.redis.eval(JOIN_WITH_STARTS, 0, KEYS.prefix, self.token, self.ttl, new_run_id(), *starts)
        self.run = _text(run)
        forget_replaced_run(self.redis, KEYS, _text(replaced))
        logger.info("working for run %s", self.run)

    def load_states(self) -> None:
        spider = self.crawler.spider
        refresh = getattr(spider, "refresh", None)
        if not isinstance(refresh, RefreshState):
            return
        self.epoch = self.redis.get(KEYS.state_epoch) or "0"
        refresh.states = {url: json.loads(v) for url, v in self.redis.hgetall(KEYS.state).items()}

    def release(self, lease: str | None) -> None:
        if lease and not self.lost:
            self.redis.hdel(KEYS.taken(self.token), lease)

    # -- heartbeat and recovery ----------------------------------------------------------
    def _beat(self) -> None:
        try:
            self.redis.set(KEYS.alive(self.token), self.run or "-", ex=self.ttl)
        except redis_errors():
            pass  # lose() has been called

    def spider_opened(self) -> None:
        from twisted.internet import task

        self._beat()
        self.heartbeat = task.LoopingCall(self._beat)
        self.heartbeat.start(self.ttl / 4, now=False)
        self.recover()

    def spider_idle(self) -> None:
        self._wake_later()
        if self.recover():
            raise DontCloseSpider  # they are in the queue again: take them

    def _wake_later(self) -> None:
        """Run the engine's next pass (and so, while idle, the idle round: a start, the
        recovery, the idle close) in IDLE_POLL seconds; one such call at a time."""
        if self.wake is not None and self.wake.active():
            return
        from twisted.internet import reactor

        self.wake = reactor.callLater(IDLE_POLL, self._wake)

    def _wake(self) -> None:
        # Scrapy has no public call for an engine's next pass: its slot's `nextcall`, what
        # its heartbeat calls. Were it renamed, the heartbeat would still do it, 5 s apart.
        slot = getattr(self.crawler.engine, "_slot", None)
        nextcall = getattr(slot, "nextcall", None)
        if nextcall is not None and getattr(slot, "closing", None) is None:
            nextcall.schedule()

    def recover(self) -> int:
        """Requeue the taken work of crawlers whose heartbeat expired."""
        if self.lost:
            return 0
        try:
            recovered = int(self.redis.eval(RECOVER, 0, KEYS.prefix))
        except redis_errors():
            return 0
        if recovered:
            logger.info("recovered %d requests and starts from stopped crawlers", recovered)
            self.inc("redis/recovered_requests", recovered)
        return recovered

    def spider_closed(self, reason: str) -> None:
        if self.heartbeat is not None and self.heartbeat.running:
            self.heartbeat.stop()
        if self.wake is not None and self.wake.active():
            self.wake.cancel()
        if self.lose in _lost_handlers:
            _lost_handlers.remove(self.lose)
        if self.lost:
            return
        try:
            # Taken work of an unfinished crawl stays for another crawler: recovered at once.
            self.redis.delete(KEYS.alive(self.token))
        except redis_errors():
            pass

    # -- spider middleware -------------------------------------------------------------
    def _done(self, response: Any, produced: list[str]) -> None:
        lease = response.request.meta.get(LEASE) if response.request is not None else None
        if produced:
            for url in produced:
                self.leases[url] = lease
        elif lease and self.children.get(lease):
            self.output_over.add(lease)  # released by the last of its requests queued
        else:
            self._release_quietly(lease)

    def _release_quietly(self, lease: str | None) -> None:
        try:
            self.release(lease)
        except redis_errors():
            pass  # lose() stops the crawler

    def child_yielded(self, lease: str) -> None:
        self.children[lease] = self.children.get(lease, 0) + 1

    def child_queued(self, lease: str) -> None:
        """One request ``lease``'s callback yielded is queued (or was a duplicate)."""
        left = self.children.get(lease, 0) - 1
        if left > 0:
            self.children[lease] = left
            return
        self.children.pop(lease, None)
        if lease in self.output_over:
            self.output_over.discard(lease)
            self._release_quietly(lease)

    def _mark_child(self, response: Any, element: Any) -> None:
        lease = response.request.meta.get(LEASE) if response.request is not None else None
        if lease and isinstance(element, Request) and LEASE not in element.meta:
            element.meta[PARENT_LEASE] = lease
            self.child_yielded(lease)

    def process_spider_output(self, response: Any, result: Any) -> Any:
        produced: list[str] = []
        for element in result:
            if is_item(element):
                produced.append(ItemAdapter(element).get("url"))
            self._mark_child(response, element)
            yield element
        self._done(response, produced)

    async def process_spider_output_async(self, response: Any, result: Any) -> Any:
        produced: list[str] = []
        async for element in result:
            if is_item(element):
                produced.append(ItemAdapter(element).get("url"))
            self._mark_child(response, element)
            yield element
        self._done(response, produced)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _queue_class() -> type:
    from scrapy_redis.queue import PriorityQueue

    class LeasedQueue(PriorityQueue):
        """scrapy-redis's priority queue, where taking a request records it as taken in
        the same Lua script (:data:`index.distributed.keys.TAKE_REQUEST`): a crawler killed at any moment after
        the take leaves the request where another crawler finds it."""

        def _work(self) -> InflightRequests:
            return work_of(self.spider.crawler)

        def push(self, request: Request, fingerprint: str = "", seen_key: str = "") -> bool:
            """Queue the request unless ``seen_key`` (the duplicate filter) has its
            ``fingerprint``; whether it was queued."""
            work = self._work()
            parent = request.meta.pop(PARENT_LEASE, None)
            data = self._encode_request(request)
            lease = request.meta.get(LEASE) or ""
            keys = (self.key, KEYS.taken(work.token), seen_key or KEYS.dupefilter)
            queued = bool(self.server.eval(PUSH_REQUEST, 3, *keys, -request.priority, data, lease, fingerprint))
            if parent:
                work.child_queued(parent)
            return queued

        def pop(self, timeout: int = 0) -> Request | None:
            try:
                taken = self._work().take_request(self.server)
            except redis_errors():
                return None  # lose() stops the crawler
            if taken is None:
                return None
            lease, data = taken
            request = self._decode_request(data)
            request.meta[LEASE] = lease
            return request

    return LeasedQueue


def _scheduler_class() -> type:
    from scrapy_redis.scheduler import Scheduler

    class LeasedScheduler(Scheduler):
        """scrapy-redis' scheduler, with the duplicate check and the queueing of a request
        one step (:data:`index.distributed.keys.PUSH_REQUEST`) instead of two."""

        def enqueue_request(self, request: Request) -> bool:
            fingerprint = "" if request.dont_filter else self.df.request_fingerprint(request)
            if not self.queue.push(request, fingerprint, self.df.key):
                self.df.log(request, self.spider)
                return False  # Scrapy sends request_dropped, as for any duplicate
            if self.stats:
                self.stats.inc_value("scheduler/enqueued/redis")
            return True

        def next_request(self) -> Request | None:
            request = self.queue.pop(self.idle_before_close)
            if request is not None and self.stats:
                self.stats.inc_value("scheduler/dequeued/redis")
            return request

    return LeasedScheduler


class RedisItemStream:
    """The last item pipeline of a distributed crawler: page items go to a Redis Stream."""

    def __init__(self, crawler: Crawler) -> None:
        s = crawler.settings
        self.crawler = crawler
        self.stats = crawler.stats
        self.maxlen = s.getint("REDIS_STREAM_MAXLEN", defaults.REDIS_STREAM_MAXLEN)
        self.work = work_of(crawler)
        self.refresh = RefreshState()
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
        work = self.work
        try:
            # From here on, pages are added only to an existing stream: if Redis loses it
            # (a restart without persistence), the crawler notices instead of starting anew.
            ensure_group(work.redis, KEYS)
            work.load_states()
            if spider is not None and getattr(spider, "starts", None):
                work.join_with_starts(spider.starts_keys())
        except redis_errors():
            return  # lose() stops the crawler
        logger.info("redis %s: %d pages known, items to %s", work.url, len(self.refresh.states), KEYS.stream)

    async def process_item(self, item: Any) -> Any:
        page = stamped_page(item)
        work = self.work
        lease = work.leases.pop(page["url"], None) or ""
        try:
            # Backpressure: the indexer (one Whoosh writer) sets the pace.
            while work.redis.xlen(KEYS.stream) >= self.maxlen and not work.lost:
                self.counts["waits"] += 1
                await asyncio.sleep(0.2)
            if work.lost:
                raise DropItem("not queued: lost Redis")
            added = work.redis.eval(
                PUSH_ITEM, 2, KEYS.stream, KEYS.taken(work.token), json.dumps(page, ensure_ascii=False), lease
            )
        except redis_errors() as exc:
            raise DropItem(f"not queued: {type(exc).__name__}: {exc}") from None
        if added is None:
            work.lose(f"the stream {KEYS.stream} is gone (Redis restarted without persistence?)")
            raise DropItem("not queued: the stream is gone")
        kind = "changed" if page["url"] in self.refresh.states else "new"
        self.counts[kind] += 1
        self.counts["images"] += len(page.get("images") or [])
        self.inc(f"pages/{kind}")
        self.inc("images/queued", len(page.get("images") or []))
        return item

    def spider_closed(self, reason: str) -> None:
        work = self.work
        self.inc("redis/backpressure_waits", self.counts["waits"])
        if work.run:
            try:
                self._report(reason)
            except redis_errors():
                pass  # lose() was called: the crawler's token stays, the run is incomplete
        logger.info(
            "crawl finished (%s): pages seen %d, new %d, changed %d; images queued %d for the indexer",
            reason,
            len(self.refresh.seen),
            self.counts["new"],
            self.counts["changed"],
            self.counts["images"],
        )

    def _report(self, reason: str) -> None:
        work = self.work
        report = {
            "seen": sorted(self.refresh.seen),
            "incomplete": sorted(self.refresh.incomplete),
            "listings": dict(self.refresh.open_listings),
            "listed": dict(self.refresh.listed),
        }
        finished = reason == "finished" and not work.lost
        work.redis.eval(
            REPORT,
            0,
            KEYS.prefix,
            work.run,
            work.token,
            json.dumps(report, ensure_ascii=False),
            "1" if finished else "0",
            REPLACED_RUN_TTL,
        )
