"""What the item pipelines do to a page, as plain functions: no Scrapy, no stats.

Each step works in place on a page's image records (:class:`index.model.contract.ImageRecord`)
and returns what the crawl counts. The pipelines (:mod:`pipeline.pipelines`) only adapt
them (ItemAdapter, stats, DropItem); the benchmark (``bench/stages.py``) calls them directly,
so that it measures what a crawl does.

>>> images = [{"position": 0, "image_url": "HTTPS://i.pinimg.com/a.jpg", "link_url": None,
...            "alt": "", "caption_raw": "Pin on Yoga"}]
>>> normalize_domains("https://blog.example/p", images)
0
>>> images[0]["image_url"], images[0]["domain"], images[0]["site"]
('https://i.pinimg.com/a.jpg', 'pinterest.com', 'Pinterest')
>>> normalize_captions("https://blog.example/p", images)
>>> images[0]["headline"], images[0]["site"], images[0]["board"]
('Yoga', 'Pinterest', 'Yoga')
>>> mark_duplicates(images), images[0]["duplicate_of"]
(0, None)
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from itemadapter import ItemAdapter

from index.model.contract import ImageRecord
from pipeline.normalize.captions import normalize_caption
from pipeline.normalize.domains import host_of, normalize_image_url, registrable_domain

__all__ = ["mark_duplicates", "normalize_captions", "normalize_domains", "now", "stamped_page"]


def normalize_domains(page_url: str, images: list[ImageRecord]) -> int:
    """Clean each image URL (resolved against the page) and fill ``image_host``,
    ``domain``, and ``site`` with the platform serving the image (or None), which
    :func:`normalize_captions` refines. Returns how many URLs were bad."""
    bad = 0
    for image in images:
        info = normalize_image_url(image["image_url"], page_url)
        image["image_url"] = info.image_url
        image["image_host"] = info.image_host
        image["domain"] = info.domain
        image["site"] = info.site_hint
        bad += info.bad_url
    return bad


def normalize_captions(page_url: str, images: list[ImageRecord]) -> None:
    """Fill ``caption``, ``headline``, ``site``, ``board`` and ``tags`` from
    ``caption_raw``; the publisher the caption names wins over the platform that
    :func:`normalize_domains` put in ``site``."""
    page_host = host_of(page_url)
    page_domain = registrable_domain(page_host) if page_host else None
    for image in images:
        info = normalize_caption(
            image.get("caption_raw") or "",
            image_domain=image.get("domain"),
            page_domain=page_domain,
            # Taken out and put back below: the caption fields keep their order in the item.
            site_hint=image.pop("site", None),
        )
        image["caption"] = info.caption
        image["headline"] = info.headline
        image["site"] = info.site
        image["board"] = info.board
        image["tags"] = list(info.tags)


def mark_duplicates(images: list[ImageRecord]) -> int:
    """Set ``duplicate_of`` on repeats of an image URL inside a page to the first one's
    position (None on the first). Returns how many repeats there were."""
    first: dict[str, int] = {}
    repeats = 0
    for image in images:
        position = first.setdefault(image["image_url"], image["position"])
        image["duplicate_of"] = position if position != image["position"] else None
        repeats += position != image["position"]
    return repeats


def stamped_page(item: Any) -> dict[str, Any]:
    """The item as a plain dict, its fetch facts stamped with when this crawl saw it.

    A shallow copy: what reads it (page documents, the Redis stream's JSON) only reads.
    ItemAdapter.asdict() rebuilt every image record value by value, which cost more per
    image than parsing it (issue 19). Only ``fetch`` is changed, so only it is copied:
    the item itself is left as the spider made it."""
    page = dict(ItemAdapter(item).items())
    page["fetch"] = {**(page.get("fetch") or {}), "last_seen": now()}
    return page


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
