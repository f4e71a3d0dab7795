"""Load benchmark: do cheap queries wait behind expensive ones on a shared server?

A cheap probe (two common words, a keep-alive client, one request every 0.2 s) alone, then under a
crowd of CLIENTS concurrent clients for SECONDS seconds (three quarters sending cheap
queries back to back, a quarter the review's expensive shapes: fifteen negated ranges,
NOT a range, 32 random 30-letter words, a negated range with exact=1), then alone again,
against `python -m index serve --workers N`. Reported: the probe's p50/p99 in each phase,
the crowd's answers by status and their slowest, every answer's time against the
server's budget, HTTP against the server's own time, and the server processes' memory
(RSS, all workers) before, during and after.

Beside it runs the baseline, the plainest server: a bare Starlette app under the same
uvicorn settings (as many workers, the socket as ours makes it) answering every request
with one fixed JSON body, the probe's own answer. Each probe tick asks ours, then the
baseline half a tick later, so both are timed under the same crowd on the same cores;
ours minus the baseline is what our server adds (goal: 2 ms at p50), and the baseline's
p99 under the crowd is what the machine alone costs a query that does nothing.
`--crowd-at bare` sends the crowd to the baseline instead (the plainest server under the
same clients). The CPU each part used during the storms is reported against the whole
machine's: what is left is the neighbours' (other work on a shared machine).

    python -m bench.load --index bench/work/index-1250            # make bench-load
    python -m bench.load --index IX --code /path/to/other/checkout  # the same, older code
    python -m bench.load --index IX --crowd-at bare  # the crowd at the baseline instead

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
import socket
import string
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, NamedTuple
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


def family(pid: int) -> list[int]:
    """A process and all its descendants (uvicorn's workers)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo += children.get(p, [])
    return found


def rss_mb(pid: int) -> tuple[float, float]:
    """Resident memory of a process and all its descendants (uvicorn's workers): all of
    it, and the anonymous part (the rest is mostly the index's files, mapped and shared
    between the workers but counted in each)."""
    total, anon = 0.0, 0.0
    for p in family(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
                elif line.startswith("RssAnon:"):
                    anon += int(line.split()[1]) / 1024
        except OSError:
            pass
    return total, anon


TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    """CPU time (user + system) these processes have used."""
    total = 0
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / TICK


def machine_busy() -> tuple[float, float]:
    """CPU seconds the whole machine has been busy (all cores, every process's), and of
    them the time the host took its virtual cores away (steal)."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, Path("/proc/stat").read_text().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / TICK, steal / TICK


# -- the baseline ----------------------------------------------------------------------------

BARE_BODY = "BENCH_LOAD_BARE_BODY"


def bare_app() -> Any:
    """The plainest server people would write: one Starlette route answering a fixed JSON
    body (the probe's answer, from the environment) with JSONResponse, no middleware."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    body = json.loads(os.environ[BARE_BODY])

    async def answer(request: Request) -> JSONResponse:
        return JSONResponse(body)

    return Starlette(routes=[Route("/api/search", answer)])


def start_bare(workers: int, body: bytes) -> tuple[subprocess.Popen[bytes], dict]:
    """The baseline under uvicorn as `serve --workers N` runs ours: an app factory, N
    workers on a socket bound (with TCP_NODELAY) beforehand, log level info (access log
    on). It runs this checkout's code whatever --code says."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    run_it = (
        "import uvicorn; uvicorn.run('bench.load:bare_app', factory=True, "
        f"workers={workers}, fd={sock.fileno()}, log_level='info')"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), BARE_BODY: body.decode()}
    if workers > 1:
        env.setdefault("MALLOC_ARENA_MAX", "2")  # as `serve` sets it: the same allocator
    proc = subprocess.Popen(
        [sys.executable, "-c", run_it],
        cwd=ROOT,
        env=env,
        pass_fds=[sock.fileno()],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    found = {"host": "127.0.0.1", "port": sock.getsockname()[1]}
    sock.close()  # the server's now
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if Client(found).get({"q": "warm"})[0] == 200:
                return proc, found
        except (OSError, http.client.HTTPException):
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("the baseline server never answered")


def stop(proc: subprocess.Popen[bytes]) -> float:
    """SIGTERM, and the seconds it took to exit (inf: killed after 60 s)."""
    stopped = time.monotonic()
    proc.terminate()
    try:
        proc.wait(timeout=60)
        return time.monotonic() - stopped
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return float("inf")


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


class Sample(NamedTuple):
    """One answer: its status, seconds over HTTP, and the server's own milliseconds and the
    milliseconds it waited for a thread (when it says); `sent` is time.perf_counter() when
    the request left (CLOCK_MONOTONIC: comparable with the server's own clock readings)."""

    status: int
    took: float
    own: float | None = None
    queued: float | None = None
    sent: float = 0.0


def request(client: Client, params: dict[str, str]) -> Sample:
    began = time.perf_counter()
    status, body = client.get(params)
    took = time.perf_counter() - began
    own = queued = None
    if status == 200:
        answer = json.loads(body)
        own, queued = answer.get("elapsed_ms"), answer.get("queued_ms")
    return Sample(status, took, own, queued, began)


_PROBES = iter(PAIRS)


def probe(targets: dict[str, dict], seconds: float) -> dict[str, list[Sample]]:
    """One request every PROBE_EVERY seconds to each target in turn, spread over the tick
    (ours, then the baseline half a tick later), each on its own kept-alive connection and
    with the same query: the targets are timed under the same conditions."""
    clients = {name: Client(found) for name, found in targets.items()}
    out: dict[str, list[Sample]] = {name: [] for name in targets}
    step = PROBE_EVERY / len(targets)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        query = next(_PROBES)
        for name, client in clients.items():
            began = time.monotonic()
            sample = request(client, {"q": query})
            if name != "ours":
                sample = sample._replace(own=None, queued=None)  # a fixed body's, not its own
            out[name].append(sample)
            time.sleep(max(0.0, step - (time.monotonic() - began)))
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
                status, took = request(client, params)[:2]
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
    results.put((rows, time.process_time()))


# -- the run ---------------------------------------------------------------------------------


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def ms(samples: list[float]) -> str:
    return f"{pct(samples, 0.5) * 1000:.1f} / {pct(samples, 0.99) * 1000:.1f}"


def storm(
    targets: dict[str, dict], at: str, pids: dict[str, int], clients: int, seconds: float, expensive_every: int = 4
) -> dict[str, Any]:
    """One crowd at target `at`, with the probes running beside it, our server's memory
    sampled, and the CPU time each part and the whole machine used meanwhile (the rest
    is the neighbours')."""
    results: Any = multiprocessing.Queue()
    args = (targets[at], clients, seconds, results, expensive_every)
    crowd_proc = multiprocessing.Process(target=crowd, args=args)
    rss_during: list[tuple[float, float]] = []
    # The bench's own process alone: its descendants are the servers and the crowd.
    trees = {name: [pid] if name == "bench" else family(pid) for name, pid in pids.items()}
    cpu_before = {name: cpu_seconds(tree) for name, tree in trees.items()}
    (busy_before, steal_before), wall_before = machine_busy(), time.monotonic()
    crowd_proc.start()
    sampler_stop = threading.Event()

    def sample() -> None:
        while not sampler_stop.wait(1.0):
            rss_during.append(rss_mb(pids["ours"]))

    sampler = threading.Thread(target=sample)
    sampler.start()
    under = probe(targets, seconds)
    rows, crowd_cpu = results.get()
    crowd_proc.join()
    cpu = {name: cpu_seconds(tree) - cpu_before[name] for name, tree in trees.items()}
    cpu["crowd"] = crowd_cpu
    busy, steal = machine_busy()
    cpu["machine"], cpu["steal"] = busy - busy_before, steal - steal_before
    cpu["wall"] = time.monotonic() - wall_before
    sampler_stop.set()
    sampler.join()
    time.sleep(5)
    return {
        "under": under,
        "rows": rows,
        "rss_max": max(rss_during or [(0.0, 0.0)]),
        "rss_after": rss_mb(pids["ours"]),
        "cpu": cpu,
    }


def run(
    index: Path,
    workers: int,
    clients: int,
    seconds: float,
    code: Path,
    probe_only: bool = False,
    expensive_every: int = 4,
    crowd_at: str = "ours",
) -> dict[str, Any]:
    runtime = Path(tempfile.mkdtemp(prefix="bench-load-"))
    os.chmod(runtime, 0o700)
    proc, found = start_server(index, workers, code, runtime)
    bare = None
    try:
        warm = Client(found)
        for params in [{"q": q} for q in WORDS]:
            request(warm, params)
        # The baseline answers what the probe is answered (the same bytes to encode and send).
        status, body = warm.get({"q": PAIRS[-1]})
        if status != 200:
            raise SystemExit(f"the probe's query answered {status}: {body[:200]!r}")
        bare, bare_found = start_bare(workers, body)
        targets = {"ours": found, "bare": bare_found}
        rss_before = rss_mb(proc.pid)
        alone = probe(targets, 10)
        if probe_only:
            return {"alone": alone, "body_bytes": len(body)}
        pids = {"ours": proc.pid, "baseline": bare.pid, "bench": os.getpid()}
        storms = [storm(targets, crowd_at, pids, clients, seconds, expensive_every) for _ in range(2)]
        after = probe(targets, 10)
        rss_after = rss_mb(proc.pid)
    finally:
        stop_seconds = stop(proc)
        if bare is not None:
            stop(bare)
    return {
        "alone": alone,
        "under": {name: storms[0]["under"][name] + storms[1]["under"][name] for name in targets},
        "after": after,
        "rows": storms[0]["rows"] + storms[1]["rows"],
        "rss": (rss_before, storms[0]["rss_max"], storms[0]["rss_after"], storms[1]["rss_max"], rss_after),
        "stop_seconds": stop_seconds,
        "clients": clients,
        "seconds": seconds,
        "workers": workers,
        "crowd_at": crowd_at,
        "body_bytes": len(body),
        "cpu": {k: storms[0]["cpu"][k] + storms[1]["cpu"][k] for k in storms[0]["cpu"]},
    }


def answered(samples: list[Sample]) -> list[float]:
    return [s.took for s in samples if s.status == 200]


def parts(samples: list[Sample]) -> str:
    """Where the probe's time went: waiting for a thread, its search, the rest (HTTP,
    the event loop, the interpreter lock), each p50 / p99 on its own."""
    known = [s for s in samples if s.status == 200 and s.own is not None and s.queued is not None]
    if not known:
        return "not reported by this server"
    queued, own = [s.queued / 1000 for s in known], [s.own / 1000 for s in known]
    rest = [s.took - (s.own + s.queued) / 1000 for s in known]
    return f"queued {ms(queued)} ms, searching {ms(own)} ms, the rest (HTTP, event loop) {ms(rest)} ms"


def against_bare(phase: dict[str, list[Sample]]) -> str:
    """Ours, the baseline, and ours minus the baseline (p50 / p99 each)."""
    ours, bare = answered(phase["ours"]), answered(phase["bare"])
    over = [(pct(ours, q) - pct(bare, q)) * 1000 for q in (0.5, 0.99)]
    return (
        f"| {ms(ours)} | {len(ours)}/{len(phase['ours'])} | {ms(bare)} | {len(bare)}/{len(phase['bare'])} "
        f"| {over[0]:+.1f} / {over[1]:+.1f} |"
    )


def beyond_own(phase: dict[str, list[Sample]]) -> str:
    """Each answer's HTTP time less the server's own (its search, and the wait for a
    thread) against the baseline's whole time: the HTTP part of ours that is ours."""
    ours = [s.took - (s.own + s.queued) / 1000 for s in phase["ours"] if s.status == 200 and s.own is not None]
    bare = answered(phase["bare"])
    if not ours:
        return "the server does not report its own time"
    return (
        f"HTTP less the server's own time, per answer, p50 {pct(ours, 0.5) * 1000:.1f} ms, of which the "
        f"baseline's whole round trip {pct(bare, 0.5) * 1000:.1f} ms, ours "
        f"{(pct(ours, 0.5) - pct(bare, 0.5)) * 1000:+.1f} ms (goal: HTTP p50 within 2 ms of the server's own)"
    )


def cpu_shares(cpu: dict[str, float]) -> str:
    """Who used the cores during the storms, in cores (CPU seconds per second)."""
    wall = cpu["wall"]
    names = {"ours": "our server", "crowd": "the crowd", "baseline": "the baseline", "bench": "the probes"}
    others = cpu["machine"] - cpu["steal"] - sum(cpu[k] for k in names)
    shown = ", ".join(f"{label} {cpu[k] / wall:.2f}" for k, label in names.items())
    return (
        f"machine {cpu['machine'] / wall:.2f} of {os.cpu_count()}: {shown}, the neighbours {others / wall:.2f}, "
        f"taken by the host (steal) {cpu['steal'] / wall:.2f}"
    )


def report(r: dict[str, Any], index: Path, label: str) -> str:
    alone_own = [s.own / 1000 for s in r["alone"]["ours"] if s.status == 200 and s.own is not None]
    at = "our server" if r["crowd_at"] == "ours" else "the baseline (our server gets only the probe)"
    lines = [
        f"{label}: `serve --workers {r['workers']}` on {index.name}, {r['clients']} clients for {r['seconds']:g} s "
        f"(3/4 cheap, 1/4 expensive) at {at}, a cheap probe (two common words, never the same) every "
        f"{PROBE_EVERY} s on a kept-alive connection; the baseline (bare Starlette under the same uvicorn "
        f"settings, a fixed {r['body_bytes']:,}-byte JSON body: the probe's answer) probed the same way, "
        "half a tick later.",
        "",
        "| | ours p50 / p99 (ms) | answers | baseline p50 / p99 (ms) | answers | ours − baseline (ms) |",
        "|---|---|---|---|---|---|",
        f"| alone, before {against_bare(r['alone'])}",
        f"| under the crowd (two storms) {against_bare(r['under'])}",
        f"| alone, after {against_bare(r['after'])}",
        "",
        f"Probe alone over HTTP p50 {pct(answered(r['alone']['ours']), 0.5) * 1000:.1f} ms against the server's "
        f"own {pct(alone_own, 0.5) * 1000:.1f} ms: {beyond_own(r['alone'])}. "
        f"Under the crowd, p50 / p99 of each part: {parts(r['under']['ours'])}.",
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
        "",
        f"CPU during the storms, in cores: {cpu_shares(r['cpu'])}.",
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
    parser.add_argument(
        "--crowd-at", choices=("ours", "bare"), default="ours", help="whom the crowd asks (default: our server)"
    )
    parser.add_argument("--samples", type=Path, help="write every probe answer here (JSON), for a closer look")
    opts = parser.parse_args(argv)
    result = run(
        opts.index.resolve(),
        opts.workers,
        opts.clients,
        opts.seconds,
        opts.code.resolve(),
        opts.probe_only,
        opts.expensive_every,
        opts.crowd_at,
    )
    if opts.samples:
        phases = {k: result[k] for k in ("alone", "under", "after") if k in result}
        opts.samples.write_text(
            json.dumps({k: {n: [s._asdict() for s in v] for n, v in p.items()} for k, p in phases.items()})
        )
    if opts.probe_only:
        own = [s.own / 1000 for s in result["alone"]["ours"] if s.status == 200 and s.own is not None]
        print(
            f"{opts.label}: probe alone, ours / baseline / ours − baseline: {against_bare(result['alone'])[2:-2]}; "
            f"ours over HTTP p50 {pct(answered(result['alone']['ours']), 0.5) * 1000:.1f} ms, "
            f"the server's own p50 {pct(own, 0.5) * 1000:.1f} ms; {beyond_own(result['alone'])}"
        )
        return 0
    print(report(result, opts.index, opts.label))
    return 0


if __name__ == "__main__":
    sys.exit(main())
