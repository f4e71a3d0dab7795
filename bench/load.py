"""Load benchmark: do cheap queries wait behind expensive ones on a shared server?

A cheap probe (two common words, a keep-alive client, one request every 0.2 s) alone, then under a
crowd of CLIENTS concurrent clients for SECONDS seconds (three quarters sending cheap
queries back to back, a quarter the review's expensive shapes: fifteen negated ranges,
NOT a range, 32 random 30-letter words, a negated range with exact=1), then alone again,
against `python -m index serve --workers N`. Reported: the probe's p50/p99 in each phase,
the crowd's answers by status and their slowest, every answer's time against the
server's budget, HTTP against the server's own time, and the server processes' memory
(RSS, all workers) before, during and after.

    python -m bench.load --index bench/work/index-1250            # make bench-load
    python -m bench.load --index IX --code /path/to/other/checkout  # the same, older code

The index is made as bench/run.py makes its corpus: `python -m bench.corpus --pages 1250
--out DIR` then `scrapy crawl pages -a start=DIR -s INDEX_DIR=IX` (98,656 documents).
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import multiprocessing
import os
import random
import signal
import string
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
BUDGET_SECONDS = 3.0  # index.api.SERVER_SEARCH_SECONDS, not imported: --code may be older code
PROBE_EVERY = 0.2
# Cheap queries: two of the corpus's common words. The probe never repeats one (a results
# cache hit would measure only the wait); the crowd draws them at random.
WORDS = (
    "upper back neck shoulder chair seated desk office yoga stretch exercise pain relief posture mobility "
    "strength seniors beginners routine workout gentle daily easy quick thoracic spine core band resistance"
).split()
PAIRS = [f"{a} {b}" for i, a in enumerate(WORDS) for b in WORDS[i + 1 :]]
random.Random(1).shuffle(PAIRS)
# The crowd's: the same pairs the other way round, the same work under another results-cache
# key (the crowd asks every pair many times over; with the probe's own strings, the probe
# was mostly answered from that cache under the crowd, its "search" 0.2 ms).
CROWD_PAIRS = [" ".join(reversed(pair.split())) for pair in PAIRS]
_rng = random.Random(30)
EXPENSIVE = [
    {"q": "chair " + " ".join(f"-text:>{i}" for i in range(1, 16))},
    {"q": "chair NOT text:[a TO z]"},
    {"q": " ".join("".join(_rng.choice(string.ascii_lowercase) for _ in range(30)) for _ in range(32))},
    {"q": "chair -text:>2", "exact": "1"},
]


# -- the server ------------------------------------------------------------------------------


def start_server(index: Path, workers: int, code: Path, runtime: Path) -> tuple[subprocess.Popen[bytes], dict]:
    env = {**os.environ, "PYTHONPATH": str(code), "XDG_RUNTIME_DIR": str(runtime)}
    args = [sys.executable, "-m", "index", "serve", "--index", str(index), "--port", "0", "--workers", str(workers)]
    proc = subprocess.Popen(
        args, cwd=code, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        for path in (runtime / "pages-crawler").glob("serve-*.json"):
            found = json.loads(path.read_text())
            try:
                status = request(Client(found), {"q": "warm"})[0]
            except (OSError, http.client.HTTPException):
                continue
            if status == 200:
                return proc, found
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("the server never answered")


def rss_mb(pid: int) -> tuple[float, float]:
    """Resident memory of a process and all its descendants (uvicorn's workers): all of
    it, and the anonymous part (the rest is mostly the index's files, mapped and shared
    between the workers but counted in each)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    total, anon, todo = 0.0, 0.0, [pid]
    while todo:
        p = todo.pop()
        todo += children.get(p, [])
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
                elif line.startswith("RssAnon:"):
                    anon += int(line.split()[1]) / 1024
        except OSError:
            pass
    return total, anon


# -- clients ---------------------------------------------------------------------------------


class Client:
    """A keep-alive connection to the server, reopened when the server closes it."""

    def __init__(self, found: dict, timeout: float = 180.0) -> None:
        self.host, self.port, self.token = found["host"], found["port"], found.get("token")
        self.timeout = timeout
        self.conn: http.client.HTTPConnection | None = None

    def get(self, params: dict[str, str]) -> tuple[int, bytes]:
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            headers = {"Host": f"{self.host}:{self.port}"}
            if self.token:
                headers["X-Pages-Token"] = self.token
            try:
                self.conn.request("GET", "/api/search?" + urlencode(params), headers=headers)
                response = self.conn.getresponse()
                return response.status, response.read()
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")


def request(client: Client, params: dict[str, str]) -> tuple[int, float, float | None, float | None]:
    """(status, seconds over HTTP, the server's own milliseconds and the milliseconds it
    waited for a thread, when it says)."""
    began = time.perf_counter()
    status, body = client.get(params)
    took = time.perf_counter() - began
    own = queued = None
    if status == 200:
        answer = json.loads(body)
        own, queued = answer.get("elapsed_ms"), answer.get("queued_ms")
    return status, took, own, queued


_PROBES = iter(PAIRS)


def probe(found: dict, seconds: float) -> list[tuple[int, float, float | None, float | None]]:
    client = Client(found)
    out = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        began = time.monotonic()
        out.append(request(client, {"q": next(_PROBES)}))
        time.sleep(max(0.0, PROBE_EVERY - (time.monotonic() - began)))
    return out


def crowd(found: dict, clients: int, seconds: float, results: Any, expensive_every: int = 4) -> None:
    """CLIENTS threads (in their own process: the probe's timing must not share their
    interpreter lock), each sending its kind of query back to back for SECONDS."""
    stop = time.monotonic() + seconds
    lock = threading.Lock()
    rows: list[tuple[str, int, float]] = []

    def one(k: int) -> None:
        kind = "expensive" if expensive_every and k % expensive_every == expensive_every - 1 else "cheap"
        # A person gives up after half a minute (older code kept some queries for minutes).
        client, rng = Client(found, timeout=30.0), random.Random(k)
        while time.monotonic() < stop:
            params = dict(rng.choice(EXPENSIVE)) if kind == "expensive" else {"q": rng.choice(CROWD_PAIRS)}
            try:
                status, took, _, _ = request(client, params)
            except (OSError, http.client.HTTPException):
                status, took = -1, 0.0
            with lock:
                rows.append((kind, status, took))
            if status == 503:
                time.sleep(0.2)  # what Retry-After asks, shortened: the crowd keeps pushing

    threads = [threading.Thread(target=one, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    results.put(rows)


# -- the run ---------------------------------------------------------------------------------


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def ms(samples: list[float]) -> str:
    return f"{pct(samples, 0.5) * 1000:.1f} / {pct(samples, 0.99) * 1000:.1f}"


def storm(found: dict, pid: int, clients: int, seconds: float, expensive_every: int = 4) -> dict[str, Any]:
    """One crowd, with the probe running beside it and the server's memory sampled."""
    results: Any = multiprocessing.Queue()
    crowd_proc = multiprocessing.Process(target=crowd, args=(found, clients, seconds, results, expensive_every))
    rss_during: list[tuple[float, float]] = []
    crowd_proc.start()
    sampler_stop = threading.Event()

    def sample() -> None:
        while not sampler_stop.wait(1.0):
            rss_during.append(rss_mb(pid))

    sampler = threading.Thread(target=sample)
    sampler.start()
    under = probe(found, seconds)
    rows = results.get()
    crowd_proc.join()
    sampler_stop.set()
    sampler.join()
    time.sleep(5)
    return {"under": under, "rows": rows, "rss_max": max(rss_during or [(0.0, 0.0)]), "rss_after": rss_mb(pid)}


def run(
    index: Path,
    workers: int,
    clients: int,
    seconds: float,
    code: Path,
    probe_only: bool = False,
    expensive_every: int = 4,
) -> dict[str, Any]:
    runtime = Path(tempfile.mkdtemp(prefix="bench-load-"))
    os.chmod(runtime, 0o700)
    proc, found = start_server(index, workers, code, runtime)
    try:
        warm = Client(found)
        for params in [{"q": q} for q in WORDS]:
            request(warm, params)
        rss_before = rss_mb(proc.pid)
        alone = probe(found, 10)
        if probe_only:
            return {"alone": alone}
        storms = [storm(found, proc.pid, clients, seconds, expensive_every) for _ in range(2)]
        after = probe(found, 10)
        rss_after = rss_mb(proc.pid)
    finally:
        stopped = time.monotonic()
        proc.terminate()
        try:
            proc.wait(timeout=60)
            stop_seconds = time.monotonic() - stopped
        except subprocess.TimeoutExpired:
            stop_seconds = float("inf")
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return {
        "alone": alone,
        "under": storms[0]["under"] + storms[1]["under"],
        "after": after,
        "rows": storms[0]["rows"] + storms[1]["rows"],
        "rss": (rss_before, storms[0]["rss_max"], storms[0]["rss_after"], storms[1]["rss_max"], rss_after),
        "stop_seconds": stop_seconds,
        "clients": clients,
        "seconds": seconds,
        "workers": workers,
    }


def report(r: dict[str, Any], index: Path, label: str) -> str:
    def probe_times(samples: list[tuple[int, float, float | None, float | None]]) -> list[float]:
        return [took for status, took, _, _ in samples if status == 200]

    def parts(samples: list[tuple[int, float, float | None, float | None]]) -> str:
        """Where the probe's time went: waiting for a thread, its search, the rest (HTTP,
        the event loop, the interpreter lock), each p50 / p99 on its own."""
        known = [
            (t, own / 1000, q / 1000) for s, t, own, q in samples if s == 200 and own is not None and q is not None
        ]
        if not known:
            return "not reported by this server"
        queued, own = [q for _, _, q in known], [o for _, o, _ in known]
        rest = [t - o - q for t, o, q in known]
        return f"queued {ms(queued)} ms, searching {ms(own)} ms, the rest (HTTP, event loop) {ms(rest)} ms"

    alone_http = probe_times(r["alone"])
    alone_own = [own / 1000 for status, _, own, _ in r["alone"] if status == 200 and own is not None]
    lines = [
        f"{label}: `serve --workers {r['workers']}` on {index.name}, {r['clients']} clients for {r['seconds']:g} s "
        f"(3/4 cheap, 1/4 expensive), a cheap probe (two common words, never the same) every {PROBE_EVERY} s "
        "on a kept-alive connection.",
        "",
        "| | probe p50 / p99 (ms) | probe answers |",
        "|---|---|---|",
        f"| alone, before | {ms(alone_http)} | {len(alone_http)}/{len(r['alone'])} |",
        f"| under the crowd (two storms) | {ms(probe_times(r['under']))} | {len(probe_times(r['under']))}/{len(r['under'])} |",
        f"| alone, after | {ms(probe_times(r['after']))} | {len(probe_times(r['after']))}/{len(r['after'])} |",
        "",
        f"Probe alone over HTTP p50 {pct(alone_http, 0.5) * 1000:.1f} ms against the server's own "
        f"{pct(alone_own, 0.5) * 1000:.1f} ms. Under the crowd, p50 / p99 of each part: {parts(r['under'])}.",
        "",
        "| crowd | answers | 200 | 400 | 503 | other | p50 / p99 (ms) | slowest (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for kind in ("cheap", "expensive"):
        rows = [row for row in r["rows"] if row[0] == kind]
        statuses = [s for _, s, _ in rows]
        times = [t for _, s, t in rows if s > 0]
        lines.append(
            f"| {kind} | {len(rows)} | {statuses.count(200)} | {statuses.count(400)} | {statuses.count(503)} | "
            f"{sum(1 for s in statuses if s not in (200, 400, 503))} | {ms(times)} | {max(times or [0]):.2f} |"
        )
    over = [t for _, s, t in r["rows"] if s > 0 and t > BUDGET_SECONDS + 0.5]

    def mb(pair: tuple[float, float]) -> str:
        return f"{pair[0]:.0f} ({pair[1]:.0f})"

    before, during1, after1, during2, after2 = r["rss"]
    lines += [
        "",
        f"Answers over the budget + 0.5 s ({BUDGET_SECONDS + 0.5:g} s): {len(over)}. "
        "Server RSS, all processes, MB (anonymous memory in brackets; the rest is mostly the index's files, "
        f"mapped and counted once per worker): {mb(before)} before; first storm {mb(during1)} at most, "
        f"{mb(after1)} after; second storm {mb(during2)} at most, {mb(after2)} after. "
        f"SIGTERM to exit: {r['stop_seconds']:.1f} s.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--index", type=Path, required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--code", type=Path, default=ROOT, help="the checkout whose `index serve` runs")
    parser.add_argument("--label", default=f"{dt.date.today()}")
    parser.add_argument("--probe-only", action="store_true", help="only the probe alone (e.g. for older code)")
    parser.add_argument(
        "--expensive-every", type=int, default=4, metavar="N", help="every Nth client expensive (0: none; default 4)"
    )
    opts = parser.parse_args(argv)
    result = run(
        opts.index.resolve(),
        opts.workers,
        opts.clients,
        opts.seconds,
        opts.code.resolve(),
        opts.probe_only,
        opts.expensive_every,
    )
    if opts.probe_only:
        times = [took for status, took, _, _ in result["alone"] if status == 200]
        own = [o / 1000 for status, _, o, _ in result["alone"] if status == 200 and o is not None]
        print(
            f"{opts.label}: probe alone p50 / p99 {ms(times)} ms over HTTP, server's own p50 {pct(own, 0.5) * 1000:.1f} ms"
        )
        return 0
    print(report(result, opts.index, opts.label))
    return 0


if __name__ == "__main__":
    sys.exit(main())
