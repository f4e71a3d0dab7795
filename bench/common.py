"""What every measurement shares: the presets, the corpus and its copies, the end-to-end
crawl as a real ``scrapy crawl`` process, the query list, percentiles and the machine.

The work dir (corpora, indexes, raw results) is a parameter of whatever writes there:
``DEFAULT_WORK`` unless a run is told another (``--work``), never a module global that a
runner rewrites.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import random
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.corpus import WORDS, generate

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_WORK = ROOT / "bench" / "work"

PRESETS = {
    # pages × ~80 images: small ≈ 100k documents, large ≈ 1M documents.
    # The refresh is measured on the end-to-end corpus (a copy), which keeps this ≤ 5 min.
    "small": {
        "pages": 1250,
        "naive_docs": 400,
        "queries": 500,
        "nocache_queries": 500,
        "cold_queries": 200,
        "refresh_pages": 1250,
        "distributed_pages": 300,
        # 1 vs 2 sub-writers (issue 19): the anchor of the scaling model in RESULTS.md.
        "single_writer": True,
    },
    "large": {
        "pages": 12500,
        "naive_docs": 400,
        "queries": 500,
        "nocache_queries": 500,
        "cold_queries": 100,
        "refresh_pages": 12500,
        "distributed_pages": 600,
        "single_writer": True,
    },
    "tiny": {
        "pages": 60,
        "naive_docs": 100,
        "queries": 50,
        "nocache_queries": 50,
        "cold_queries": 20,
        "refresh_pages": 100,
        "distributed_pages": 60,
        "single_writer": True,
    },  # smoke test of the bench itself
}

DOCS_PER_PAGE = 80  # bench.corpus pages carry 80 image documents on average


def sized_preset(preset: str, docs: int) -> str:
    """A copy of ``preset`` sized for about ``docs`` image documents (issue 19's 2M run),
    registered under its own name so its results get their own section."""
    pages = max(1, round(docs / DOCS_PER_PAGE))
    name = f"{preset}-{docs // 1000}k"
    PRESETS[name] = {**PRESETS[preset], "pages": pages, "refresh_pages": pages}
    return name


def say(text: str) -> None:
    """A progress line of the run (flushed: a long run's log shows where it is)."""
    print(f"[bench] {text}", flush=True)


def show(*figures: object) -> None:
    """A step's figures, under its progress line."""
    say("  " + " ".join(str(f) for f in figures))


def machine() -> dict[str, str]:
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": f"{os.cpu_count()} cores ({platform.processor() or platform.machine()})",
        "ram": f"{mem_kb / 1024 / 1024:.1f} GiB",
        "python": platform.python_version(),
        "os": platform.platform(),
    }


def uptime() -> str:
    """The load averages (1, 5, 15 minutes): the machine is shared, say how busy it was."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def children_cpu_s() -> float:
    """User + system CPU seconds of the finished child processes so far (each waits for
    its own children, so a crawl counts its writer and sub-writers)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def corpus(work: Path, pages: int) -> Path:
    """The bench corpus of ``pages`` pages under ``work``, generated once."""
    out = work / f"corpus-{pages}"
    done = out / ".complete"
    if not done.exists():
        shutil.rmtree(out, ignore_errors=True)
        generate(out, pages)
        done.touch()
    return out


def corpus_copy(work: Path, pages: int) -> Path:
    """A copy of the corpus that the refresh measurement may change."""
    folder = work / f"refresh-{pages}"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(corpus(work, pages), folder)
    return folder


def page_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.md"))


_STAT = re.compile(r"'([\w/]+)': ([\d.]+)")


def crawl(folder: Path, index: Path, settings: dict[str, str] | None = None, keep: bool = False) -> dict[str, float]:
    """1. ``scrapy crawl pages`` of ``folder`` into ``index`` (emptied first unless
    ``keep``), timed from process start; its figures read from the Scrapy stats it dumps."""
    if not keep:
        shutil.rmtree(index, ignore_errors=True)
    args = [sys.executable, "-m", "scrapy", "crawl", "pages", "-a", f"start={folder}", "-s", f"INDEX_DIR={index}"]
    for name, value in (settings or {}).items():
        args += ["-s", f"{name}={value}"]
    t0 = time.perf_counter()
    result = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if result.returncode != 0:
        raise SystemExit(f"crawl failed:\n{result.stderr[-3000:]}")
    stats_text = result.stderr[result.stderr.find("Dumping Scrapy stats") :]
    stats = {k: float(v) for k, v in _STAT.findall(stats_text)}
    return {
        "seconds": seconds,
        "pages": stats.get("pages/new", 0) + stats.get("pages/changed", 0),
        "documents": stats.get("images/indexed", 0),
        "crawl_rss_mb": stats.get("crawl/max_rss", 0) / 2**20,
        "writer_rss_mb": stats.get("index/writer_max_rss", 0) / 2**20,
        "subwriter_rss_mb": stats.get("index/subwriter_max_rss", 0) / 2**20,
        "procs": stats.get("index/writer_procs", 1),
        "index_mb": sum(f.stat().st_size for f in index.glob("*") if f.is_file()) / 2**20,
        "segments": len(list(index.glob("*.seg"))),
    }


def queries(n: int, seed: int = 7) -> list[str]:
    """``n`` queries of 1–3 corpus words (repeats included, as real traffic has)."""
    rng = random.Random(seed)
    return [" ".join(rng.sample(WORDS, rng.choice([1, 1, 2, 2, 2, 3]))) for _ in range(n)]


def percentiles(samples: list[float]) -> tuple[float, float]:
    """p50 and p99 of ``samples``."""
    samples = sorted(samples)
    p50 = statistics.median(samples)
    p99 = samples[min(len(samples) - 1, round(0.99 * (len(samples) - 1)))]
    return p50, p99


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
