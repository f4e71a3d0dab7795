"""Benchmarks: everything measured in one run, side by side, written to bench/RESULTS.md.

    python -m bench.run --preset small     # make bench        (≈100k image documents, ≤ 5 min)
    python -m bench.run --preset large     # make bench-large  (≈1M image documents, ≤ 40 min)

Ratios, not absolute numbers, are the point: these machines are noisy, so every comparison
(ours vs a baseline) comes from the same run on the same corpus.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import itertools
import json
import multiprocessing
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.baselines import plainest_writer, scrapy_alone
from bench.corpus import WORDS, generate

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / "work"
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


def corpus(pages: int) -> Path:
    out = WORK / f"corpus-{pages}"
    done = out / ".complete"
    if not done.exists():
        shutil.rmtree(out, ignore_errors=True)
        generate(out, pages)
        done.touch()
    return out


def _page_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.md"))


# -- 7. per-stage throughput, and the precomputed documents for baselines 2 and 3 ----------


def stages_and_documents(folder: Path, jsonl: Path) -> dict[str, float]:
    """Run the pure stages in this process (one core), timing each: parse_page, then the
    item pipelines' own work (pipeline.steps, index.model.contract, index.model.documents) as a crawl
    does it, and write the final documents as JSON Lines (the baselines' input)."""
    from itemadapter import ItemAdapter

    from index.model.contract import page_problem
    from index.model.documents import page_documents
    from pipeline import steps
    from pipeline.items import PageItem
    from pipeline.normalize import captions, clear_caches, domains
    from pipeline.parsing import parse_page

    files = _page_files(folder)
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


# -- 1. end-to-end crawl ----------------------------------------------------------------------

_STAT = re.compile(r"'([\w/]+)': ([\d.]+)")


def crawl(folder: Path, index: Path, settings: dict[str, str] | None = None, keep: bool = False) -> dict[str, float]:
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


# -- 9. distributed mode (issue 8) ------------------------------------------------------------


def distributed(folder: Path, pages_subset: int) -> dict[str, float] | None:
    """1 vs 2 crawler processes feeding one indexer through a real redis-server, and a
    local crawl of the same pages, all in this run. The starts are the corpus' subfolders
    (500 pages each), so two crawlers have something to share."""
    server = shutil.which("redis-server")
    if server is None:
        print("[bench]   skipped: no redis-server", flush=True)
        return None
    import socket

    import redis

    subset = WORK / f"distributed-{pages_subset}"
    if not subset.exists():
        generate(subset, pages_subset, seed=99)
    starts = sorted(str(p) for p in subset.iterdir() if p.is_dir())
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
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
    out: dict[str, float] = {"pages": pages_subset}
    try:
        local = crawl(subset, WORK / "index-distributed-local")
        out["local_seconds"], out["documents"] = local["seconds"], local["documents"]
        for n in (1, 2):
            r.flushdb()
            index = WORK / f"index-distributed-{n}"
            shutil.rmtree(index, ignore_errors=True)
            t0 = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "index", "enqueue", "--redis", url, *starts],
                cwd=ROOT,
                check=True,
                capture_output=True,
            )
            crawlers = [
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "scrapy",
                        "crawl",
                        "pages",
                        "-s",
                        f"REDIS_URL={url}",
                        "-s",
                        "REDIS_IDLE_CLOSE=0.5",
                    ],
                    cwd=ROOT,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                for _ in range(n)
            ]
            ingest = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "index",
                    "ingest",
                    "--redis",
                    url,
                    "--index",
                    str(index),
                    "--idle-exit",
                    "3",
                    "--batch",
                    "500",
                ],
                cwd=ROOT,
                capture_output=True,
                text=True,
            )
            for c in crawlers:
                c.wait()
            # The indexer waits --idle-exit seconds after the last page before it exits.
            out[f"crawlers_{n}_seconds"] = time.perf_counter() - t0 - 3
            m = re.search(r"indexed (\d+) pages \((\d+) images\)", ingest.stdout)
            out[f"crawlers_{n}_documents"] = float(m.group(2)) if m else 0.0
    finally:
        proc.terminate()
        proc.wait()
    return out


# -- 2. and 3. baselines (separate processes: clean RSS, no shared caches) -------------------


