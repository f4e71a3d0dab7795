"""Baselines for issue 19: what the crawl side and the writer are measured against.

- "Scrapy alone": a minimal spider reading the same files and yielding one small item
  per page, no parsing, no pipelines; the crawl side (``INDEX_ENABLED=False``) is
  compared with it.
- "The plainest Whoosh writer": 8 fields (id, caption with a StemmingAnalyzer, title,
  site, domain, image_url, page_url, date), ``limitmb=256``, one commit, documents from
  JSON Lines; the end-to-end crawl is compared with it.
- "Plain" and "naive" writers (``baseline``): our schema, the same documents, one commit
  with ``limitmb=256`` or an ``update_document`` + ``commit`` per document (what a
  pipeline that commits every item does); the preset's rows 2 and 3.

Each runs in a process of its own (clean memory, no shared caches). On its own, the
module measures the crawl-side ratios in one run:

    python -m bench.baselines --pages 1250
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench.common import DEFAULT_WORK, ROOT, corpus, crawl, uptime
from bench.stages import stages_and_documents

# Outside the project's settings on purpose: no pipelines, no extensions, nothing parsed.
# Concurrency and the reactor match the project's, so only the work per page differs.
SCRAPY_ALONE = r"""
import json, os, sys, time
from pathlib import Path
import scrapy
from scrapy.crawler import CrawlerProcess

folder = sys.argv[1]
class Alone(scrapy.Spider):
    name = "alone"
    async def start(self):
        for dirpath, _dirs, names in os.walk(folder):
            for name in sorted(names):
                if name.endswith(".md"):
                    yield scrapy.Request(Path(dirpath, name).resolve().as_uri())
    def parse(self, response):
        yield {"url": response.url, "size": len(response.body)}

count = [0]
def scraped(item, response, spider):
    count[0] += 1
process = CrawlerProcess({
    "LOG_LEVEL": "INFO",
    "TELNETCONSOLE_ENABLED": False,
    "CONCURRENT_REQUESTS": 32,
    "CONCURRENT_REQUESTS_PER_DOMAIN": 8,
    "TWISTED_REACTOR": "twisted.internet.asyncioreactor.AsyncioSelectorReactor",
})
crawler = process.create_crawler(Alone)
from scrapy import signals
crawler.signals.connect(scraped, signal=signals.item_scraped)
process.crawl(crawler)
process.start()
print(json.dumps({"pages": count[0]}))
"""

PLAINEST_WRITER = r"""
import datetime as dt, json, sys, time
from whoosh import fields, index as wi
from whoosh.analysis import StemmingAnalyzer
jsonl, path = sys.argv[1], sys.argv[2]
schema = fields.Schema(
    id=fields.ID(unique=True, stored=True),
    caption=fields.TEXT(analyzer=StemmingAnalyzer(), stored=True),
    title=fields.TEXT(stored=True),
    site=fields.ID(stored=True),
    domain=fields.ID(stored=True),
    image_url=fields.ID(stored=True),
    page_url=fields.ID(stored=True),
    date=fields.DATETIME(stored=True),
)
ix = wi.create_in(path, schema)
NAMES = ("id", "caption", "title", "site", "domain", "image_url", "page_url")
t0 = time.perf_counter()
count = 0
w = ix.writer(limitmb=256)
with open(jsonl, encoding="utf-8") as f:
    for line in f:
        d = json.loads(line)
        if d.get("kind") != "image":
            continue
        doc = {k: d[k] for k in NAMES if d.get(k)}
        if d.get("date"):
            doc["date"] = dt.datetime.fromisoformat(d["date"])
        w.add_document(**doc)
        count += 1
w.commit()
secs = time.perf_counter() - t0
print(json.dumps({"seconds": secs, "documents": count}))
"""


# Our schema, the same documents: one commit ("plain", the preset's row 2), or a commit per
# document ("naive", row 3: what a pipeline that commits every item does).
PLAIN_OR_NAIVE = r"""
import datetime as dt, json, sys, time
from whoosh import index as wi
from index.model.schema import make_schema
jsonl, path, mode, limit = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
ix = wi.create_in(path, make_schema())
def docs():
    with open(jsonl, encoding="utf-8") as f:
        for n, line in enumerate(f):
            if limit and n >= limit:
                return
            d = json.loads(line)
            if "date" in d:
                d["date"] = dt.datetime.fromisoformat(d["date"])
            yield d
