"""The partial runs: a part of the preset measured again, written as its own RESULTS.md
section beside the preset's (`--follow-up`, `--search-follow-up`, `--search-typos`,
`--cold-start`, `--scale`). Each takes the work dir and the preset's name."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from whoosh import index as wi

from bench import report
from bench.coldstart import cold_start
from bench.common import DOCS_PER_PAGE, PRESETS, corpus, corpus_copy, crawl, machine, queries, say, show
from bench.page import contention
from bench.refresh import refresh
from bench.search import search_latency, typo_latency

FOLLOW_UP_QUERIES = 20


def existing_index(work: Path, preset: str) -> Path:
    """The preset's end-to-end index, which the partial runs measure again."""
    index = work / "index-e2e"
    if not index.exists():
        raise SystemExit(f"no {index}: run the {preset} preset first")
    return index


def _latency_and_cold_start(index: Path, qs: list[str], nocache: int) -> dict[str, Any]:
    """Search latency (result cache on and off) and the cold start, as the follow-ups report them."""
    lat: dict[str, Any] = {**search_latency(index, qs, nocache), "cold_start": cold_start(index)}
    show(lat)
    return lat


def segments_follow_up(work: Path, preset: str) -> str:
    """The end-to-end crawl and search again with the current defaults, reported as their
    own section: used to measure a writer change without rerunning every baseline."""
    cfg = PRESETS[preset]
    index = work / "index-followup"
    e2e = crawl(corpus(work, cfg["pages"]), index)
    show(e2e)
    segments = len(wi.open_dir(str(index))._segments())
    # A short sample: the full latency run is part of the main preset.
    sample = queries(cfg["queries"])[:FOLLOW_UP_QUERIES]
    lat = _latency_and_cold_start(index, sample, FOLLOW_UP_QUERIES)
    return report.partial_section(
        f"## `{preset}` follow-up — current defaults (bounded segments), {int(e2e['documents']):,} image documents",
        f"python -m bench.run --preset {preset} --follow-up",
        "result",
        report.follow_up_rows(e2e, segments, lat, FOLLOW_UP_QUERIES),
    )


def search_follow_up(work: Path, preset: str) -> str:
    """Search latency again on the preset's existing end-to-end index (warm and
    result-cache-off modes, the full query list): used to measure a search change
    without rebuilding the index."""
    cfg = PRESETS[preset]
    index = existing_index(work, preset)
    docs = wi.open_dir(str(index)).doc_count()
    lat = _latency_and_cold_start(index, queries(cfg["queries"]), cfg["nocache_queries"])
    return report.partial_section(
        f"## `{preset}` search follow-up — {docs:,} documents (the preset's end-to-end index)",
        f"python -m bench.run --preset {preset} --search-follow-up",
        "p50 / p99",
        report.search_follow_up_rows(lat, cfg["queries"]),
    )


def search_typos(work: Path, preset: str) -> str:
    """Typo tolerance, word starts and the page under slow queries, on the preset's
    end-to-end index (crawled first when missing): `--search-typos`."""
    cfg = PRESETS[preset]
    index = work / "index-e2e"
    if not index.exists():
        say(f"crawling {cfg['pages']} pages into {index}")
        crawl(corpus(work, cfg["pages"]), index)
    docs = wi.open_dir(str(index)).doc_count()
    qs = queries(cfg["queries"])
    ty = typo_latency(index, qs)
    show(ty)
    ct = contention(index, qs)
    show(ct)
    return report.partial_section(
        f"## `{preset}` search typos — {docs:,} documents (the preset's end-to-end index)",
        f"python -m bench.run --preset {preset} --search-typos",
        "result",
        [*report.typo_rows(ty, ct), report.cold_start_row(cold_start(index))],
    )


def cold_start_section(work: Path, preset: str) -> str:
    """Only the cold start rows, on the preset's existing end-to-end index: `--cold-start`."""
    cs = cold_start(existing_index(work, preset))
    show(cs)
    return report.partial_section(
        f"## `{preset}` cold start",
        f"python -m bench.run --preset {preset} --cold-start",
        "result",
        [report.cold_start_row(cs)],
    )


def scale(work: Path, preset: str) -> str:
    """Issue 19's figures at one size (`--docs N --scale`): the end-to-end crawl (index size,
    segments, writer memory), refresh unchanged and with 1% of the pages changed as ratios
    to that crawl, search p50 / p99 for exact, one-typo and word-start queries with and
    without `--facet domain`, and cold start. No baselines: their ratios come from the 1M
    run (`bench.baselines`), and each would double the time of a 2M run."""
    cfg = PRESETS[preset]
    work.mkdir(parents=True, exist_ok=True)
    folder = corpus_copy(work, cfg["pages"])
    index = work / "index-e2e"
    say(f"{preset}: end-to-end crawl of {cfg['pages']:,} pages")
    e2e = crawl(folder, index)
    show(e2e)
    say("refresh: unchanged, then 1% of the pages changed")
    rf = refresh(folder, index, full=e2e)
    show(rf)
    say("search: exact, one typo, word start; cold start")
    ty = typo_latency(index, queries(cfg["queries"]))
    cs = cold_start(index)
    show(ty, cs)
    result = {"preset": preset, "machine": machine(), "e2e": e2e, "refresh": rf, "typos": ty, "cold_start": cs}
    (work / f"result-scale-{preset}.json").write_text(json.dumps(result, indent=2))
    return report.partial_section(
        f"## `{preset}` scale — {e2e['documents']:,.0f} image documents, crawled",
        f"python -m bench.run --preset {preset.split('-')[0]} --docs {cfg['pages'] * DOCS_PER_PAGE} --scale",
        "result",
        [*report.crawl_rows(e2e), *report.refresh_rows(rf), *report.latency_rows(ty), report.cold_start_row(cs)],
    )


# flag → (the run, the start of its section's heading)
RUNS: dict[str, tuple[Callable[[Path, str], str], str]] = {
    "search_typos": (search_typos, "search typos"),
    "search_follow_up": (search_follow_up, "search follow-up"),
    "cold_start": (cold_start_section, "cold start"),
    "scale": (scale, "scale"),
    "follow_up": (segments_follow_up, "follow-up"),
}