BASELINE = r"""
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


def baseline(jsonl: Path, index: Path, mode: str, limit: int = 0) -> dict[str, float]:
    shutil.rmtree(index, ignore_errors=True)
    index.mkdir(parents=True)
    result = subprocess.run(
        [sys.executable, "-c", BASELINE, str(jsonl), str(index), mode, str(limit)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise SystemExit(f"baseline failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout)


# -- 5. search latency ------------------------------------------------------------------------


def queries(n: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.sample(WORDS, rng.choice([1, 1, 2, 2, 2, 3]))) for _ in range(n)]


def _percentiles(samples: list[float]) -> tuple[float, float]:
    samples = sorted(samples)
    p50 = statistics.median(samples)
    p99 = samples[min(len(samples) - 1, round(0.99 * (len(samples) - 1)))]
    return p50, p99


def search_latency(index: Path, qs: list[str], nocache: int, cold: int = 0) -> dict[str, float]:
    """Warm latency of index.search.run.search over the query list, as a long-lived process
    (the web page, a shell loop) sees it: with its result cache (repeated queries are
    answered from it), with the result cache emptied before every query (the posting
    arrays stay cached, as in any warm process), and with both emptied (every query
    reads its postings from the index files again)."""
    from whoosh import index as wi
    from whoosh.qparser import QueryParser

    from index.fast import arrays as fastsearch
    from index.search import run as search_module

    out: dict[str, float] = {"distinct_queries": len(set(qs)), "nocache_queries": min(nocache, len(qs))}
    out["cold_queries"] = min(cold, len(qs))
    store = fastsearch._store
    for label, facets in (("plain", ()), ("facet", ("domain",))):
        search_module.search(index, qs[0], facets=facets)  # open and warm
        for mode in ("", "_nocache", "_cold") if cold else ("", "_nocache"):
            search_module._RESULTS.clear()
            # Cold reads come from the index files, not from the disk array store (the
            # cold-start row measures the store).
            fastsearch._store = (lambda reader: None) if mode == "_cold" else store
            times = []
            for q in {"": qs, "_nocache": qs[:nocache], "_cold": qs[:cold]}[mode]:
                if mode:
                    search_module._RESULTS.clear()
                if mode == "_cold":
                    fastsearch.clear_cache()
                t0 = time.perf_counter()
                search_module.search(index, q, limit=10, facets=facets)
                times.append((time.perf_counter() - t0) * 1000)
            out[f"ours_{label}{mode}_p50"], out[f"ours_{label}{mode}_p99"] = _percentiles(times)
    fastsearch._store = store
    ix = wi.open_dir(str(index))
    with ix.searcher() as s:
        parser = QueryParser("caption", ix.schema)
        s.search(parser.parse(qs[0]), limit=10)
        times = []
        for q in qs:
            t0 = time.perf_counter()
            s.search(parser.parse(q), limit=10)
            times.append((time.perf_counter() - t0) * 1000)
    out["baseline_p50"], out["baseline_p99"] = _percentiles(times)
    return out


def typo_queries(qs: list[str], seed: int = 11) -> dict[str, list[str]]:
    """The query list three ways: as typed; with one typo in its longest word (a swap of
    two neighbour letters or a dropped letter, as people mistype); and with its last word
    cut to a word start (what the search box holds while typing)."""
    rng = random.Random(seed)
    typo, prefix = [], []
    for q in qs:
        words = q.split()
        i = max(range(len(words)), key=lambda k: len(words[k]))
        w = words[i]
        if len(w) >= 5:
            j = rng.randrange(1, len(w) - 1)
            w = w[:j] + w[j + 1] + w[j] + w[j + 2 :] if rng.random() < 0.5 else w[:j] + w[j + 1 :]
        typo.append(" ".join([*words[:i], w, *words[i + 1 :]]))
        last = words[-1]
        prefix.append(" ".join([*words[:-1], last[: max(3, (len(last) * 2 + 2) // 3)]]))
    return {"exact": qs, "one_typo": typo, "prefix": prefix}


def typo_latency(index: Path, qs: list[str]) -> dict[str, float]:
    """p50 / p99 of exact, one-typo and word-start queries, result cache emptied before
    every query (posting arrays warm after a first pass, as in a running search page), with and without
    `--facet domain`; and `--exact` on the exact queries (no tolerance work at all)."""
    from index.search import run as search_module

    def p50_p99(items: list[str], **options: Any) -> tuple[float, float]:
        times = []
        for q in items:
            search_module._RESULTS.clear()
            t0 = time.perf_counter()
            search_module.search(index, q, limit=10, **options)
            times.append((time.perf_counter() - t0) * 1000)
        return _percentiles(times)

    out: dict[str, float] = {}
    for facets in ((), ("domain",)):
        label = "facet" if facets else "plain"
        for kind, items in typo_queries(qs).items():
            # Warm, as search_latency's `_nocache` rows: a first pass reads each word's
            # postings from the files (the cold reads are the cold-start row's business).
            p50_p99(items, facets=facets)
            out[f"{kind}_{label}_p50"], out[f"{kind}_{label}_p99"] = p50_p99(items, facets=facets)
    out["exact_flag_p50"], out["exact_flag_p99"] = p50_p99(qs, exact=True)
    return out


# Queries that cost the most per request: a phrase (Whoosh walks positions), a wildcard
# with no literal start, a fuzzy word at the distance cap, and a deep collapsed page.
SLOW_QUERIES = ('"upper back pain"', "*e*", "exercises~2", "chair&page=5", '"seated stretch" OR "desk yoga"')


def contention(index: Path, qs: list[str], seconds: float = 10.0, slow_clients: int = 3) -> dict[str, float]:
    """The search page's latency for fast queries alone, then while `slow_clients`
    clients send the slowest query shapes back to back (`SLOW_QUERIES`): one slow query
    must not hold everyone up (issue 16). A real uvicorn server on a free port, clients
    over HTTP (stdlib), each fast query distinct (the result cache answers repeats)."""
    import http.client
    import socket
    import threading
    import urllib.parse

    import uvicorn

    from index.serve.web import create_app

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(index), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)

    def get(query: str) -> float:
        q, _, extra = query.partition("&")
        path = "/api/search?" + urllib.parse.urlencode({"q": q}) + (f"&{extra}" if extra else "")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        t0 = time.perf_counter()
        conn.request("GET", path, headers={"Host": "localhost"})
        conn.getresponse().read()
        conn.close()
        return (time.perf_counter() - t0) * 1000

    out: dict[str, float] = {}
    fast = iter(f"{q} {n}" if n else q for n in range(1000) for q in qs)
    get(qs[0])
    for label, clients in (("alone", 0), ("loaded", slow_clients)):
        stop = threading.Event()
        slow_times: list[float] = []

        def slow_client(k: int, stop: threading.Event, slow_times: list[float]) -> None:
            for n in itertools.count(k):
                if stop.is_set():
                    return
                slow_times.append(get(SLOW_QUERIES[n % len(SLOW_QUERIES)] + f"&limit={10 + n % 7}"))

        threads = [
            threading.Thread(target=slow_client, args=(k, stop, slow_times), daemon=True) for k in range(clients)
        ]
        for t in threads:
            t.start()
        times, deadline = [], time.monotonic() + seconds
        while time.monotonic() < deadline:
            times.append(get(next(fast)))
        stop.set()
        for t in threads:
            t.join(timeout=60)
        out[f"fast_{label}_p50"], out[f"fast_{label}_p99"] = _percentiles(times)
        out[f"fast_{label}_n"] = len(times)
        if slow_times:
            out["slow_p50"], out["slow_p99"] = _percentiles(slow_times)
            out["slow_n"] = len(slow_times)
    server.should_exit = True
    thread.join(timeout=10)
    return out


def latency_rows(ty: dict[str, float]) -> list[str]:
    """RESULTS.md rows for exact, one-typo and word-start latency, with and without a facet."""
    return [
        f"| search p50 / p99, {label}, result cache off | {ty[f'{kind}_plain_p50']:.1f} / "
        f"{ty[f'{kind}_plain_p99']:.1f} ms; `--facet domain` {ty[f'{kind}_facet_p50']:.1f} / "
        f"{ty[f'{kind}_facet_p99']:.1f} ms |"
        for kind, label in (("exact", "exact"), ("one_typo", "one typo"), ("prefix", "last word a word start"))
    ]


def typo_rows(ty: dict[str, float], ct: dict[str, float]) -> list[str]:
    """RESULTS.md rows for typo tolerance, word starts and contention."""
    rows = latency_rows(ty)
    rows.append(
        f"| search p50 / p99, exact queries with `--exact` (no tolerance) | "
        f"{ty['exact_flag_p50']:.1f} / {ty['exact_flag_p99']:.1f} ms |"
    )
    rows.append(
        f"| `/api/search` fast queries, alone ({int(ct['fast_alone_n'])}) / while {3} clients send slow ones "
        f"({int(ct['fast_loaded_n'])}), p50 / p99 | {ct['fast_alone_p50']:.1f} / {ct['fast_alone_p99']:.1f} ms; "
        f"{ct['fast_loaded_p50']:.1f} / {ct['fast_loaded_p99']:.1f} ms (slow ones: {ct.get('slow_p50', 0):.0f} / "
        f"{ct.get('slow_p99', 0):.0f} ms, {int(ct.get('slow_n', 0))} sent) |"
    )
    return rows


def search_typos(preset: str) -> str:
    """Typo tolerance, word starts and the page under slow queries, on the preset's
    end-to-end index (crawled first when missing): `--search-typos`."""
    cfg = PRESETS[preset]
    index = WORK / "index-e2e"
    if not index.exists():
        print(f"[bench] crawling {cfg['pages']} pages into {index}", flush=True)
        crawl(corpus(cfg["pages"]), index)
    from whoosh import index as wi

    docs = wi.open_dir(str(index)).doc_count()
    qs = queries(cfg["queries"])
    ty = typo_latency(index, qs)
    print(f"[bench]   {ty}", flush=True)
    ct = contention(index, qs)
    print(f"[bench]   {ct}", flush=True)
    rows = typo_rows(ty, ct)
    rows.append(f"| {COLD_START_LABEL} | {cold_start_text(cold_start(index))} |")
    return _follow_up_section(
        f"## `{preset}` search typos — {docs:,} documents (the preset's end-to-end index)",
        f"python -m bench.run --preset {preset} --search-typos",
        "result",
        rows,
    )


def page_render(index: Path, qs: list[str]) -> dict[str, float]:
    """The search page rendered server side (search + four facets + template), through
    Starlette's in-process test client, beside the CLI's `--json` output for the same
    queries; the result cache is emptied before every query on both sides."""
    import io
    import warnings
    from argparse import Namespace

    warnings.filterwarnings("ignore", module="starlette")
    from starlette.testclient import TestClient

    from index.cli import run_search
    from index.search import run as search_module
    from index.serve.web import create_app

    client = TestClient(create_app(index))
    client.get("/", params={"q": qs[0]})
    options = {"limit": 10, "page": 1, "json": True, "sort": "relevance", "facet": "", "collapse": True, "local": True}
    options |= {"domain": None, "site": None, "author": None, "board": None, "since": None, "until": None}
    out: dict[str, float] = {}
    runs = {
        "page": lambda q: client.get("/", params={"q": q}),
        "api": lambda q: client.get("/api/search", params={"q": q}),
        "cli_json": lambda q: run_search(
            Namespace(query=[q], **options), str(index), out=io.StringIO(), err=io.StringIO()
        ),
    }
    for label, call in runs.items():
        times = []
        for q in qs:
            search_module._RESULTS.clear()
            t0 = time.perf_counter()
            call(q)
            times.append((time.perf_counter() - t0) * 1000)
        out[f"{label}_p50"], out[f"{label}_p99"] = _percentiles(times)
    return out


COLD_QUERIES = ["chair yoga", "upper back stretch", "strech"]
_WHOOSH_ALONE = """
import sys
from whoosh import index, qparser
ix = index.open_dir(sys.argv[1])
with ix.searcher() as s:
    hits = s.search(qparser.QueryParser("caption", ix.schema).parse(sys.argv[2]), limit=10)
    print([h.get("image_url") for h in hits])
