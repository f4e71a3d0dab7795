"""The crawl's progress line (``PROGRESS``, on by default): live on a terminal, a
``progress:`` log line every ``LOGSTATS_INTERVAL`` elsewhere.

It takes the place of Scrapy's LogStats (``Crawled N pages (at N pages/min)``) rather than
adding a second periodic line that says less: the same interval, the same final
``responses_per_minute``/``items_per_minute`` stats, and with ``-s PROGRESS=False`` it *is*
LogStats again. The figures come from the crawl stats only: ``pages/seen`` done, of the
spider's ``pages/listed`` -- a total with a percentage and an ETA only once the spider sets
``pages/listed_all`` (every start's listings read to their end; before that, Scrapy pulls
the start requests, and so the folder walk, lazily, and the count runs just ahead of the
pages done). Commits are read off the index as the writer process makes them (the
``index/commits`` stat only arrives when the writer closes).
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Self

from scrapy import Spider, signals
from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured
from scrapy.extensions.logstats import LogStats
from scrapy.statscollectors import StatsCollector
from scrapy.utils.asyncio import create_looping_call

from index.progress import IndexGenerations, LiveLine, RateMeter, crawl_line, wants_live
from pipeline import settings as defaults

logger = logging.getLogger(__name__)

# How often the terminal line is redrawn, and the window its rates are taken over.
REDRAW_SECONDS = 0.5
RATE_WINDOW_SECONDS = 10.0


class Progress(LogStats):
    def __init__(
        self,
        stats: StatsCollector,
        interval: float = 60.0,
        *,
        enabled: bool = True,
        live: bool = False,
        index_dir: str | None = None,
    ) -> None:
        super().__init__(stats, interval or 60.0)
        self.enabled = enabled
        self.line = LiveLine(sys.stderr) if enabled and live else None
        self.index_dir = index_dir
        self.generations: IndexGenerations | None = None
        window = max(RATE_WINDOW_SECONDS, self.interval)
        self.pages_meter, self.docs_meter = RateMeter(window), RateMeter(window)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        s = crawler.settings
        interval = s.getfloat("LOGSTATS_INTERVAL")
        enabled = s.getbool("PROGRESS", defaults.PROGRESS)
        # A log file is "not a terminal" even when the crawl was started from one.
        live = enabled and not s.get("LOG_FILE") and wants_live(sys.stderr)
        if not interval and not live:
            raise NotConfigured  # LOGSTATS_INTERVAL=0 and no terminal: nothing to show
        local_index = s.getbool("INDEX_ENABLED", defaults.INDEX_ENABLED) and not s.get("REDIS_URL")
        o = cls(
            crawler.stats, interval, enabled=enabled, live=live, index_dir=s.get("INDEX_DIR") if local_index else None
        )
        crawler.signals.connect(o.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(o.spider_closed, signal=signals.spider_closed)
        crawler.signals.connect(o.engine_stopped, signal=signals.engine_stopped)
        return o

    def spider_opened(self, spider: Spider) -> None:
        if self.index_dir is not None:
            self.generations = IndexGenerations(self.index_dir)
        if self.line is None:
            super().spider_opened(spider)  # LogStats' timer, calling log() every interval
            return
        self.pagesprev, self.itemsprev = 0, 0
        self.line.start(self.figures())
        self.task = create_looping_call(self.redraw)
        self.task.start(REDRAW_SECONDS)

    def figures(self) -> str:
        get = self.stats.get_value
        now = time.monotonic()
        done = get("pages/seen", 0) + get("pages/invalid/unreadable", 0)
        images = get("images/indexed", 0)
        self.pages_meter.add(now, done)
        self.docs_meter.add(now, images)
        commits = None
        if self.generations is not None:
            commits = max(self.generations.commits(), get("index/commits", 0))
        return crawl_line(
            done=done,
            total=get("pages/listed") or None,
            total_final=bool(get("pages/listed_all")),
            images=images,
            docs_per_s=self.docs_meter.rate(),
            pages_per_s=self.pages_meter.rate(),
            commits=commits,
            unchanged=get("pages/unchanged", 0),
            invalid=get("pages/invalid", 0),
        )

    def log(self, spider: Spider) -> None:
        if not self.enabled:
            super().log(spider)
            return
        logger.info("progress: %s", self.figures(), extra={"spider": spider})

    def redraw(self) -> None:
        if self.line is not None:
            self.line.update(self.figures())

    def spider_closed(self, spider: Spider, reason: str) -> None:
        if self.line is None:
            super().spider_closed(spider, reason)
            return
        # The line stays up while the other spider_closed handlers run (the writer's
        # last commit can take a while): only LogStats' final figures are taken now.
        rpm, ipm = self.calculate_final_stats(spider)
        self.stats.set_value("responses_per_minute", rpm)
        self.stats.set_value("items_per_minute", ipm)

    def engine_stopped(self) -> None:
        if self.task is not None and self.task.running:
            self.task.stop()
        if self.line is not None:
            self.line.stop()
