"""Issue 19's crawl-side ratio, measured on its own: the crawl with ``INDEX_ENABLED=False``
against "Scrapy alone" (bench.baselines.scrapy_alone) on the same files, alternated
A/B/A/B so that both see the same load, best of N each; then a cProfile of the pure
stages in this process (parse_page, then the normalizers the way pipeline/pipelines.py
calls them), top lines by tottime.

    python -m bench.crawlside --pages 400
    python -m bench.crawlside --pages 400 --rounds 0      # the profile only
    python -m bench.crawlside --pages 400 --no-profile
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time
from pathlib import Path

from bench.baselines import scrapy_alone
from bench.common import DEFAULT_WORK, children_cpu_s, corpus, crawl, page_files, uptime
from pipeline.normalize import clear_caches


def _pure_stages(files: list[Path]) -> dict[str, float]:
    """parse_page over ``files``, then the domain and caption steps the item pipelines
    run (``pipeline.steps``); seconds per stage."""
    from pipeline.parsing import parse_page
    from pipeline.steps import normalize_captions, normalize_domains

    bodies = [(f.resolve().as_uri(), f.read_bytes()) for f in files]
    t0 = time.perf_counter()
    pages = [parse_page(url, body) for url, body in bodies]
    t1 = time.perf_counter()
    for page in pages:
        normalize_domains(page.url, page.images)
    t2 = time.perf_counter()
    for page in pages:
        normalize_captions(page.url, page.images)
    t3 = time.perf_counter()
    images = sum(len(p.images) for p in pages)
    return {"pages": len(pages), "images": images, "parse": t1 - t0, "domains": t2 - t1, "captions": t3 - t2}


def profile(folder: Path, top: int) -> None:
    files = page_files(folder)
    # No warm-up pass: a crawl process starts with cold caches, so the profile does too.
    prof = cProfile.Profile()
    prof.enable()
    stages = _pure_stages(files)
    prof.disable()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(top)
    print(out.getvalue())
    # Timed again without the profiler, from cold caches again (a crawl process starts
    # with none).
    clear_caches()
    plain = _pure_stages(files)
    for label, s in (("profiled", stages), ("unprofiled", plain)):
        n = s["images"]
        print(
            f"{label}: {s['pages']} pages, {n} images; parse {s['parse']:.2f} s ({s['parse'] / n * 1e6:.0f} us/image), "
            f"domains {s['domains'] * 1e6 / n:.1f} us/image, captions {s['captions'] * 1e6 / n:.1f} us/image",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pages", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3, help="A/B rounds (0: profile only)")
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--top", type=int, default=25)
    opts = parser.parse_args()
    work = DEFAULT_WORK
    work.mkdir(parents=True, exist_ok=True)
    folder = corpus(work, opts.pages)
    alone: list[float] = []
    side: list[float] = []
    if opts.rounds:
        print(f"load before: {uptime()}", flush=True)
    alone_cpu: list[float] = []
    side_cpu: list[float] = []
    for r in range(opts.rounds):
        cpu = children_cpu_s()
        a = scrapy_alone(folder)["seconds"]
        a_cpu = children_cpu_s() - cpu
        b = crawl(folder, work / "index-crawlside", {"INDEX_ENABLED": "False"})["seconds"]
        b_cpu = children_cpu_s() - cpu - a_cpu
        alone.append(a)
        side.append(b)
        alone_cpu.append(a_cpu)
        side_cpu.append(b_cpu)
        print(
            f"round {r + 1}: scrapy alone {a:.2f} s ({a_cpu:.2f} CPU s), crawl side {b:.2f} s ({b_cpu:.2f} CPU s), "
            f"ratio {b / a:.2f} (CPU {b_cpu / a_cpu:.2f})",
            flush=True,
        )
    if opts.rounds:
        print(f"load after: {uptime()}", flush=True)
        print(
            f"best of {opts.rounds}: scrapy alone {min(alone):.2f} s, crawl side {min(side):.2f} s, "
            f"crawl side / Scrapy alone {min(side) / min(alone):.2f}",
            flush=True,
        )
        # On a shared machine the wall clock measures the neighbours too; CPU seconds
        # (user + system, of the process and its children) do not.
        print(
            f"best of {opts.rounds}, CPU seconds: scrapy alone {min(alone_cpu):.2f}, crawl side {min(side_cpu):.2f}, "
            f"crawl side / Scrapy alone {min(side_cpu) / min(alone_cpu):.2f}",
            flush=True,
        )
    if not opts.no_profile:
        profile(folder, opts.top)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
