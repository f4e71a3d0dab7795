"""The page item contract, checked in one place: by the ``ValidatePage`` pipeline before
a page is normalized, and by the distributed indexer before it writes an entry that
came through Redis (where anything may have been written).

Pure: plain mappings in, a reason slug (a stats key suffix) or None out."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["FORMATS", "page_problem"]

FORMATS = frozenset({"toml", "yaml", "json", "none"})
_OPTIONAL_TEXT = ("title", "author", "date")
_IMAGE_TEXT = ("link_url", "alt", "caption_raw", "caption", "headline", "site", "board", "image_host", "domain")


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
