"""Issue 30's figures at 10M documents, measured on a replicated index (`make bench-10m`).

    python -m bench.tenmillion build    [--work DIR]          # the 10M index, once
    python -m bench.tenmillion inproc   [--work DIR] [--facet]  # exact / typo / word start in a process
    python -m bench.tenmillion http     [--work DIR] [--facet]  # the same through `serve`, keep-alive
    python -m bench.tenmillion cold     [--work DIR]           # a fresh `serve` to its first answer; the store
    python -m bench.tenmillion report   [--work DIR]           # the figures so far, as Markdown
    python -m bench.tenmillion memory   [--work DIR] [--index IX] [--code TREE]  # a `serve`'s memory, storms

Each measuring step is a few minutes, so a shared machine can take turns between them (run
each under `flock`); each appends its figures, with the date and load average, to
``DIR/tenmillion.json``, and ``report`` prints them.

The index: the bench corpus's 1,250 pages crawled (98,656 image documents), merged into one
segment, copied 10 times (`bench.replicate`) and merged into one segment of 999,060
documents; that one copied 10 times, plus one copy of the first: 10,090,506 documents in 11
segments, as a 10M crawl with ``INDEX_SEGMENT_MAX_DOCS=1000000`` (RESULTS.md's advice for
10M) would leave after a last small crawl. Posting lists are as long as at 10M documents of
this corpus; the lexicon is that of 98k documents, and every document is there 101 times.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.coldstart import COLD_QUERIES, timed_run
from bench.common import DEFAULT_WORK, ROOT, machine, percentiles, queries, uptime
from bench.load import EXPENSIVE, Client, rss_mb, start_server
from bench.replicate import replicate
from bench.search import clear_results, latency, typo_queries
from index.options import ARRAY_STORE_FILE

SOURCE_PAGES = 1250
QUERIES = 100
COPIES = 10
KINDS = ("exact", "one_typo", "prefix")


def _python(*args: str, nice: bool = True) -> None:
    cmd = [sys.executable, *args]
    subprocess.run(["nice", "-n", "10", *cmd] if nice else cmd, cwd=ROOT, check=True)


def _optimize(index: Path) -> float:
    t0 = time.perf_counter()
    _python("-m", "index", "optimize", "--index", str(index))
    return time.perf_counter() - t0


def build(work: Path) -> dict[str, Any]:
    """The source crawl, the 1M segment and the 10M index; each step done once (a marker
    file says it finished), so an interrupted build goes on where it stopped."""
    work.mkdir(parents=True, exist_ok=True)
    corpus, source, mid, big = (work / n for n in (f"corpus-{SOURCE_PAGES}", "src-100k", "mid-1m", "index-10m"))
    times: dict[str, Any] = {}

    def step(name: str, target: Path, run: Any) -> None:
        done = target.parent / f".{target.name}.{name}.done"
        if done.exists():
            return
        t0 = time.perf_counter()
        run()
        times[f"{name}_s"] = time.perf_counter() - t0
        done.touch()
        print(f"[10m] {name}: {times[f'{name}_s']:.0f} s", flush=True)

    step("corpus", corpus, lambda: _python("-m", "bench.corpus", "--pages", str(SOURCE_PAGES), "--out", str(corpus)))
    step(
        "crawl",
        source,
        lambda: _python(
            "-m",
            "scrapy",
            "crawl",
            "pages",
            "-a",
            f"start={corpus}",
            "-s",
            f"INDEX_DIR={source}",
            "-s",
            "LOG_LEVEL=WARNING",
        ),
    )
    step("optimize", source, lambda: _optimize(source))
    step("replicate", mid, lambda: replicate(source, mid, COPIES))
    step("optimize", mid, lambda: _optimize(mid))
    step("replicate", big, lambda: replicate(mid, big, COPIES))
    step("append", big, lambda: replicate(source, big, 1, append=True))
    from whoosh import index as wi

    ix = wi.open_dir(str(big))
    figures = {
        **times,
        "documents": ix.doc_count_all(),
        "segments": len(ix._segments()),
        "index_mb": sum(f.stat().st_size for f in big.glob("*.seg")) / 2**20,
    }
    _record(work, "build", figures)
    return figures


# -- measuring -------------------------------------------------------------------------------


def _record(work: Path, step: str, figures: dict[str, Any]) -> None:
    path = work / "tenmillion.json"
    runs = json.loads(path.read_text()) if path.exists() else {}
    runs[step] = {**figures, "machine": machine(), "load_before": figures.get("load_before", uptime())}
    path.write_text(json.dumps(runs, indent=1))
    print(json.dumps({step: runs[step]}, indent=1), flush=True)


def _status_mb(field: str, pid: int | str = "self") -> float:
    """A memory line of /proc/PID/status in MB (VmRSS: now; VmHWM: the peak)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _rss_now_mb() -> float:
    return _status_mb("VmRSS")


