"""The benchmarks' command line: a preset measured in one run, side by side, written to bench/RESULTS.md.

    python -m bench.run --preset small     # make bench        (≈100k image documents, ≤ 5 min)
    python -m bench.run --preset large     # make bench-large  (≈1M image documents, ≤ 40 min)

Ratios, not absolute numbers, are the point: these machines are noisy, so every comparison
(ours vs a baseline) comes from the same run on the same corpus. This module is the command
line only: the measurements are bench.preset (the whole preset) and bench.partial (a part
again), the tables bench.report.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from bench import partial, preset, report
from bench.common import DEFAULT_WORK, PRESETS, ROOT, say, sized_preset


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="pages-crawler benchmarks")
    p.add_argument("--preset", choices=sorted(PRESETS), default="small")
    p.add_argument("--results", type=Path, default=ROOT / "bench" / "RESULTS.md")
    p.add_argument("--inprocess", action="store_true", help="also crawl with the writer in the crawl process")
    p.add_argument("--follow-up", action="store_true", help="only the crawl and search, as their own section")
    p.add_argument("--search-follow-up", action="store_true", help="only search latency, on the existing index")
    p.add_argument(
        "--search-typos", action="store_true", help="only typo / word-start latency and the page under slow queries"
    )
    p.add_argument("--cold-start", action="store_true", help="only the cold start rows, on the preset's existing index")
    p.add_argument(
        "--scale",
        action="store_true",
        help="crawl, refresh, search and cold start at one size (with --docs), as their own section",
    )
    p.add_argument(
        "--docs",
        type=int,
        help="about this many image documents instead of the preset's (pages = docs / 80); its own section",
    )
    p.add_argument(
        "--work", type=Path, help="where corpora and indexes go (default bench/work); a big run may want another disk"
    )
    return p


def main(argv: list[str] | None = None) -> None:
    opts = parser().parse_args(argv)
    work = opts.work.resolve() if opts.work else DEFAULT_WORK
    if opts.docs:
        opts.preset = sized_preset(opts.preset, opts.docs)
    t0 = time.perf_counter()
    # The partial runs: each writes its own section, next to the preset's.
    for flag, (make, heading) in partial.RUNS.items():
        if getattr(opts, flag):
            section = make(work, opts.preset)
            print(section)
            report.update_results(opts.results, f"## `{opts.preset}` {heading}", section)
            return
    result = preset.measure(work, opts.preset, opts.inprocess)
    # Kept before the report is formatted: a long run's figures outlive a slip in the report.
    (work / f"result-{opts.preset}.json").write_text(json.dumps(result, indent=2))
    section = report.preset_section(result)
    print(section)
    report.update_results(opts.results, f"## `{opts.preset}` preset", section)
    say(f"done in {time.perf_counter() - t0:.0f} s; wrote {opts.results}")


if __name__ == "__main__":
    main()
