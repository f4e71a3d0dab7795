"""A distributed crawler whose Redis commands are the fault points of the kill tests
(tests/test_distributed_kills.py): ``python tests/redis_faults.py KILL TRACE scrapy-args``
runs ``scrapy <scrapy-args>`` (or, for ``-m MODULE args``, that module: the indexer) with redis-py's client counting each command it completes,
by kind, and killing the process with SIGKILL right after the reply to the N-th command
of kind K (``KILL`` is ``K:N``, or ``-`` for no kill; ``K1|K2:N`` counts both kinds). ``TRACE`` (or ``-``) is a file the
counts are written to at exit, from which the tests generate the points.

A kind is a command's name in lower case (``sadd``, ``xlen``...), the name of a Lua script
(its first line, ``-- name``), or ``multi`` for a pipeline (a MULTI/EXEC). The hook sits in
redis-py itself, under whatever the crawler's own code does, so the same test runs
against any version of that code."""

from __future__ import annotations

import atexit
import json
import os
import signal
import sys
from collections import Counter
from typing import Any


def kind_of(args: tuple[Any, ...]) -> str:
    name = (args[0].decode() if isinstance(args[0], bytes) else str(args[0])).lower()
    if name in ("eval", "evalsha") and len(args) > 1:
        script = args[1].decode() if isinstance(args[1], bytes) else str(args[1])
        first = script.lstrip().split("\n", 1)[0]
        if first.startswith("-- "):
            return first[3:].strip()
    return name


def install(kill: tuple[str, int] | None, trace: str | None) -> None:
    """``kill``: (kinds, N), kinds one kind or several joined by ``|`` (counted together)."""
    import redis.client

    counts: Counter[str] = Counter()

    kinds = set(kill[0].split("|")) if kill else set()

    # The kill point's own count, apart from the trace's: a single kind (`multi:3`) would
    # otherwise be counted twice per command, and an odd N never reached.
    killing = Counter[str]()

    def after(kind: str) -> None:
        counts[kind] += 1
        if kind in kinds:
            killing[kill[0]] += 1  # type: ignore[index]
            if killing[kill[0]] == kill[1]:  # type: ignore[index]
                os.kill(os.getpid(), signal.SIGKILL)

    command = redis.client.Redis.execute_command

    def execute_command(self: Any, *args: Any, **options: Any) -> Any:
        reply = command(self, *args, **options)
        after(kind_of(args))
        return reply

    execute = redis.client.Pipeline.execute

    def execute_pipeline(self: Any, *args: Any, **kwargs: Any) -> Any:
        reply = execute(self, *args, **kwargs)
        after("multi")
        return reply

    redis.client.Redis.execute_command = execute_command  # type: ignore[method-assign]
    redis.client.Pipeline.execute = execute_pipeline  # type: ignore[method-assign]
    if trace:

        def write() -> None:
            with open(trace, "w", encoding="utf-8") as out:
                json.dump(dict(counts), out)

        atexit.register(write)


def main(argv: list[str]) -> None:
    kill_spec, trace, *scrapy_args = argv
    kill = None
    if kill_spec != "-":
        kind, _, n = kill_spec.rpartition(":")
        kill = (kind, int(n))
    install(kill, None if trace == "-" else trace)
    if scrapy_args[:1] == ["-m"]:  # another command: `-m index ingest ...` (the indexer)
        import runpy

        sys.argv = [scrapy_args[1], *scrapy_args[2:]]
        runpy.run_module(scrapy_args[1], run_name="__main__", alter_sys=True)
        return
    from scrapy.cmdline import execute

    sys.argv = ["scrapy", *scrapy_args]
    execute()


if __name__ == "__main__":
    main(sys.argv[1:])
