"""The item contract (README, "What a page becomes"; checked by index/contract.py): one PageItem
per page, images as a list of records.

Pipelines read and write items only through itemadapter's ItemAdapter, so a dict with
the same keys works everywhere a PageItem does."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["PageItem"]


@dataclass
class PageItem:
    url: str
    title: str | None = None
    author: str | None = None
    date: str | None = None
    tags: list[str] = field(default_factory=list)
    front_matter: dict[str, Any] = field(default_factory=dict)
    format: str = "none"
    body_text: str = ""
    content_hash: str = ""
    images: list[dict[str, Any]] = field(default_factory=list)
    # Not part of the page's content: how it was fetched (start, ETag, Last-Modified,
    # sitemap lastmod, file size/mtime). Stored in the page document for refreshes.
    fetch: dict[str, Any] = field(default_factory=dict)
