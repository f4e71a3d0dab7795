"""A whole preset: every measurement in order on one corpus, in one run, so that every
ratio compares figures of the same machine under the same load."""

from __future__ import annotations

import concurrent.futures
import multiprocessing
from pathlib import Path
from typing import Any

from bench.baselines import baseline, plainest_writer, scrapy_alone
from bench.coldstart import cold_start
from bench.common import PRESETS, corpus, corpus_copy, crawl, machine, queries, say, show
from bench.distributed import distributed
from bench.page import contention, page_render
from bench.refresh import refresh
from bench.search import search_latency, typo_latency
from bench.stages import stages_and_documents


def measure(work: Path, preset: str, inprocess: bool) -> dict[str, Any]:
    """Every figure of the preset's section (bench.report.preset_section), corpora and
    indexes under ``work``; ``inprocess`` adds a crawl with the writer in the crawl process."""
    cfg = PRESETS[preset]
    work.mkdir(parents=True, exist_ok=True)
    say(f"corpus: {cfg['pages']} pages")
    folder = corpus(work, cfg["pages"])
    jsonl = work / f"documents-{cfg['pages']}.jsonl"
    say("7. stages (parse, domain, caption) and precomputed documents")
    # In a child process: holding a million image records here would make every later
    # measurement's process start from a big parent.
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        stages = pool.submit(stages_and_documents, folder, jsonl).result()
    show(stages)
    out: dict[str, Any] = {"preset": preset, "machine": machine(), "stages": stages}

    def step(key: str, value: Any) -> None:
        out[key] = value
        show(value)

    say("1. end-to-end crawl (defaults: writer process, Whoosh sub-writers)")
    # When the refresh corpus is this corpus, crawl a copy: the refresh step changes it.
    same = cfg["refresh_pages"] == cfg["pages"]
    e2e_folder = corpus_copy(work, cfg["pages"]) if same else folder
    index = work / "index-e2e"
    step("e2e", crawl(e2e_folder, index))
    if inprocess:
        say("1b. end-to-end crawl, writer in the crawl process")
        step("inproc", crawl(folder, work / "index-inproc", {"INDEX_WRITER_PROCESS": "False"}))
    if cfg["single_writer"]:
        say("1c. end-to-end crawl, one plain Whoosh writer (INDEX_WRITER_PROCS=1)")
        step("single", crawl(folder, work / "index-single", {"INDEX_WRITER_PROCS": "1"}))
    say("1d. crawl side alone (INDEX_ENABLED=False) and Scrapy alone on the same files")
    out["crawl_side"] = crawl(folder, work / "index-crawlside", {"INDEX_ENABLED": "False"})
    out["scrapy_alone"] = scrapy_alone(folder)
    show(out["crawl_side"], out["scrapy_alone"])
    say("2b. baseline: the plainest Whoosh writer (8 fields), one commit")
    step("plainest", plainest_writer(jsonl, work / "index-plainest"))
    say("2. baseline: plain Whoosh writer, one commit")
    step("plain", baseline(jsonl, work / "index-plain", "plain"))
    say(f"3. naive baseline: update_document + commit per item ({cfg['naive_docs']} docs)")
    step("naive", baseline(jsonl, work / "index-naive", "naive", cfg["naive_docs"]))
    say(f"4. refresh ({cfg['refresh_pages']} pages)")
    if same:
        step("refresh", refresh(e2e_folder, index, full=out["e2e"]))
    else:
        step("refresh", refresh(corpus_copy(work, cfg["refresh_pages"]), work / "index-refresh"))
    say("5. search latency")
    qs = queries(cfg["queries"])
    out["latency"] = search_latency(index, qs, cfg["nocache_queries"], cfg["cold_queries"])
    out["latency"]["cold_start"] = cold_start(index)
    show(out["latency"])
    say("5c. typo tolerance and word starts; 5d. the page while slow queries run")
    out["typos"] = typo_latency(index, qs)
    out["contention"] = contention(index, qs)
    show(out["typos"], out["contention"])
    say("9. distributed: 1 and 2 crawlers feeding one indexer (Redis)")
    step("distributed", distributed(work, cfg["distributed_pages"]))
    say("8. search page render")
    step("render", page_render(index, qs))
    return out
