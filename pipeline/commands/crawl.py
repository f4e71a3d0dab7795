"""Scrapy's ``crawl`` with a few differences: ``-a start=`` may be repeated (Scrapy's own
keeps only the last value), a crawl that cannot write its index exits non-zero at once
instead of crawling in vain, and the exit status tells cron and systemd how the crawl
ended (see ``pipeline.exitcodes``)."""

from __future__ import annotations

import argparse
import sys

from scrapy.commands.crawl import Command as ScrapyCrawl
from scrapy.exceptions import UsageError

from index.errors import IndexLocked
from index.writing.lock import SessionLock
from pipeline import settings as defaults
from pipeline.exitcodes import EXIT_FAILED, EXIT_LOCKED, exit_status


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
        s = self.settings
        local_index = s.getbool("INDEX_ENABLED", defaults.INDEX_ENABLED) and not s.get("REDIS_URL")
        if local_index and not s.getbool("INDEX_LOCK_WAIT", defaults.INDEX_LOCK_WAIT):
            probe = SessionLock(s.get("INDEX_DIR"))
            try:
                probe.acquire()
            except IndexLocked as exc:
                sys.stderr.write(f"error: {exc}\n")
                self.exitcode = EXIT_LOCKED
                return
            except OSError as exc:  # not a folder, no permission, read-only file system...
                sys.stderr.write(f"error: cannot use the index directory {s.get('INDEX_DIR')}: {exc}\n")
                self.exitcode = EXIT_FAILED
                return
            probe.release()
        crawler = self._create_crawler(args[0])
        self.crawler_process.crawl(crawler, **opts.spargs)
        self.crawler_process.start()
        stats = crawler.stats.get_stats() if crawler.stats else {}
        self.exitcode = exit_status(stats, bootstrap_failed=self.crawler_process.bootstrap_failed)
