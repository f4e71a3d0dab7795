"""``scrapy search [OPTIONS] QUERY``: the same search as ``python -m index search``."""

from __future__ import annotations

import argparse
import sys
from typing import Any, ClassVar

from scrapy.commands import ScrapyCommand

from index.cli import SEARCH_USAGE, add_search_arguments, one_line_errors, run_search, unknown_options


class Command(ScrapyCommand):
    requires_project = True
    requires_crawler_process = False  # a search needs no reactor: start fast
    default_settings: ClassVar[dict[str, Any]] = {"LOG_ENABLED": False}

    def syntax(self) -> str:
        return SEARCH_USAGE

    def short_desc(self) -> str:
        return "Search the pages index (same as python -m index search)"

    def long_desc(self) -> str:
        return (
            "Search image captions, headlines, page titles and tags. Exit 0 with hits, "
            "1 with none, 2 on error. The index is INDEX_DIR (-s INDEX_DIR=..., $PAGES_INDEX)."
        )

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        add_search_arguments(parser, with_index=True)
        one_line_errors(parser, f"scrapy search {SEARCH_USAGE}")

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        assert self.settings is not None
        # Scrapy parses with parse_known_args: what it did not know is left in `args`.
        if unknown_options(args, "scrapy search", f"scrapy search {SEARCH_USAGE}", sys.stderr):
            self.exitcode = 2
            return
        self.exitcode = run_search(opts, opts.index or self.settings.get("INDEX_DIR"))