"""


def _timed_run(args: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(args, cwd=ROOT, capture_output=True)
    return (time.perf_counter() - t0) * 1000


def served_start(index: Path) -> float:
    """A new `python -m index search` process to its first result while `python -m index
    serve` runs for the index (index.serve.remote): the median over COLD_QUERIES of each one's
    best of 2 requests the server has not seen (limit 10, then 11: its result cache
    cannot answer either), after a few other queries opened the index."""
    import tempfile
    from unittest import mock

    from index.serve import remote

    with (
        tempfile.TemporaryDirectory(prefix="bench-runtime-") as runtime,
        mock.patch.dict(os.environ, {"XDG_RUNTIME_DIR": runtime}),
    ):
        server = subprocess.Popen(  # any free port: the announcement says which
            [sys.executable, "-m", "index", "serve", "--index", str(index), "--port", "0"],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 600
            while remote.ask(index, {"q": "seated neck"}) is None:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("bench: `python -m index serve` did not start")
                time.sleep(0.2)
            for warm in ("desk yoga", "shoulder", "core workout"):
                remote.ask(index, {"q": warm})
            ours = [sys.executable, "-m", "index", "search", "--index", str(index)]
            return statistics.median(
                min(_timed_run([*ours, q, "--limit", str(limit)]) for limit in (10, 11)) for q in COLD_QUERIES
            )
        finally:
            server.terminate()
            server.wait(timeout=30)


def cold_start(index: Path) -> dict[str, float]:
    """A new `python -m index search` process to its first result, median over
    COLD_QUERIES of the best of 2: with the array store emptied before each run, then
    with it holding what those runs decoded; beside the process's imports alone and
    Whoosh alone (open the index, parse, top 10) as the floor and the baseline; and the
    same command answered by a resident server (:func:`served_start`)."""
    from index.fast.store import FILENAME

    ours = [sys.executable, "-m", "index", "search", "--local", "--index", str(index)]

    def emptied(query: str) -> float:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{index / FILENAME}{suffix}").unlink(missing_ok=True)
        return _timed_run([*ours, query])

    def median_best(run: Any) -> float:
        return statistics.median(min(run(q) for _ in range(2)) for q in COLD_QUERIES)

    return {
        "empty_ms": median_best(emptied),
        "stored_ms": median_best(lambda q: _timed_run([*ours, q])),
        "import_ms": min(_timed_run([sys.executable, "-c", "import index.cli, index.search.run"]) for _ in range(3)),
        "whoosh_ms": median_best(lambda q: _timed_run([sys.executable, "-c", _WHOOSH_ALONE, str(index), q])),
        "served_ms": served_start(index),
    }


def cold_start_text(cs: dict[str, float]) -> str:
    served = (
        f"; with `python -m index serve` running for the index: {cs['served_ms']:.0f} ms" if "served_ms" in cs else ""
    )
    return (
        f"{cs['empty_ms']:.0f} ms with the array store empty, {cs['stored_ms']:.0f} ms with it holding their arrays "
        f"(imports alone {cs['import_ms']:.0f} ms; Whoosh alone, open + parse + top 10: {cs['whoosh_ms']:.0f} ms)"
        f"{served}"
    )


COLD_START_LABEL = (
    f"`python -m index search` cold start to first result, median of {len(COLD_QUERIES)} queries "
    "(two words, three, a typo), best of 2 each"
)


# -- report -------------------------------------------------------------------------------------


def corpus_copy(pages: int) -> Path:
    """A copy of the corpus that the refresh measurement may change."""
    folder = WORK / f"refresh-{pages}"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(corpus(pages), folder)
    return folder


def refresh(folder: Path, index: Path, full: dict[str, float] | None = None) -> dict[str, float]:
    """4. A full crawl of ``folder`` (or the one given), then a refresh of it unchanged,
    then with 1% of the pages changed. Ratios are to the full crawl of the same run."""
    if full is None:
        full = crawl(folder, index)
    unchanged = crawl(folder, index, keep=True)
    files = _page_files(folder)
    changed_files = random.Random(3).sample(files, max(1, len(files) // 100))
    for f in changed_files:
        with f.open("a", encoding="utf-8") as out:
            out.write("[ ![](https://changed.example.com/new.jpg)](https://changed.example.com/) A changed page\n")
    changed = crawl(folder, index, keep=True)
    return {
        "pages": len(files),
        "full_seconds": full["seconds"],
        "full_documents": full["documents"],
        "unchanged_seconds": unchanged["seconds"],
        "changed_pages": len(changed_files),
        "changed_seconds": changed["seconds"],
        "changed_indexed": changed["documents"],
    }


def run(preset: str, inprocess: bool) -> dict[str, Any]:
    cfg = PRESETS[preset]
    WORK.mkdir(parents=True, exist_ok=True)
    print(f"[bench] corpus: {cfg['pages']} pages", flush=True)
    folder = corpus(cfg["pages"])
    jsonl = WORK / f"documents-{cfg['pages']}.jsonl"
    print("[bench] 7. stages (parse, domain, caption) and precomputed documents", flush=True)
    # In a child process: holding a million image records here would make every later
    # measurement's process start from a big parent.
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        stages = pool.submit(stages_and_documents, folder, jsonl).result()
    print(f"[bench]   {stages}", flush=True)
    out: dict[str, Any] = {"preset": preset, "machine": machine(), "stages": stages}

    print("[bench] 1. end-to-end crawl (defaults: writer process, Whoosh sub-writers)", flush=True)
    # When the refresh corpus is this corpus, crawl a copy: the refresh step changes it.
    same = cfg["refresh_pages"] == cfg["pages"]
    e2e_folder = corpus_copy(cfg["pages"]) if same else folder
    out["e2e"] = crawl(e2e_folder, WORK / "index-e2e")
    print(f"[bench]   {out['e2e']}", flush=True)
    if inprocess:
        print("[bench] 1b. end-to-end crawl, writer in the crawl process", flush=True)
        out["inproc"] = crawl(folder, WORK / "index-inproc", {"INDEX_WRITER_PROCESS": "False"})
        print(f"[bench]   {out['inproc']}", flush=True)
    if cfg["single_writer"]:
        print("[bench] 1c. end-to-end crawl, one plain Whoosh writer (INDEX_WRITER_PROCS=1)", flush=True)
        out["single"] = crawl(folder, WORK / "index-single", {"INDEX_WRITER_PROCS": "1"})
        print(f"[bench]   {out['single']}", flush=True)
    print("[bench] 1d. crawl side alone (INDEX_ENABLED=False) and Scrapy alone on the same files", flush=True)
    out["crawl_side"] = crawl(folder, WORK / "index-crawlside", {"INDEX_ENABLED": "False"})
    out["scrapy_alone"] = scrapy_alone(folder)
    print(f"[bench]   {out['crawl_side']} {out['scrapy_alone']}", flush=True)
    print("[bench] 2b. baseline: the plainest Whoosh writer (8 fields), one commit", flush=True)
    out["plainest"] = plainest_writer(jsonl, WORK / "index-plainest")
    print(f"[bench]   {out['plainest']}", flush=True)
    print("[bench] 2. baseline: plain Whoosh writer, one commit", flush=True)
    out["plain"] = baseline(jsonl, WORK / "index-plain", "plain")
    print(f"[bench]   {out['plain']}", flush=True)
    print(f"[bench] 3. naive baseline: update_document + commit per item ({cfg['naive_docs']} docs)", flush=True)
    out["naive"] = baseline(jsonl, WORK / "index-naive", "naive", cfg["naive_docs"])
    print(f"[bench]   {out['naive']}", flush=True)
    print(f"[bench] 4. refresh ({cfg['refresh_pages']} pages)", flush=True)
    if same:
        out["refresh"] = refresh(e2e_folder, WORK / "index-e2e", full=out["e2e"])
    else:
        out["refresh"] = refresh(corpus_copy(cfg["refresh_pages"]), WORK / "index-refresh")
    print(f"[bench]   {out['refresh']}", flush=True)
    print("[bench] 5. search latency", flush=True)
    qs = queries(cfg["queries"])
    out["latency"] = search_latency(WORK / "index-e2e", qs, cfg["nocache_queries"], cfg["cold_queries"])
    out["latency"]["cold_start"] = cold_start(WORK / "index-e2e")
    print(f"[bench]   {out['latency']}", flush=True)
    print("[bench] 5c. typo tolerance and word starts; 5d. the page while slow queries run", flush=True)
    out["typos"] = typo_latency(WORK / "index-e2e", qs)
    out["contention"] = contention(WORK / "index-e2e", qs)
    print(f"[bench]   {out['typos']} {out['contention']}", flush=True)
    print("[bench] 9. distributed: 1 and 2 crawlers feeding one indexer (Redis)", flush=True)
    out["distributed"] = distributed(folder, cfg["distributed_pages"])
    print(f"[bench]   {out['distributed']}", flush=True)
    print("[bench] 8. search page render", flush=True)
    out["render"] = page_render(WORK / "index-e2e", queries(cfg["queries"]))
    print(f"[bench]   {out['render']}", flush=True)
    return out


def _writer_rss(crawl_result: dict[str, float]) -> float:
    """The writer's peak memory, counted high: its own peak plus procs times the largest
    sub-writer's (they run side by side, but need not peak at the same moment)."""
    return crawl_result["writer_rss_mb"] + crawl_result["procs"] * crawl_result["subwriter_rss_mb"]


