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
machine); when it starts, it replaces them by the index's own if they differ (a new,
rebuilt or restored index). ``--finish`` applies the "vanished pages" rule once the current
run is over (:func:`finish_run`). The keys and scripts are :mod:`index.distributed.keys`.

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

from index.deletion import DeletionPlan, canonical_start, plan_deletions
from index.distributed.keys import (
    END_RUN,
    ENQUEUE,
    KEYS,
    RUN_HAS_WORK,
    Keys,
    connect,
    ensure_group,
    forget_replaced_run,
    new_run_id,
)
from index.model.contract import page_problem
from index.model.documents import STATE_FIELDS, page_documents
from index.model.state import load_page_states
from index.options import DEFAULTS, DeletionGuard, WriterOptions
from index.progress import IngestProgress
from index.writing.pagewriter import PageWriter

__all__ = [
    "EXIT_RUN_ACTIVE",
    "KEYS",
    "IngestStats",
    "Keys",
    "RunActive",
    "enqueue",
    "ensure_group",
    "finish_run",
    "ingest",
    "state_of",
    "state_of_record",
    "sync_state",
]

logger = logging.getLogger(__name__)


# What `finish_run` answers when the run is not over (crawlers alive or work left).
EXIT_RUN_ACTIVE = 3
# Seconds the keys of a run replaced without --finish stay (its crawlers' late reports).


def _state(url: str, content_hash: Any, fields: Mapping[str, Any]) -> dict[str, Any]:
    state = {k: fields[k] for k in STATE_FIELDS if fields.get(k) is not None}
    state["url"] = url
    state["content_hash"] = content_hash
    return state


def state_of(page: dict[str, Any]) -> dict[str, Any]:
    """What a crawler needs to know about an indexed page to skip it when unchanged."""
    return _state(page["url"], page.get("content_hash"), page.get("fetch") or {})


def state_of_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """The same, from a page document's stored record (the fetch facts are kept flat)."""
    return _state(record["url"], record.get("content_hash"), record)


def enqueue(url: str, starts: list[str], keys: Keys = KEYS) -> int:
    """Push starts for the crawlers, into the current run or a new one (see ENQUEUE).
    Paths become absolute here: crawlers on other machines must read the same path (a
    shared mount), and the run remembers its starts in one spelling."""
    r = connect(url)
    run, replaced = r.eval(ENQUEUE, 0, keys.prefix, new_run_id(), *(canonical_start(s) for s in starts))
    forget_replaced_run(r, keys, replaced)
    logger.info("%d starts queued in run %s", len(starts), run)
    return len(starts)


