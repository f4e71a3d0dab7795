"""Sitemaps read strictly: every entry or an error, never a silently shorter list.

Scrapy's ``Sitemap`` parses with lxml's *recovering* parser, which is right for scraping
and wrong for deciding what to delete: a stray ``<`` inside one ``<loc>`` ends the list
there, a DTD with nested entities yields an empty urlset, and nothing says so. A refresh
deletes the pages a complete sitemap no longer lists, so here a sitemap is either read
whole or it is invalid (and its start incomplete). Pure functions; no Scrapy.
"""

from __future__ import annotations

import datetime as dt
import re
import zlib
from dataclasses import dataclass, field

from lxml import etree

__all__ = ["SitemapError", "SitemapListing", "gunzip_whole", "parse_lastmod", "read_sitemap"]

# W3C Datetime, the sitemap protocol's <lastmod>: YYYY, YYYY-MM, YYYY-MM-DD, or a date with
# hh:mm[:ss[.s+]] and a zone (Z or +hh:mm; missing is taken as UTC, as sites write it).
_W3C = re.compile(
    r"(\d{4})(?:-(\d{2})(?:-(\d{2})"
    r"(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?\s*(Z|[+-]\d{2}:?\d{2})?)?)?)?",
    re.IGNORECASE,
)

_KINDS = {"urlset": "url", "sitemapindex": "sitemap"}


class SitemapError(ValueError):
    """Why a sitemap cannot be trusted; ``reason`` is a stats slug."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass
class SitemapListing:
    type: str  # "urlset" or "sitemapindex"
    entries: list[dict[str, str]] = field(default_factory=list)


def gunzip_whole(data: bytes, max_size: int) -> bytes:
    """A gzip file's content, or SitemapError: over ``max_size`` (a bomb, or just too big),
    or cut short. (Scrapy's ``gunzip`` returns what it could of a truncated file, which
    for a sitemap means a shorter list.)

    >>> import gzip
    >>> gunzip_whole(gzip.compress(b"abc"), 10)
    b'abc'
    >>> gunzip_whole(gzip.compress(b"abc")[:-8], 10)
    Traceback (most recent call last):
    ...
    pipeline.sitemaps.SitemapError: bad_gzip: the gzip stream is cut short
    """
    out = bytearray()
    while data:
        inflater = zlib.decompressobj(wbits=31)
        try:
            out += inflater.decompress(data, max_size + 1 - len(out))
        except zlib.error as exc:
            raise SitemapError("bad_gzip", str(exc)) from None
        if len(out) > max_size:
            raise SitemapError("too_large", f"more than SITEMAP_MAXSIZE {max_size} bytes once decompressed")
        if not inflater.eof:
            raise SitemapError("bad_gzip", "the gzip stream is cut short")
        data = inflater.unused_data  # a multi-member file: the next member
    return bytes(out)


def parse_lastmod(value: str | None) -> dt.datetime | None:
    """A ``<lastmod>`` as an aware instant (a date alone is its midnight UTC), or None
    when it is not a W3C datetime; compared as text, ``20:00-05:00`` came before
    ``23:00+00:00``.

    >>> parse_lastmod("2024-06-01T20:00:00-05:00") > parse_lastmod("2024-06-01T23:00:00+00:00")
    True
    >>> parse_lastmod("2024-06"), parse_lastmod("yesterday"), parse_lastmod("2024-13-01")
    (datetime.datetime(2024, 6, 1, 0, 0, tzinfo=datetime.timezone.utc), None, None)
    """
    match = _W3C.fullmatch((value or "").strip())
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        tz = dt.UTC
        if zone and zone.upper() != "Z":
            sign = -1 if zone[0] == "-" else 1
            digits = zone[1:].replace(":", "")
            tz = dt.timezone(sign * dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
        micro = int((fraction or "0")[:6].ljust(6, "0"))
        stamp = dt.datetime(
            int(year), int(month or 1), int(day or 1), int(hour or 0), int(minute or 0), int(second or 0), micro, tz
        )
        return stamp.astimezone(dt.UTC)
    except (ValueError, OverflowError):
        return None


def _local(tag: object) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def read_sitemap(body: bytes) -> SitemapListing:
    """Every ``<loc>`` (and ``<lastmod>``) of a sitemap or sitemap index, in order.

    >>> xml = b'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
    >>> xml += b'<url><loc> https://a.test/p?x=1&amp;y=2 </loc><lastmod>2024-01-01</lastmod></url></urlset>'
    >>> read_sitemap(xml)
    SitemapListing(type='urlset', entries=[{'loc': 'https://a.test/p?x=1&y=2', 'lastmod': '2024-01-01'}])
    >>> read_sitemap(b'<urlset><url><loc>https://a.test/<b</loc></url></urlset>')
    Traceback (most recent call last):
    ...
    pipeline.sitemaps.SitemapError: not_xml: ...
    >>> read_sitemap(b'<html><body>Please log in</body></html>')
    Traceback (most recent call last):
    ...
    pipeline.sitemaps.SitemapError: not_a_sitemap: root element <html>
    """
    parser = etree.XMLParser(
        recover=False,
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=True,  # the protocol allows 50 MB; the size limit is enforced before this
        remove_comments=True,
        remove_pis=True,
    )
    try:
        root = etree.fromstring(body, parser=parser)
    except (etree.XMLSyntaxError, ValueError) as exc:
        raise SitemapError("not_xml", str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
    if root is None:
        raise SitemapError("not_xml", "empty document")
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None:
        # No sitemap needs a DTD; entities from one are how entries get hidden or blown up.
        raise SitemapError("dtd", "sitemaps must not declare a DOCTYPE")
    kind = _local(root.tag)
    if kind not in _KINDS:
        raise SitemapError("not_a_sitemap", f"root element <{kind or root.tag}>")
    listing = SitemapListing(type=kind)
    for n, element in enumerate(root, 1):
        if _local(element.tag) != _KINDS[kind]:
            continue  # extensions (<xhtml:link>, ...) at the top level are not entries
        entry: dict[str, str] = {}
        for child in element:
            name = _local(child.tag)
            if name in ("loc", "lastmod") and name not in entry:
                entry[name] = "".join(child.itertext()).strip()
        if not entry.get("loc"):
            raise SitemapError("entry_without_loc", f"entry {n} has no <loc>")
        if not entry.get("lastmod"):
            entry.pop("lastmod", None)
        listing.entries.append(entry)
    return listing
