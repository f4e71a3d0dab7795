"""The page item contract, declared and checked in one place: the shape of an image
record (:class:`ImageRecord`), and :func:`page_problem`, which the ``ValidatePage``
pipeline runs before a page is normalized and the distributed indexer before it writes
an entry that came through Redis (where anything may have been written).

Pure: plain mappings in, a reason slug (a stats key suffix) or None out. No Whoosh or
Scrapy is imported for it, but importing any ``index`` module applies the Whoosh fixes
(``index/__init__.py``): the parser refers to these types for type checking only."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypedDict, get_type_hints

__all__ = ["FORMATS", "IMAGE_FIELDS", "ImageRecord", "ParsedImage", "page_problem"]

FORMATS = frozenset({"toml", "yaml", "json", "none"})
_OPTIONAL_TEXT = ("title", "author", "date")


class ParsedImage(TypedDict):
    """An image as the parser (:func:`pipeline.parsing.parse_page`) finds it."""

    position: int
    image_url: str  # as written; the domain step cleans it
    link_url: str | None
    alt: str
    caption_raw: str


class ImageRecord(ParsedImage, total=False):
    """One image of a page (README, "What a page becomes"): what the parser found, and
    what the item pipelines fill in, each step its own (:mod:`pipeline.steps`). The order
    of the keys here is the order of an image document's stored record."""

    # The caption step (pipeline.steps.normalize_captions):
    caption: str
    headline: str
    # The domain step sets the platform that serves the image (`Pinterest` for
    # i.pinimg.com) or None; the caption step replaces it with the publisher the caption
    # names, keeping the platform when it names none.
    site: str | None
    board: str | None
    tags: list[str]
    # The domain step (pipeline.steps.normalize_domains):
    image_host: str | None
    domain: str | None
    # The duplicate step (pipeline.steps.mark_duplicates):
    duplicate_of: int | None


IMAGE_FIELDS: tuple[str, ...] = tuple(ImageRecord.__annotations__)
# Fields that hold text (null allowed: an entry from Redis may lack any of them);
# image_url is checked on its own, as it must be there.
_IMAGE_TEXT = tuple(
    name for name, kind in get_type_hints(ImageRecord).items() if kind in (str, str | None) and name != "image_url"
)


def _text_or_none(value: Any) -> bool:
    return value is None or isinstance(value, str)


def _str_list(value: Any) -> bool:
    return value is None or (isinstance(value, list) and all(isinstance(v, str) for v in value))


def page_problem(page: Mapping[str, Any]) -> str | None:
    """Why a page breaks the item contract, as a stats slug, or None.

    >>> page_problem({"url": "u", "format": "none", "content_hash": "0" * 64, "images": []}) is None
    True
    >>> page_problem({"url": "u", "format": "none", "content_hash": "0" * 64, "images": [1]})
    'bad_image_record'
    >>> page_problem({"url": "u", "format": "none", "content_hash": "0" * 64, "images": [], "title": {}})
    'bad_title'
    """
    if not isinstance(page, Mapping):
        return "not_a_page"
    if not isinstance(page.get("url"), str) or not page.get("url"):
        return "no_url"
    if page.get("format") not in FORMATS:
        return "bad_format"
    content_hash = page.get("content_hash")
    if not isinstance(content_hash, str) or len(content_hash) != 64:
        return "no_content_hash"
    for name in _OPTIONAL_TEXT:
        if not _text_or_none(page.get(name)):
            return f"bad_{name}"
    if not _str_list(page.get("tags")):
        return "bad_tags"
    images = page.get("images")
    if not isinstance(images, list):
        return "bad_images"
    for i, image in enumerate(images):
        if not isinstance(image, dict) or image.get("position") != i or not isinstance(image.get("image_url"), str):
            return "bad_image_record"
        if not all(_text_or_none(image.get(name)) for name in _IMAGE_TEXT) or not _str_list(image.get("tags")):
            return "bad_image_record"
    return None