@dataclass
class IngestStats:
    batches: int = 0
    pages: int = 0
    documents: int = 0
    claimed: int = 0
    dead: int = 0
    errors: list[str] = field(default_factory=list)


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
    if sync_state(r, index_dir, keys):
        logger.warning("the page states in Redis did not match %s: replaced by the index's own", index_dir)
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
            block = block_ms
            if idle_exit is not None:  # exit at idle_exit, not at the end of a longer read
                block = max(1, min(block_ms, round((idle_exit - (time.monotonic() - idle_since)) * 1000)))
            reply = r.xreadgroup(
                keys.group, consumer, {keys.stream: cursor}, count=batch - len(pending.ids), block=block
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


def sync_state(r: Any, index_dir: str, keys: Keys = KEYS) -> bool:
    """Make the published page states those of the index at ``index_dir``; True when they
    differed (a new, rebuilt, moved or restored index). Crawlers trust these states to
    skip pages: states of another index would keep its pages out of this one for good.
    The epoch tells running crawlers to load them again."""
    wanted = {
        url: json.dumps(state_of_record(record), sort_keys=True) for url, record in load_page_states(index_dir).items()
    }
    if r.hgetall(keys.state) == wanted:
        return False
    with r.pipeline() as pipe:  # MULTI: crawlers never load half of it
        pipe.delete(keys.state)
        items = list(wanted.items())
        for i in range(0, len(items), 10_000):
            pipe.hset(keys.state, mapping=dict(items[i : i + 10_000]))
        pipe.incr(keys.state_epoch)
        pipe.execute()
    return True


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
        try:
            page, docs = _page_of(fields)
        except Exception as exc:  # noqa: BLE001 - whatever a poison entry raises, it must not stop the indexer
            pending.ids.append(entry_id)
            # It would come back at every restart and block everything after it: it goes
            # to the dead-letter stream with its reason, and is acknowledged with its batch.
            reason = f"{type(exc).__name__}: {exc}"[:500]
            stats.errors.append(f"{entry_id}: {reason}")
            stats.dead += 1
            r.xadd(keys.dead, {"id": str(entry_id), "reason": reason, "page": str(fields.get("page", ""))[:1_000_000]})
            logger.warning("stream entry %s moved to %s: %s", entry_id, keys.dead, reason)
            continue
        if page["url"] in pending.states:
            # The same page twice before a commit (two crawlers, a recovered request): the
            # writer cannot replace uncommitted documents, so commit the first copy and
            # index this later one over it. Index and published state both say the last.
            _commit(r, keys, writer, pending, stats)
            pending.since = time.monotonic()
        pending.ids.append(entry_id)
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


class RunActive(RuntimeError):
    """The run is not over: a crawler of it is alive, or it still has work."""


def run_activity(r: Any, keys: Keys, run: str) -> str | None:
    """Why the run is not over, or None."""
    alive = [t for t in r.smembers(keys.of_run(run).crawlers) if r.exists(keys.alive(t))]
    if alive:
        return f"{len(alive)} crawlers of run {run} are still running ({', '.join(sorted(alive)[:3])})"
    if r.eval(RUN_HAS_WORK, 0, keys.prefix):
        return f"run {run} still has work queued or taken (start a crawler to finish it)"
    backlog = r.xlen(keys.stream) if r.exists(keys.stream) else 0
    if backlog:
        return f"{backlog} pages are still waiting in {keys.stream}: let the indexer drain them first"
    return None


def finish_run(
    redis_url: str,
    index_dir: str,
    keys: Keys = KEYS,
    *,
    guard: DeletionGuard | Mapping[str, Any] | None = None,
    options: WriterOptions = DEFAULTS,
) -> DeletionPlan:
    """The end of the current distributed run: delete the pages of its complete starts
    that no crawler reached, by the same rule as a local crawl (:mod:`index.deletion`:
    positive evidence of completeness, the mass-deletion guard), then forget the run.

    Refuses (:class:`RunActive`) while a crawler of the run is alive or the run has work
    left: its reports are not all in. A crawler that ended early or was killed before it
    reported (``*``, ``crawler:<token>`` in the incomplete set) makes the whole run
    incomplete. No current run (Redis flushed or restarted without persistence) deletes
    nothing; only the current run's keys are read and deleted, never another run's.

    ``guard``: the mass-deletion guard (default: the REFRESH_* settings' defaults), or
    some of its fields by name."""
    if not isinstance(guard, DeletionGuard):
        guard = DeletionGuard(**(guard or {}))
    r = connect(redis_url)
    run = r.get(keys.run)
    if run is None:
        logger.warning("no run to finish in %s: nothing deleted", redis_url)
        return plan_deletions({}, set(), set())
    busy = run_activity(r, keys, run)
    if busy:
        raise RunActive(busy)
    rk = keys.of_run(run)
    incomplete = r.smembers(rk.incomplete)
    # "*": a crawler ended early; "crawler:<token>": one was killed before it reported
    # what it saw. Either way nobody knows what vanished.
    interrupted = any(m == "*" or m.startswith("crawler:") for m in incomplete)
    # Crawlers add up, per start, the listings they opened less those they read to their
    # end (a sitemap may be opened by one crawler and read by another): 0 is the proof.
    listings = r.hgetall(rk.listings)
    complete = set() if interrupted else {s for s, n in listings.items() if int(n) == 0} - incomplete
    seen = r.smembers(rk.seen)
    listed = {k: int(v) for k, v in r.hgetall(rk.listed).items()}
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
    r.eval(END_RUN, len(rk.all()), *rk.all(), keys.prefix, run)
    logger.info(
        "run %s finished: %d complete starts, %d pages seen, %d vanished pages deleted, %d refused",
        run,
        len(complete),
        len(seen),
        len(plan.delete),
        plan.refused_pages,
    )
    return plan
