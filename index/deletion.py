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
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from index.model.documents import start_key
from index.options import DeletionGuard

__all__ = ["EXIT_DELETE_REFUSED", "DeletionPlan", "plan_deletions"]

# The exit status of a crawl or `ingest --finish` whose deletions the guard refused:
# rsync's for its --max-delete limit.
EXIT_DELETE_REFUSED = 25

# The guard's defaults (the REFRESH_* settings') are DeletionGuard's.
_GUARD = DeletionGuard()


@dataclass
class DeletionPlan:
    """What a refresh deletes, and what the guard refused, per start."""

    delete: list[str] = field(default_factory=list)
    # start -> (pages that would vanish, pages the index holds for it)
    refused: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def refused_pages(self) -> int:
        return sum(vanished for vanished, _ in self.refused.values())


def plan_deletions(
    states: Mapping[str, Mapping[str, Any]],
    complete: Iterable[str],
    seen: Collection[str],
    *,
    listed: Mapping[str, int] | None = None,
    max_share: float = _GUARD.max_share,
    few: int = _GUARD.few,
    accept_mass_delete: bool = _GUARD.accept_mass_delete,
) -> DeletionPlan:
    """Pages of complete starts that were not seen, less those of starts the guard stops.

    ``listed`` counts the entries each start's listings yielded (a folder's files, a
    sitemap's URLs); a start that lists nothing while the index holds pages for it is
    refused whatever the counts.

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
    """
    complete_keys = {start_key(s) for s in complete}
    known: dict[str, int] = defaultdict(int)
    gone: dict[str, list[str]] = defaultdict(list)
    for url, state in states.items():
        start = state.get("start")
        if not start:
            continue
        key = start_key(start)
        if key not in complete_keys:
            continue
        known[key] += 1
        if url not in seen:
            gone[key].append(url)
    plan = DeletionPlan()
    for key, urls in sorted(gone.items()):
        total = known[key]
        empty_listing = listed is not None and listed.get(key, 0) == 0
        too_many = len(urls) > few and len(urls) > max_share * total
        if not accept_mass_delete and (empty_listing or too_many):
            plan.refused[key] = (len(urls), total)
            continue
        plan.delete.extend(urls)
    plan.delete.sort()
    return plan
