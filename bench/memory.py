"""Where a search process's memory goes (issue 30): storms of the bench's query lists, each
list in a thread of its own (as a server's thread pool replaces its threads), then the
process's memory taken apart.

    python -m bench.memory --index IX [--queries 20] [--storms 2] [--trace]

After each storm: RSS and anonymous memory (``/proc/self/smaps_rollup``), malloc's own view
(``mallinfo2``: in use, free in its arenas), each :class:`index.cache.Cache`'s charged bytes
against what its entries really hold (:func:`index.cache.held_bytes`), the column readers
and searchers kept outside the caches, and with ``--trace`` the biggest live allocations by
traceback (tracemalloc; NumPy reports its arrays to it). Last, what ``malloc_trim`` gives
back. ``bench.tenmillion memory`` runs it on the 10M index."""

from __future__ import annotations

import argparse
import ctypes
import json
import sys
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

from bench.common import queries, uptime
from bench.load import EXPENSIVE
from bench.search import typo_queries

MB = 2**20


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks")
    ] + [("keepcost", ctypes.c_size_t)]


def malloc_view() -> dict[str, float]:
    """glibc's own figures, MB: the arenas' size, what is in use there, what is free there
    (freed but not returned), and the chunks it mapped on their own (big arrays)."""
    try:
        libc = ctypes.CDLL(None)
        libc.mallinfo2.restype = _Mallinfo2
        info = libc.mallinfo2()
    except (OSError, AttributeError):
        return {}
    return {
        "malloc_arena_mb": info.arena / MB,
        "malloc_in_use_mb": info.uordblks / MB,
        "malloc_free_mb": info.fordblks / MB,
        "malloc_mapped_mb": info.hblkhd / MB,
    }


def process_mb() -> dict[str, float]:
    """This process's resident memory, all of it and the anonymous part, MB."""
    out = {}
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
        parts = line.split()
        if parts[0] in ("Rss:", "Anonymous:"):
            out["rss_mb" if parts[0] == "Rss:" else "anon_mb"] = int(parts[1]) / 1024
    return out


def kept_outside_caches() -> dict[str, float]:
    """What the search side keeps outside its Caches: the searchers (one per thread) and
    their segment readers, and the column readers Whoosh keeps per reader, MB."""
    from index._whoosh import column_bytes
    from index.search import run

    readers: dict[int, Any] = {}
    for searcher in list(run._SEARCHERS.values()):
        for reader, _ in searcher.reader().leaf_readers():
            readers[id(reader)] = reader
    own = [
        column
        for r in readers.values()
        for column in list(getattr(getattr(r, "_perdoc", None), "_readers", {}).values())
        if column is not None and not isinstance(column, tuple)  # not fixes._Shared
    ]
    return {
        "searchers": len(run._SEARCHERS),
        "segment_readers": len(readers),
        "whoosh_column_readers_mb": sum(column_bytes(c) for c in own) / MB,
    }


def caches() -> dict[str, dict[str, float]]:
    """Per cache: charged MB, and what its entries hold, MB (held_bytes, data shared
    between entries counted once)."""
    from index.cache import _CACHES, held_bytes

    out = {}
    for cache in list(_CACHES):
        with cache._lock:
            values = [v for v, _ in cache._items.values()]
        out[cache.name] = {
            "entries": len(values),
            "charged_mb": cache.bytes / MB,
            "held_mb": held_bytes(values) / MB,
            "max_mb": cache.max_bytes / MB,
        }
    out["arrays by kind"] = array_kinds()
    return out


def array_kinds() -> dict[str, float]:
    """The arrays cache's charged MB by kind of array (index.fast.arrays' key letters):
    the per-index ones ("l" lengths, "v" "g" "o" "f" ordinals) against the per-word ones."""
    from index.fast import arrays

    kinds: dict[str, float] = {}
    with arrays._CACHE._lock:
        for key, (_, size) in arrays._CACHE._items.items():
            kinds[key[0]] = kinds.get(key[0], 0.0) + size / MB
    return kinds


def query_lists(n: int) -> dict[str, list[str]]:
    lists = typo_queries(queries(n))
    lists["expensive"] = [shape["q"] for shape in EXPENSIVE]
    return lists


