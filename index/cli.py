"""``python -m index search ...``: argument parsing and output formatting only; the work
is :func:`index.search.search`. ``pipeline.commands.search`` reuses both halves."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TextIO

from index.search import Results, SearchError, search

__all__ = ["add_search_arguments", "default_index_dir", "main", "run_search"]

EXIT_HITS, EXIT_NONE, EXIT_ERROR = 0, 1, 2


def default_index_dir() -> str:
    return os.environ.get("PAGES_INDEX", "data/index")


def add_search_arguments(parser: argparse.ArgumentParser, with_index: bool = True) -> None:
    parser.add_argument("query", nargs="+", help="query words (Whoosh query language)")
    parser.add_argument("--limit", type=int, default=10, metavar="N", help="hits per page (default 10)")
    parser.add_argument("--page", type=int, default=1, metavar="N", help="result page (default 1)")
    parser.add_argument("--json", action="store_true", help="one JSON object per hit (JSON Lines)")
    parser.add_argument(
        "--sort", default="relevance", choices=["relevance", "date", "-date", "domain"], help="hit order"
    )
    parser.add_argument("--facet", default="", metavar="F[,F]", help="counts per domain, site, board, author")
    for name in ("domain", "site", "author", "board"):
        parser.add_argument(f"--{name}", default=None, metavar=name.upper(), help=f"only hits with this {name}")
    if with_index:
        parser.add_argument(
            "--index", default=None, metavar="DIR", help="index directory (default: $PAGES_INDEX or data/index)"
        )


def _print_human(results: Results, out: TextIO) -> None:
    first = (results.page - 1) * 0
    for n, hit in enumerate(results.hits, start=1 + first):
        where = " · ".join(x for x in (hit.get("site"), hit.get("domain")) if x)
        out.write(f"{n:>3}. {hit.get('headline') or hit.get('caption') or '(no caption)'}\n")
        if where:
            out.write(f"     {where}\n")
        out.write(f"     {hit.get('image_url')}\n")
        out.write(f"     {hit.get('title') or '(untitled)'} <{hit.get('page_url')}>\n")
    for name, counts in results.facets.items():
        out.write(f"{name}:\n")
        for value, count in counts.items():
            out.write(f"  {count:>6}  {value}\n")
    out.write(f"{results.total} results in {results.elapsed_ms:.0f} ms\n")


def _print_json(results: Results, out: TextIO) -> None:
    for hit in results.hits:
        out.write(json.dumps(hit, ensure_ascii=False, sort_keys=True) + "\n")
    if results.facets:
        out.write(json.dumps({"facets": results.facets, "total": results.total}, ensure_ascii=False) + "\n")


def run_search(opts: argparse.Namespace, index_dir: str, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Run a search from parsed options; returns the exit code (0 hits, 1 none, 2 error)."""
    filters = {name: getattr(opts, name) for name in ("domain", "site", "author", "board") if getattr(opts, name, None)}
    facets = tuple(f.strip() for f in (opts.facet or "").split(",") if f.strip())
    try:
        results = search(
            index_dir,
            " ".join(opts.query),
            limit=opts.limit,
            page=opts.page,
            sort=opts.sort,
            facets=facets,
            filters=filters,
        )
    except SearchError as exc:
        hint = f" ({exc.hint})" if exc.hint else ""
        err.write(f"error: {exc}{hint}\n")
        return EXIT_ERROR
    (_print_json if opts.json else _print_human)(results, out)
    return EXIT_HITS if results.hits else EXIT_NONE


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m index", description="Search the pages index.")
    sub = parser.add_subparsers(dest="command", required=True)
    add_search_arguments(sub.add_parser("search", help="search image captions, titles and tags"))
    opts = parser.parse_args(argv)
    if opts.command == "search":
        return run_search(opts, opts.index or default_index_dir())
    return EXIT_ERROR
