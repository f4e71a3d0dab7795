"""Small indexes built in the test process (a page item from captions, and a writer run over
items), and the search page served from a thread of the test process."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from conftest import free_port
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


@contextlib.contextmanager
def served_app(app: Any) -> Iterator[int]:
    """``app`` (index.serve.web.create_app) served by uvicorn on 127.0.0.1 from a thread of
    this process, for the block: its port."""
    import uvicorn

    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.started, "uvicorn did not start"
    try:
        yield port
    finally:
        srv.should_exit = True
        thread.join(timeout=10)
