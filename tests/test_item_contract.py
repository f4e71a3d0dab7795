"""The item and its image records (issue 17): the documents of real pages are what they
were before the record was declared once, the spider's item carries the parsed page, and
the pipelines and the plain step functions are one and the same work."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import json
from pathlib import Path

import pytest
from itemadapter import ItemAdapter
from scrapy.http import Request, TextResponse
from scrapy.utils.test import get_crawler

from index.model.contract import IMAGE_FIELDS, ImageRecord, page_problem
from index.model.documents import page_documents
from index.options import DeletionGuard, WriterOptions
from pipeline import settings
from pipeline.items import PageContent, PageItem
from pipeline.parsing import Page, parse_page
from pipeline.pipelines import (
    DeduplicateImages,
    NormalizeCaptions,
    NormalizeDomains,
    ValidatePage,
    deletion_guard,
    writer_options,
)
from pipeline.spiders.pages import PagesSpider
from pipeline.steps import mark_duplicates, normalize_captions, normalize_domains

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
# examples/pages and a page of proxied, platform, relative, bad and repeated image URLs;
# the golden file was written by the pipelines as they were before issue 17.
PAGES = [*sorted((ROOT / "examples" / "pages").glob("*.md")), FIXTURES / "mixed_images.md"]
GOLDEN = FIXTURES / "golden_documents.jsonl"
FETCH = {"start": "https://pages.example/", "etag": '"e1"'}
STEPS = (ValidatePage, NormalizeDomains, NormalizeCaptions, DeduplicateImages)


def _json(doc: dict) -> str:
    return json.dumps(doc, ensure_ascii=False, default=lambda v: v.isoformat() if isinstance(v, dt.datetime) else v)


def _through_pipelines(items: list) -> tuple[list, dict]:
    crawler = get_crawler()
    steps = [cls.from_crawler(crawler) for cls in STEPS]
    out = []
    for item in items:
        for step in steps:
            item = step.process_item(item)
        out.append(item)
    return out, crawler.stats.get_stats()


def _items() -> list[PageItem]:
    pages = [parse_page("https://pages.example/" + path.name, path.read_bytes()) for path in PAGES]
    return [PageItem.from_page(page, fetch=dict(FETCH)) for page in pages]


def test_documents_are_what_they_were_before_the_record_was_declared() -> None:
    items, stats = _through_pipelines(_items())
    lines = [_json(doc) for item in items for doc in page_documents(ItemAdapter(item).asdict())]
    assert lines == GOLDEN.read_text("utf-8").splitlines()
    assert (stats.get("images/bad_url"), stats.get("images/duplicates")) == (2, 1)


def test_a_dict_item_comes_out_as_the_dataclass_item_does() -> None:
    dict_items, _ = _through_pipelines([ItemAdapter(item).asdict() for item in _items()])
    items, _ = _through_pipelines(_items())
    assert [_json(d) for d in dict_items] == [_json(ItemAdapter(i).asdict()) for i in items]


def test_image_records_after_the_pipelines_have_exactly_the_declared_keys_in_order() -> None:
    items, _ = _through_pipelines(_items())
    records = [image for item in items for image in item.images]
    assert records
    # The keys as they reach the Redis stream and feed exports: no helper key left behind.
    orders = {tuple(image) for image in records}
    assert orders == {
        (
            *("position", "image_url", "link_url", "alt", "caption_raw"),
            *("image_host", "domain", "caption", "headline", "site", "board", "tags", "duplicate_of"),
        )
    }
    assert set(IMAGE_FIELDS) == set(ImageRecord.__annotations__) == set(next(iter(orders)))
    assert ImageRecord.__required_keys__ == {"position", "image_url", "link_url", "alt", "caption_raw"}


def test_the_parser_sets_the_required_keys_and_the_pipelines_the_rest() -> None:
    page = parse_page("https://pages.example/p.md", b"![a](i.png) Pin on Yoga")
    assert set(page.images[0]) == ImageRecord.__required_keys__
    assert page_problem(ItemAdapter(PageItem.from_page(page, fetch={})).asdict()) is None


def test_the_domain_step_puts_the_platform_in_site_and_the_caption_step_keeps_it_unless_the_caption_names_one() -> None:
    captions = [
        ("https://i.ytimg.com/a.jpg", "Yoga"),
        ("https://i.ytimg.com/b.jpg", "Yoga | Health.com"),
        ("https://cdn.example/c.jpg", "Yoga"),
    ]
    images = [
        {"position": i, "image_url": url, "link_url": None, "alt": "", "caption_raw": raw}
        for i, (url, raw) in enumerate(captions)
    ]
    normalize_domains("https://blog.example/p", images)
    assert [i["site"] for i in images] == ["YouTube", "YouTube", None]
    normalize_captions("https://blog.example/p", images)
    assert [i["site"] for i in images] == ["YouTube", "Health.com", None]


def test_the_pipelines_do_exactly_what_the_step_functions_do() -> None:
    items, stats = _through_pipelines(_items())
    plain = [ItemAdapter(item).asdict() for item in _items()]
    bad = dup = 0
    for page in plain:
        bad += normalize_domains(page["url"], page["images"])
        normalize_captions(page["url"], page["images"])
        dup += mark_duplicates(page["images"])
    assert [_json(p) for p in plain] == [_json(ItemAdapter(i).asdict()) for i in items]
    assert (bad, dup) == (stats.get("images/bad_url"), stats.get("images/duplicates"))


def test_page_and_item_declare_their_content_fields_once() -> None:
    content = [f.name for f in dataclasses.fields(PageContent)]
    assert [f.name for f in dataclasses.fields(Page)] == [*content, "notes"]
    assert [f.name for f in dataclasses.fields(PageItem)] == [*content, "fetch"]
    page = parse_page("https://pages.example/p.md", b"---\ntitle: T\n---\n![a](i.png) x")
    item = PageItem.from_page(page, fetch={"start": "s"})
    assert item.images is page.images  # carried, not copied
    assert {name: getattr(item, name) for name in content} == {name: getattr(page, name) for name in content}
    assert item.fetch == {"start": "s"}


def test_the_spider_yields_the_parsed_page_as_its_item() -> None:
    body = b"---\ntitle: T\ntags: [a]\n---\n![a](https://i.test/x.png) caption"
    crawler = get_crawler(PagesSpider, settings_dict={"INDEX_ENABLED": False})
    spider = PagesSpider.from_crawler(crawler, start="https://pages.example/")
    request = Request("https://pages.example/p.md", meta={"fetch": {"start": "https://pages.example/"}})
    response = TextResponse(request.url, body=body, request=request, headers={"ETag": '"x"'})
    [item] = list(spider.parse(response, start="https://pages.example/"))
    expected = PageItem.from_page(
        parse_page(request.url, body), fetch={"start": "https://pages.example/", "etag": '"x"'}
    )
    assert item == expected


@pytest.mark.parametrize(
    ("options", "read"),
    [(WriterOptions, writer_options), (DeletionGuard, deletion_guard)],
)
def test_setting_defaults_are_defined_once(options, read) -> None:
    """A crawler built without the project's settings (as in tests) reads the same
    defaults as one built with them, and pipeline/settings.py lists them from there."""
    assert read(get_crawler().settings) == options()
    for name, field in options.settings().items():
        assert getattr(settings, name) == getattr(options(), field)


def test_copies_made_by_the_steps_leave_the_parser_record_alone() -> None:
    page = parse_page("https://pages.example/p.md", b"![a](https://i.test/x.png) c")
    before = copy.deepcopy(page.images)
    item = PageItem.from_page(page, fetch={})
    plain = ItemAdapter(item).asdict()
    normalize_domains(plain["url"], plain["images"])
    assert page.images == before
