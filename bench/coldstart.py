"""Cold start (row 5b): a new ``python -m index search`` process to its first result, with the
array store empty and holding its arrays, beside the imports alone, Whoosh alone, and the
same command answered by a resident ``python -m index serve``."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bench.common import ROOT

COLD_QUERIES = ["chair yoga", "upper back stretch", "strech"]
_WHOOSH_ALONE = """
import sys
from whoosh import index, qparser
ix = index.open_dir(sys.argv[1])
with ix.searcher() as s:
    hits = s.search(qparser.QueryParser("caption", ix.schema).parse(sys.argv[2]), limit=10)
    print([h.get("image_url") for h in hits])
"""


def timed_run(args: list[str]) -> float:
    """Milliseconds of a process from start to exit."""
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
                min(timed_run([*ours, q, "--limit", str(limit)]) for limit in (10, 11)) for q in COLD_QUERIES
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
        return timed_run([*ours, query])

    def median_best(run: Callable[[str], float]) -> float:
        return statistics.median(min(run(q) for _ in range(2)) for q in COLD_QUERIES)

    return {
        "empty_ms": median_best(emptied),
        "stored_ms": median_best(lambda q: timed_run([*ours, q])),
        "import_ms": min(timed_run([sys.executable, "-c", "import index.cli, index.search.run"]) for _ in range(3)),
        "whoosh_ms": median_best(lambda q: timed_run([sys.executable, "-c", _WHOOSH_ALONE, str(index), q])),
        "served_ms": served_start(index),
    }