def inproc(work: Path, facet: bool, n: int) -> dict[str, Any]:
    """p50 / p99 of exact, one-typo and word-start queries in this process (index.search.run.search,
    limit 10, result cache emptied before each), each list run once to warm its arrays,
    then timed: bench.search.typo_latency's loop, with or without ``--facet domain``.
    Memory: the process's RSS after the warm-up pass and after the timed ones (steady),
    and its peak."""
    from index.search import run as search_module

    index = _index(work)
    load = uptime()
    facets = ("domain",) if facet else ()
    label = "facet" if facet else "plain"
    out: dict[str, Any] = {"load_before": load, "queries": n}
    t0 = time.perf_counter()
    search_module.search(index, "chair yoga", facets=facets)
    out["open_first_ms"] = (time.perf_counter() - t0) * 1000

    cpu: list[float] = []  # CPU ms per query: what other users of a shared machine change least

    def call(q: str) -> object:
        c0 = time.process_time()
        found = search_module.search(index, q, limit=10, facets=facets)
        cpu.append((time.process_time() - c0) * 1000)
        return found

    for kind, items in typo_queries(queries(n)).items():
        t0 = time.perf_counter()
        latency(call, items, clear_results)
        out[f"{kind}_{label}_warmup_s"] = time.perf_counter() - t0
        out[f"{kind}_{label}_rss_after_warmup_mb"] = _rss_now_mb()
        cpu.clear()
        out[f"{kind}_{label}_p50"], out[f"{kind}_{label}_p99"] = latency(call, items, clear_results)
        out[f"{kind}_{label}_cpu_p50"], out[f"{kind}_{label}_cpu_p99"] = percentiles(cpu)
        out[f"{kind}_{label}_rss_mb"] = _rss_now_mb()
    out["rss_peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["load_after"] = uptime()
    _record(work, f"inproc_{label}", out)
    return out


def _start(
    index: Path, runtime: Path, query: str, attempts: list[dict[str, Any]] | None = None
) -> tuple[subprocess.Popen[bytes], dict, float, float | None, int]:
    """A fresh `python -m index serve` for ``index``: the process, its announcement, the seconds
    from its start to its first 200 answer to ``query`` (asked every 50 ms from the moment it
    announces itself, again after each 400: at 10M a cold query can run out of the
    server's 3 s budget), that answer's own milliseconds (as the server counts them), and
    how many 400 answers came before it. Each answer (status, seconds since the start,
    its wall and own milliseconds) is appended to ``attempts``."""
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime)}
    args = [sys.executable, "-m", "index", "serve", "--index", str(index), "--port", "0"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, stopped = time.monotonic() + 600, 0
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"`index serve` exited with {proc.returncode}")
        for path in (runtime / "pages-crawler").glob("serve-*.json"):
            found = json.loads(path.read_text())
            try:
                asked = time.perf_counter()
                status, body = Client(found, timeout=600).get({"q": query})
            except (OSError, http.client.HTTPException, ValueError):
                continue
            if attempts is not None:
                own = json.loads(body).get("elapsed_ms") if status == 200 else None
                attempts.append(
                    {
                        "status": status,
                        "at_s": round(time.perf_counter() - t0, 2),
                        "wall_ms": round((time.perf_counter() - asked) * 1000),
                        "own_ms": own,
                    }
                )
            if status == 200:
                return proc, found, time.perf_counter() - t0, json.loads(body).get("elapsed_ms"), stopped
            if status != 400:
                _stop(proc)
                raise SystemExit(f"`index serve` answered {status}: {body[:300]!r}")
            stopped += 1
        time.sleep(0.05)
    proc.kill()
    raise SystemExit("`index serve` never answered")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def http_latency(work: Path, facet: bool, n: int) -> dict[str, Any]:
    """The same three query lists through one `serve` process (one worker) on a kept-alive
    connection, with or without ``facet=domain``: p50 / p99 over HTTP and as the server
    counts its own time, each list run once before (warm arrays; the result cache cannot
    answer: the timed pass asks for 11 results instead of 10). Statuses other than 200
    (a query over the server's 3 s budget answers 400) are counted. The server's RSS
    (all, anonymous) after each list."""
    index = _index(work)
    label = "facet" if facet else "plain"
    out: dict[str, Any] = {"load_before": uptime(), "queries": n}
    with tempfile.TemporaryDirectory(prefix="bench-10m-") as runtime:
        os.chmod(runtime, 0o700)
        proc, found, started, _, stopped = _start(index, Path(runtime), "chair yoga")
        out["start_to_first_answer_s"], out["first_query_400s"] = started, stopped
        out["rss_start_mb"] = rss_mb(proc.pid)
        client = Client(found, timeout=600)
        params = {"facet": "domain"} if facet else {"facet": ""}
        try:
            for kind, items in typo_queries(queries(n)).items():
                for limit in ("10", "11"):  # warm, then timed
                    took, own, bad = [], [], {}
                    for q in items:
                        t0 = time.perf_counter()
                        status, body = client.get({**params, "q": q, "limit": limit})
                        took.append((time.perf_counter() - t0) * 1000)
                        if status == 200:
                            own.append(json.loads(body)["elapsed_ms"])
                        else:
                            bad[str(status)] = bad.get(str(status), 0) + 1
                key = f"{kind}_{label}"
                out[f"{key}_http_p50"], out[f"{key}_http_p99"] = percentiles(took)
                out[f"{key}_own_p50"], out[f"{key}_own_p99"] = percentiles(own) if own else (0.0, 0.0)
                out[f"{key}_not_200"] = bad
                out[f"{key}_rss_mb"] = rss_mb(proc.pid)
            out["rss_peak_mb"] = _status_mb("VmHWM", proc.pid)
        finally:
            _stop(proc)
    out["load_after"] = uptime()
    _record(work, f"http_{label}", out)
    return out


