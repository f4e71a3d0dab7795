"""What each part of the index schema costs the writer: the same documents written with
our schema and with variants that each drop or cheapen one thing.

    .venv/bin/python -m bench.fields --pages 300 [--repeat 3]

One plain Whoosh writer per run (``limitmb=256``, one commit), each in a fresh spawned
process, so every run starts from the same cold analyzer caches; what is timed is the
writer's CPU-seconds (user + system, this process: adding the documents and the commit),
not the loading of the documents. Each variant runs right beside a run of the full schema
(a pair), and the median of the pairs' ratios is what counts. The schema is not changed
here: this is measurement for the report (issue 19).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import multiprocessing
import pickle
import resource
import shutil
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import DEFAULT_WORK, corpus
from bench.scaling import crawl_pages

__all__ = ["VARIANTS", "write_variant"]

Docs = list[list[dict[str, Any]]]
TEXT_FIELDS = ("headline", "title", "caption", "alt")


def _schema(change: Callable[[Any], None] | None = None) -> Any:
    from index.model.schema import make_schema

    schema = make_schema()
    if change is not None:
        change(schema)
    return schema


def _no_positions(schema: Any) -> None:
    from whoosh import fields

    for name in TEXT_FIELDS:
        old = schema[name]
        schema.remove(name)
        schema.add(name, fields.TEXT(analyzer=old.analyzer, phrase=False, field_boost=old.format.field_boost))


def _no_columns(schema: Any) -> None:
    for name in schema.names():
        schema[name].column_type = None


def _drop(schema: Any, *names: str) -> None:
    for name in names:
        schema.remove(name)


def _images(docs: Docs, change: Callable[[dict[str, Any]], None]) -> Docs:
    """The documents with ``change`` applied to a copy of each image document."""
    out = []
    for page in docs:
        changed = [page[0]]
        for doc in page[1:]:
            doc = dict(doc)
            change(doc)
            changed.append(doc)
        out.append(changed)
    return out


def _without(*names: str, sections: bool) -> Callable[[dict[str, Any]], None]:
    """Drop fields from an image document; with ``sections``, their sections of the
    combined ``text`` field too."""

    def change(doc: dict[str, Any]) -> None:
        for name in names:
            value = doc.pop(name, None)
            if sections and value is not None and "text" in doc:
                doc["text"] = [s for s in doc["text"] if s[0] != value] or None
                if doc["text"] is None:
                    del doc["text"]

    return change


# name → (what it drops, the features that need it, schema change, document change)
VARIANTS: dict[str, tuple[str, str, Callable[[Any], None] | None, Callable[[dict[str, Any]], None] | None]] = {
    "full": ("our schema (index/model/schema.py), as the crawl writes it", "", None, None),
    "no_positions": (
        "no positions in headline, title, caption, alt (`phrase=False`)",
        'phrase queries ("chair yoga" is matched in these fields, `text` keeps no positions)',
        _no_positions,
        None,
    ),
    "no_columns": (
        "no sortable columns (domain, site, image_host, author, board, date, image_url)",
        "facet counts and the fast path's distinct counts (read from columns), sort by date",
        _no_columns,
        None,
    ),
    "no_title_field": (
        "the page title not in every image document's `title` field (kept as a `text` section)",
        "`title:` queries and title phrases on image hits",
        None,
        _without("title", sections=False),
    ),
    "no_title": (
        "the page title in no image document (`title` field nor `text` section)",
        "the above, and plain query words matching a page's title finding its images",
        None,
        _without("title", sections=True),
    ),
    "no_headline_field": (
        "no `headline` field beside `caption` (kept as a `text` section)",
        "`headline:` queries and headline phrases",
        None,
        _without("headline", sections=False),
    ),
    "no_text": (
        "no combined `text` field",
        "the fast path: one posting list per query word with the per-field weights, hence its exact "
        "BM25F scores; without it a word is a union over five fields (walked in Python)",
        lambda schema: _drop(schema, "text"),
        _without("text", sections=False),
    ),
}


def write_variant(name: str, documents: str) -> dict[str, float]:
    """Write the pickled documents with variant ``name``'s schema into a fresh index, in
    this process; its CPU-seconds, documents and index size."""
    from whoosh import index as whoosh_index

    _, _, change_schema, change_doc = VARIANTS[name]
    with open(documents, "rb") as f:
        docs: Docs = pickle.load(f)
    if change_doc is not None:
        docs = _images(docs, change_doc)
    folder = Path(tempfile.mkdtemp(prefix=f"fields-{name}-", dir=Path(documents).parent))
    try:
        before = resource.getrusage(resource.RUSAGE_SELF)
        ix = whoosh_index.create_in(str(folder), _schema(change_schema))
        writer = ix.writer(limitmb=256)
        count = 0
        for page in docs:
            for doc in page:
                writer.add_document(**doc)
                count += 1
        writer.commit()
        after = resource.getrusage(resource.RUSAGE_SELF)
        size = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"cpu_s": cpu, "documents": count, "index_mb": size / 2**20}


def measure(work: Path, pages: int, repeat: int) -> dict[str, list[dict[str, float]]]:
    """Every variant written ``repeat`` times beside the full schema, from the documents of
    ``pages`` corpus pages (kept under ``work``)."""
    documents_dir = work / "fields"
    documents_dir.mkdir(parents=True, exist_ok=True)
    documents = documents_dir / f"documents-{pages}.pickle"
    if not documents.exists():
        docs, _ = crawl_pages(corpus(work, pages))
        documents.write_bytes(pickle.dumps(docs, pickle.HIGHEST_PROTOCOL))
    variants = [name for name in VARIANTS if name != "full"]
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in VARIANTS}
    spawn = multiprocessing.get_context("spawn")

    def run(name: str) -> dict[str, float]:
        # A fresh process per run: no variant inherits another's warm caches.
        with concurrent.futures.ProcessPoolExecutor(1, mp_context=spawn) as pool:
            result = pool.submit(write_variant, name, str(documents)).result()
        runs[name].append(result)
        return result

    # Each variant right beside a run of the full schema (in turn first and second), so
    # that the machine's drifting load touches both alike: the ratio of a pair is the
    # variant's cost relative to the full schema, and the median of the pairs is kept.
    for r in range(repeat):
        for name in variants[r % len(variants) :] + variants[: r % len(variants)]:
            if r % 2:
                variant, full = run(name), run("full")
            else:
                full, variant = run("full"), run(name)
            runs[name][-1]["ratio"] = variant["cpu_s"] / full["cpu_s"]
    return runs


def report(runs: dict[str, list[dict[str, float]]], pages: int, repeat: int) -> str:
    best = {name: min(r["cpu_s"] for r in results) for name, results in runs.items()}
    full = best["full"]
    documents = int(runs["full"][0]["documents"])
    spread = (min(r["cpu_s"] for r in runs["full"]), max(r["cpu_s"] for r in runs["full"]))
    rows = []
    for name, (drops, features, _, _) in VARIANTS.items():
        size = runs[name][0]["index_mb"]
        ratios = sorted(r["ratio"] for r in runs[name] if "ratio" in r)
        if name == "full":
            rows.append(f"| {drops} | {full:.1f} | 1 | — | — | {size:.1f} | — |")
            continue
        ratios = ratios or [best[name] / full]  # runs saved before pairs were measured
        median = statistics.median(ratios)
        rows.append(
            f"| {drops} | {best[name]:.1f} | {median:.2f} ({ratios[0]:.2f}–{ratios[-1]:.2f}) | {1 - median:.0%} "
            f"| {full - best[name]:.1f} | {size:.1f} | {features} |"
        )
    return "\n".join(
        [
            "### What each schema feature costs the writer (issue 19)",
            "",
            f"`python -m bench.fields --pages {pages} --repeat {repeat}`: {documents:,} documents (pages and "
            "images) of the bench corpus, as the crawl builds them; one plain Whoosh writer (`limitmb=256`, one "
            "commit) per run, in a fresh process; CPU-seconds of the writer. Each variant ran beside a run of the "
            f"full schema, {repeat} pairs: the ratio is the median of the pairs' (their range in brackets), the "
            "marginal cost of a feature is 1 − that ratio; best-of CPU-seconds beside it (the full schema's own "
            f"runs spread over {spread[0]:.1f}–{spread[1]:.1f} CPU-s).",
            "",
            "| variant | CPU-s (best) | × full (median of pairs) | marginal cost | full − variant, best-of CPU-s "
            "| index MB | what needs it |",
            "|---|---|---|---|---|---|---|",
            *rows,
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--raw", type=Path, help="also write every measurement here (JSON)")
    parser.add_argument("--load", type=Path, nargs="+", help="measure nothing: the report of --raw files, pooled")
    args = parser.parse_args()
    if args.load:
        runs: dict[str, list[dict[str, float]]] = {}
        for path in args.load:
            for name, results in json.loads(path.read_text()).items():
                runs.setdefault(name, []).extend(results)
    else:
        runs = measure(DEFAULT_WORK, args.pages, args.repeat)
        if args.raw:
            args.raw.write_text(json.dumps(runs, indent=1))
    print(report(runs, args.pages, max(len(results) for name, results in runs.items() if name != "full")))


if __name__ == "__main__":
    main()
