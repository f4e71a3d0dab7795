"""The spider's listing bookkeeping, in-process (built responses, no crawl): what makes a
start complete, and what leaves it incomplete."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest
from scrapy import Request
from scrapy.http import TextResponse
from scrapy.utils.test import get_crawler

from conftest import sitemap
from pipeline.refresh import RUN
from pipeline.spiders import pages as pages_module
from pipeline.spiders.pages import LISTING, PagesSpider

SITE = "https://site.test"


def spider_for(*starts: str, **settings: object) -> PagesSpider:
    from scrapy.utils.project import get_project_settings

    base = get_project_settings().copy_to_dict()
    base.update({"PROGRESS": False, "TWISTED_REACTOR_ENABLED": False, **settings})
    crawler = get_crawler(PagesSpider, settings_dict=base)
    crawler.spider = PagesSpider.from_crawler(crawler, start=list(starts))
    return crawler.spider


def response(url: str, body: bytes, start: str, flags: list[str] | None = None) -> TextResponse:
    request = Request(url, meta={LISTING: True}, cb_kwargs={"start": start})
    return TextResponse(url, body=body, request=request, flags=flags or [], encoding="utf-8")


def read(spider: PagesSpider, url: str, body: bytes, start: str, **kw: object) -> list[Request]:
    spider.refresh.listing_opened(start)  # as _listing_request does
    return list(spider.parse_sitemap(response(url, body, start, **kw), start=start))


def test_a_folder_walk_read_to_its_end_completes_its_start(tmp_path):
    (tmp_path / "a.md").write_text("x")
    spider = spider_for(str(tmp_path))
    assert len(list(spider._requests_or_error(str(tmp_path)))) == 1
    assert spider.refresh.complete_starts() == {str(tmp_path)}
    assert spider.refresh.listed[str(tmp_path)] == 1


def test_an_unreadable_subfolder_leaves_its_start_incomplete(tmp_path, monkeypatch):
    (tmp_path / "a.md").write_text("x")
    real_walk = os.walk

    def walk(top, onerror=None, **kw):
        if onerror is not None:
            onerror(PermissionError(13, "Permission denied", str(Path(top) / "locked")))
        yield from real_walk(top, onerror=onerror, **kw)

    monkeypatch.setattr(pages_module.os, "walk", walk)
    spider = spider_for(str(tmp_path))
    assert len(list(spider._requests_or_error(str(tmp_path)))) == 1  # the readable page still comes
    assert spider.refresh.complete_starts() == set()
    assert spider.refresh.unfinished_starts() == {str(tmp_path): "unreadable_folder"}


def test_a_start_generator_closed_early_is_not_complete(tmp_path):
    for i in range(3):
        (tmp_path / f"{i}.md").write_text("x")
    spider = spider_for(str(tmp_path))
    gen = spider._requests_or_error(str(tmp_path))
    next(gen)
    gen.close()  # the crawl stopped pulling start requests (a shutdown)
    assert spider.refresh.complete_starts() == set()
    assert spider.refresh.unfinished_starts() == {str(tmp_path): "listing_unfinished"}


def test_a_whole_sitemap_completes_its_start():
    start = f"{SITE}/sitemap.xml"
    spider = spider_for(start)
    requests = read(spider, start, sitemap([f"{SITE}/a.md", f"{SITE}/b.md"]).encode(), start)
    assert [r.url for r in requests] == [f"{SITE}/a.md", f"{SITE}/b.md"]
    assert spider.refresh.open_listings[start] == 0 and start not in spider.refresh.incomplete
    assert spider.refresh.listed[start] == 2


@pytest.mark.parametrize(
    ("body", "flags", "reason"),
    [
        (b"<html><body>Sign in</body></html>", None, "sitemap_not_a_sitemap"),
        (sitemap([f"{SITE}/a.md"]).encode()[:-20], None, "sitemap_not_xml"),
        (sitemap([f"{SITE}/a.md"]).encode(), ["dataloss"], "sitemap_truncated"),
        (gzip.compress(sitemap([f"{SITE}/a.md"]).encode())[:-8], None, "sitemap_bad_gzip"),
        (gzip.compress(sitemap([f"{SITE}/a.md" + " " * 3000]).encode()), None, "sitemap_too_large"),
        (sitemap(["http://[bad/x.md", f"{SITE}/a.md"]).encode(), None, "sitemap_bad_loc"),
    ],
)
def test_a_sitemap_that_cannot_be_read_whole_leaves_its_start_incomplete(body, flags, reason):
    start = f"{SITE}/sitemap.xml"
    spider = spider_for(start, SITEMAP_MAXSIZE=2000)
    read(spider, start, body, start, flags=flags)
    assert spider.refresh.incomplete.get(start) == reason


def test_robots_txt_sitemaps_obey_the_host_and_scheme_rules(tmp_path):
    start = f"{SITE}/robots.txt"
    spider = spider_for(start)
    local = tmp_path / "s.xml"
    local.write_text(sitemap(["http://127.0.0.1/internal.md"]))
    robots = "".join(
        f"Sitemap: {u}\n"
        for u in ("http://localhost:8080/internal.xml", "file:///etc/passwd", local.as_uri(), f"{SITE}/s.xml")
    )
    requests = read(spider, start, robots.encode(), start)
    assert [r.url for r in requests] == [f"{SITE}/s.xml"]
    assert requests[0].meta["pages_allowed_hosts"] == ["site.test"]
    assert spider.crawler.stats.get_value("pages/refused/host") == 1
    assert spider.crawler.stats.get_value("pages/refused/scheme") == 2


def test_any_callback_exception_marks_its_start_or_the_run():
    from twisted.python.failure import Failure

    spider = spider_for(f"{SITE}/a.md")
    req = Request(f"{SITE}/a.md", cb_kwargs={"start": f"{SITE}/a.md"})
    resp = TextResponse(req.url, body=b"", request=req)
    spider._on_spider_error(Failure(KeyError("x")), resp)
    assert spider.refresh.incomplete == {f"{SITE}/a.md": "error:KeyError"}
    spider._on_spider_error(Failure(ValueError("y")), None)
    assert RUN in spider.refresh.incomplete and spider.refresh.complete_starts() == set()


def test_a_dropped_listing_request_leaves_its_start_incomplete_and_a_dropped_page_is_kept():
    start = f"{SITE}/sitemap.xml"
    spider = spider_for(start)
    spider._on_request_dropped(Request(start, meta={LISTING: True}, cb_kwargs={"start": start}))
    spider._on_request_dropped(Request(f"{SITE}/a.md", cb_kwargs={"start": start}))
    assert spider.refresh.incomplete == {start: "listing_dropped"}
    assert f"{SITE}/a.md" in spider.refresh.seen
