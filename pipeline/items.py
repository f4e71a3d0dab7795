"""The item contract (README, "What a page becomes"; image records declared and checked by
index/model/contract.py): one PageItem per page, images as a list of image records.

:class:`PageContent` declares the fields once: the parser's :class:`pipeline.parsing.Page`
and the crawl's :class:`PageItem` both extend it. Pipelines read and write items only
through itemadapter's ItemAdapter, so a dict with the same keys works everywhere a
PageItem does."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from index.model.contract import ImageRecord

__all__ = ["PageContent", "PageItem"]


@dataclass
class PageContent:
    """What a page says, as the parser reads it (front matter, text, images)."""

    url: str
    title: str | None = None
    author: str | None = None
    date: str | None = None
    tags: list[str] = field(default_factory=list)
    front_matter: dict[str, Any] = field(default_factory=dict)
    format: str = "none"
    body_text: str = ""
    content_hash: str = ""
    images: list[ImageRecord] = field(default_factory=list)


@dataclass
class PageItem(PageContent):
    # Not part of the page's content: how it was fetched (start, ETag, Last-Modified,
    # sitemap lastmod, file size/mtime). Stored in the page document for refreshes.
    fetch: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_page(cls, page: PageContent, fetch: dict[str, Any]) -> PageItem:
        """The item of a parsed page: its content fields, shared rather than copied (the
        image records are the parser's own), and how it was fetched."""
        content = {f.name: getattr(page, f.name) for f in dataclasses.fields(PageContent)}
        return cls(**content, fetch=fetch)
