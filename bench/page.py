"""The search page as its users wait for it: rendered server side beside the API and the
CLI's ``--json`` (8), and its API's latency for fast queries while other clients send
the slowest query shapes (5d, issue 16)."""

from __future__ import annotations

import itertools
import threading
import time
from pathlib import Path

from bench.common import free_port, percentiles
from bench.search import clear_results, latency

# Queries that cost the most per request: a phrase (Whoosh walks positions), a wildcard
# with no literal start, a fuzzy word at the distance cap, and a deep collapsed page.
SLOW_QUERIES = ('"upper back pain"', "*e*", "exercises~2", "chair&page=5", '"seated stretch" OR "desk yoga"')


def contention(index: Path, qs: list[str], seconds: float = 10.0, slow_clients: int = 3) -> dict[str, float]:
    """The search page's latency for fast queries alone, then while `slow_clients`
    clients send the slowest query shapes back to back (`SLOW_QUERIES`): one slow query
    must not hold everyone up (issue 16). A real uvicorn server on a free port, clients
    over HTTP (stdlib), each fast query distinct (the result cache answers repeats)."""
    import http.client
    import urllib.parse

    import uvicorn

    from index.serve.web import create_app

    port = free_port()
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
        out[f"fast_{label}_p50"], out[f"fast_{label}_p99"] = percentiles(times)
        out[f"fast_{label}_n"] = len(times)
        if slow_times:
            out["slow_p50"], out["slow_p99"] = percentiles(slow_times)
            out["slow_n"] = len(slow_times)
    server.should_exit = True
    thread.join(timeout=10)
    return out


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
        out[f"{label}_p50"], out[f"{label}_p99"] = latency(call, qs, clear_results)
    return out