t0 = time.perf_counter()
count = 0
if mode == "plain":
    w = ix.writer(limitmb=256)
    for d in docs():
        w.add_document(**d)
        count += d["kind"] == "image"
    w.commit()
else:  # naive: what a pipeline that commits every item does
    for d in docs():
        w = ix.writer()
        w.update_document(**d)
        w.commit()
        count += d["kind"] == "image"
secs = time.perf_counter() - t0
from index.writing.memory import peak_rss_kb
print(json.dumps({"seconds": secs, "documents": count, "rss_mb": peak_rss_kb() / 1024}))
"""


def _script(
    what: str, source: str, *args: str, cwd: Path | str = ROOT, env: dict[str, str] | None = None
) -> tuple[str, float]:
    """Run ``source`` in a Python process of its own (clean memory, no shared caches):
    its standard output and its wall seconds, process start included."""
    t0 = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", source, *args], cwd=cwd, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - t0
    if result.returncode != 0:
        raise SystemExit(f"{what} baseline failed:\n{result.stderr[-3000:]}")
    return result.stdout, seconds


def _fresh(index: Path) -> Path:
    shutil.rmtree(index, ignore_errors=True)
    index.mkdir(parents=True)
    return index


def scrapy_alone(folder: Path) -> dict[str, float]:
    """Seconds for the minimal spider to read every page of ``folder`` (process start
    included, as it is for ``scrapy crawl``)."""
    # Outside the project folder: scrapy.cfg would bring the project's settings in.
    stdout, seconds = _script(
        "scrapy-alone", SCRAPY_ALONE, str(folder), cwd="/", env={**os.environ, "PYTHONPATH": str(ROOT)}
    )
    return {"seconds": seconds, "pages": float(json.loads(stdout.strip().splitlines()[-1])["pages"])}


def plainest_writer(jsonl: Path, index: Path) -> dict[str, float]:
    """Seconds for the 8-field Whoosh writer to index the image documents of ``jsonl``."""
    stdout, wall = _script("plainest-writer", PLAINEST_WRITER, str(jsonl), str(_fresh(index)))
    out = json.loads(stdout)
    # The crawl is timed from process start, so this is too (Whoosh's import included).
    out["wall_seconds"] = wall
    return out


def baseline(jsonl: Path, index: Path, mode: str, limit: int = 0) -> dict[str, float]:
    """2. and 3. Our schema written by a plain Whoosh writer (``mode`` "plain") or a commit
    per document ("naive", the first ``limit`` documents); seconds of the writing alone."""
    stdout, _ = _script(mode, PLAIN_OR_NAIVE, str(jsonl), str(_fresh(index)), mode, str(limit))
    return json.loads(stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description="issue 19 ratios, measured in one run")
    parser.add_argument("--pages", type=int, default=1250)
    parser.add_argument("--no-index", action="store_true", help="only the crawl side and Scrapy alone")
    parser.add_argument("--procs", default="2,1", help="the sub-writer counts to crawl with (default 2,1)")
    parser.add_argument("--work", type=Path, help="where corpora and indexes go (default bench/work)")
    opts = parser.parse_args()
    work = opts.work.resolve() if opts.work else DEFAULT_WORK
    work.mkdir(parents=True, exist_ok=True)
    folder = corpus(work, opts.pages)
    print(f"load before: {uptime()}", flush=True)
    alone = scrapy_alone(folder)
    print(f"scrapy alone: {alone}", flush=True)
    side = crawl(folder, work / "index-crawlside", {"INDEX_ENABLED": "False"})
    print(f"crawl side: {side}", flush=True)
    print(f"crawl side / Scrapy alone: {side['seconds'] / alone['seconds']:.2f}", flush=True)
    if not opts.no_index:
        jsonl = work / f"documents-{opts.pages}.jsonl"
        if not jsonl.exists():
            stages_and_documents(folder, jsonl)
        plain = plainest_writer(jsonl, work / "index-plainest")
        print(f"plainest writer: {plain}", flush=True)
        for procs in (int(n) for n in opts.procs.split(",")):
            e2e = crawl(folder, work / f"index-procs-{procs}", {"INDEX_WRITER_PROCS": str(procs)})
            print(f"end to end, INDEX_WRITER_PROCS={procs}: {e2e}", flush=True)
            print(f"  / plainest writer: {e2e['seconds'] / plain['wall_seconds']:.2f}", flush=True)
    print(f"load after: {uptime()}", flush=True)


if __name__ == "__main__":
    main()