def report(r: dict[str, Any]) -> str:
    m, s, e, p, n, lat, rf = (r[k] for k in ("machine", "stages", "e2e", "plain", "naive", "latency", "refresh"))
    single = r.get("single")
    rd = r["render"]
    dist = r.get("distributed")
    e_rate = e["documents"] / e["seconds"]
    p_rate = p["documents"] / p["seconds"]
    n_rate = n["documents"] / n["seconds"]
    rows = [
        f"| 1 | end-to-end `scrapy crawl pages` into a fresh index (defaults: writer process, {int(e['procs'])} Whoosh "
        f"sub-writers) | {e['seconds']:.1f} s, "
        f"{e['pages'] / e['seconds']:.0f} pages/s, {e_rate:,.0f} docs/s; index "
        f"{e.get('index_mb', 0):,.0f} MB in {int(e.get('segments', 0))} segments |",
    ]
    if "inproc" in r:
        i = r["inproc"]
        rows.append(
            f"| 1b | end-to-end, writer inside the crawl process | {i['seconds']:.1f} s, "
            f"{i['documents'] / i['seconds']:,.0f} docs/s |"
        )
    if single:
        rows.append(
            f"| 1c | end-to-end, `-s INDEX_WRITER_PROCS=1` (one plain Whoosh writer) | {single['seconds']:.1f} s, "
            f"{single['documents'] / single['seconds']:,.0f} docs/s; writer peak RSS {single['writer_rss_mb']:.0f} MB |"
        )
    if "crawl_side" in r:
        cs, sa = r["crawl_side"], r["scrapy_alone"]
        rows.append(
            f"| 1d | crawl side only (`-s INDEX_ENABLED=False`) / Scrapy alone (a minimal spider reading the same "
            f"files, one small item per page, no parsing) | {cs['seconds']:.1f} s / {sa['seconds']:.1f} s |"
        )
    if "plainest" in r:
        rows.append(
            f"| 2b | the plainest Whoosh writer: 8 fields (id, caption stemmed, title, site, domain, image_url, "
            f"page_url, date), `limitmb=256`, one commit, same image documents | {r['plainest']['wall_seconds']:.1f} s "
            f"(process start included), {r['plainest']['documents'] / r['plainest']['wall_seconds']:,.0f} docs/s |"
        )
    rows += [
        f"| 2 | baseline: plain Whoosh writer, same documents from JSON Lines, one commit | {p['seconds']:.1f} s, "
        f"{p_rate:,.0f} docs/s |",
        f"| 3 | naive baseline: `update_document` + `commit` per document ({n['documents']} docs) | "
        f"{n_rate:,.0f} docs/s |",
        f"| 4 | refresh of {rf['pages']:,} pages: full crawl / unchanged / {rf['changed_pages']} pages (1%) changed | "
        f"{rf['full_seconds']:.1f} s / {rf['unchanged_seconds']:.1f} s / {rf['changed_seconds']:.1f} s |",
        f"| 5 | search p50 / p99, limit 10, {len(queries(PRESETS[r['preset']]['queries']))} queries of 1–3 words "
        f"({int(lat['distinct_queries'])} distinct), warm process, result cache on | ours {lat['ours_plain_p50']:.1f} / "
        f"{lat['ours_plain_p99']:.1f} ms; with `--facet domain` {lat['ours_facet_p50']:.1f} / "
        f"{lat['ours_facet_p99']:.1f} ms |",
        f"| 5a | the same, result cache emptied before every query (first {int(lat['nocache_queries'])} queries) | ours {lat['ours_plain_nocache_p50']:.1f} / "
        f"{lat['ours_plain_nocache_p99']:.1f} ms; with `--facet domain` {lat['ours_facet_nocache_p50']:.1f} / "
        f'{lat["ours_facet_nocache_p99"]:.1f} ms; baseline: plain `QueryParser("caption")` + `search` '
        f"{lat['baseline_p50']:.1f} / {lat['baseline_p99']:.1f} ms |",
        f"| 5c | the same, result cache and posting arrays emptied before every query (first {int(lat['cold_queries'])}) | "
        f"ours {lat['ours_plain_cold_p50']:.1f} / "
        f"{lat['ours_plain_cold_p99']:.1f} ms; with `--facet domain` {lat['ours_facet_cold_p50']:.1f} / "
        f"{lat['ours_facet_cold_p99']:.1f} ms |",
        f"| 5b | {COLD_START_LABEL} | {cold_start_text(lat['cold_start'])} |",
        *(f"| 5d | {row[2:]}" for row in (typo_rows(r["typos"], r["contention"]) if "typos" in r else [])),
        f"| 6 | peak RSS: crawl process / writer (its process + {int(e['procs'])} × the largest sub-writer) / plain baseline | "
        f"{e['crawl_rss_mb']:.0f} / {_writer_rss(e):.0f} ({e['writer_rss_mb']:.0f} + {int(e['procs'])} × "
        f"{e['subwriter_rss_mb']:.0f}) / {p['rss_mb']:.0f} MB |",
        f"| 7 | per stage, one core: parse / domain / caption / build documents | {s['parse_images_per_s']:,.0f} / "
        f"{s['domain_urls_per_s']:,.0f} / {s['caption_per_s']:,.0f} / {s['documents_per_s']:,.0f} images/s |",
        f"| 8 | search page render, server side (4 facets + template), p50 / p99; `/api/search`; CLI `--json`, same queries | "
        f"{rd['page_p50']:.1f} / {rd['page_p99']:.1f} ms; {rd['api_p50']:.1f} / {rd['api_p99']:.1f} ms; "
        f"{rd['cli_json_p50']:.1f} / {rd['cli_json_p99']:.1f} ms |",
    ]
    if dist:
        d1, d2, dl = dist["crawlers_1_seconds"], dist["crawlers_2_seconds"], dist["local_seconds"]
        rows.append(
            f"| 9 | distributed, {int(dist['pages']):,} pages / {int(dist['documents']):,} docs: local crawl / 1 crawler + "
            f"indexer / 2 crawlers + indexer (Redis) | {dl:.1f} s / {d1:.1f} s / {d2:.1f} s "
            f"({dist['documents'] / d1:,.0f} / {dist['documents'] / d2:,.0f} docs/s; indexed "
            f"{int(dist['crawlers_1_documents']):,} / {int(dist['crawlers_2_documents']):,}) |"
        )
    ratios = [
        f"- end-to-end time / plain-writer baseline time: **{e['seconds'] / p['seconds']:.2f}** (target ≤ 1.15)"
        + (f"; with one plain writer: **{single['seconds'] / p['seconds']:.2f}**" if single else ""),
        f"- end-to-end docs/s ÷ naive baseline docs/s: **{e_rate / n_rate:.1f}×** (target ≥ 15×)"
        + (f"; with one plain writer: **{single['documents'] / single['seconds'] / n_rate:.1f}×**" if single else ""),
        f"- refresh unchanged / full crawl: **{rf['unchanged_seconds'] / rf['full_seconds']:.3f}** (target ≤ 0.05); "
        f"1% changed / full: **{rf['changed_seconds'] / rf['full_seconds']:.3f}** (target ≤ 0.10)",
        f"- search, result cache off, vs the plain one-field Whoosh baseline (p50 / p99): "
        f"**{lat['ours_plain_nocache_p50'] / lat['baseline_p50']:.2f} / {lat['ours_plain_nocache_p99'] / lat['baseline_p99']:.2f}** "
        f"(targets at 1M: p50 ≤ 20 ms, p99 ≤ 150 ms; cold start ≤ 400 ms)",
        f"- search page render p50 **{rd['page_p50']:.1f} ms** (target ≤ 50 ms at 100k), "
        f"{rd['page_p50'] / rd['cli_json_p50']:.1f}× the CLI's `--json` search",
        f"- domain step {s['domain_urls_per_s']:,.0f} URLs/s (target ≥ 100,000); caption step "
        f"{s['caption_per_s']:,.0f} captions/s (target ≥ 20,000)",
    ]
    if "crawl_side" in r:
        ratios.append(
            f"- crawl side / Scrapy alone (time): **{r['crawl_side']['seconds'] / r['scrapy_alone']['seconds']:.2f}** "
            f"(target ≤ 3, issue 19)"
        )
    if "plainest" in r:
        ratios.append(
            f"- end-to-end time / the plainest writer's: **{e['seconds'] / r['plainest']['wall_seconds']:.2f}** "
            f"(target ≤ 1.0, issue 19)"
            + (f"; with one sub-writer: **{single['seconds'] / r['plainest']['wall_seconds']:.2f}**" if single else "")
        )
    if single:
        ratios.append(
            f"- end-to-end, {int(e['procs'])} sub-writers vs 1 (time): **{e['seconds'] / single['seconds']:.2f}**"
        )
    if dist:
        ratios.append(
            f"- distributed, 2 crawlers vs 1 (time): **{d2 / d1:.2f}**; one indexer vs the local crawl's writer "
            f"(time, same pages): **{d1 / dl:.2f}** — the single Whoosh writer is the ceiling either way"
        )
    if "inproc" in r:
        ratios.append(
            f"- writer process vs writer in the crawl process: **{r['inproc']['seconds'] / e['seconds']:.2f}×** faster"
        )
    lines = [
        f"## `{r['preset']}` preset — {int(s['pages']):,} pages, {int(s['images']):,} image documents",
        "",
        f"Machine: {m['cpu']}, {m['ram']} RAM, Python {m['python']}, {m['os']}; run {m['date']}.",
        f"Command: `python -m bench.run --preset {r['preset']}`",
        "",
        "| # | measurement | result |",
        "|---|---|---|",
        *rows,
        "",
        "Ratios (same run):",
        "",
        *ratios,
        "",
    ]
    return "\n".join(lines)


