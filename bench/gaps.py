"""Where a search works without looking at its budget (issue 30 at 10M documents).

Every query shape the benches send (``bench.common.queries``' exact, one-typo and
word-start lists, with and without the ``domain`` facet, sorted by date, a deep page,
collapsing off, ``bench.load.EXPENSIVE``) is run cold (every cache of the process
emptied before each shape) with a recording budget of the server's 3 s
(:class:`index.search.budget.Recording`). Per shape: the longest CPU stretch between two
looks at the budget and the stack of the look that ended it, the CPU spent after a look
saw the deadline pass, the answer (200 / 400) and its wall time. Goal: no stretch over
0.4 s CPU, no answer after the budget + 0.5 s.

    python -m bench.gaps --index IX                      # store emptied per shape, then filled
    python -m bench.gaps --index IX --code /work/main    # the same shapes, another checkout's code
    python -m bench.gaps --index IX --store off --only 'exact, facet'  --profile

Each phase runs in a fresh process (``--store empty``: the array store deleted before
every shape; ``filled``: as the empty phase left it, not deleted; ``off``:
PAGES_ARRAY_STORE_MB=0). ``--profile`` adds a cProfile of the shape with the longest
stretch (its top functions by cumulative time).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BUDGET_SECONDS = 3.0  # index.api.SERVER_SEARCH_SECONDS, not imported: --code may be older code
MAX_GAP = 0.4
MARGIN = 0.5
MAX_BYTES = 512 * 2**20  # the server's SEARCH_BYTES


def shapes() -> list[tuple[str, str, dict[str, Any]]]:
    """(name, query, search options) of every shape scanned: two queries of each list."""
    from bench.common import queries
    from bench.load import EXPENSIVE
    from bench.search import typo_queries

    lists = typo_queries(queries(40))
    # The first two queries of each list with two or more words (the common case).
    picked = {kind: [q for q in items if " " in q][:2] for kind, items in lists.items()}
    out: list[tuple[str, str, dict[str, Any]]] = []
    for kind, items in picked.items():
        for q in items:
            out.append((kind, q, {}))
            out.append((f"{kind}, facet", q, {"facets": ("domain",)}))
    first = picked["exact"][0]
    out += [
        ("sort by date", first, {"sort": "-date"}),
        ("sort by date, facet", first, {"sort": "-date", "facets": ("domain",)}),
        ("deep page (20 × 50)", first, {"page": 20, "limit": 50}),
        ("collapse off", first, {"collapse": False}),
        ("collapse off, facet", picked["one_typo"][0], {"collapse": False, "facets": ("domain",)}),
    ]
    for params in EXPENSIVE:
        opts = {"exact": True} if params.get("exact") else {}
        out.append((f"expensive {params['q'][:24]}…", params["q"], opts))
    return out


def _recording_budget() -> type:
    """The recording budget of the code under test (index.search.budget; older code kept
    it in its tests)."""
    try:
        from index.search.budget import Recording
    except ImportError:
        import index

        sys.path.insert(0, str(Path(index.__file__).resolve().parent.parent / "tests"))
        from test_search_bounds import Recording  # type: ignore[no-redef]
    return Recording


def worker(index: Path, store: str, only: str | None, profile: bool) -> None:
    """Run every shape cold in this process; one JSON line per shape on stdout."""
    from index.api import QueryError
    from index.cache import clear_caches
    from index.fast.store import FILENAME
    from index.search.run import search

    recording = _recording_budget()
    worst: tuple[float, str, str, dict[str, Any]] | None = None
    for name, q, opts in shapes():
        if only and only != name:
            continue
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
        gap = budget.longest_gap(began, ended) if hasattr(budget, "longest_gap") else _gap(budget, began, ended)
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
            "after_deadline_s": round(_after_deadline(budget, ended), 3),
            "where": where,
        }
        print(json.dumps(row), flush=True)
        if worst is None or gap > worst[0]:
            worst = (gap, name, q, opts)
    if profile and worst is not None:
        _profile(index, store, *worst[1:])


def _gap(budget: Any, began: float, ended: float) -> float:
    import itertools

    return max(b - a for a, b in itertools.pairwise([began, *budget.times, ended]))


def _after_deadline(budget: Any, ended: float) -> float:
    if budget.started is None:
        return 0.0
    deadline = budget.started + budget.seconds
    for cpu, clock in zip(budget.times, budget.clock, strict=True):
        if clock > deadline:
            return ended - cpu
    return 0.0


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


def scan(index: Path, code: Path, store: str, only: str | None, profile: bool) -> list[dict[str, Any]]:
    # This bench module runs; ``code``'s index package is put first by the worker.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GAPS_CODE": str(code)}
    if store == "off":
        env["PAGES_ARRAY_STORE_MB"] = "0"
    args = [sys.executable, "-m", "bench.gaps", "--index", str(index), "--store", store, "--worker"]
    if only:
        args += ["--only", only]
    if profile:
        args.append("--profile")
    proc = subprocess.run(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True, check=True)
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def table(rows: list[dict[str, Any]], label: str) -> str:
    lines = [
        f"**{label}**",
        "",
        "| shape | query | answer | wall s | CPU s | looks | longest stretch, CPU s | after the deadline, CPU s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "shape" not in r:
            continue
        flag = " ✗" if r["longest_gap_s"] > MAX_GAP or r["wall_s"] > BUDGET_SECONDS + MARGIN else ""
        lines.append(
            f"| {r['shape']}{flag} | `{r['query']}` | {r['status']} | {r['wall_s']:.2f} | {r['cpu_s']:.2f} | "
            f"{r['looks']} | {r['longest_gap_s']:.3f} | {r['after_deadline_s']:.3f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", type=Path, required=True)
    parser.add_argument("--code", type=Path, default=ROOT, help="the checkout whose index package runs")
    parser.add_argument("--store", choices=("both", "empty", "filled", "off"), default="both")
    parser.add_argument("--only", help="one shape's name")
    parser.add_argument("--profile", action="store_true", help="cProfile the shape with the longest stretch")
    parser.add_argument("--where", action="store_true", help="print each shape's stack too")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    opts = parser.parse_args(argv)
    index = opts.index.resolve()
    if opts.worker:
        code = os.environ.get("GAPS_CODE")
        if code:
            sys.path.insert(0, code)
        worker(index, opts.store, opts.only, opts.profile)
        return 0
    phases = ("empty", "filled") if opts.store == "both" else (opts.store,)
    for phase in phases:
        rows = scan(index, opts.code.resolve(), phase, opts.only, opts.profile)
        print(table(rows, f"store {phase}, code {opts.code}"), flush=True)
        for r in rows:
            if "profile" in r:
                print(f"\ncProfile of {r['profile']}:\n{r['text']}")
            elif opts.where or r["longest_gap_s"] > MAX_GAP:
                print(f"\n{r['shape']} ({r['longest_gap_s']:.3f} s) ended at:\n{r['where']}")
        print(json.dumps(rows), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
