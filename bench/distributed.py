"""Distributed mode (row 9, issue 8): 1 vs 2 crawler processes feeding one indexer through a
real redis-server, beside a local crawl of the same pages, all in one run."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import ROOT, crawl, free_port, show
from bench.corpus import generate
from index.distributed.ingest import KEYS

# The indexer waits this long after the last page before it exits; not counted.
IDLE_EXIT_S = 3


def distributed(work: Path, pages: int) -> dict[str, float] | None:
    """Seconds and documents of each setup on a corpus of ``pages`` pages of its own. The
    starts are the corpus' subfolders (500 pages each), so two crawlers have something to
    share. None when there is no redis-server."""
    server = shutil.which("redis-server")
    if server is None:
        show("skipped: no redis-server")
        return None
    import redis

    subset = work / f"distributed-{pages}"
    if not subset.exists():
        generate(subset, pages, seed=99)
    starts = sorted(str(p) for p in subset.iterdir() if p.is_dir())
    port = free_port()
    proc = subprocess.Popen(
        [server, "--port", str(port), "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL
    )
    url = f"redis://127.0.0.1:{port}/0"
    r = redis.Redis.from_url(url)
    for _ in range(100):
        try:
            r.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    out: dict[str, float] = {"pages": pages}
    try:
        local = crawl(subset, work / "index-distributed-local")
        out["local_seconds"], out["documents"] = local["seconds"], local["documents"]
        for n in (1, 2):
            r.flushdb()
            seconds, documents = _crawlers(r, url, starts, work / f"index-distributed-{n}", n)
            out[f"crawlers_{n}_seconds"], out[f"crawlers_{n}_documents"] = seconds, documents
    finally:
        proc.terminate()
        proc.wait()
    return out


def _crawlers(r: Any, url: str, starts: list[str], index: Path, n: int) -> tuple[float, float]:
    """``n`` crawlers and one ``index ingest`` over ``starts``: seconds (the indexer's idle
    wait left out) and the documents it says it indexed."""
    shutil.rmtree(index, ignore_errors=True)
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "index", "enqueue", "--redis", url, *starts], cwd=ROOT, check=True, capture_output=True
    )
    crawl_args = [sys.executable, "-m", "scrapy", "crawl", "pages", "-s", f"REDIS_URL={url}"]
    crawlers = [
        subprocess.Popen(
            [*crawl_args, "-s", "REDIS_IDLE_CLOSE=0.5"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        for _ in range(n)
    ]
    # The indexer starts once the first page is in the stream: its idle exit counts from
    # its own start, and on a loaded machine the crawlers took longer than that to start
    # (it then exited having indexed nothing).
    while not r.xlen(KEYS.stream) and any(c.poll() is None for c in crawlers):
        time.sleep(0.05)
    ingest_args = ["--index", str(index), "--idle-exit", str(IDLE_EXIT_S), "--batch", "500"]
    ingest = subprocess.run(
        [sys.executable, "-m", "index", "ingest", "--redis", url, *ingest_args],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    for c in crawlers:
        c.wait()
    seconds = time.perf_counter() - t0 - IDLE_EXIT_S
    m = re.search(r"indexed (\d+) pages \((\d+) images\)", ingest.stdout)
    return seconds, float(m.group(2)) if m else 0.0