FOLLOW_UP_QUERIES = 20


def _follow_up_section(heading: str, command: str, column: str, rows: list[str]) -> str:
    """A RESULTS.md section for a partial re-run: heading, machine, command, table."""
    m = machine()
    head = [heading, "", f"Machine: {m['cpu']}, {m['ram']} RAM, Python {m['python']}; run {m['date']}."]
    return "\n".join([*head, f"Command: `{command}`", "", f"| measurement | {column} |", "|---|---|", *rows, ""])


def segments_follow_up(preset: str) -> str:
    """The end-to-end crawl and search again with the current defaults, reported as their
    own section: used to measure a writer change without rerunning every baseline."""
    cfg = PRESETS[preset]
    folder = corpus(cfg["pages"])
    index = WORK / "index-followup"
    e2e = crawl(folder, index)
    print(f"[bench]   {e2e}", flush=True)
    from whoosh import index as wi

    segments = len(wi.open_dir(str(index))._segments())
    # A short sample: the full latency run is part of the main preset.
    sample = queries(cfg["queries"])[:FOLLOW_UP_QUERIES]
    lat = search_latency(index, sample, FOLLOW_UP_QUERIES)
    lat["cold_start"] = cold_start(index)
    print(f"[bench]   {lat}", flush=True)
    return _follow_up_section(
        f"## `{preset}` follow-up — current defaults (bounded segments), {int(e2e['documents']):,} image documents",
        f"python -m bench.run --preset {preset} --follow-up",
        "result",
        [
            f"| end-to-end crawl | {e2e['seconds']:.1f} s, {e2e['documents'] / e2e['seconds']:,.0f} docs/s, {segments} segments, "
            f"{e2e['index_mb']:,.0f} MB |",
            f"| peak RSS crawl / writer (with its sub-writers) | {e2e['crawl_rss_mb']:.0f} / {_writer_rss(e2e):.0f} MB |",
            f"| search p50 / p99, result cache on (first {FOLLOW_UP_QUERIES} queries, {int(lat['distinct_queries'])} distinct) | "
            f"{lat['ours_plain_p50']:.1f} / {lat['ours_plain_p99']:.1f} ms; `--facet domain` "
            f"{lat['ours_facet_p50']:.1f} / {lat['ours_facet_p99']:.1f} ms |",
            f"| search p50 / p99, cache emptied each query (first {int(lat['nocache_queries'])}) | "
            f"{lat['ours_plain_nocache_p50']:.1f} / {lat['ours_plain_nocache_p99']:.1f} ms; `--facet domain` "
            f"{lat['ours_facet_nocache_p50']:.1f} / {lat['ours_facet_nocache_p99']:.1f} ms; plain baseline "
            f"{lat['baseline_p50']:.1f} / {lat['baseline_p99']:.1f} ms |",
            f"| {COLD_START_LABEL} | {cold_start_text(lat['cold_start'])} |",
        ],
    )


