"""Baselines for issue 19: what the crawl side and the writer are measured against.

- "Scrapy alone": a minimal spider reading the same files and yielding one small item
  per page, no parsing, no pipelines; the crawl side (``INDEX_ENABLED=False``) is
  compared with it.
- "The plainest Whoosh writer": 8 fields (id, caption with a StemmingAnalyzer, title,
  site, domain, image_url, page_url, date), ``limitmb=256``, one commit, documents from
  JSON Lines; the end-to-end crawl is compared with it.

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

ROOT = Path(__file__).resolve().parent.parent

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


def scrapy_alone(folder: Path) -> dict[str, float]:
    """Seconds for the minimal spider to read every page of ``folder`` (process start
    included, as it is for ``scrapy crawl``)."""
    # Outside the project folder: scrapy.cfg would bring the project's settings in.
    t0 = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", SCRAPY_ALONE, str(folder)],
        cwd="/",
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    seconds = time.perf_counter() - t0
    if result.returncode != 0:
        raise SystemExit(f"scrapy-alone baseline failed:\n{result.stderr[-3000:]}")
    return {"seconds": seconds, "pages": float(json.loads(result.stdout.strip().splitlines()[-1])["pages"])}


def plainest_writer(jsonl: Path, index: Path) -> dict[str, float]:
    """Seconds for the 8-field Whoosh writer to index the image documents of ``jsonl``."""
    shutil.rmtree(index, ignore_errors=True)
    index.mkdir(parents=True)
    t0 = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", PLAINEST_WRITER, str(jsonl), str(index)], cwd=ROOT, capture_output=True, text=True
    )
    wall = time.perf_counter() - t0
    if result.returncode != 0:
        raise SystemExit(f"plainest-writer baseline failed:\n{result.stderr[-3000:]}")
    out = json.loads(result.stdout)
    # The crawl is timed from process start, so this is too (Whoosh's import included).
    out["wall_seconds"] = wall
    return out


def uptime() -> str:
    """The load averages (1, 5, 15 minutes): the machine is shared, say how busy it was."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def main() -> None:
    import bench.run
    from bench.run import corpus, crawl, stages_and_documents

    parser = argparse.ArgumentParser(description="issue 19 ratios, measured in one run")
    parser.add_argument("--pages", type=int, default=1250)
    parser.add_argument("--no-index", action="store_true", help="only the crawl side and Scrapy alone")
    parser.add_argument("--procs", default="2,1", help="the sub-writer counts to crawl with (default 2,1)")
    parser.add_argument("--work", type=Path, help="where corpora and indexes go (default bench/work)")
    opts = parser.parse_args()
    if opts.work:
        bench.run.WORK = opts.work.resolve()
    WORK = bench.run.WORK
    WORK.mkdir(parents=True, exist_ok=True)
    folder = corpus(opts.pages)
    print(f"load before: {uptime()}", flush=True)
    alone = scrapy_alone(folder)
    print(f"scrapy alone: {alone}", flush=True)
    side = crawl(folder, WORK / "index-crawlside", {"INDEX_ENABLED": "False"})
    print(f"crawl side: {side}", flush=True)
    print(f"crawl side / Scrapy alone: {side['seconds'] / alone['seconds']:.2f}", flush=True)
    if not opts.no_index:
        jsonl = WORK / f"documents-{opts.pages}.jsonl"
        if not jsonl.exists():
            stages_and_documents(folder, jsonl)
        plain = plainest_writer(jsonl, WORK / "index-plainest")
        print(f"plainest writer: {plain}", flush=True)
        for procs in (int(n) for n in opts.procs.split(",")):
            e2e = crawl(folder, WORK / f"index-procs-{procs}", {"INDEX_WRITER_PROCS": str(procs)})
            print(f"end to end, INDEX_WRITER_PROCS={procs}: {e2e}", flush=True)
            print(f"  / plainest writer: {e2e['seconds'] / plain['wall_seconds']:.2f}", flush=True)
    print(f"load after: {uptime()}", flush=True)


if __name__ == "__main__":
    main()
