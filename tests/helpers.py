"""Small indexes built in the test process: a page item from captions, and a writer run over items."""

from __future__ import annotations

from pathlib import Path

from index.model.documents import page_documents as build_documents
from index.writing.pagewriter import PageWriter


def item(url: str, captions: list[str], title: str = "T", **extra) -> dict:
    return {
        "url": url,
        "title": title,
        "author": extra.get("author", "Ann"),
        "date": extra.get("date", "2020-11-09T06:14:50"),
        "tags": extra.get("tags", ["page-tag"]),
        "format": "yaml",
        "front_matter": {},
        "content_hash": "0" * 64,
        "images": [
            {
                "position": i,
                "image_url": f"https://img.example.com/{url.rsplit('/', 1)[-1]}-{i}.jpg",
                "link_url": None,
                "alt": "",
                "caption_raw": c,
                "caption": c,
                "headline": c,
                "site": "Example",
                "board": None,
                "tags": ["ImageTag"],
                "image_host": "img.example.com",
                "domain": "example.com",
                "duplicate_of": None,
            }
            for i, c in enumerate(captions)
        ],
    }


def write(index: Path, *items: dict, **options) -> dict:
    writer = PageWriter(index, **options)
    writer.open()
    for it in items:
        writer.add_page(build_documents(it))
    return writer.close()
