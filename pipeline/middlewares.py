"""Downloader middlewares of the pages crawler."""

from __future__ import annotations

import logging
from typing import Any, Self
from urllib.parse import urlsplit

from scrapy import Request
from scrapy.crawler import Crawler
from scrapy.exceptions import IgnoreRequest

from pipeline.spiders.pages import ALLOWED_HOSTS, VALIDATORS_FOR

logger = logging.getLogger(__name__)


_VALIDATORS = (b"If-None-Match", b"If-Modified-Since")


class HopCheck:
    """Applies a listing's host rule to every hop of the requests it made, not only to the
    URL it named: a redirect is a new request and passes through here again, so a
    same-host sitemap entry that answers ``302 → http://localhost/...`` is refused before
    the crawler connects there.

    It also keeps a page's validators to its own URL: Scrapy's redirect copies the
    headers, and the target, asked ``If-Modified-Since`` the old page's date, answers 304:
    the page would count as unchanged, nothing be indexed under the target, and the old
    URL be deleted as vanished."""

    def __init__(self, crawler: Crawler) -> None:
        self.stats = crawler.stats

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        return cls(crawler)

    def process_request(self, request: Request, spider: Any = None) -> None:
        owner = request.meta.get(VALIDATORS_FOR)
        if owner is not None and owner != request.url:
            for name in _VALIDATORS:
                request.headers.pop(name, None)
        allowed = request.meta.get(ALLOWED_HOSTS)
        if allowed is None:
            return
        parts = urlsplit(request.url)
        if parts.scheme in ("http", "https") and parts.hostname in allowed:
            return
        request.meta["pages_refused_hop"] = True
        if self.stats is not None:
            self.stats.inc_value("pages/refused/redirect")
        origin = (request.meta.get("redirect_urls") or [request.url])[0]
        logger.warning("refused %s (reached from %s): other host (see PAGES_ALLOWED_HOSTS)", request.url, origin)
        raise IgnoreRequest(f"{request.url}: host not allowed")
