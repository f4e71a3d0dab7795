"""The ``pages`` spider: starts are folders, files, page URLs or sitemaps.

It only moves bytes: every response goes to the pure ``parse_page``; a page that cannot
be parsed is logged with its URL and reason, counted under ``pages/invalid/<reason>``,
and skipped, and the crawl goes on.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlsplit

from twisted.internet.defer import CancelledError

try:  # Scrapy >= 2.14 names its own; earlier ones cancel with Twisted's.
    from scrapy.exceptions import DownloadCancelledError
except ImportError:  # pragma: no cover - old Scrapy
    DownloadCancelledError = CancelledError  # type: ignore[misc,assignment]

import scrapy
from scrapy import signals
from scrapy.exceptions import DontCloseSpider
from scrapy.http import Response
from scrapy.spidermiddlewares.httperror import HttpError
from scrapy.utils.gz import gunzip, gzip_magic_number
from scrapy.utils.sitemap import Sitemap, sitemap_urls_from_robots

from pipeline.items import PageItem
from pipeline.parsing import PageError, parse_page
from pipeline.refresh import RefreshState, start_key

logger = logging.getLogger(__name__)

LOCAL_META = {"download_slot": "local-files", "autothrottle_dont_adjust_delay": True}
# 304 is "unchanged" and 404/410 "gone": the callback decides, not HttpErrorMiddleware.
PAGE_META = {"handle_httpstatus_list": [304, 404, 410]}


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


def _header(response: Response, name: bytes) -> str | None:
    value = response.headers.get(name)
    return value.decode("latin-1") if value else None


class PagesSpider(scrapy.Spider):
    name = "pages"

    def __init__(self, start: str | list[str] | None = None, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.starts = split_starts(start)
        # Set by the IndexWriter pipeline when it opens the index; without an index
        # (INDEX_ENABLED=False) every page is fetched and yielded.
        self.refresh: RefreshState | None = None
        self._redis: Any = None
        self._idle_since = 0.0

    @classmethod
    def from_crawler(cls, crawler: Any, *args: Any, **kwargs: Any) -> Self:
        spider = super().from_crawler(crawler, *args, **kwargs)
        if crawler.settings.get("REDIS_URL"):
            # Distributed mode: when idle, take more starts from Redis (see
            # pipeline.distributed); stay open until REDIS_IDLE_CLOSE seconds of nothing.
            crawler.signals.connect(spider._redis_idle, signal=signals.spider_idle)
            spider._idle_since = time.monotonic()
        return spider

    def starts_keys(self) -> list[str]:
        return [start_key(s) for s in self.starts]

    def _redis_idle(self) -> None:
        from index.ingest import KEYS, connect

        if self._redis is None:
            self._redis = connect(self.settings.get("REDIS_URL"))
        # One start per idle round: a start (a folder, a sitemap) is a big unit of work,
        # and the next idle crawler should get the next one.
        starts = self._redis.lpop(KEYS.start_urls, 1) or []
        for start in starts:
            self._idle_since = time.monotonic()
            self.starts.append(start)
            if self.refresh is not None:
                self.refresh.starts.append(start)
            for request in self._requests_or_error(start):
                self.crawler.engine.crawl(request)
        if starts:
            logger.info("took %d starts from Redis", len(starts))
        wait = self.settings.getfloat("REDIS_IDLE_CLOSE", 0)
        if wait and time.monotonic() - self._idle_since >= wait and not starts:
            return
        raise DontCloseSpider

    def _count(self, key: str, n: int = 1) -> None:
        self.crawler.stats.inc_value(key, n)

    def _unchanged(self, url: str) -> None:
        assert self.refresh is not None
        self.refresh.mark_seen(url)
        self._count("pages/unchanged")

    # -- starts -------------------------------------------------------------------------
    async def start(self) -> AsyncIterator[Any]:
        if not self.starts:
            logger.error("no start given: use scrapy crawl pages -a start=FOLDER|FILE|URL|SITEMAP")
        for start in self.starts:
            for request in self._requests_or_error(start):
                yield request

    def _requests_or_error(self, start: str) -> Iterator[scrapy.Request]:
        """A start's requests; a start that fails is logged, counted and marked incomplete,
        and the other starts go on."""
        try:
            yield from self._requests_for(start)
        except Exception as exc:  # noqa: BLE001 - one bad start must not end the others
            logger.error("start %s failed: %s: %s", start, type(exc).__name__, exc)
            self._count("starts/errors")
            if self.refresh is not None:
                self.refresh.mark_incomplete(start)

    def _requests_for(self, start: str) -> Iterator[scrapy.Request]:
        # Pages remember their start in one spelling (absolute path, or the URL), so a
        # later refresh from another directory, or with `./docs` for `docs`, matches it.
        start = start_key(start)
        scheme = urlsplit(start).scheme.lower()
        if scheme in ("http", "https"):
            if is_sitemap_url(start):
                yield scrapy.Request(
                    start, callback=self.parse_sitemap, errback=self.on_sitemap_error, cb_kwargs={"start": start}
                )
            else:
                yield self._page_request(start, start)
            return
        path = Path(start[len("file://") :] if scheme == "file" else start).expanduser()
        if path.is_dir():
            exts = self.settings.getlist("PAGES_EXTENSIONS")
            for file in walk_pages(path, exts):
                request = self._file_request(file, start)
                if request is not None:
                    yield request
        elif path.is_file():
            if is_sitemap_url(path.name):
                yield scrapy.Request(path.resolve().as_uri(), callback=self.parse_sitemap, cb_kwargs={"start": start})
            else:
                request = self._file_request(path, start)
                if request is not None:
                    yield request
        else:
            logger.error("start %s: no such file, folder or URL", start)
            self._count("pages/invalid/missing_start")
            if self.refresh is not None:
                self.refresh.mark_incomplete(start)

    def _file_request(self, path: Path, start: str) -> scrapy.Request | None:
        try:
            stat = path.stat()
            url = path.resolve().as_uri()
        except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop (Python < 3.13)
            url = path.absolute().as_uri()
            self._count("pages/invalid")
            self._count("pages/invalid/unreadable")
            logger.warning("skipped %s: unreadable (%s)", url, getattr(exc, "strerror", None) or exc)
            if self.refresh is not None:
                self.refresh.mark_seen(url)  # keep what was indexed; it may come back
            return None
        if self.refresh is not None and self.refresh.file_unchanged(url, stat):
            self._count("pages/seen")
            self._unchanged(url)
            return None
        maxsize = self.settings.getint("DOWNLOAD_MAXSIZE")
        if maxsize and stat.st_size > maxsize:
            # Scrapy enforces DOWNLOAD_MAXSIZE for HTTP only; files get the same rule.
            self._count("pages/seen")
            self._too_large(url, f"{stat.st_size} bytes > DOWNLOAD_MAXSIZE {maxsize}")
            return None
        meta = dict(LOCAL_META, fetch={"start": start, "size": stat.st_size, "mtime": stat.st_mtime_ns})
        return scrapy.Request(url, callback=self.parse, errback=self.on_error, meta=meta, cb_kwargs={"start": start})

    def _page_request(self, url: str, start: str, lastmod: str | None = None) -> scrapy.Request:
        headers = self.refresh.validators(url) if self.refresh is not None else {}
        meta = dict(PAGE_META, fetch={"start": start, "lastmod": lastmod})
        return scrapy.Request(
            url, callback=self.parse, errback=self.on_error, headers=headers, meta=meta, cb_kwargs={"start": start}
        )

    # -- pages --------------------------------------------------------------------------
    def parse(self, response: Response, start: str | None = None) -> Iterator[PageItem]:
        url = response.url
        self._count("pages/seen")
        if response.status in (404, 410):
            # Not marked seen: once its start completes, the page is deleted.
            self._count("pages/gone")
            logger.info("gone (%d): %s", response.status, url)
            return
        if self.refresh is not None:
            if response.status == 304:
                self._unchanged(url)
                return
            self.refresh.mark_seen(url)
        try:
            page = parse_page(url, response.body)
        except PageError as exc:
            self._count("pages/invalid")
            self._count(f"pages/invalid/{exc.reason}")
            logger.warning("skipped %s: %s", url, exc)
            return
        if self.refresh is not None and self.refresh.content_unchanged(url, page.content_hash):
            self._count("pages/unchanged")
            return
        for note in page.notes:
            self._count(f"pages/notes/{note}")
            logger.warning("partly read %s: %s (Markdown nested too deep; what follows inside it is lost)", url, note)
        max_images = self.settings.getint("PAGES_MAX_IMAGES")
        if max_images and len(page.images) > max_images:
            self._count("pages/images_truncated")
            logger.warning(
                "truncated %s: %d images, kept the first %d (PAGES_MAX_IMAGES)", url, len(page.images), max_images
            )
            page.images = page.images[:max_images]
        fetch = dict(response.meta.get("fetch") or {"start": start})
        if not url.startswith("file:"):
            fetch["etag"] = _header(response, b"ETag")
            fetch["last_modified"] = _header(response, b"Last-Modified")
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
            fetch={k: v for k, v in fetch.items() if v is not None},
        )

    def _too_large(self, url: str, detail: str) -> None:
        if self.refresh is not None:
            self.refresh.mark_seen(url)  # keep what was indexed before it grew
        self._count("pages/invalid")
        self._count("pages/invalid/too_large")
        logger.warning("skipped %s: too_large: %s", url, detail)

    def on_error(self, failure: Any) -> None:
        """Network errors, timeouts, 5xx, unreadable files: keep the old documents."""
        request = failure.request
        value = failure.value
        if isinstance(value, (CancelledError, DownloadCancelledError)) and "max size" in str(value):
            self._count("pages/seen")
            self._too_large(request.url, f"larger than DOWNLOAD_MAXSIZE {self.settings.getint('DOWNLOAD_MAXSIZE')}")
            return
        if self.refresh is not None:
            self.refresh.mark_seen(request.url)
        if isinstance(value, HttpError) and 300 <= value.response.status < 400:
            location = _header(value.response, b"Location") or ""
            if urlsplit(location).scheme.lower() not in ("", "http", "https"):
                # Scrapy does not follow it; say why instead of a bare HTTP error.
                self._count("pages/refused/scheme")
                logger.warning("refused redirect from %s to %s: only http(s) pages", request.url, location)
                return
        self._count("pages/errors")
        logger.warning(
            "could not fetch %s (%s: %s); kept as it was", request.url, type(failure.value).__name__, failure.value
        )

    def on_sitemap_error(self, failure: Any) -> None:
        # Without its sitemap, nothing can be said about what a start no longer lists.
        start = failure.request.cb_kwargs.get("start")
        if self.refresh is not None and start:
            self.refresh.mark_incomplete(start)
        self._count("sitemaps/errors")
        logger.warning(
            "could not fetch sitemap %s (%s: %s)", failure.request.url, type(failure.value).__name__, failure.value
        )

    # -- sitemaps -----------------------------------------------------------------------
    def _allowed(self, url: str, sitemap_url: str) -> bool:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            # Remote content must never make the crawler read local files.
            self._count("pages/refused/scheme")
            logger.warning("refused %s listed in %s: only http(s) pages", url, sitemap_url)
            return False
        home = urlsplit(sitemap_url).hostname
        allowed = {home, *self.settings.getlist("PAGES_ALLOWED_HOSTS")}
        if urlsplit(sitemap_url).scheme == "file" or parts.hostname in allowed:
            return True
        self._count("pages/refused/host")
        logger.warning("refused %s listed in %s: other host (see PAGES_ALLOWED_HOSTS)", url, sitemap_url)
        return False

    def _sitemap_invalid(self, url: str, start: str | None, exc: Exception) -> None:
        self._count("sitemaps/invalid")
        logger.warning("skipped sitemap %s: %s", url, exc)
        if self.refresh is not None and start:
            self.refresh.mark_incomplete(start)

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
                self._sitemap_invalid(response.url, start, exc)
                return
        try:
            sitemap = Sitemap(body)
        except Exception as exc:  # noqa: BLE001 - lxml raises many types on junk
            self._sitemap_invalid(response.url, start, exc)
            return
        self._count("sitemaps/read")
        meta = LOCAL_META if response.url.startswith("file:") else {}
        for entry in sitemap:
            loc = entry.get("loc")
            if not loc or not self._allowed(loc, response.url):
                continue
            if sitemap.type == "sitemapindex":
                yield scrapy.Request(
                    loc,
                    callback=self.parse_sitemap,
                    errback=self.on_sitemap_error,
                    cb_kwargs={"start": start},
                    meta=dict(meta),
                )
            elif sitemap.type == "urlset":
                lastmod = entry.get("lastmod")
                if self.refresh is not None and self.refresh.sitemap_unchanged(loc, lastmod):
                    self._count("pages/seen")
                    self._unchanged(loc)
                    continue
                yield self._page_request(loc, start or response.url, lastmod)
