"""Page item → Whoosh documents. Plain dicts in, plain dicts out (no Whoosh import), so
the crawl process can build documents and the writer process only has to add them."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

from index.model.contract import IMAGE_FIELDS, ImageRecord

__all__ = ["IMAGE_FIELDS", "TEXT_SECTIONS", "index_date", "page_documents"]

# The field weights, defined here once: headline > title > caption as people expect, alt
# text and tags in between. They are the section weights of the combined search field
# `text` (index.model.schema.BoostedText), the separate fields' index-time boosts where the
# schema has one, and what index.search.parse's parser adds on top, so that a word weighs the
# same in a field of its own (a phrase) as in the combined field.
TEXT_SECTIONS = {"headline": 3.0, "title": 2.0, "tags": 1.5, "caption": 1.0, "alt": 0.8}

# Page-level state kept for refresh (validators, file facts) besides the contract fields.
STATE_FIELDS = ("etag", "last_modified", "lastmod", "size", "mtime", "last_seen", "start")


def index_date(value: str | None) -> dt.datetime | None:
    """ISO string → naive datetime for Whoosh's DATETIME field (aware values in UTC)."""
    if not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
        if parsed.tzinfo is not None:
            parsed = parsed.astimezone(dt.UTC).replace(tzinfo=None)
    except (ValueError, OverflowError, TypeError):
        # `9999-12-31T23:59:59-01:00` is past the end of Python's calendar in UTC: the
        # page is indexed without a date (its record keeps the text as written).
        return None
    return parsed


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def page_documents(item: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The page document followed by one document per image, in page order.

    The page document also keeps the item's ``fetch`` facts (validators, file size and
    mtime, start) so that a refresh can tell unchanged pages without reading them."""
    url = item["url"]
    page_tags = list(item.get("tags") or [])
    date = index_date(item.get("date"))
    images: list[ImageRecord] = item.get("images") or []
    page_record = {
        "url": url,
        "title": item.get("title"),
        "author": item.get("author"),
        "date": item.get("date"),
        "tags": page_tags,
        "format": item.get("format"),
        "front_matter": item.get("front_matter") or {},
        "content_hash": item.get("content_hash"),
        "image_count": len(images),
    }
    fetch = item.get("fetch") or {}
    page_record.update({k: fetch[k] for k in STATE_FIELDS if fetch.get(k) is not None})
    docs: list[dict[str, Any]] = [{"id": url, "kind": "page", "page_url": url, "record": _dumps(page_record)}]
    common: dict[str, Any] = {"kind": "image", "page_url": url}
    if item.get("title"):
        common["title"] = item["title"]
    if item.get("author"):
        common["author"] = item["author"]
    if date is not None:
        common["date"] = date
    shared = {
        "page_url": url,
        "title": item.get("title"),
        "author": item.get("author"),
        "date": item.get("date"),
        "page_tags": page_tags,
    }
    for image in images:
        record = {k: image.get(k) for k in IMAGE_FIELDS}
        image_tags = list(image.get("tags") or [])
        record["image_tags"] = image_tags
        record.update(shared)
        all_tags = image_tags + [t for t in page_tags if t not in image_tags]
        doc = dict(common)
        doc["id"] = f"{url}#{image['position']}"
        doc["record"] = _dumps(record)
        for name in ("image_url", "headline", "caption", "alt", "domain", "site", "image_host", "board"):
            value = image.get(name)
            if value:
                doc[name] = value
        if all_tags:
            doc["tags"] = ",".join(t.replace(",", " ") for t in all_tags)
        sections = [[doc[name], weight] for name, weight in TEXT_SECTIONS.items() if doc.get(name)]
        if sections:
            # `words` holds the same sections as written (index.model.schema.SurfaceWords).
            doc["text"] = doc["words"] = sections
        docs.append(doc)
    return docs