def scale(preset: str) -> str:
    """Issue 19's figures at one size (`--docs N --scale`): the end-to-end crawl (index size,
    segments, writer memory), refresh unchanged and with 1% of the pages changed as ratios
    to that crawl, search p50 / p99 for exact, one-typo and word-start queries with and
    without `--facet domain`, and cold start. No baselines: their ratios come from the 1M
    run (`bench.baselines`), and each would double the time of a 2M run."""
    cfg = PRESETS[preset]
    WORK.mkdir(parents=True, exist_ok=True)
    folder = corpus_copy(cfg["pages"])
    index = WORK / "index-e2e"
    print(f"[bench] {preset}: end-to-end crawl of {cfg['pages']:,} pages", flush=True)
    e2e = crawl(folder, index)
    print(f"[bench]   {e2e}", flush=True)
    print("[bench] refresh: unchanged, then 1% of the pages changed", flush=True)
    rf = refresh(folder, index, full=e2e)
    print(f"[bench]   {rf}", flush=True)
    print("[bench] search: exact, one typo, word start; cold start", flush=True)
    ty = typo_latency(index, queries(cfg["queries"]))
    cs = cold_start(index)
    print(f"[bench]   {ty} {cs}", flush=True)
    result = {"preset": preset, "machine": machine(), "e2e": e2e, "refresh": rf, "typos": ty, "cold_start": cs}
    (WORK / f"result-scale-{preset}.json").write_text(json.dumps(result, indent=2))
    rows = [
        f"| end-to-end crawl, defaults | {e2e['seconds']:.1f} s, {e2e['documents']:,.0f} image documents, "
        f"{e2e['documents'] / e2e['seconds']:,.0f} docs/s |",
        f"| index | {e2e['index_mb']:,.0f} MB, {e2e['segments']:.0f} segments |",
        f"| peak RSS: crawl process / writer counted high (own + {e2e['procs']:.0f} × sub-writer) | "
        f"{e2e['crawl_rss_mb']:.0f} / {_writer_rss(e2e):.0f} MB ({e2e['writer_rss_mb']:.0f} + "
        f"{e2e['procs']:.0f} × {e2e['subwriter_rss_mb']:.0f}) |",
        f"| refresh, nothing changed / full crawl | {rf['unchanged_seconds']:.1f} s / {rf['full_seconds']:.1f} s = "
        f"{rf['unchanged_seconds'] / rf['full_seconds']:.3f} |",
        f"| refresh, {rf['changed_pages']} of {rf['pages']:,} pages changed (1%) / full crawl | {rf['changed_seconds']:.1f} s = "
        f"{rf['changed_seconds'] / rf['full_seconds']:.3f} |",
    ]
    rows += latency_rows(ty)
    rows.append(f"| {COLD_START_LABEL} | {cold_start_text(cs)} |")
    return _follow_up_section(
        f"## `{preset}` scale — {e2e['documents']:,.0f} image documents, crawled",
        f"python -m bench.run --preset {preset.split('-')[0]} --docs {cfg['pages'] * DOCS_PER_PAGE} --scale",
        "result",
        rows,
    )


