"""The ``pages`` spider: starts are folders, files, page URLs or sitemaps.

It only moves bytes: every response goes to the pure ``parse_page``; a page that cannot
be parsed is logged with its URL and reason, counted under ``pages/invalid/<reason>``,
and skipped, and the crawl goes on.

It also keeps the refresh record (:class:`pipeline.refresh.RefreshState`): which pages it
saw, and which starts it read completely. A start counts as complete only when each of
its listings (the start itself, the folder walk, every sitemap) reported that it was read
to its end; any failure on the way, foreseen or not (an exception in any callback or
errback, a dropped request, a shutdown), leaves the start incomplete, and an incomplete
start deletes nothing.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from functools import cached_property
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlsplit

import scrapy
from scrapy import signals
from scrapy.exceptions import DontCloseSpider, DownloadCancelledError, IgnoreRequest
from scrapy.http import Response
from scrapy.spidermiddlewares.httperror import HttpError
from scrapy.utils.gz import gzip_magic_number
from scrapy.utils.sitemap import sitemap_urls_from_robots
from twisted.internet.defer import CancelledError

from index.deletion import canonical_start
from pipeline import settings as defaults
from pipeline.items import PageItem
from pipeline.parsing import PageError, parse_page
from pipeline.refresh import RefreshState
from pipeline.sitemaps import SitemapError, gunzip_whole, read_sitemap
from pipeline.siteurls import SiteAddress

logger = logging.getLogger(__name__)

# What Scrapy's RobotsTxtMiddleware raises for a disallowed URL.
ROBOTS_FORBIDDEN = "Forbidden by robots.txt"
LOCAL_META = {"download_slot": "local-files", "autothrottle_dont_adjust_delay": True}
# 304 is "unchanged" and 404/410 "gone": the callback decides, not HttpErrorMiddleware.
PAGE_META = {"handle_httpstatus_list": [304, 404, 410]}
# Requests whose response is a listing of their start (sitemaps, robots.txt).
LISTING = "pages_listing"
# Hosts every hop of a request may reach (checked by pipeline.middlewares.HopCheck).
ALLOWED_HOSTS = "pages_allowed_hosts"
# The URL a request's validators (If-None-Match, If-Modified-Since) belong to: HopCheck
# strips them from any other hop, so a redirect never answers 304 for another URL's state.
VALIDATORS_FOR = "pages_validators_for"


def split_starts(start: str | Iterable[str] | None) -> list[str]:
    """`-a start=` values: one string, several (repeated -a), or newline-separated."""
    if start is None:
        return []
    values = [start] if isinstance(start, str) else list(start)
    return [s.strip() for v in values for s in v.splitlines() if s.strip()]


def walk_pages(
    root: Path, extensions: Iterable[str], onerror: Callable[[OSError], None] | None = None
) -> Iterator[Path]:
    """Page files under ``root``, sorted, without following symlinked folders (loops).
    ``onerror`` hears of every folder that could not be read."""
    exts = tuple(e.lower() for e in extensions)
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


def _start_of(request: Any) -> str | None:
    return getattr(request, "cb_kwargs", {}).get("start") if request is not None else None


def _hops(request: Any) -> list[str]:
    """Every URL a request went through: the listed one, each redirect, the last."""
    return [*request.meta.get("redirect_urls", ()), request.url]


class PagesSpider(scrapy.Spider):
    name = "pages"

    def __init__(self, start: str | list[str] | None = None, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.starts = split_starts(start)
        # The pipeline that writes the index loads the known page states into it; without
        # an index (INDEX_ENABLED=False) it stays empty and every page is fetched.
        self.refresh = RefreshState(starts=self.starts_keys())
        self._idle_since = 0.0
        # For the progress line's total: listings not yet ended, whatever their outcome.
        self._listings_pending = 0
        self._starts_pulled = False

    @classmethod
    def from_crawler(cls, crawler: Any, *args: Any, **kwargs: Any) -> Self:
        spider = super().from_crawler(crawler, *args, **kwargs)
        spider.site  # noqa: B018 - a bad base_url stops the crawl before it starts
        crawler.signals.connect(spider._on_spider_error, signal=signals.spider_error)
        crawler.signals.connect(spider._on_request_dropped, signal=signals.request_dropped)
        if crawler.settings.get("REDIS_URL"):
            # Distributed mode: when idle, take more starts from Redis (see
            # pipeline.distributed); stay open until REDIS_IDLE_CLOSE seconds of nothing.
            crawler.signals.connect(spider._redis_idle, signal=signals.spider_idle)
            # Counted from the spider's opening, not the crawler's creation: a crawler slow
            # to start (a loaded machine) closed at its first idle check, before any start.
            crawler.signals.connect(spider._start_idle_clock, signal=signals.spider_opened)
        return spider

    @cached_property
    def site(self) -> SiteAddress:
        """File pages' published addresses: ``-a base_url=`` or PAGES_BASE_URL (see
        pipeline.siteurls); without either, a file page keeps its `file:` URL."""
        return SiteAddress(getattr(self, "base_url", None) or self.settings.get("PAGES_BASE_URL"))

    def _start_idle_clock(self) -> None:
        self._idle_since = time.monotonic()

    def starts_keys(self) -> list[str]:
        return [canonical_start(s) for s in self.starts]

    def _redis_idle(self) -> None:
        from pipeline.distributed import work_of

        # One start per idle round: a start (a folder, a sitemap) is a big unit of work,
        # and the next idle crawler should get the next one.
        started = work_of(self.crawler).queue_next_start(self._requests_of_taken_start)
        if started:
            self._idle_since = time.monotonic()
        wait = self.settings.getfloat("REDIS_IDLE_CLOSE", defaults.REDIS_IDLE_CLOSE)
        if wait and time.monotonic() - self._idle_since >= wait and not started:
            return
        raise DontCloseSpider

    def _requests_of_taken_start(self, start: str) -> Iterator[scrapy.Request]:
        self.starts.append(start)
        self.refresh.starts.append(canonical_start(start))
        return self._requests_or_error(start)

    def _count(self, key: str, n: int = 1) -> None:
        self.crawler.stats.inc_value(key, n)

    def _unchanged(self, url: str) -> None:
        self.refresh.mark_seen(url)
        self._count("pages/unchanged")

    def _listed(self, start: str, n: int = 1, *, counted: bool = False) -> None:
        self.refresh.count_listed(start, n)
        if not counted:
            self._count("pages/listed", n)

    def _listing_ended(self) -> None:
        self._listings_pending -= 1
        self._check_listed_all()

    def _check_listed_all(self) -> None:
        """Tell the progress line that ``pages/listed`` is now the final total."""
        if self._starts_pulled and self._listings_pending <= 0:
            self.crawler.stats.set_value("pages/listed_all", 1)

    def _incomplete(self, start: str | None, reason: str) -> None:
        self.refresh.mark_incomplete(start, reason)

    # -- failures nobody listed ---------------------------------------------------------
    def _on_spider_error(self, failure: Any, response: Any, spider: Any = None) -> None:
        """Any exception in a callback or errback: its start (or, when it cannot be told,
        the whole run) is incomplete."""
        request = getattr(response, "request", None)
        self._incomplete(_start_of(request), f"error:{type(failure.value).__name__}")

    def _on_request_dropped(self, request: scrapy.Request, spider: Any = None) -> None:
        if request.meta.get(LISTING):
            # Its listing stays open, so its start stays incomplete; say why.
            self._incomplete(_start_of(request), "listing_dropped")
            self._listing_ended()
        else:
            # A page listed twice, or resumed from a JOBDIR: keep what was indexed.
            self.refresh.mark_seen(request.url)
        self._count("requests/dropped")

    # -- starts -------------------------------------------------------------------------
    async def start(self) -> AsyncIterator[Any]:
        if not self.starts and not self.settings.get("REDIS_URL"):
            # A distributed crawler takes its starts from Redis (python -m index enqueue).
            logger.error("no start given: use scrapy crawl pages -a start=FOLDER|FILE|URL|SITEMAP")
        for start in self.starts:
            for request in self._requests_or_error(start):
                yield request
        self._starts_pulled = True
        self._check_listed_all()

    def _requests_or_error(self, start: str) -> Iterator[scrapy.Request]:
        """A start's requests; a start that fails is logged, counted and left incomplete,
        and the other starts go on. Reaching the end is the start's first proof of
        completeness; a generator closed before (a shutdown) leaves it open."""
        key = canonical_start(start)
        self.refresh.listing_opened(key)
        try:
            yield from self._requests_for(key)
        except Exception as exc:  # noqa: BLE001 - one bad start must not end the others
            logger.error("start %s failed: %s: %s", start, type(exc).__name__, exc)
            self._count("starts/errors")
            self._incomplete(key, f"error:{type(exc).__name__}")
        else:
            self.refresh.listing_read(key)

    def _requests_for(self, start: str) -> Iterator[scrapy.Request]:
        # Pages remember their start in one spelling (absolute path, or the URL), so a
        # later refresh from another directory, or with `./docs` for `docs`, matches it.
        scheme = urlsplit(start).scheme.lower()
        if scheme in ("http", "https"):
            if is_sitemap_url(start):
                yield self._listing_request(start, start)
            else:
                self._listed(start)
                yield self._page_request(start, start)
            return
        path = Path(start[len("file://") :] if scheme == "file" else start).expanduser()
        if path.is_dir():
            yield from self._walk(path, start)
        elif path.is_file():
            if is_sitemap_url(path.name):
                yield self._listing_request(path.resolve().as_uri(), start, local=True)
            else:
                self._listed(start)
                # Known by the path named, as a folder's files are (a symlinked folder on the way).
                request = self._file_request(path, start, (path.parent, path.parent.resolve()))
                if request is not None:
                    yield request
        else:
            logger.error("start %s: no such file, folder or URL", start)
            self._count("pages/invalid/missing_start")
            self._incomplete(start, "missing_start")

    def _walk(self, root: Path, start: str) -> Iterator[scrapy.Request]:
        def onerror(err: OSError) -> None:
            # Every page under an unreadable folder would look deleted: not this start.
            logger.warning("cannot read folder %s: %s; nothing of %s is deleted", err.filename, err.strerror, start)
            self._count("starts/unreadable_folders")
            self._incomplete(start, "unreadable_folder")

        real_root = root.resolve()
        outside_ok = self.settings.getbool("PAGES_FOLLOW_SYMLINKS_OUTSIDE")
        extensions = self.settings.getlist("PAGES_EXTENSIONS")
        # Scrapy pulls start requests lazily, so without a first pass (names only, no
        # stat) the progress line would learn the folder's size only at the end.
        self._count("pages/listed", sum(1 for _ in walk_pages(root, extensions)))
        for file in walk_pages(root, extensions, onerror):
            self._listed(start, counted=True)
            if file.is_symlink() and not outside_ok and not _inside(file, real_root):
                self._count("pages/refused/symlink")
                logger.warning(
                    "refused %s: a symlink to a file outside %s (see PAGES_FOLLOW_SYMLINKS_OUTSIDE)", file, root
                )
                continue
            request = self._file_request(file, start, (root, real_root))
            if request is not None:
                yield request

    def _listing_request(
        self, url: str, start: str, *, local: bool = False, allowed_hosts: list[str] | None = None
    ) -> scrapy.Request:
        """A sitemap (or robots.txt) request: a listing its start waits for."""
        self.refresh.listing_opened(start)
        self._listings_pending += 1
        maxsize = self.settings.getint("SITEMAP_MAXSIZE")
        meta: dict[str, Any] = {LISTING: True, "download_maxsize": maxsize, "download_warnsize": maxsize}
        if local:
            meta.update(LOCAL_META)
        if allowed_hosts is not None:
            meta[ALLOWED_HOSTS] = allowed_hosts
        return scrapy.Request(
            url, callback=self.parse_sitemap, errback=self.on_sitemap_error, meta=meta, cb_kwargs={"start": start}
        )

    def _file_request(self, path: Path, start: str, root: tuple[Path, Path] | None = None) -> scrapy.Request | None:
        """``root``: the folder as the user named it and as it resolves. A page under it
        is known by the named path (a ``current -> releases/v1`` folder switched to
        ``v2`` keeps its pages' URLs: changed pages are replaced, gone ones deleted)."""
        try:
            stat = path.stat()
            url = _file_url(path.resolve(), root)
        except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop (Python < 3.13)
            url = path.absolute().as_uri()
            self._count("pages/invalid")
            self._count("pages/invalid/unreadable")
            logger.warning("skipped %s: unreadable (%s)", url, getattr(exc, "strerror", None) or exc)
            self._hold(url, start)  # keep what was indexed; it may come back
            return None
        key = self.site.key(url, start)  # the page's URL in the index
        if self.refresh.file_unchanged(key, stat):
            self._count("pages/seen")
            self._unchanged(key)
            return None
        maxsize = self.settings.getint("DOWNLOAD_MAXSIZE")
        if maxsize and stat.st_size > maxsize:
            # Scrapy enforces DOWNLOAD_MAXSIZE for HTTP only; files get the same rule.
            self._count("pages/seen")
            self._hold(url, start)
            self._too_large(key, f"{stat.st_size} bytes > DOWNLOAD_MAXSIZE {maxsize}")
            return None
        meta = dict(LOCAL_META, fetch={"start": start, "size": stat.st_size, "mtime": stat.st_mtime_ns})
        return scrapy.Request(url, callback=self.parse, errback=self.on_error, meta=meta, cb_kwargs={"start": start})

    def _page_request(
        self, url: str, start: str, lastmod: str | None = None, allowed_hosts: list[str] | None = None
    ) -> scrapy.Request:
        headers = self.refresh.validators(url)
        meta: dict[str, Any] = dict(PAGE_META, fetch={"start": start, "lastmod": lastmod})
        if headers:
            meta[VALIDATORS_FOR] = url
        if allowed_hosts is not None:
            meta[ALLOWED_HOSTS] = allowed_hosts
        return scrapy.Request(
            url, callback=self.parse, errback=self.on_error, headers=headers, meta=meta, cb_kwargs={"start": start}
        )

    # -- pages --------------------------------------------------------------------------
    def parse(self, response: Response, start: str | None = None) -> Iterator[PageItem]:
        url = response.url
        # With a site address, a file page is known by its published URL; it is marked
        # seen once its front matter says which (by path alone if it cannot be read).
        key = self.site.key(url, start)
        self._count("pages/seen")
        if response.status in (404, 410):
            # Not marked seen: once its start completes, the page is deleted.
            self._count("pages/gone")
            logger.info("gone (%d): %s", response.status, url)
            return
        if response.status == 304:
            if response.meta.get("redirect_urls"):
                # HopCheck sends no validators to a redirect's target; a 304 there says
                # nothing about either URL: keep both as they are.
                self._keep(response.request, "pages/errors")
                listed = response.meta["redirect_urls"][0]
                logger.warning("kept %s: its redirect to %s answered 304 unasked", listed, url)
                return
            self._unchanged(url)
            return
        # Only the URL that answered: a listed URL that now redirects is indexed under its
        # target, and its own documents go (a clean crawl would hold only the target).
        if key == url:
            self.refresh.mark_seen(url)
        if "dataloss" in response.flags:
            self._keep(response.request, "pages/errors")
            logger.warning("could not fetch %s (the body was cut short); kept as it was", url)
            return
        try:
            page = parse_page(url, response.body)
        except PageError as exc:
            self._count("pages/invalid")
            self._count(f"pages/invalid/{exc.reason}")
            # A page that was valid keeps its last valid version (a file caught half
            # written must not vanish for a run), counted by name.
            kept = self._keep(response.request)
            if kept:
                self._count("pages/kept/invalid", kept)
            logger.warning("skipped %s: %s%s", url, exc, "; its indexed version is kept" if kept else "")
            return
        page.url = self.site.published(url, start, page.front_matter)
        self.refresh.mark_seen(page.url)
        if self.refresh.content_unchanged(page.url, page.content_hash):
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
        yield PageItem.from_page(page, fetch={k: v for k, v in fetch.items() if v is not None})

    def _hold(self, url: str, start: str | None) -> None:
        """Keep what the index holds for the page read from ``url``. With a site address,
        a file page's published URL may come from its front matter (``url``, ``slug``,
        ``permalink``), which a page that cannot be read does not give: unless the index
        holds it under its address by path, its start deletes nothing this run (the page
        is indexed under an address only its front matter knows)."""
        key = self.site.key(url, start)
        self.refresh.mark_seen(key)
        if self.site and url.startswith("file:") and key not in self.refresh.states:
            self.refresh.mark_incomplete(start, "page_address_unknown")

    def _too_large(self, url: str, detail: str) -> None:
        self.refresh.mark_seen(url)  # keep what was indexed before it grew
        self._count("pages/invalid")
        self._count("pages/invalid/too_large")
        logger.warning("skipped %s: too_large: %s", url, detail)

    def _keep(self, request: Any, stat: str | None = None) -> int:
        """Keep what the index holds for every URL the request went through (a file page
        by its address, see :meth:`SiteAddress.key`); the number of them it holds."""
        start = _start_of(request)
        through = list(_hops(request)) if request is not None else []
        for url in through:
            self._hold(url, start)
        hops = [self.site.key(url, start) for url in through]
        if stat:
            self._count(stat)
        return sum(1 for url in hops if url in self.refresh.states)

    def on_error(self, failure: Any) -> None:
        """Network errors, timeouts, 5xx, unreadable files, refused hops: keep the old
        documents (of the listed URL too, when the failure came after a redirect). A page
        robots.txt now disallows is gone, as for a clean crawl."""
        request = failure.request
        value = failure.value
        if isinstance(value, IgnoreRequest) and str(value) == ROBOTS_FORBIDDEN:
            self._count("pages/seen")
            self._count("pages/gone")
            self._count("pages/gone/robots")
            logger.info("disallowed by robots.txt: %s", request.url)
            return
        self._keep(request)
        if _over_maxsize(value):
            self._count("pages/seen")
            self._too_large(request.url, f"larger than DOWNLOAD_MAXSIZE {self.settings.getint('DOWNLOAD_MAXSIZE')}")
            return
        if isinstance(value, HttpError) and 300 <= value.response.status < 400:
            location = _header(value.response, b"Location") or ""
            if urlsplit(location).scheme.lower() not in ("", "http", "https"):
                # Scrapy does not follow it; say why instead of a bare HTTP error.
                self._count("pages/refused/scheme")
                logger.warning("refused redirect from %s to %s: only http(s) pages", request.url, location)
                return
        if isinstance(value, IgnoreRequest) and request.meta.get("pages_refused_hop"):
            return  # HopCheck counted and logged it
        self._count("pages/errors")
        logger.warning(
            "could not fetch %s (%s: %s); kept as it was", request.url, type(failure.value).__name__, failure.value
        )

    def on_sitemap_error(self, failure: Any) -> None:
        # Without its sitemap, nothing can be said about what a start no longer lists.
        start = _start_of(failure.request)
        self._listing_ended()
        reason = "too_large" if _over_maxsize(failure.value) else "fetch_error"
        self._incomplete(start, f"sitemap_{reason}")
        self._count("sitemaps/errors")
        logger.warning(
            "could not fetch sitemap %s (%s: %s); nothing of %s is deleted",
            failure.request.url,
            type(failure.value).__name__,
            failure.value,
            start,
        )

    # -- sitemaps -----------------------------------------------------------------------
    def _allowed_hosts(self, listing_url: str) -> list[str] | None:
        """Hosts a listing may send the crawler to; None for a local listing the user
        named (its pages may live anywhere)."""
        parts = urlsplit(listing_url)
        if parts.scheme == "file":
            return None
        return sorted({parts.hostname or "", *self.settings.getlist("PAGES_ALLOWED_HOSTS")})

    def _allowed(self, url: str, listing_url: str, start: str | None, allowed: list[str] | None) -> bool:
        """Whether a URL a listing names may be fetched: http(s) only (remote content must
        never make the crawler read local files), on one of the listing's ``allowed`` hosts
        (:meth:`_allowed_hosts`, worked out once per listing; None: any host)."""
        try:
            parts = urlsplit(url)
            host = parts.hostname
        except ValueError as exc:
            # An entry that cannot be read: the listing is not whole.
            self._count("sitemaps/bad_loc")
            self._incomplete(start, "sitemap_bad_loc")
            logger.warning("skipped %r listed in %s: %s; nothing of %s is deleted", url, listing_url, exc, start)
            return False
        if parts.scheme not in ("http", "https") or not host:
            self._count("pages/refused/scheme")
            logger.warning("refused %s listed in %s: only http(s) pages", url, listing_url)
            return False
        if allowed is None or host in allowed:
            return True
        self._count("pages/refused/host")
        logger.warning("refused %s listed in %s: other host (see PAGES_ALLOWED_HOSTS)", url, listing_url)
        return False

    def _sitemap_invalid(self, url: str, start: str | None, reason: str, detail: object) -> None:
        self._count("sitemaps/invalid")
        self._count(f"sitemaps/invalid/{reason}")
        self._incomplete(start, f"sitemap_{reason}")
        logger.warning("skipped sitemap %s: %s: %s; nothing of %s is deleted", url, reason, detail, start)

    def parse_sitemap(self, response: Response, start: str | None = None) -> Iterator[scrapy.Request]:
        start = start or response.url
        try:
            yield from self._read_listing(response, start)
            # Reached only when every entry was read and followed: the proof of completeness.
            self.refresh.listing_read(start)
        finally:
            self._listing_ended()

    def _read_listing(self, response: Response, start: str) -> Iterator[scrapy.Request]:
        if "dataloss" in response.flags:
            self._sitemap_invalid(response.url, start, "truncated", "the body was cut short")
            return
        hosts = self._allowed_hosts(response.url)
        if urlsplit(response.url).path.endswith("/robots.txt"):
            for url in sitemap_urls_from_robots(response.body, base_url=response.url):
                if self._allowed(url, response.url, start, hosts):
                    yield self._listing_request(url, start, allowed_hosts=hosts)
            return
        maxsize = self.settings.getint("SITEMAP_MAXSIZE")
        body = response.body
        try:
            if gzip_magic_number(response):
                body = gunzip_whole(body, maxsize)
            if len(body) > maxsize:
                raise SitemapError("too_large", f"{len(body)} bytes > SITEMAP_MAXSIZE {maxsize}")
            sitemap = read_sitemap(body)
        except SitemapError as exc:
            self._sitemap_invalid(response.url, start, exc.reason, exc)
            return
        self._count("sitemaps/read")
        for entry in sitemap.entries:
            loc = entry["loc"]
            if sitemap.type == "urlset":
                self._listed(start)
            if not self._allowed(loc, response.url, start, hosts):
                continue
            if sitemap.type == "sitemapindex":
                yield self._listing_request(loc, start, allowed_hosts=hosts)
                continue
            lastmod = entry.get("lastmod")
            if self.refresh.sitemap_unchanged(loc, lastmod):
                self._count("pages/seen")
                self._unchanged(loc)
                continue
            yield self._page_request(loc, start, lastmod, allowed_hosts=hosts)

    def closed(self, reason: str) -> None:
        unfinished = self.refresh.unfinished_starts()
        for start, why in sorted(unfinished.items()):
            self._count("starts/incomplete")
            self._count(f"starts/incomplete/{why.split(':')[0]}")
            logger.info("start %s is incomplete (%s): none of its pages are deleted", start, why)


def _file_url(resolved: Path, root: tuple[Path, Path] | None) -> str:
    if root is not None:
        named, real = root
        if resolved.is_relative_to(real):
            return (named / resolved.relative_to(real)).as_uri()
    return resolved.as_uri()


def _inside(file: Path, real_root: Path) -> bool:
    """Whether a symlink's target lies under the start folder. A loop or a dangling link
    counts as inside: reading it fails, and that is reported as unreadable."""
    try:
        return file.resolve(strict=True).is_relative_to(real_root)
    except (OSError, RuntimeError):
        return True


def _over_maxsize(value: object) -> bool:
    """Scrapy's ways of saying "bigger than the size limit": a cancelled download, or
    (for a Content-Encoding bomb) an IgnoreRequest from HttpCompressionMiddleware."""
    if isinstance(value, (CancelledError, DownloadCancelledError)):
        return "max size" in str(value)
    return isinstance(value, IgnoreRequest) and "DOWNLOAD_MAXSIZE" in str(value)
