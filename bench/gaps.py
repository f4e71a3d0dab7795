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
every shape; ``filled``: every shape run once first, unrecorded, with time to finish,
then recorded with the store as that pass left it; ``off``: PAGES_ARRAY_STORE_MB=0). ``--profile`` adds a cProfile of the shape with the longest
stretch (its top functions by cumulative time).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.common import queries
from bench.load import EXPENSIVE
from bench.search import typo_queries

ROOT = Path(__file__).resolve().parent.parent
BUDGET_SECONDS = 3.0  # index.api.SERVER_SEARCH_SECONDS, not imported: --code may be older code
MAX_GAP = 0.4
MARGIN = 0.5


def shapes() -> list[tuple[str, str, dict[str, Any]]]:
    """(name, query, search options) of every shape scanned: two queries of each list."""
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


def scan(index: Path, code: Path, store: str, only: str | None, profile: bool) -> list[dict[str, Any]]:
    # This bench module runs; ``code``'s index package is put first by the worker.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GAPS_CODE": str(code)}
    if store == "off":
        env["PAGES_ARRAY_STORE_MB"] = "0"
    args = [sys.executable, "-m", "bench.gaps_worker", "--index", str(index), "--store", store]
    if profile:
        args.append("--profile")
    picked = [s for s in shapes() if not only or s[0] == only]
    proc = subprocess.run(
        args, cwd=ROOT, env=env, input=json.dumps(picked), stdout=subprocess.PIPE, text=True, check=True
    )
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
    opts = parser.parse_args(argv)
    index = opts.index.resolve()
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
