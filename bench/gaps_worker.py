"""The process bench.gaps runs each phase in: the shapes (JSON on stdin) run cold, with
the code of $GAPS_CODE's checkout (put first on the path before ``index`` is imported),
one JSON line per shape on stdout. No bench module is imported here: they import
``index`` from this checkout."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

BUDGET_SECONDS = 3.0  # index.api.SERVER_SEARCH_SECONDS, not imported: older code may lack it
MAX_BYTES = 512 * 2**20  # the server's SEARCH_BYTES
# The filled store's first pass: each shape's time to finish.
FILL_SECONDS = 60.0


def _recording_budget() -> tuple[type, Any, Any]:
    """The recording budget of the code under test and its two measures, the longest
    stretch between looks and the work after the deadline was seen (index.search.budget;
    older code kept all three in its tests, the measures as functions)."""
    try:
        from index.search.budget import Recording
    except ImportError:
        import index

        sys.path.insert(0, str(Path(index.__file__).resolve().parent.parent / "tests"))
        from test_search_bounds import Recording, longest_gap, spent_after_deadline  # type: ignore[no-redef]

        return Recording, longest_gap, spent_after_deadline
    return Recording, Recording.longest_gap, Recording.spent_after_deadline


def worker(index: Path, store: str, shapes: list[tuple[str, str, dict[str, Any]]], profile: bool) -> None:
    """Run every shape cold in this process; one JSON line per shape on stdout."""
    from index.api import QueryError
    from index.cache import clear_caches
    from index.fast.store import FILENAME
    from index.search.budget import Budget
    from index.search.run import search

    recording, longest_gap, after_deadline = _recording_budget()
    worst: tuple[float, str, str, dict[str, Any]] | None = None
    if store == "filled":
        # Each shape once first, with time to finish, so that the store holds what it
        # needs (as far as the store's bound lets it).
        for name, q, opts in shapes:
            clear_caches()
            with contextlib.suppress(QueryError):
                search(index, q, budget=Budget(FILL_SECONDS if "expensive" not in name else BUDGET_SECONDS), **opts)
    for name, q, opts in shapes:
        clear_caches()
        if store == "empty":
            for suffix in ("", "-wal", "-shm"):
                Path(f"{index / FILENAME}{suffix}").unlink(missing_ok=True)
        budget = recording(BUDGET_SECONDS, max_bytes=MAX_BYTES)
        budget.stacks = True  # older code's Recording: set by hand, unused
        budget.worst, budget.worst_stack = 0.0, []
        t0, began = time.perf_counter(), time.thread_time()
        try:
            found = search(index, q, budget=budget, **opts)
            status, total = 200, found.total
        except QueryError as exc:
            status, total = 400, str(exc)[:60]
        ended, wall = time.thread_time(), time.perf_counter() - t0
        gap = longest_gap(budget, began, ended)
        last = ended - (budget.times[-1] if budget.times else began)
        where = "the search's end (after its last look)" if last >= gap else "".join(budget.worst_stack[-6:])
        row = {
            "shape": name,
            "query": q[:60],
            "status": status,
            "total": total,
            "wall_s": round(wall, 3),
            "cpu_s": round(ended - began, 3),
            "looks": len(budget.times),
            "longest_gap_s": round(gap, 3),
            "after_deadline_s": round(after_deadline(budget, ended), 3),
            "where": where,
        }
        print(json.dumps(row), flush=True)
        if worst is None or gap > worst[0]:
            worst = (gap, name, q, opts)
    if profile and worst is not None:
        _profile(index, store, *worst[1:])


def _profile(index: Path, store: str, name: str, q: str, opts: dict[str, Any]) -> None:
    import cProfile
    import io
    import pstats

    from index.api import QueryError
    from index.cache import clear_caches
    from index.fast.store import FILENAME
    from index.search.budget import Budget
    from index.search.run import search

    clear_caches()
    if store == "empty":
        for suffix in ("", "-wal", "-shm"):
            Path(f"{index / FILENAME}{suffix}").unlink(missing_ok=True)
    prof = cProfile.Profile()
    prof.enable()
    with contextlib.suppress(QueryError):
        search(index, q, budget=Budget(BUDGET_SECONDS, max_bytes=MAX_BYTES), **opts)
    prof.disable()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(25)
    print(json.dumps({"profile": name, "text": out.getvalue()}), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--index", type=Path, required=True)
    parser.add_argument("--store", choices=("empty", "filled", "off"), required=True)
    parser.add_argument("--profile", action="store_true")
    opts = parser.parse_args(argv)
    code = os.environ.get("GAPS_CODE")
    if code:
        sys.path.insert(0, code)
    shapes = [
        (name, q, {k: tuple(v) if isinstance(v, list) else v for k, v in o.items()})
        for name, q, o in json.load(sys.stdin)
    ]
    worker(opts.index.resolve(), opts.store, shapes, opts.profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
