"""When a refresh may delete pages: one rule for the local crawl (``pipeline.refresh``)
and the distributed run (``index.distributed.ingest.finish_run``). Pure functions, no Scrapy, no Redis.

Deletion needs proof. A page is deleted only when

1. its start is *complete*: the crawl finished normally and every listing the start
   depends on (the folder walk, the sitemap, each sub-sitemap, robots.txt's sitemaps)
   was read to its end, with no error anywhere in that start (see
   ``pipeline.refresh.RefreshState``: completeness is recorded positively, so a failure
   nobody foresaw leaves the start incomplete);
2. the crawl did not see the page (a deleted file, a 404/410, a URL no longer listed);
3. the mass-deletion guard lets it through: a start that would lose more than
   ``max_share`` of its pages (and more than ``few`` pages), or whose listing came back
   empty, deletes nothing, as ``rsync --max-delete`` does. An unmounted share, a sitemap
   replaced by a login page or an empty urlset must never empty the index.

A page can also be lost without vanishing: its new version *collapsed* (it lost all its
images, or front matter and images both; :func:`collapsed`), as every page of a site does
when it answers a maintenance page or a login wall with ``200``, or when files are
truncated. The guard counts those pages with the vanished ones: a start over the limit
neither deletes nor replaces any of them.

A start is known by one spelling (:func:`canonical_start`), and a page belongs to the
start recorded with it *and* to every folder start it lies under: a folder's walk lists
every file under it, so ``site/sub`` read whole proves ``site/sub/s1.md`` gone even when
the page was recorded under ``site``.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from index.options import DeletionGuard

__all__ = ["EXIT_DELETE_REFUSED", "DeletionPlan", "canonical_start", "collapsed", "plan_deletions"]

# The exit status of a crawl or `ingest --finish` whose deletions the guard refused:
# rsync's for its --max-delete limit.
EXIT_DELETE_REFUSED = 25

# The guard's defaults (the REFRESH_* settings') are DeletionGuard's.
_GUARD = DeletionGuard()


_DEFAULT_PORTS = {"http": 80, "https": 443}


def canonical_start(start: str) -> str:
    """A start's identity across runs and machines: one spelling per place.

    URLs: scheme and host in lower case, no default port, no fragment, an empty path as
    ``/``. Paths (and ``file://`` URLs): absolute, ``~`` expanded, ``.``/``..`` and
    trailing slashes folded, symlinks *not* resolved, so a ``current -> releases/v1``
    folder stays the start ``current`` when it is switched to ``releases/v2``.

    >>> canonical_start("HTTP://Example.TEST:80/sitemap.xml#top")
    'http://example.test/sitemap.xml'
    >>> canonical_start("https://a.test:8443")
    'https://a.test:8443/'
    >>> canonical_start("/srv/site/./docs/../pages/")
    '/srv/site/pages'
    >>> canonical_start("file:///srv/site/pages/")
    '/srv/site/pages'
    """
    parts = urlsplit(start)
    scheme = parts.scheme.lower()
    if scheme in _DEFAULT_PORTS:
        host = (parts.hostname or "").lower()
        if ":" in host:
            host = f"[{host}]"  # an IPv6 address
        try:
            port = parts.port
        except ValueError:
            port = None  # not a port: left as written, the fetch will say why
            host = parts.netloc.rsplit("@", 1)[-1].lower()
        if port is not None and port != _DEFAULT_PORTS[scheme]:
            host = f"{host}:{port}"
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@{host}" if userinfo else host
        return urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))
    path = unquote(start[len("file://") :]) if scheme == "file" else start
    return os.path.abspath(os.path.expanduser(path))


def _uri_prefix(folder: str) -> str:
    """What the ``file:`` URLs of the pages under a folder start with."""
    uri = Path(folder).as_uri()
    return uri if uri.endswith("/") else uri + "/"


def collapsed(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Whether a page's new version lost what made it a page: all its images, or (a page
    that had no images) its front matter with no image in its place. ``old`` is the
    indexed page record, ``new`` the page item or record.

    >>> collapsed({"image_count": 3}, {"images": []})
    True
    >>> collapsed({"image_count": 0, "front_matter": {"title": "T"}}, {"images": [], "front_matter": {}})
    True
    >>> collapsed({"image_count": 3}, {"images": [{}]}), collapsed({"image_count": 0}, {"images": []})
    (False, False)
    """
    new_images = new.get("image_count")
    if new_images is None:
        new_images = len(new.get("images") or [])
    if new_images:
        return False
    if int(old.get("image_count") or 0) > 0:
        return True
    return bool(old.get("front_matter")) and not new.get("front_matter")


@dataclass
class DeletionPlan:
    """What a refresh deletes, and what the guard refused, per start."""

    delete: list[str] = field(default_factory=list)
    # start -> (pages that would be lost: vanished or collapsed, pages the index holds for it)
    refused: dict[str, tuple[int, int]] = field(default_factory=dict)
    # collapsed pages whose new version the guard keeps out of the index (their start was refused)
    hold: list[str] = field(default_factory=list)

    @property
    def refused_pages(self) -> int:
        return sum(vanished for vanished, _ in self.refused.values())


def plan_deletions(
    states: Mapping[str, Mapping[str, Any]],
    complete: Iterable[str],
    seen: Collection[str],
    *,
    listed: Mapping[str, int] | None = None,
    collapsed: Mapping[str, str] | None = None,
    max_share: float = _GUARD.max_share,
    few: int = _GUARD.few,
    accept_mass_delete: bool = _GUARD.accept_mass_delete,
) -> DeletionPlan:
    """Pages of complete starts that were not seen, less those of starts the guard stops.

    ``listed`` counts the entries each start's listings yielded (a folder's files, a
    sitemap's URLs); a start that lists nothing while the index holds pages for it is
    refused whatever the counts. ``collapsed`` maps the pages whose new version collapsed
    (:func:`collapsed`) to the start that fetched them: they count as lost for that start,
    and those of a refused start are put in ``hold`` (their new version must not be
    written).

    >>> states = {f"u{i}": {"start": "/s"} for i in range(10)}
    >>> plan_deletions(states, ["/s"], {f"u{i}" for i in range(9)}).delete
    ['u9']
    >>> plan = plan_deletions(states, ["/s"], set(), listed={"/s": 0})
    >>> plan.delete, plan.refused
    ([], {'/s': (10, 10)})
    >>> plan_deletions(states, ["/s"], set(), accept_mass_delete=True).delete == sorted(states)
    True
    >>> plan_deletions(states, [], set()).delete  # incomplete: nothing, whatever was seen
    []
    >>> plan = plan_deletions(states, ["/s"], set(states), collapsed={f"u{i}": "/s" for i in range(6)})
    >>> plan.refused, len(plan.hold)
    ({'/s': (6, 10)}, 6)
    """
    complete_keys = {canonical_start(s) for s in complete}
    fetched_by = {url: canonical_start(start) for url, start in (collapsed or {}).items()}
    starts = complete_keys | set(fetched_by.values())
    # Folder starts as the prefix of their pages' URLs (made by the same Path.as_uri).
    prefixes = [(key, _uri_prefix(key)) for key in starts if key.startswith("/")]
    listed_keys: dict[str, int] = defaultdict(int)
    for key, n in (listed or {}).items():
        listed_keys[canonical_start(key)] += n
    known: dict[str, int] = defaultdict(int)
    lost: dict[str, list[str]] = defaultdict(list)
    candidates: list[tuple[str, list[str]]] = []  # pages to delete or hold, with their starts
    spelled: dict[str, str] = {}  # the index holds few starts and many pages
    for url, state in states.items():
        start = state.get("start")
        if start and start not in spelled:
            spelled[start] = canonical_start(start)
        recorded = spelled[start] if start else None
        owners = [recorded] if recorded in starts else []
        if prefixes and url.startswith("file:"):
            owners += [key for key, prefix in prefixes if key != recorded and url.startswith(prefix)]
        fetcher = fetched_by.get(url)
        if fetcher is not None and fetcher not in owners:
            owners.append(fetcher)
        if not owners:
            continue
        for key in owners:
            known[key] += 1
        if fetcher is not None:
            lost[fetcher].append(url)
            candidates.append((url, owners))
        elif url not in seen:
            gone_from = [key for key in owners if key in complete_keys]
            for key in gone_from:
                lost[key].append(url)
            if gone_from:
                candidates.append((url, owners))
    plan = DeletionPlan()
    for key, urls in sorted(lost.items()):
        total = known[key]
        empty_listing = listed is not None and key in complete_keys and listed_keys.get(key, 0) == 0
        too_many = len(urls) > few and len(urls) > max_share * total
        if not accept_mass_delete and (empty_listing or too_many):
            plan.refused[key] = (len(urls), total)
    for url, owners in candidates:
        refused = any(key in plan.refused for key in owners)
        if url in fetched_by:
            if refused:
                plan.hold.append(url)
        elif not refused:
            plan.delete.append(url)
    plan.delete.sort()
    plan.hold.sort()
    return plan
