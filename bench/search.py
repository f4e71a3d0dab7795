"""Search latency in a warm process (rows 5 to 5d), as the search page or a shell loop
sees it: the query list with the result cache on, emptied, and with the posting arrays
emptied too, beside a plain Whoosh searcher; and typo tolerance and word starts."""

from __future__ import annotations

import functools
import random
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from bench.common import percentiles
from index.fast import arrays as fastsearch
from index.search import run as search_module


def clear_results() -> None:
    """Empty the search result cache: the query is computed, not remembered."""
    search_module._RESULTS.clear()


def latency(
    call: Callable[[str], object], items: Iterable[str], before: Callable[[], None] | None
) -> tuple[float, float]:
    """p50 and p99 in milliseconds of ``call`` over ``items``, ``before`` run untimed
    ahead of each call."""
    times = []
    for q in items:
        if before is not None:
            before()
        t0 = time.perf_counter()
        call(q)
        times.append((time.perf_counter() - t0) * 1000)
    return percentiles(times)


def _cold() -> None:
    clear_results()
    fastsearch._CACHE.clear()


def search_latency(index: Path, qs: list[str], nocache: int, cold: int = 0) -> dict[str, float]:
    """Warm latency of index.search.run.search over the query list, as a long-lived process
    (the web page, a shell loop) sees it: with its result cache (repeated queries are
    answered from it), with the result cache emptied before every query (the posting
    arrays stay cached, as in any warm process), and with both emptied (every query
    reads its postings from the index files again)."""
    from whoosh import index as wi
    from whoosh.qparser import QueryParser

    out: dict[str, float] = {"distinct_queries": len(set(qs)), "nocache_queries": min(nocache, len(qs))}
    out["cold_queries"] = min(cold, len(qs))
    # mode → (its queries, what is emptied before each)
    modes: dict[str, tuple[list[str], Callable[[], None] | None]] = {
        "": (qs, None),
        "_nocache": (qs[:nocache], clear_results),
    }
    if cold:
        modes["_cold"] = (qs[:cold], _cold)
    store = fastsearch._store
    for label, facets in (("plain", ()), ("facet", ("domain",))):
        search_module.search(index, qs[0], facets=facets)  # open and warm
        for mode, (items, before) in modes.items():
            clear_results()
            # Cold reads come from the index files, not from the disk array store (the
            # cold-start row measures the store).
            fastsearch._store = (lambda reader: None) if mode == "_cold" else store
            out[f"ours_{label}{mode}_p50"], out[f"ours_{label}{mode}_p99"] = latency(
                functools.partial(search_module.search, index, limit=10, facets=facets), items, before
            )
    fastsearch._store = store
    ix = wi.open_dir(str(index))
    with ix.searcher() as s:
        parser = QueryParser("caption", ix.schema)
        s.search(parser.parse(qs[0]), limit=10)
        out["baseline_p50"], out["baseline_p99"] = latency(lambda q: s.search(parser.parse(q), limit=10), qs, None)
    return out


def typo_queries(qs: list[str], seed: int = 11) -> dict[str, list[str]]:
    """The query list three ways: as typed; with one typo in its longest word (a swap of
    two neighbour letters or a dropped letter, as people mistype); and with its last word
    cut to a word start (what the search box holds while typing)."""
    rng = random.Random(seed)
    typo, prefix = [], []
    for q in qs:
        words = q.split()
        i = max(range(len(words)), key=lambda k: len(words[k]))
        w = words[i]
        if len(w) >= 5:
            j = rng.randrange(1, len(w) - 1)
            w = w[:j] + w[j + 1] + w[j] + w[j + 2 :] if rng.random() < 0.5 else w[:j] + w[j + 1 :]
        typo.append(" ".join([*words[:i], w, *words[i + 1 :]]))
        last = words[-1]
        prefix.append(" ".join([*words[:-1], last[: max(3, (len(last) * 2 + 2) // 3)]]))
    return {"exact": qs, "one_typo": typo, "prefix": prefix}


def typo_latency(index: Path, qs: list[str]) -> dict[str, float]:
    """p50 / p99 of exact, one-typo and word-start queries, result cache emptied before
    every query (posting arrays warm after a first pass, as in a running search page), with and without
    `--facet domain`; and `--exact` on the exact queries (no tolerance work at all)."""

    def p50_p99(items: list[str], **options: Any) -> tuple[float, float]:
        return latency(functools.partial(search_module.search, index, limit=10, **options), items, clear_results)

    out: dict[str, float] = {}
    for facets in ((), ("domain",)):
        label = "facet" if facets else "plain"
        for kind, items in typo_queries(qs).items():
            # Warm, as search_latency's `_nocache` rows: a first pass reads each word's
            # postings from the files (the cold reads are the cold-start row's business).
            p50_p99(items, facets=facets)
            out[f"{kind}_{label}_p50"], out[f"{kind}_{label}_p99"] = p50_p99(items, facets=facets)
    out["exact_flag_p50"], out["exact_flag_p99"] = p50_p99(qs, exact=True)
    return out
