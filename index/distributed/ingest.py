"""The one indexer of a distributed crawl: ``python -m index ingest --redis URL``.

Crawler processes (any number, any machine) push normalized page items to a Redis Stream;
this process is the only Whoosh writer (Whoosh allows one). It reads the stream through a
consumer group in batches, writes each batch, commits, and only then acknowledges (and
deletes) the batch's entries. So:

- ``kill -9`` before the commit: the entries stay pending; the next indexer claims them
  (``XAUTOCLAIM``) and writes them again;
- ``kill -9`` after the commit but before the acknowledgement: the entries come back and
  replace the same pages (documents are replaced by page URL, ``<url>#<n>`` ids), so
  nothing is lost and nothing is doubled;
- the stream's length is the backlog, which crawlers read for backpressure.

After each commit the indexer publishes the committed pages' refresh state to a Redis hash,
which crawlers load at start to skip unchanged pages (the index itself may live on another
machine). ``--finish`` applies the "vanished pages" rule once a distributed run is over.

No Scrapy here; ``redis`` is imported lazily so that ``python -m index search`` does not
pay for it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from index.deletion import DeletionPlan, plan_deletions
from index.model.contract import page_problem
from index.model.documents import STATE_FIELDS, page_documents, start_key
from index.model.state import load_page_states
from index.options import DEFAULTS, DeletionGuard, WriterOptions
from index.progress import IngestProgress
from index.writing.pagewriter import PageWriter

__all__ = [
    "DUPEFILTER_KEY",
    "KEYS",
    "IngestStats",
    "Keys",
    "enqueue",
    "ensure_group",
    "finish_run",
    "ingest",
    "state_of",
]

logger = logging.getLogger(__name__)


# scrapy-redis's name for a spider's duplicate filter (its default); RedisAddon sets it as
# SCHEDULER_DUPEFILTER_KEY, so the crawlers and this module use this one spelling.
DUPEFILTER_KEY = "%(spider)s:dupefilter"


@dataclass(frozen=True)
class Keys:
    """Every Redis key the distributed mode uses, under one prefix: the spider's name
    (``pipeline.spiders.pages.PagesSpider.name``), which scrapy-redis names its own keys
    after."""

    prefix: str = "pages"

    @property
    def dupefilter(self) -> str:  # scrapy-redis: fingerprints of every request of the run
        return DUPEFILTER_KEY % {"spider": self.prefix}

    @property
    def stream(self) -> str:  # page items, crawlers → indexer
        return f"{self.prefix}:items"

    @property
    def group(self) -> str:
        return "indexer"

    @property
    def state(self) -> str:  # url → refresh state JSON, indexer → crawlers
        return f"{self.prefix}:state"

    @property
    def start_urls(self) -> str:  # starts waiting for a crawler (scrapy-redis list)
        return f"{self.prefix}:start_urls"

    @property
    def starts(self) -> str:  # every start of the current run
        return f"{self.prefix}:run:starts"

    @property
    def seen(self) -> str:  # every page URL a crawler reached in the current run
        return f"{self.prefix}:run:seen"

    @property
    def incomplete(self) -> str:  # starts that did not complete, or "*" for the run
        return f"{self.prefix}:run:incomplete"

    @property
    def listings(self) -> str:  # start -> its listings opened less those read to the end
        return f"{self.prefix}:run:listings"

    @property
    def listed(self) -> str:  # start -> entries its listings yielded
        return f"{self.prefix}:run:listed"

    @property
    def dead(self) -> str:  # entries the indexer could not use, with the reason
        return f"{self.prefix}:dead"


KEYS = Keys()


def connect(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url, decode_responses=True)


def state_of(page: dict[str, Any]) -> dict[str, Any]:
    """What a crawler needs to know about an indexed page to skip it when unchanged."""
    fetch = page.get("fetch") or {}
    state = {k: fetch[k] for k in STATE_FIELDS if fetch.get(k) is not None}
    state["url"] = page["url"]
    state["content_hash"] = page.get("content_hash")
    return state


def enqueue(url: str, starts: list[str], keys: Keys = KEYS) -> int:
    """Push starts for the crawlers (and record them as this run's starts)."""
    r = connect(url)
    if not r.exists(keys.starts):
        # The first starts of a new run: pages fetched by the previous run must be
        # fetchable again (scrapy-redis keeps its duplicate filter between runs).
        r.delete(keys.dupefilter)
    with r.pipeline() as pipe:
        for start in starts:
            # Paths become absolute here: crawlers on other machines must read the same
            # path (a shared mount), and the run remembers its starts in one spelling.
            key = start_key(start)
            pipe.rpush(keys.start_urls, key)
            pipe.sadd(keys.starts, key)
        pipe.execute()
    return len(starts)


@dataclass
class IngestStats:
    batches: int = 0
    pages: int = 0
    documents: int = 0
    claimed: int = 0
    dead: int = 0
    errors: list[str] = field(default_factory=list)


def ensure_group(r: Any, keys: Keys) -> None:
    import redis

    try:
        r.xgroup_create(keys.stream, keys.group, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def _claim_orphans(r: Any, keys: Keys, consumer: str) -> int:
    """Entries read by an indexer that died before acknowledging them. We hold the index
    lock, so no other indexer is alive: everything pending is an orphan."""
    claimed = 0
    start = "0-0"
    while True:
        start, entries, *_ = r.xautoclaim(keys.stream, keys.group, consumer, min_idle_time=0, start_id=start, count=500)
        claimed += len(entries)
        if start in ("0-0", b"0-0"):
            return claimed


@dataclass
class _Uncommitted:
    """Entries written to the index but not committed yet, so not acknowledged yet."""

    ids: list[Any] = field(default_factory=list)
    states: dict[str, str] = field(default_factory=dict)
    since: float = 0.0


def ingest(
    redis_url: str,
    index_dir: str,
    *,
    batch: int = 500,
    block_ms: int = 1000,
    idle_exit: float | None = None,
    commit_seconds: float = 10.0,
    keys: Keys = KEYS,
    stop: Callable[[], bool] | None = None,
    options: WriterOptions = DEFAULTS,
) -> IngestStats:
    """Index the stream's pages until ``stop()`` says so or the stream stayed empty for
    ``idle_exit`` seconds (None: forever). A commit covers up to ``batch`` pages: it is
    made once that many have arrived, ``commit_seconds`` after the first uncommitted one,
    or as soon as the stream runs dry: ``options``' own commit triggers do not apply
    (entries are acknowledged per commit), the rest of them does. (Committing whatever each read returned meant a
    commit per handful of pages while crawlers trickled them in, and every commit of the
    multiprocess writer starts its sub-writers again.)"""
    r = connect(redis_url)
    ensure_group(r, keys)
    consumer = f"{socket.gethostname()}-{os.getpid()}"
    # Commits are decided here: PageWriter's own triggers are switched off.
    writer = PageWriter(index_dir, **(options.page_writer() | {"commit_docs": 10**12, "commit_seconds": float("inf")}))
    writer.open()  # takes the index's session lock: a second indexer fails here
    stats = IngestStats()
    pending = _Uncommitted()
    progress = IngestProgress(lambda: r.xlen(keys.stream))  # a live line on a terminal, else log lines
    try:
        stats.claimed = _claim_orphans(r, keys, consumer)
        if stats.claimed:
            logger.info("claimed %d entries an earlier indexer read but never acknowledged", stats.claimed)
        # Our own pending entries first (the ones just claimed), then new ones.
        cursor = "0"
        idle_since = time.monotonic()
        while not (stop and stop()):
            reply = r.xreadgroup(
                keys.group, consumer, {keys.stream: cursor}, count=batch - len(pending.ids), block=block_ms
            )
            entries = reply[0][1] if reply else []
            if cursor == "0" and not entries:
                cursor = ">"
                continue
            if entries:
                idle_since = time.monotonic()
                _write_entries(r, keys, writer, entries, pending, stats)
            # Reading "0" returns our unacknowledged entries again: commit each such read.
            full = len(pending.ids) >= batch or cursor == "0"
            if pending.ids and (full or not entries or time.monotonic() - pending.since >= commit_seconds):
                _commit(r, keys, writer, pending, stats)
            progress.update(stats.pages, stats.documents, stats.batches)
            if not entries and idle_exit is not None and time.monotonic() - idle_since >= idle_exit:
                break
        if pending.ids:
            _commit(r, keys, writer, pending, stats)
    finally:
        # After an error, what is uncommitted is committed here but not acknowledged: it
        # comes back to the next indexer and replaces the same pages.
        progress.stop()
        writer.close()
    return stats


def _page_of(fields: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """An entry's page and its documents, or ValueError saying why it cannot be indexed."""
    page = json.loads(fields["page"])
    problem = page_problem(page)
    if problem:
        raise ValueError(problem)
    return page, page_documents(page)


def _write_entries(
    r: Any, keys: Keys, writer: PageWriter, entries: list[Any], pending: _Uncommitted, stats: IngestStats
) -> None:
    if not pending.ids:
        pending.since = time.monotonic()
    for entry_id, fields in entries:
        pending.ids.append(entry_id)
        try:
            page, docs = _page_of(fields)
        except Exception as exc:  # noqa: BLE001 - whatever a poison entry raises, it must not stop the indexer
            # It would come back at every restart and block everything after it: it goes
            # to the dead-letter stream with its reason, and is acknowledged with its batch.
            reason = f"{type(exc).__name__}: {exc}"[:500]
            stats.errors.append(f"{entry_id}: {reason}")
            stats.dead += 1
            r.xadd(keys.dead, {"id": str(entry_id), "reason": reason, "page": str(fields.get("page", ""))[:1_000_000]})
            logger.warning("stream entry %s moved to %s: %s", entry_id, keys.dead, reason)
            continue
        stats.documents += writer.add_page(docs)
        stats.pages += 1
        pending.states[page["url"]] = json.dumps(state_of(page), sort_keys=True)


def _commit(r: Any, keys: Keys, writer: PageWriter, pending: _Uncommitted, stats: IngestStats) -> None:
    writer.commit()
    stats.batches += 1
    # Only now, with the batch durable in the index: publish state, acknowledge, trim.
    with r.pipeline() as pipe:
        if pending.states:
            pipe.hset(keys.state, mapping=pending.states)
        pipe.xack(keys.stream, keys.group, *pending.ids)
        pipe.xdel(keys.stream, *pending.ids)
        pipe.execute()
    logger.info("indexed %d pages (%d entries), committed and acknowledged", len(pending.states), len(pending.ids))
    pending.ids.clear()
    pending.states.clear()


def finish_run(
    redis_url: str,
    index_dir: str,
    keys: Keys = KEYS,
    *,
    guard: DeletionGuard | Mapping[str, Any] | None = None,
    options: WriterOptions = DEFAULTS,
) -> DeletionPlan:
    """The end of a distributed run: delete the pages of this run's complete starts that
    no crawler reached, by the same rule as a local crawl (:mod:`index.deletion`: positive
    evidence of completeness, the mass-deletion guard), then forget the run. A crawler
    that ended early or was killed before it reported (``*``, ``crawler:<id>`` in the
    incomplete set) makes the whole run incomplete. A run whose keys are gone (Redis
    restarted without persistence) has no complete start, so deletes nothing.

    ``guard``: the mass-deletion guard (default: the REFRESH_* settings' defaults), or
    some of its fields by name."""
    if not isinstance(guard, DeletionGuard):
        guard = DeletionGuard(**(guard or {}))
    r = connect(redis_url)
    backlog = r.xlen(keys.stream) if r.exists(keys.stream) else 0
    if backlog:
        raise RuntimeError(f"{backlog} pages are still waiting in {keys.stream}: let the indexer drain them first")
    incomplete = r.smembers(keys.incomplete)
    # "*": a crawler ended early; "crawler:<host>-<pid>": one is running or was killed
    # before it reported what it saw. Either way nobody knows what vanished.
    interrupted = any(m == "*" or m.startswith("crawler:") for m in incomplete)
    # Crawlers add up, per start, the listings they opened less those they read to their
    # end (a sitemap may be opened by one crawler and read by another): 0 is the proof.
    listings = r.hgetall(keys.listings)
    complete = set() if interrupted else {s for s, n in listings.items() if int(n) == 0} - incomplete
    seen = r.smembers(keys.seen)
    listed = {k: int(v) for k, v in r.hgetall(keys.listed).items()}
    states = load_page_states(index_dir)
    plan = plan_deletions(states, complete, seen, listed=listed, **guard.plan_deletions())
    for start, (would, known) in plan.refused.items():
        logger.warning(
            "refused to delete %d of the %d pages of %s (mass-deletion guard); nothing of it deleted",
            would,
            known,
            start,
        )
    if plan.delete:
        writer = PageWriter(index_dir, **options.page_writer())
        writer.open()
        try:
            writer.delete_pages(plan.delete)
        finally:
            writer.close()
        r.hdel(keys.state, *plan.delete)
    r.delete(keys.starts, keys.seen, keys.incomplete, keys.listings, keys.listed)
    logger.info(
        "run finished: %d complete starts, %d pages seen, %d vanished pages deleted, %d refused",
        len(complete),
        len(seen),
        len(plan.delete),
        plan.refused_pages,
    )
    return plan
