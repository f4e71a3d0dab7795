"""ValidatePage and DeduplicateImages in-process, on plain dict items (no crawl)."""

from __future__ import annotations

import copy

import pytest
from scrapy.exceptions import DropItem
from scrapy.utils.test import get_crawler

from pipeline.pipelines import DeduplicateImages, ValidatePage


def _image(position: int, url: str) -> dict:
    return {"position": position, "image_url": url, "caption_raw": f"caption {position}", "tags": []}


def _page(*urls: str, **fields) -> dict:
    page = {
        "url": "file:///a.md",
        "format": "yaml",
        "content_hash": "0" * 64,
        "title": "T",
        "tags": [],
        "images": [_image(i, u) for i, u in enumerate(urls)],
    }
    page.update(fields)
    return page


def _stats(step_class):
    crawler = get_crawler()
    return step_class.from_crawler(crawler), crawler.stats


def test_validate_passes_a_valid_page_unchanged_and_counts_nothing():
    step, stats = _stats(ValidatePage)
    page = _page("https://i.test/a.jpg")
    before = copy.deepcopy(page)
    assert step.process_item(page) is page
    assert page == before
    assert not any(key.startswith("pages/invalid") for key in stats.get_stats())


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"url": ""}, "no_url"),
        ({"format": "xml"}, "bad_format"),
        ({"content_hash": "abc"}, "no_content_hash"),
        ({"title": {"a": 1}}, "bad_title"),
        ({"tags": "one"}, "bad_tags"),
        ({"images": None}, "bad_images"),
        ({"images": [_image(1, "https://i.test/a.jpg")]}, "bad_image_record"),  # position must be its index
    ],
)
def test_validate_drops_a_broken_page_with_its_reason_counted(change, problem):
    step, stats = _stats(ValidatePage)
    page = _page("https://i.test/a.jpg", **change)
    with pytest.raises(DropItem, match=problem):
        step.process_item(page)
    assert stats.get_value(f"pages/invalid/{problem}") == 1
    assert stats.get_value("pages/invalid") == 1


def test_deduplicate_marks_each_repeat_with_the_first_position():
    step, stats = _stats(DeduplicateImages)
    a, b, c = "https://i.test/a.jpg", "https://i.test/b.jpg", "https://i.test/c.jpg"
    page = step.process_item(_page(a, b, a, c, b, a))
    assert [image["duplicate_of"] for image in page["images"]] == [None, None, 0, None, 1, 0]
    assert stats.get_value("images/duplicates") == 3


def test_deduplicate_leaves_distinct_images_unmarked_and_counts_nothing():
    step, stats = _stats(DeduplicateImages)
    page = step.process_item(_page("https://i.test/a.jpg", "https://i.test/b.jpg"))
    assert [image["duplicate_of"] for image in page["images"]] == [None, None]
    assert stats.get_value("images/duplicates") is None
    assert step.process_item(_page())["images"] == []