def existing_index(preset: str) -> Path:
    """The preset's end-to-end index, which the partial runs measure again."""
    index = WORK / "index-e2e"
    if not index.exists():
        raise SystemExit(f"no {index}: run the {preset} preset first")
    return index


def cold_start_section(preset: str) -> str:
    """Only the cold start rows, on the preset's existing end-to-end index: `--cold-start`."""
    index = existing_index(preset)
    cs = cold_start(index)
    print(f"[bench]   {cs}", flush=True)
    return _follow_up_section(
        f"## `{preset}` cold start",
        f"python -m bench.run --preset {preset} --cold-start",
        "result",
        [f"| {COLD_START_LABEL} | {cold_start_text(cs)} |"],
    )


def search_follow_up(preset: str) -> str:
    """Search latency again on the preset's existing end-to-end index (warm and
    result-cache-off modes, the full query list): used to measure a search change
    without rebuilding the index."""
    cfg = PRESETS[preset]
    index = existing_index(preset)
    from whoosh import index as wi

    docs = wi.open_dir(str(index)).doc_count()
    lat = search_latency(index, queries(cfg["queries"]), cfg["nocache_queries"])
    lat["cold_start"] = cold_start(index)
    print(f"[bench]   {lat}", flush=True)
    return _follow_up_section(
        f"## `{preset}` search follow-up — {docs:,} documents (the preset's end-to-end index)",
        f"python -m bench.run --preset {preset} --search-follow-up",
        "p50 / p99",
        [
            f"| search, {len(queries(cfg['queries']))} queries of 1–3 words, limit 10, warm process, result cache on | "
            f"{lat['ours_plain_p50']:.1f} / {lat['ours_plain_p99']:.1f} ms; `--facet domain` "
            f"{lat['ours_facet_p50']:.1f} / {lat['ours_facet_p99']:.1f} ms |",
            f"| the same, result cache emptied before every query | {lat['ours_plain_nocache_p50']:.1f} / "
            f"{lat['ours_plain_nocache_p99']:.1f} ms; `--facet domain` {lat['ours_facet_nocache_p50']:.1f} / "
            f"{lat['ours_facet_nocache_p99']:.1f} ms |",
            f'| plain `QueryParser("caption")` + `searcher.search` baseline, same queries | '
            f"{lat['baseline_p50']:.1f} / {lat['baseline_p99']:.1f} ms |",
            f"| {COLD_START_LABEL} | {cold_start_text(lat['cold_start'])} |",
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="pages-crawler benchmarks")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="small")
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "RESULTS.md")
    parser.add_argument("--inprocess", action="store_true", help="also crawl with the writer in the crawl process")
    parser.add_argument("--follow-up", action="store_true", help="only the crawl and search, as their own section")
    parser.add_argument("--search-follow-up", action="store_true", help="only search latency, on the existing index")
    parser.add_argument(
        "--search-typos", action="store_true", help="only typo / word-start latency and the page under slow queries"
    )
    parser.add_argument(
        "--cold-start", action="store_true", help="only the cold start rows, on the preset's existing index"
    )
    parser.add_argument(
        "--scale",
        action="store_true",
        help="crawl, refresh, search and cold start at one size (with --docs), as their own section",
    )
    parser.add_argument(
        "--docs",
        type=int,
        help="about this many image documents instead of the preset's (pages = docs / 80); its own section",
    )
    parser.add_argument(
        "--work", type=Path, help="where corpora and indexes go (default bench/work); a big run may want another disk"
    )
    opts = parser.parse_args()
    if opts.work:
        globals()["WORK"] = opts.work.resolve()
    if opts.docs:
        opts.preset = sized_preset(opts.preset, opts.docs)
    t0 = time.perf_counter()
    # The partial runs: each writes its own section, next to the preset's.
    partial = {
        "search_typos": (search_typos, "search typos"),
        "search_follow_up": (search_follow_up, "search follow-up"),
        "cold_start": (cold_start_section, "cold start"),
        "scale": (scale, "scale"),
        "follow_up": (segments_follow_up, "follow-up"),
    }
    for flag, (make, heading) in partial.items():
        if getattr(opts, flag):
            section = make(opts.preset)
            print(section)
            update_results(opts.results, f"## `{opts.preset}` {heading}", section)
            return
    result = run(opts.preset, opts.inprocess)
    # Kept before the report is formatted: a long run's figures outlive a slip in the report.
    (WORK / f"result-{opts.preset}.json").write_text(json.dumps(result, indent=2))
    section = report(result)
    print(section)
    update_results(opts.results, f"## `{opts.preset}` preset", section)
    print(f"[bench] done in {time.perf_counter() - t0:.0f} s; wrote {opts.results}")


def update_results(path: Path, prefix: str, section: str) -> None:
    """Replace the sections of RESULTS.md whose heading starts with ``prefix``, keep the others."""
    header = "# Benchmark results\n\nWritten by `make bench` / `make bench-large` (`bench/run.py`).\n\n"
    text = path.read_text("utf-8") if path.exists() else header
    sections = re.split(r"(?m)^(?=## `)", text)
    kept = [sec for sec in sections[1:] if not sec.startswith(prefix)]
    path.write_text(sections[0] + "".join(sorted([*kept, section + "\n"])), "utf-8")


if __name__ == "__main__":
    main()
