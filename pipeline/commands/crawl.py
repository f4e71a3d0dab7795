"""Scrapy's ``crawl`` with one difference: ``-a start=`` may be repeated, and every
value reaches the spider (Scrapy's own keeps only the last)."""

from __future__ import annotations

import argparse

from scrapy.commands.crawl import Command as ScrapyCrawl


class Command(ScrapyCrawl):
    def process_options(self, args: list[str], opts: argparse.Namespace) -> None:
        starts = [a.split("=", 1)[1] for a in opts.spargs if a.startswith("start=")]
        super().process_options(args, opts)
        if len(starts) > 1:
            opts.spargs["start"] = starts
