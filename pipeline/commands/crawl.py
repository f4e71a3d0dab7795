"""Scrapy's ``crawl`` with a few differences: ``-a start=`` may be repeated (Scrapy's own
keeps only the last value), and a crawl that cannot write its index exits non-zero at
once instead of crawling in vain (75, EX_TEMPFAIL, when another crawl holds the index:
cron and systemd treat it as "try again later"), and 1 when the index writer failed
(the index then keeps its last commit)."""

from __future__ import annotations

import argparse
import sys

from scrapy.commands.crawl import Command as ScrapyCrawl
from scrapy.exceptions import UsageError

from index.writer import IndexLocked, SessionLock

EXIT_LOCKED = 75
_FAILED = {"index_locked": EXIT_LOCKED, "index_error": 1}


class Command(ScrapyCrawl):
    def process_options(self, args: list[str], opts: argparse.Namespace) -> None:
        starts = [a.split("=", 1)[1] for a in opts.spargs if a.startswith("start=")]
        super().process_options(args, opts)
        if len(starts) > 1:
            opts.spargs["start"] = starts

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        if len(args) != 1:
            raise UsageError("give exactly one spider name, e.g. scrapy crawl pages -a start=PATH_OR_URL")
        assert self.settings is not None and self.crawler_process is not None
        local_index = self.settings.getbool("INDEX_ENABLED", True) and not self.settings.get("REDIS_URL")
        if local_index and not self.settings.getbool("INDEX_LOCK_WAIT"):
            probe = SessionLock(self.settings.get("INDEX_DIR"))
            try:
                probe.acquire()
            except IndexLocked as exc:
                sys.stderr.write(f"error: {exc}\n")
                self.exitcode = EXIT_LOCKED
                return
            probe.release()
        crawler = self._create_crawler(args[0])
        self.crawler_process.crawl(crawler, **opts.spargs)
        self.crawler_process.start()
        if self.crawler_process.bootstrap_failed:
            self.exitcode = 1
        reason = crawler.stats.get_value("finish_reason") if crawler.stats else None
        self.exitcode = _FAILED.get(reason, self.exitcode)
        if crawler.stats and crawler.stats.get_value("index/errors"):
            # The crawl ran but its last writes did not land (disk full...): a refresh
            # job must not look successful.
            self.exitcode = self.exitcode or 1
