"""A page file's published address, for a folder of a static site given its base URL.
Pure: no Scrapy, no file system (paths are read as strings).

A folder start makes `file://` URLs: nobody can open them, and root-relative images
(`/img/blog/x.png`) resolve to `file:///img/blog/x.png`. Given the site's address
(``-a base_url=https://example.org/`` or ``PAGES_BASE_URL``), a page's URL becomes the one
the site generator publishes it at, and its images resolve against that URL as a browser
resolves them on the published page.

The conventions are Hugo's (which Zola shares for these cases):

* pages live under ``content/``; a start at the site's root, at ``content/`` or anywhere
  inside it gives the same addresses;
* ``posts/my-post.md`` → ``posts/my-post/``; ``posts/my-post/index.md`` (a bundle) and
  ``posts/_index.md`` (a section) → their folder, ``posts/my-post/`` and ``posts/``;
* the path is lower-cased and spaces become hyphens;
* front matter ``url`` (Hugo), ``permalink`` (Jekyll) or ``path`` (Zola) gives the whole
  path, relative to the base URL; ``slug`` replaces the last segment (not of a section).

>>> site = SiteAddress("https://example.org")
>>> site.published("file:///site/content/posts/My Post.md", "/site", {})
'https://example.org/posts/my-post/'
>>> site.published("file:///site/content/posts/_index.md", "/site/content", {})
'https://example.org/posts/'
>>> site.published("file:///site/content/posts/a/index.md", "/site", {"slug": "b"})
'https://example.org/posts/b/'
>>> site.published("file:///site/content/about.md", "/site", {"url": "/about-us/"})
'https://example.org/about-us/'
>>> SiteAddress(None).published("file:///site/content/about.md", "/site", {})
'file:///site/content/about.md'
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import quote, urljoin, urlsplit
from urllib.request import url2pathname

__all__ = ["SiteAddress", "content_path", "site_path"]

# Where Hugo and Zola keep pages, relative to the site's root.
CONTENT_DIR = "content"
# A file with one of these names is its folder's page (Hugo's bundles and sections,
# Zola's sections); index.* and _index.* alike.
_FOLDER_PAGES = frozenset({"index", "_index"})
# Front matter keys that give the whole path, in order of precedence.
_PATH_KEYS = ("url", "permalink", "path")
# Characters a path keeps as written (RFC 3986 pchar and `/`); the rest is percent-encoded.
_SAFE = "/-._~!$&'()*+,;=:@%"


def content_path(start: PurePosixPath, file: PurePosixPath) -> PurePosixPath:
    """``file`` relative to the site's content folder.

    ``start`` is the folder the crawl started at (or the file itself, for a file start).
    When ``start`` lies inside a ``content`` folder, paths count from that folder; when the
    path below ``start`` begins with ``content/``, from there; otherwise from ``start``.

    >>> content_path(PurePosixPath("/s"), PurePosixPath("/s/content/posts/a.md"))
    PurePosixPath('posts/a.md')
    >>> content_path(PurePosixPath("/s/content/posts"), PurePosixPath("/s/content/posts/a.md"))
    PurePosixPath('posts/a.md')
    >>> content_path(PurePosixPath("/notes"), PurePosixPath("/notes/x/a.md"))
    PurePosixPath('x/a.md')
    """
    folder = start.parent if file == start else start
    if not file.is_relative_to(folder):
        return PurePosixPath(file.name)
    below = file.relative_to(folder)
    if CONTENT_DIR in folder.parts:
        last = len(folder.parts) - 1 - folder.parts[::-1].index(CONTENT_DIR)
        return PurePosixPath(*folder.parts[last + 1 :], *below.parts)
    if below.parts[:1] == (CONTENT_DIR,) and len(below.parts) > 1:
        return below.relative_to(CONTENT_DIR)
    return below


def _clean(segment: str) -> str:
    return quote(segment.strip().lower().replace(" ", "-"), safe=_SAFE)


def _front(front_matter: Mapping[str, Any], key: str) -> str | None:
    value = front_matter.get(key)
    return value.strip() if isinstance(value, str) and value.strip() else None


def site_path(path: PurePosixPath, front_matter: Mapping[str, Any]) -> str:
    """The page's path on its site, relative to the base URL (no leading `/`; `` for the
    home page).

    >>> site_path(PurePosixPath("posts/a.md"), {})
    'posts/a/'
    >>> site_path(PurePosixPath("_index.md"), {})
    ''
    >>> site_path(PurePosixPath("posts/a.md"), {"permalink": "/2020/a.html"})
    '2020/a.html'
    """
    for key in _PATH_KEYS:
        value = _front(front_matter, key)
        if value is not None:
            return quote(value.lstrip("/"), safe=_SAFE)
    parts = [*path.parent.parts, path.stem]
    folder_page = path.stem.lower() in _FOLDER_PAGES
    if folder_page:
        parts.pop()
    slug = _front(front_matter, "slug")
    # Hugo: a slug renames a page (a bundle's folder too), never a section.
    if slug is not None and parts and path.stem.lower() != "_index":
        parts[-1] = slug
    return "".join(_clean(part) + "/" for part in parts)


class SiteAddress:
    """Published addresses for the file pages of one crawl (see the module's docstring).

    Without a base URL, every method returns the URL it was given: nothing changes."""

    def __init__(self, base_url: str | None) -> None:
        base = (base_url or "").strip()
        if base:
            parts = urlsplit(base)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"base_url must be an http(s) URL such as https://example.org/, not {base_url!r}")
            base = base if base.endswith("/") else base + "/"
        self.base_url = base or None

    def __bool__(self) -> bool:
        return self.base_url is not None

    def published(self, url: str, start: str | None, front_matter: Mapping[str, Any]) -> str:
        """The published URL of the page read from ``url`` (a `file:` URL), or ``url``."""
        if self.base_url is None or not url.startswith("file:"):
            return url
        file = PurePosixPath(url2pathname(urlsplit(url).path))
        path = content_path(PurePosixPath(start) if start else file, file)
        for key in _PATH_KEYS:
            value = _front(front_matter, key)
            if value is not None and urlsplit(value).scheme in ("http", "https"):
                return value  # already a whole address
        return urljoin(self.base_url, site_path(path, front_matter))

    def key(self, url: str, start: str | None) -> str:
        """The page's identity before its front matter is read: its address by path alone.

        Right for every page whose front matter does not move it; for the others it names
        no indexed page, and the page is read again (the front matter says where it is)."""
        return self.published(url, start, {})
