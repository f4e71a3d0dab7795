"""The ``pages`` spider: starts are folders, files, page URLs or sitemaps.

It only moves bytes: every response goes to the pure ``parse_page``; a page that cannot
be parsed is logged with its URL and reason, counted under ``pages/invalid/<reason>``,
and skipped, and the crawl goes on.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import scrapy
from scrapy.http import Response
from scrapy.utils.gz import gunzip, gzip_magic_number
from scrapy.utils.sitemap import Sitemap, sitemap_urls_from_robots

from pipeline.items import PageItem
from pipeline.parsing import PageError, parse_page

logger = logging.getLogger(__name__)

LOCAL_META = {"download_slot": "local-files", "autothrottle_dont_adjust_delay": True}


def split_starts(start: str | Iterable[str] | None) -> list[str]:
    """`-a start=` values: one string, several (repeated -a), or newline-separated."""
    if start is None:
        return []
    values = [start] if isinstance(start, str) else list(start)
    return [s.strip() for v in values for s in v.splitlines() if s.strip()]


def walk_pages(root: Path, extensions: Iterable[str]) -> Iterator[Path]:
    """Page files under ``root``, sorted, without following symlinked folders (loops)."""
    exts = tuple(e.lower() for e in extensions)

    def onerror(err: OSError) -> None:
        logger.warning("cannot read folder %s: %s", err.filename, err.strerror)

    for dirpath, dirnames, filenames in os.walk(root, onerror=onerror):
        dirnames.sort()
        for name in sorted(filenames):
            if name.lower().endswith(exts):
                yield Path(dirpath, name)


def is_sitemap_url(url: str) -> bool:
    path = urlsplit(url).path.lower()
    return path.endswith((".xml", ".xml.gz")) or path.rstrip("/").endswith("robots.txt")


class PagesSpider(scrapy.Spider):
    name = "pages"

    def __init__(self, start: str | list[str] | None = None, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.starts = split_starts(start)

    # -- starts -------------------------------------------------------------------------
    async def start(self) -> AsyncIterator[Any]:
        if not self.starts:
            logger.error("no start given: use scrapy crawl pages -a start=FOLDER|FILE|URL|SITEMAP")
        for start in self.starts:
            for request in self._requests_for(start):
                yield request

    def _requests_for(self, start: str) -> Iterator[scrapy.Request]:
        scheme = urlsplit(start).scheme.lower()
        if scheme in ("http", "https"):
            callback = self.parse_sitemap if is_sitemap_url(start) else self.parse
            yield scrapy.Request(start, callback=callback, cb_kwargs={"start": start})
            return
        path = Path(start[len("file://") :] if scheme == "file" else start).expanduser()
        if path.is_dir():
            exts = self.settings.getlist("PAGES_EXTENSIONS")
            for file in walk_pages(path, exts):
                yield self._file_request(file, start)
        elif path.is_file():
            callback = self.parse_sitemap if is_sitemap_url(path.name) else self.parse
            yield self._file_request(path, start, callback)
        else:
            logger.error("start %s: no such file, folder or URL", start)
            self.crawler.stats.inc_value("pages/invalid/missing_start")

    def _file_request(self, path: Path, start: str, callback: Any = None) -> scrapy.Request:
        return scrapy.Request(
            path.resolve().as_uri(),
            callback=callback or self.parse,
            errback=self.on_error,
            meta=dict(LOCAL_META),
            cb_kwargs={"start": start},
        )

    # -- pages --------------------------------------------------------------------------
    def parse(self, response: Response, start: str | None = None) -> Iterator[PageItem]:
        stats = self.crawler.stats
        stats.inc_value("pages/seen")
        try:
            page = parse_page(response.url, response.body)
        except PageError as exc:
            stats.inc_value("pages/invalid")
            stats.inc_value(f"pages/invalid/{exc.reason}")
            logger.warning("skipped %s: %s", response.url, exc)
            return
        yield PageItem(
            url=page.url,
            title=page.title,
            author=page.author,
            date=page.date,
            tags=page.tags,
            front_matter=page.front_matter,
            format=page.format,
            body_text=page.body_text,
            content_hash=page.content_hash,
            images=page.images,
        )

    def on_error(self, failure: Any) -> None:
        request = failure.request
        reason = type(failure.value).__name__
        self.crawler.stats.inc_value("pages/invalid")
        self.crawler.stats.inc_value("pages/invalid/unreadable")
        logger.warning("skipped %s: unreadable (%s: %s)", request.url, reason, failure.value)

    # -- sitemaps -----------------------------------------------------------------------
    def _allowed(self, url: str, sitemap_url: str) -> bool:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            # Remote content must never make the crawler read local files.
            self.crawler.stats.inc_value("pages/refused/scheme")
            logger.warning("refused %s listed in %s: only http(s) pages", url, sitemap_url)
            return False
        home = urlsplit(sitemap_url).hostname
        allowed = {home, *self.settings.getlist("PAGES_ALLOWED_HOSTS")}
        if urlsplit(sitemap_url).scheme == "file" or parts.hostname in allowed:
            return True
        self.crawler.stats.inc_value("pages/refused/host")
        logger.warning("refused %s listed in %s: other host (see PAGES_ALLOWED_HOSTS)", url, sitemap_url)
        return False

    def parse_sitemap(self, response: Response, start: str | None = None) -> Iterator[scrapy.Request]:
        if response.url.endswith("/robots.txt"):
            urls: Iterable[str] = sitemap_urls_from_robots(response.text, base_url=response.url)
            for url in urls:
                yield response.follow(url, callback=self.parse_sitemap, cb_kwargs={"start": start})
            return
        body = response.body
        if gzip_magic_number(response):
            try:
                body = gunzip(body, max_size=self.settings.getint("DOWNLOAD_MAXSIZE"))
            except OSError as exc:
                self.crawler.stats.inc_value("sitemaps/invalid")
                logger.warning("skipped sitemap %s: %s", response.url, exc)
                return
        try:
            sitemap = Sitemap(body)
        except Exception as exc:  # noqa: BLE001 - lxml raises many types on junk
            self.crawler.stats.inc_value("sitemaps/invalid")
            logger.warning("skipped sitemap %s: %s", response.url, exc)
            return
        self.crawler.stats.inc_value("sitemaps/read")
        meta = LOCAL_META if response.url.startswith("file:") else {}
        for entry in sitemap:
            loc = entry.get("loc")
            if not loc or not self._allowed(loc, response.url):
                continue
            if sitemap.type == "sitemapindex":
                yield scrapy.Request(loc, callback=self.parse_sitemap, cb_kwargs={"start": start}, meta=dict(meta))
            elif sitemap.type == "urlset":
                yield scrapy.Request(loc, callback=self.parse, errback=self.on_error, cb_kwargs={"start": start})