def storm(
    index: Path, lists: dict[str, list[str]], max_bytes: int, seconds: float = 3.0, threads: int = 1
) -> dict[str, int]:
    """Each list in a new thread, one query after the other, with the server's budget and
    the domain facet (the page's); answers by outcome."""
    from index.search.budget import Budget
    from index.search.run import search

    outcomes: dict[str, int] = {}

    def run(items: list[str]) -> None:
        for q in items:
            try:
                search(index, q, limit=10, facets=("domain",), budget=Budget(seconds, max_bytes=max_bytes))
                outcome = "ok"
            except Exception as exc:  # noqa: BLE001 - counted, the storm goes on
                outcome = type(exc).__name__
            outcomes[outcome] = outcomes.get(outcome, 0) + 1

    if threads > 1:  # as a server's search threads: the lists' queries shared out, at once
        every = [q for items in lists.values() for q in items]
        workers = [threading.Thread(target=run, args=(every[k::threads],)) for k in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        return outcomes
    for items in lists.values():
        thread = threading.Thread(target=run, args=(items,))
        thread.start()
        thread.join()
    return outcomes


def top_allocations(snapshot: tracemalloc.Snapshot, limit: int = 25) -> list[dict[str, Any]]:
    """Live allocations grouped by the innermost frame of our code or Whoosh's (NumPy's
    own frames say nothing about who asked)."""
    groups: dict[str, list[int]] = {}
    for stat in snapshot.statistics("traceback"):
        frames = [f for f in stat.traceback if "/index/" in f.filename or "/whoosh/" in f.filename]
        where = frames[-1] if frames else stat.traceback[-1]
        name = f"{where.filename.split('/site-packages/')[-1].split('/wt-mem/')[-1]}:{where.lineno}"
        group = groups.setdefault(name, [0, 0])
        group[0] += stat.size
        group[1] += stat.count
    ranked = sorted(groups.items(), key=lambda kv: -kv[1][0])[:limit]
    return [{"where": k, "mb": round(v[0] / MB, 1), "blocks": v[1]} for k, v in ranked]


def malloc_trim() -> bool:
    try:
        return bool(ctypes.CDLL(None).malloc_trim(0))
    except (OSError, AttributeError):
        return False


def measure(
    index: Path, n: int, storms: int, trace: bool, max_bytes: int = 512 * MB, seconds: float = 3.0, threads: int = 1
) -> dict[str, Any]:
    if trace:
        tracemalloc.start(16)
    out: dict[str, Any] = {"load_before": uptime(), "queries_per_list": n, "start": process_mb()}
    lists = query_lists(n)
    for k in range(1, storms + 1):
        t0 = time.perf_counter()
        outcomes = storm(index, lists, max_bytes, seconds, threads)
        row: dict[str, Any] = {"seconds": round(time.perf_counter() - t0, 1), "outcomes": outcomes}
        row.update(process_mb())
        row.update(malloc_view())
        row.update(kept_outside_caches())
        row["caches"] = caches()
        if trace:
            row["traced_mb"] = tracemalloc.get_traced_memory()[0] / MB
            row["top"] = top_allocations(tracemalloc.take_snapshot())
        out[f"storm{k}"] = row
        print(json.dumps({f"storm{k}": row}, indent=1), flush=True)
    malloc_trim()
    out["after_trim"] = {**process_mb(), **malloc_view()}
    out["load_after"] = uptime()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", type=Path, required=True)
    parser.add_argument("--queries", type=int, default=20, help="queries per list (default 20)")
    parser.add_argument("--storms", type=int, default=2)
    parser.add_argument("--trace", action="store_true", help="tracemalloc (slow): the biggest allocations")
    parser.add_argument("--seconds", type=float, default=3.0, help="each query's budget (the server's: 3)")
    parser.add_argument("--threads", type=int, default=1, help="run the queries in this many threads at once")
    parser.add_argument("--out", type=Path, help="write the figures here as JSON")
    opts = parser.parse_args(argv)
    figures = measure(
        opts.index.resolve(), opts.queries, opts.storms, opts.trace, seconds=opts.seconds, threads=opts.threads
    )
    print(json.dumps(figures["after_trim"]), flush=True)
    if opts.out:
        opts.out.write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
