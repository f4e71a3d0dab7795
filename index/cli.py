"""``python -m index search ...``: argument parsing and output formatting only; the work
is :func:`index.search.run.search`, in this process or in a resident ``python -m index
serve`` of the same index (:mod:`index.serve.remote`), which answers the same. ``pipeline.commands.search``
reuses both halves, so ``scrapy search`` and ``python -m index search`` behave identically.

Nothing here imports Whoosh or NumPy until a search runs in this process: with a server
running, that import is most of what a new process would spend."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, NoReturn, TextIO

from index.api import (
    FACETS,
    FILTERS,
    MARK_END,
    MARK_START,
    MAX_LIMIT,
    MAX_PAGE,
    SORTS,
    Results,
    SearchError,
    from_api,
)
from index.options import DeletionGuard, default_index_dir
from index.serve import remote

__all__ = ["add_search_arguments", "default_index_dir", "main", "run_search"]

EXIT_HITS, EXIT_NONE, EXIT_ERROR = 0, 1, 2
SEARCH_USAGE = "[options] QUERY..."
# Option values that start with a dash and would otherwise read as options.
_DASHED_VALUES = frozenset(v for v in SORTS if v.startswith("-"))
# Matches are marked with MARK_START/MARK_END (index.api); they become BOLD/RESET
# only after the text has been made inert.
BOLD, RESET = "\x1b[1m", "\x1b[0m"

# Crawled text may carry terminal escapes (`ESC ] 0 ; title BEL`, 8-bit CSI) or bidi
# overrides that make one URL look like another: shown as `\x1b`, never obeyed.
_INERT = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))}
_INERT.update({c: f"\\u{c:04x}" for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F)})
_JSON_INERT = {c: f"\\u{c:04x}" for c in (*range(0x7F, 0xA0), *range(0x202A, 0x202F), *range(0x2066, 0x206A))}


def clean(value: object) -> str:
    """``value`` as text safe to print on a terminal."""
    return str(value).translate(_INERT)


def add_search_arguments(parser: argparse.ArgumentParser, with_index: bool = True) -> None:
    parser.add_argument("query", nargs="+", help="query words (Whoosh query language, see README)")
    parser.add_argument("--limit", type=int, default=10, metavar="N", help="hits per page (default 10)")
    parser.add_argument("--page", type=int, default=1, metavar="N", help="result page (default 1)")
    parser.add_argument("--json", action="store_true", help="JSON Lines: one object per hit, facets last")
    parser.add_argument("--sort", default="relevance", choices=list(SORTS), help="hit order (default relevance)")
    parser.add_argument("--facet", default="", metavar="F[,F]", help=f"counts per value of: {', '.join(FACETS)}")
    for name in FILTERS:
        parser.add_argument(f"--{name}", default=None, metavar=name.upper(), help=f"only hits with this {name}")
    parser.add_argument("--since", default=None, metavar="DATE", help="only pages dated on/after DATE (2020-01-31)")
    parser.add_argument("--until", default=None, metavar="DATE", help="only pages dated on/before DATE")
    parser.add_argument(
        "--exact",
        action="store_true",
        help="words as typed: no typo tolerance, the last word not read as a word start",
    )
    parser.add_argument(
        "--collapse",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="one hit per distinct image URL (default on)",
    )
    parser.add_argument(
        "--local",
        action="store_true",
        help="search in this process even when `python -m index serve` runs for this index",
    )
    if with_index:
        parser.add_argument(
            "--index", default=None, metavar="DIR", help="index directory (default: $PAGES_INDEX or data/index)"
        )


def one_line_errors(parser: argparse.ArgumentParser, usage: str) -> argparse.ArgumentParser:
    """Make ``parser`` report a bad command line in one line (message and short usage,
    exit 2) and read ``--sort -date`` as the README writes it.

    Done on the instance so that it also fits the parser Scrapy builds for ``scrapy
    search``; the second override is the one Scrapy itself makes for ``-o -:json``."""
    read_optional = parser._parse_optional

    def parse_optional(arg_string: str):  # type: ignore[no-untyped-def]
        return None if arg_string in _DASHED_VALUES else read_optional(arg_string)

    def error(message: str) -> NoReturn:
        parser.exit(EXIT_ERROR, f"error: {message} (usage: {usage}; --help for more)\n")

    parser._parse_optional = parse_optional  # type: ignore[method-assign]
    parser.error = error  # type: ignore[method-assign]
    return parser


def unknown_options(args: list[str], prog: str, usage: str, err: TextIO) -> bool:
    """For a parser that keeps what it does not know (Scrapy's): report it as argparse
    would have, in one line; a mistyped `--sitee YouTube` must not search unfiltered."""
    if not args:
        return False
    err.write(f"error: unrecognized arguments: {' '.join(args)} (usage: {usage}; --help for more)\n")
    return True


def _color(out: TextIO) -> bool:
    # https://no-color.org: any non-empty NO_COLOR turns colour off.
    return not os.environ.get("NO_COLOR") and hasattr(out, "isatty") and out.isatty()


def _print_human(results: Results, out: TextIO, color: bool = False) -> None:
    first = (results.page - 1) * results.limit + 1
    bold, reset = (BOLD, RESET) if color else ("", "")
    w = out.write
    if results.corrections:
        w(", ".join(f"{clean(typed)} → {clean(word)}" for typed, word in results.corrections.items()) + "\n")
    for n, hit in enumerate(results.hits, start=first):
        headline = hit.get("headline_marked") or hit.get("headline") or hit.get("caption") or "(no caption)"
        headline = clean(headline).replace(MARK_START, bold).replace(MARK_END, reset)
        uses = f"  (on {hit['uses']} pages)" if hit.get("uses", 0) > 1 else ""
        w(f"{n:>3}. {headline}{uses}\n")
        where = " · ".join(clean(x) for x in (hit.get("site"), hit.get("domain")) if x)
        if where:
            w(f"     {where}\n")
        w(f"     {clean(hit.get('image_url'))}\n")
        w(f"     {clean(hit.get('title') or '(untitled)')} <{clean(hit.get('page_url'))}>\n")
    for name, counts in results.facets.items():
        w(f"{name}:\n")
        for value, count in counts.items():
            w(f"  {count:>7}  {clean(value)}\n")
    if not results.hits and results.suggestion:
        w(f"Did you mean: {clean(results.suggestion)}?\n")
    about = "" if results.total_exact else "about "
    w(f"{about}{results.total} results in {results.elapsed_ms:.0f} ms\n")


def _dumps(obj: object) -> str:
    # Valid JSON either way; C1 controls and bidi overrides escaped as well, which JSON
    # allows raw, so that `--json` on a terminal is as inert as the human output.
    return json.dumps(obj, ensure_ascii=False, sort_keys=True).translate(_JSON_INERT)


def _print_json(results: Results, out: TextIO) -> None:
    for hit in results.hits:
        out.write(_dumps(hit) + "\n")
    if results.facets or results.corrections:
        summary: dict[str, object] = {"facets": results.facets, "total": results.total}
        summary["total_exact"] = results.total_exact
        if results.corrections:
            summary["corrections"] = results.corrections
        out.write(_dumps(summary) + "\n")


def run_search(opts: argparse.Namespace, index_dir: str, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run a search from parsed options; returns the exit code (0 hits, 1 none, 2 error)."""
    out = out or sys.stdout
    err = err or sys.stderr
    request = {
        "query": " ".join(opts.query).strip(),
        "limit": opts.limit,
        "page": opts.page,
        "sort": opts.sort,
        "facets": tuple(f.strip() for f in (opts.facet or "").split(",") if f.strip()),
        "filters": {name: getattr(opts, name) for name in FILTERS if getattr(opts, name, None)},
        "since": opts.since,
        "until": opts.until,
        "collapse": opts.collapse,
        "exact": getattr(opts, "exact", False),
    }
    color = not opts.json and _color(out)
    marks = (MARK_START, MARK_END) if color else None
    results = None if getattr(opts, "local", False) else _from_server(index_dir, request, marks is not None)
    if results is None:
        # Imported here: with a server answering, a process never loads the search stack.
        from index.search.run import search

        try:
            results = search(index_dir, marks=marks, **request)
        except SearchError as exc:
            hint = f" ({exc.hint})" if exc.hint else ""
            err.write(f"error: {exc}{hint}\n")
            return EXIT_ERROR
    if opts.json:
        _print_json(results, out)
    else:
        _print_human(results, out, color)
    if opts.json and not results.hits and results.suggestion:
        err.write(f"no results; did you mean: {clean(results.suggestion)}?\n")
    return EXIT_HITS if results.hits else EXIT_NONE


def _from_server(index_dir: str, request: dict[str, Any], marks: bool) -> Results | None:
    """``request`` answered by the index's resident server, or ``None`` (search here).

    Only answers with results come from there: an error is left to the process search,
    whose message is the command line's own, and so is a page beyond what the API serves."""
    if not (1 <= request["limit"] <= MAX_LIMIT and 1 <= request["page"] <= MAX_PAGE):
        return None
    params = {
        "q": request["query"],
        "limit": str(request["limit"]),
        "page": str(request["page"]),
        "sort": request["sort"],
        "collapse": "1" if request["collapse"] else "0",
        "exact": "1" if request["exact"] else "0",
        "marks": "1" if marks else "0",
        **request["filters"],
    }
    if request["facets"]:
        params["facet"] = ",".join(request["facets"])
    for bound in ("since", "until"):
        if request[bound]:
            params[bound] = request[bound]
    answer = remote.ask(index_dir, params)
    return None if answer is None else from_api(answer)


def _admin(opts: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    # Imported here so that `search` keeps its fast start.
    from index import admin
    from index.errors import IndexLocked
    from index.search.run import DAMAGE, unreadable_index

    index_dir = opts.index or default_index_dir()
    try:
        if opts.command == "stats":
            info = admin.stats(index_dir)
            if opts.json:
                out.write(json.dumps(info, indent=2, sort_keys=True) + "\n")
            else:
                for key, value in info.items():
                    if key not in ("last_crawl", "starts"):
                        out.write(f"{key.replace('_', ' '):>17}: {value}\n")
                last = info["last_crawl"] or {}
                if last:
                    counts = ", ".join(f"{k} {v}" for k, v in last.get("counts", {}).items())
                    out.write(f"{'last crawl':>17}: {last.get('finished_at')} ({last.get('reason')}): {counts}\n")
                for row in info["starts"]:
                    when = row["last_crawled"] or "never on record"
                    note = " STALE: no refresh deletes its pages; `python -m index forget START` drops them"
                    out.write(
                        f"{'start':>17}: {row['start']} ({row['pages']} pages, last crawled {when})"
                        f"{note if row['stale'] else ''}\n"
                    )
            return 0
        if opts.command == "forget":
            result = admin.forget(index_dir, opts.start, wait=opts.wait)
            if not result["pages"]:
                err.write(f"error: no page of the index was reached from {opts.start}\n")
                return EXIT_ERROR
            out.write(f"forgot {opts.start}: {result['pages']} pages and their images deleted\n")
            return 0
        if opts.command == "check":
            problems = admin.check(index_dir)
            for problem in problems:
                out.write(f"{problem}\n")
            out.write(f"{len(problems)} problems\n")
            return 1 if problems else 0
        if opts.command == "optimize":
            result = admin.optimize(index_dir, wait=opts.wait)
            out.write(f"segments: {result['segments_before']} -> {result['segments_after']}\n")
            return 0
    except (SearchError, IndexLocked) as exc:
        hint = f" ({exc.hint})" if getattr(exc, "hint", None) else ""
        err.write(f"error: {exc}{hint}\n")
        return EXIT_ERROR
    except DAMAGE as exc:  # a damaged index: what `check` is run to find, said in one line
        unreadable = unreadable_index(index_dir, exc)
        err.write(f"error: {unreadable} ({unreadable.hint})\n")
        return EXIT_ERROR
    return EXIT_ERROR


def _distributed(opts: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    import logging

    from index.deletion import EXIT_DELETE_REFUSED
    from index.distributed import ingest
    from index.errors import IndexLocked, WriterError
    from index.options import WriterOptions, parse_settings
    from pipeline.exitcodes import EXIT_LOCKED

    try:
        # -s takes the writer's settings and, for --finish, the mass-deletion guard's.
        pairs = getattr(opts, "set", [])
        guard_names = DeletionGuard.settings()
        own = [p for p in pairs if p.partition("=")[0].strip() in guard_names]
        options = WriterOptions.from_settings(parse_settings([p for p in pairs if p not in own]))
        guard_values: dict[str, object] = {k.strip(): v for k, _, v in (p.partition("=") for p in own)}
        if getattr(opts, "accept_mass_delete", False):
            guard_values["REFRESH_ACCEPT_MASS_DELETE"] = True
        guard = DeletionGuard.from_settings(guard_values)
    except ValueError as exc:  # a mistyped -s is a usage error, before anything starts
        err.write(f"error: {exc}\n")
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s [%(name)s] %(levelname)s: %(message)s")
    try:
        if opts.command == "enqueue":
            n = ingest.enqueue(opts.redis, opts.starts)
            out.write(f"{n} starts queued for the crawlers\n")
            return 0
        index_dir = opts.index or default_index_dir()
        stats = ingest.ingest(opts.redis, index_dir, batch=opts.batch, idle_exit=opts.idle_exit, options=options)
        out.write(
            f"indexed {stats.pages} pages ({stats.documents} images) in {stats.batches} commits; "
            f"{stats.claimed} claimed from a stopped indexer; {stats.dead} bad entries moved to {ingest.KEYS.dead}\n"
        )
        if opts.finish:
            plan = ingest.finish_run(opts.redis, index_dir, guard=guard, options=options)
            out.write(f"run finished: {len(plan.delete)} vanished pages deleted\n")
            if plan.refused:
                err.write(
                    f"refused to delete {plan.refused_pages} pages of {len(plan.refused)} starts (mass-deletion "
                    "guard); nothing of them deleted. If this is real: --finish --accept-mass-delete\n"
                )
                return EXIT_DELETE_REFUSED
        return 0
    except IndexLocked as exc:  # as the crawl: another process writes this index, try later
        err.write(f"error: {exc}\n")
        return EXIT_LOCKED
    except ingest.RunActive as exc:
        err.write(f"error: the run is not over: {exc}; nothing deleted, try --finish again later\n")
        return ingest.EXIT_RUN_ACTIVE
    except (WriterError, RuntimeError, OSError) as exc:
        err.write(f"error: {exc}\n")
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if type(exc).__module__.startswith("redis"):
            err.write(f"error: redis at {opts.redis}: {exc}\n")
            return EXIT_ERROR
        raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m index", description="Search and operate the pages index.")
    sub = parser.add_subparsers(dest="command", required=True)
    search_parser = sub.add_parser("search", help="search image captions, titles and tags")
    add_search_arguments(search_parser)
    one_line_errors(search_parser, f"python -m index search {SEARCH_USAGE}")
    one_line_errors(parser, "python -m index {search,stats,check,optimize,forget,serve,enqueue,ingest} ...")
    index_help = "index directory (default: $PAGES_INDEX or data/index)"
    stats = sub.add_parser("stats", help="documents, pages, domains, sites, size, last crawl")
    stats.add_argument("--json", action="store_true", help="machine-readable output")
    check = sub.add_parser("check", help="consistency of page and image documents (exit 1 on a problem)")
    optimize = sub.add_parser("optimize", help="merge all segments into one (takes the writer lock)")
    optimize.add_argument("--wait", action="store_true", help="wait for a running crawl instead of failing")
    forget = sub.add_parser("forget", help="delete the pages of a start no refresh names any more")
    forget.add_argument("start", metavar="START", help="the start as crawled (any spelling of it)")
    forget.add_argument("--wait", action="store_true", help="wait for a running crawl instead of failing")
    serve = sub.add_parser("serve", help="a local search page with an image grid (read-only)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.add_argument(
        "--workers", type=int, default=1, metavar="N", help="server processes (default 1; each searches in 8 threads)"
    )
    serve.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="also answer requests for this host name (repeatable; default: the bound address's names only)",
    )
    enqueue = sub.add_parser("enqueue", help="distributed mode: give starts to the crawlers through Redis")
    enqueue.add_argument("starts", nargs="+", metavar="START", help="folder, file, page URL or sitemap")
    ingest = sub.add_parser("ingest", help="distributed mode: the one indexer, from the Redis Stream")
    ingest.add_argument(
        "--batch",
        type=int,
        default=500,
        help="pages per commit at most (default 500; also commits when the stream runs dry)",
    )
    ingest.add_argument(
        "--idle-exit", type=float, default=None, metavar="S", help="exit after S seconds without pages (default: never)"
    )
    ingest.add_argument(
        "-s",
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help=(
            "a writer setting, as the crawl's -s (INDEX_WRITER_PROCS=1, INDEX_WRITER_LIMITMB=512, ...), or for "
            "--finish a guard setting (REFRESH_MAX_DELETE_SHARE, REFRESH_MAX_DELETE_FEW); repeatable"
        ),
    )
    ingest.add_argument(
        "--finish",
        action="store_true",
        help="then end the run: delete vanished pages of complete starts (exit 3, nothing deleted, while it runs)",
    )
    ingest.add_argument(
        "--accept-mass-delete",
        action="store_true",
        help="with --finish: delete even when a start loses more than 20%% of its pages (exit 25 otherwise)",
    )
    for p in (enqueue, ingest):
        p.add_argument("--redis", required=True, metavar="URL", help="e.g. redis://127.0.0.1:6379/0")
    for p in (stats, check, optimize, forget, serve, ingest):
        p.add_argument("--index", default=None, metavar="DIR", help=index_help)
    opts, extra = parser.parse_known_args(argv)
    if extra:  # reported by the subcommand's parser, with its own usage line
        (search_parser if opts.command == "search" else parser).error(f"unrecognized arguments: {' '.join(extra)}")
    if opts.command == "search":
        return run_search(opts, opts.index or default_index_dir())
    if opts.command in ("enqueue", "ingest"):
        return _distributed(opts, sys.stdout, sys.stderr)
    if opts.command == "serve":
        from index.serve.web import serve as run_server  # keeps Starlette out of `search`'s start

        return run_server(opts.index or default_index_dir(), opts.host, opts.port, opts.allow_host, opts.workers)
    return _admin(opts, sys.stdout, sys.stderr)