SETTLE_SECONDS = 5.0


def serve_memory(index: Path, code: Path, n: int, clients: int = 3, storms: int = 2) -> dict[str, Any]:
    """A `serve` (one worker, the code at ``code``)'s memory through storms of the bench's
    lists (exact, one typo, word start: ``n`` queries each) and bench.load's expensive
    shapes, sent by ``clients`` kept-alive clients at once: RSS, all and anonymous, MB,
    after its first answer and after each storm (SETTLE_SECONDS after the last answer:
    a search whose client was answered 400 or 503 may still be running), with its peak; answers by status. The array store is
    emptied first, so that every run starts alike."""
    (index / ARRAY_STORE_FILE).unlink(missing_ok=True)
    work: list[dict[str, str]] = [{"q": q} for items in typo_queries(queries(n)).values() for q in items]
    work += [dict(shape) for shape in EXPENSIVE]
    out: dict[str, Any] = {"load_before": uptime(), "queries_per_storm": len(work), "code": str(code)}
    with tempfile.TemporaryDirectory(prefix="bench-10m-") as runtime:
        os.chmod(runtime, 0o700)
        t0 = time.perf_counter()
        proc, found = start_server(index, 1, code, Path(runtime))
        out["start_to_first_answer_s"] = time.perf_counter() - t0
        out["rss_before_mb"] = rss_mb(proc.pid)
        try:
            lock = threading.Lock()

            def one(share: list[dict[str, str]], statuses: dict[str, int]) -> None:
                client = Client(found, timeout=600)
                for params in share:
                    try:
                        status = str(client.get(params)[0])
                    except (OSError, http.client.HTTPException):
                        status = "error"
                    with lock:
                        statuses[status] = statuses.get(status, 0) + 1

            for k in range(1, storms + 1):
                statuses: dict[str, int] = {}
                t0 = time.perf_counter()
                threads = [threading.Thread(target=one, args=(work[c::clients], statuses)) for c in range(clients)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                time.sleep(SETTLE_SECONDS)
                out[f"storm{k}_s"] = time.perf_counter() - t0
                out[f"storm{k}_statuses"] = statuses
                out[f"rss_after_storm{k}_mb"] = rss_mb(proc.pid)
            out["rss_peak_mb"] = _status_mb("VmHWM", proc.pid)
        finally:
            _stop(proc)
    out["load_after"] = uptime()
    print(json.dumps(out, indent=1), flush=True)
    return out


def cold(work: Path, n: int) -> dict[str, Any]:
    """Cold start with a server, and the array store (index.fast.store) at 10M: a fresh
    `serve` to its first answer with the store emptied; the time to fill the store (the
    same process answering the exact query list once, result cache off) and its size on
    disk; then a fresh `serve` with the store filled, to its first answer; and a new
    `python -m index search` process answered by that server (bench.coldstart)."""
    from index.fast.store import FILENAME

    index = _index(work)
    out: dict[str, Any] = {"load_before": uptime(), "queries": n, "index": str(index)}
    for suffix in ("", "-wal", "-shm"):
        Path(f"{index / FILENAME}{suffix}").unlink(missing_ok=True)
    # The first query of each start is one it has not answered before: "chair yoga" first,
    # another pair second (a result cache in the index folder would not count as cold).
    with tempfile.TemporaryDirectory(prefix="bench-10m-") as runtime:
        os.chmod(runtime, 0o700)
        attempts: list[dict[str, Any]] = []
        proc, found, started, own, stopped = _start(index, Path(runtime), "chair yoga", attempts)
        out["empty_store_start_to_first_answer_s"], out["empty_store_first_query_ms"] = started, own
        out["empty_store_first_query_400s"] = stopped
        out["empty_store_attempts"] = attempts
        client = Client(found, timeout=600)
        try:
            t0 = time.perf_counter()
            answers = []
            for q in queries(n):
                asked = time.perf_counter()
                status, body = client.get({"q": q, "limit": "12"})
                own = json.loads(body).get("elapsed_ms") if status == 200 else None
                answers.append((status, (time.perf_counter() - asked) * 1000, own))
            out["fill_store_s"] = time.perf_counter() - t0
            out["fill_store_not_200"] = sum(1 for a in answers if a[0] != 200)
            # Every answer against the server's budget (3 s) and the margin.
            out["fill_store_wall_ms_max"] = max(a[1] for a in answers)
            out["fill_store_over_3500_ms"] = sum(1 for a in answers if a[1] > 3500)
            out["fill_store_answers"] = [[a[0], round(a[1]), a[2] and round(a[2])] for a in answers]
            out["rss_after_fill_mb"] = rss_mb(proc.pid)
            out["rss_peak_mb"] = _status_mb("VmHWM", proc.pid)
        finally:
            _stop(proc)  # flushes the store
    store = [Path(f"{index / FILENAME}{suffix}") for suffix in ("", "-wal")]
    out["store_mb"] = sum(p.stat().st_size for p in store if p.exists()) / 2**20
    with tempfile.TemporaryDirectory(prefix="bench-10m-") as runtime:
        os.chmod(runtime, 0o700)
        env_runtime = os.environ.get("XDG_RUNTIME_DIR")
        attempts = []
        proc, found, started, own, stopped = _start(index, Path(runtime), "upper back stretch", attempts)
        out["stored_start_to_first_answer_s"], out["stored_first_query_ms"] = started, own
        out["stored_first_query_400s"] = stopped
        out["stored_attempts"] = attempts
        try:
            os.environ["XDG_RUNTIME_DIR"] = runtime
            ours = [sys.executable, "-m", "index", "search", "--index", str(index)]
            out["served_client_ms"] = sorted(
                min(timed_run([*ours, q, "--limit", str(limit)]) for limit in (13, 14)) for q in COLD_QUERIES
            )[len(COLD_QUERIES) // 2]
            out["rss_served_mb"] = rss_mb(proc.pid)
        finally:
            if env_runtime is None:
                os.environ.pop("XDG_RUNTIME_DIR", None)
            else:
                os.environ["XDG_RUNTIME_DIR"] = env_runtime
            _stop(proc)
    out["load_after"] = uptime()
    _record(work, "cold", out)
    return out


def _index(work: Path) -> Path:
    """The 10M index: $TENMILLION_INDEX (--index), else the one `build` made in ``work``."""
    return Path(os.environ.get("TENMILLION_INDEX") or work / "index-10m")


def report(work: Path) -> str:
    """The recorded figures as Markdown (RESULTS.md's 10M section is written from it)."""
    runs = json.loads((work / "tenmillion.json").read_text())
    names = {"exact": "exact", "one_typo": "one typo", "prefix": "word start"}
    lines = []
    if b := runs.get("build"):
        lines.append(f"Index: {b['documents']:,} documents, {b['segments']} segments, {b['index_mb']:,.0f} MB.")
    for step, r in runs.items():
        lines.append(
            f"- `{step}`: {r['machine']['date']}, load average {r['load_before']} → {r.get('load_after', '?')}"
        )
    lines += ["", "| p50 / p99 ms | " + " | ".join(f"{n} | {n}, facet" for n in names.values()) + " |"]
    lines.append("|---" * (1 + 2 * len(names)) + "|")

    def row(label: str, figure: Any) -> None:
        cells = []
        for kind in names:
            for facet in ("plain", "facet"):
                got = figure(kind, facet)
                cells.append("–" if got is None else f"{got[0]:.1f} / {got[1]:.1f}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    def step_row(step: str, what: str) -> Any:
        """The p50 / p99 of ``what`` (a key suffix) in the runs of ``step`` (inproc, http)."""

        def figure(kind: str, facet: str) -> tuple[float, float] | None:
            r = runs.get(f"{step}_{facet}", {})
            key = f"{kind}_{facet}{what}"
            return (r[f"{key}_p50"], r[f"{key}_p99"]) if f"{key}_p50" in r else None

        return figure

    row("in the process", step_row("inproc", ""))
    row("in the process, CPU ms", step_row("inproc", "_cpu"))
    row("`serve`, its own time", step_row("http", "_own"))
    row("`serve`, over HTTP (keep-alive)", step_row("http", "_http"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=("build", "inproc", "http", "cold", "report", "memory"))
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK / "tenmillion")
    parser.add_argument("--queries", type=int, default=QUERIES, help=f"queries per list (default {QUERIES})")
    parser.add_argument("--facet", action="store_true", help="inproc, http: with --facet domain")
    parser.add_argument("--index", type=Path, help="measure this index instead of the one `build` made")
    parser.add_argument("--code", type=Path, default=ROOT, help="memory: the code tree `serve` runs")
    parser.add_argument("--out", type=Path, help="memory: also write the figures here (JSON)")
    opts = parser.parse_args(argv)
    work = opts.work.resolve()
    if opts.index:
        os.environ["TENMILLION_INDEX"] = str(opts.index.resolve())
    if opts.step == "build":
        build(work)
    elif opts.step == "inproc":
        inproc(work, opts.facet, opts.queries)
    elif opts.step == "http":
        http_latency(work, opts.facet, opts.queries)
    elif opts.step == "cold":
        cold(work, opts.queries)
    elif opts.step == "memory":
        index = _index(work).resolve()
        figures = serve_memory(index, opts.code.resolve(), opts.queries)
        if opts.out:
            opts.out.write_text(json.dumps(figures, indent=1))
    else:
        print(report(work))
    return 0


if __name__ == "__main__":
    sys.exit(main())
