"""Per-stage throughput (row 7) of the crawl's pure steps on one core, and the documents they
build, written as JSON Lines for the writer baselines (bench.baselines) to read."""

from __future__ import annotations

import json
import time
from pathlib import Path

from itemadapter import ItemAdapter

from bench.common import page_files
from index.model.contract import page_problem
from index.model.documents import page_documents
from pipeline import steps
from pipeline.items import PageItem
from pipeline.normalize import captions, clear_caches, domains
from pipeline.parsing import parse_page


def stages_and_documents(folder: Path, jsonl: Path) -> dict[str, float]:
    """Run the pure stages in this process (one core), timing each: parse_page, then the
    item pipelines' own work (pipeline.steps, index.model.contract, index.model.documents) as a crawl
    does it, and write the final documents as JSON Lines (the baselines' input)."""
    files = page_files(folder)
    bodies = [(f.resolve().as_uri(), f.read_bytes()) for f in files]
    t0 = time.perf_counter()
    pages = [parse_page(url, body) for url, body in bodies]
    t_parse = time.perf_counter() - t0
    images = sum(len(p.images) for p in pages)
    # What the spider yields for a local file (untimed: it only wraps the page).
    stats = [f.stat() for f in files]
    items = [
        PageItem.from_page(page, fetch={"start": str(folder), "size": st.st_size, "mtime": st.st_mtime_ns})
        for page, st in zip(pages, stats, strict=True)
    ]

    t0 = time.perf_counter()
    problems = [page_problem(ItemAdapter(item)) for item in items]
    t_validate = time.perf_counter() - t0
    assert not any(problems), problems

    # Cold, as in a fresh crawl process (the list of the module's caches went stale once).
    clear_caches(domains)
    t0 = time.perf_counter()
    for item in items:
        steps.normalize_domains(item.url, item.images)
    t_domain = time.perf_counter() - t0

    clear_caches(captions)
    t0 = time.perf_counter()
    for item in items:
        steps.normalize_captions(item.url, item.images)
    t_caption = time.perf_counter() - t0

    t0 = time.perf_counter()
    with jsonl.open("w", encoding="utf-8") as out:
        for item in items:
            steps.mark_duplicates(item.images)
            for doc in page_documents(steps.stamped_page(item)):
                if "date" in doc:
                    doc["date"] = doc["date"].isoformat()
                out.write(json.dumps(doc, ensure_ascii=False) + "\n")
    t_docs = time.perf_counter() - t0
    return {
        "pages": len(pages),
        "images": images,
        "parse_images_per_s": images / t_parse,
        "parse_pages_per_s": len(pages) / t_parse,
        "validate_per_s": images / t_validate,
        "domain_urls_per_s": images / t_domain,
        "caption_per_s": images / t_caption,
        "documents_per_s": images / t_docs,
    }
