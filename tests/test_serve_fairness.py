"""Issue 30 #4: a client that sends back to back cannot make a light one wait behind it.

The lanes hand a free thread to the waiting search whose connection has used the least
service lately (index.serve.web.FairLane). Checked on the lane itself, with generated
admit/leave sequences (the invariants: never more running than threads, never more
waiting than the queue, nobody lost, the least used first), and through the server
with a fake search of fixed length, so that what is checked is the order, not the
machine's speed."""

from __future__ import annotations

import asyncio
import concurrent.futures
import http.client
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import index.serve.web as web
from helpers import served_app
from index.api import Results

CHEAP_SECONDS = 0.02
FLOODERS = 8


def run(coro):
    return asyncio.new_event_loop().run_until_complete(coro)


def test_a_light_connection_goes_before_a_flooders_queue():
    async def scenario() -> list[str]:
        lane = web.FairLane(threads=1, queue=32)
        order: list[str] = []
        first = lane.admit("flooder-0", 2)  # runs at once
        waiting = [(f"flooder-{k}", lane.admit(f"flooder-{k}", 2)) for k in range(1, 6)]
        light = lane.admit("light", 2)
        turns = [*waiting, ("light", light)]
        lane.leave(first)
        while turns:
            ready = [(who, t) for who, t in turns if t.done()]
            assert len(ready) == 1  # one thread: one search at a time
            who, turn = ready[0]
            order.append(who)
            turns.remove(ready[0])
            lane.leave(turn)
        return order

    # Every flooder connection used the same as the light one: first come first among
    # equals, so the flooders that came before go before it...
    assert run(scenario()) == ["flooder-1", "flooder-2", "flooder-3", "flooder-4", "flooder-5", "light"]

    async def back_to_back() -> list[str]:
        lane = web.FairLane(threads=1, queue=32)
        lane.leave(lane.admit("light", 2))  # a light connection, heard from once
        for _ in range(5):  # one connection that has been sending back to back
            lane.leave(lane.admit("flooder", 2))
        busy = lane.admit("other", 2)
        again = [lane.admit("flooder", 2) for _ in range(3)]
        light = lane.admit("light", 2)
        lane.leave(busy)
        order = []
        pending = [("flooder", t) for t in again] + [("light", light)]
        while pending:
            who, turn = next(p for p in pending if p[1].done())
            order.append(who)
            pending.remove((who, turn))
            lane.leave(turn)
        return order

    # ...but one that has used the lane lately goes after a light one that came later.
    assert run(back_to_back())[0] == "light"


def test_opening_new_connections_buys_nothing():
    async def scenario() -> tuple[float, float, float]:
        lane = web.FairLane(threads=1, queue=32)
        for who, n in (("b", 1), ("a", 10)):
            for _ in range(n):
                lane.leave(lane.admit(who, 2))
        return lane.usage("a"), lane.usage("b"), lane.usage("never-seen")

    a, b, new = run(scenario())
    assert new == pytest.approx((a + b) / 2, rel=0.01) and b < new < a


def test_usage_is_forgotten_over_time_and_bounded(monkeypatch):
    monkeypatch.setattr(web, "USAGE_CONNECTIONS", 8)
    now = [1000.0]
    monkeypatch.setattr(web.time, "monotonic", lambda: now[0])

    async def scenario() -> web.FairLane:
        lane = web.FairLane(threads=1, queue=32)
        lane.leave(lane.admit("old", 4))
        assert lane.usage("old") == pytest.approx(4)
        now[0] += web.USAGE_HALF_LIFE
        assert lane.usage("old") == pytest.approx(2)
        for k in range(20):
            lane.leave(lane.admit(k, 1))
        return lane

    lane = run(scenario())
    assert len(lane._usage) == 8 and "old" not in lane._usage


@settings(max_examples=150, deadline=None)
@given(
    threads=st.integers(1, 3),
    queue=st.integers(0, 4),
    steps=st.lists(st.tuples(st.sampled_from(["admit", "finish", "give up"]), st.integers(0, 4)), max_size=40),
)
def test_the_lane_never_runs_too_many_loses_none_and_serves_the_least_used_first(threads, queue, steps):
    async def scenario() -> None:
        lane = web.FairLane(threads=threads, queue=queue)
        running: list[asyncio.Future[None]] = []
        waiting: list[tuple[float, int, asyncio.Future[None]]] = []
        arrived = 0
        for action, who in steps:
            if action == "admit":
                full = len(running) >= threads and len(waiting) >= queue
                used = lane.usage(who)
                try:
                    turn = lane.admit(who, 2)
                except web.Overloaded:
                    assert full
                    continue
                assert not full
                waiting.append((used, arrived, turn))
                arrived += 1
            elif action == "finish" and running:
                lane.leave(running.pop(who % len(running)))
            elif action == "give up" and waiting:
                lane.leave(waiting.pop(who % len(waiting))[2])
            started = sorted(w for w in waiting if w[2].done())
            # The ones that got a thread are the least used of those waiting.
            rest = [w for w in waiting if not w[2].done()]
            if started and rest:
                assert max(w[:2] for w in started) <= min(w[:2] for w in rest)
            running += [w[2] for w in started]
            waiting = rest
            assert len(running) == lane.running <= threads
            assert len(waiting) <= queue and (not waiting or len(running) == threads)
        while running:  # nobody is lost: everyone admitted gets a thread in the end
            lane.leave(running.pop())
            running += [w[2] for w in waiting if w[2].done()]
            waiting = [w for w in waiting if not w[2].done()]
        assert not waiting and lane.running == 0

    run(scenario())


# -- through the server ------------------------------------------------------------------------


STARTED: list[str] = []  # the fake search's queries, in the order they got a thread


def fake_search(index_dir, query, *, budget, **options):
    budget.start()
    STARTED.append(query)
    time.sleep(CHEAP_SECONDS)
    return Results(query=query, total=0, hits=[], elapsed_ms=0.0, queued_ms=budget.queued * 1000)


@pytest.fixture
def server(tmp_path, monkeypatch) -> Iterator[int]:
    monkeypatch.setattr(web, "search", fake_search)
    monkeypatch.setattr(web, "FAST_THREADS", 1)
    monkeypatch.setattr(web, "MAX_QUEUED_SECONDS", 30.0)
    with served_app(web.create_app(tmp_path)) as port:
        yield port


def test_a_light_client_is_not_queued_behind_clients_that_send_back_to_back(server):
    """FLOODERS connections send back to back to a lane of one thread; a light client's
    search (a third of a flooder's rate), every time, goes next (a first-come queue would put it behind one search of
    each flooder). Counted in searches started, not in milliseconds."""
    stop = threading.Event()

    def flood() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", server, timeout=30)
        while not stop.is_set():
            conn.request("GET", "/api/search?" + urlencode({"q": "chair"}))
            conn.getresponse().read()
        conn.close()

    ahead = []
    with concurrent.futures.ThreadPoolExecutor(FLOODERS) as pool:
        floods = [pool.submit(flood) for _ in range(FLOODERS)]
        try:
            time.sleep(1.0)  # every flooder has used the lane
            light = http.client.HTTPConnection("127.0.0.1", server, timeout=30)
            for k in range(6):
                sent = len(STARTED)
                light.request("GET", "/api/search?" + urlencode({"q": f"yoga {k}"}))
                response = light.getresponse()
                assert response.status == 200 and response.read()
                ahead.append(STARTED.index(f"yoga {k}", sent) - sent)
                time.sleep(0.5)
            light.close()
        finally:
            stop.set()
            for f in floods:
                f.result()
    # At most the one that got the thread while the light search was on its way in (the
    # first search of the light connection, new, waits like any flooder's).
    assert max(ahead[1:]) <= 1, ahead


def test_waiting_for_the_other_workers_slow_lane_is_queueing_too(tmp_path, monkeypatch):
    """`serve --workers N`: an expensive search whose thread waits for another worker's
    slow lane (the shared lock file) is turned away after MAX_QUEUED_SECONDS like any
    other, not left to wait out that search and then run its own whole budget."""
    import fcntl
    import os

    from starlette.testclient import TestClient

    def slow_search(index_dir, query, *, budget, **options):
        budget.start()
        return Results(query=query, total=0, hits=[], elapsed_ms=0.0)

    monkeypatch.setattr(web, "search", slow_search)
    monkeypatch.setattr(web, "MAX_QUEUED_SECONDS", 0.3)
    lock = tmp_path / "slow.lock"
    lock.touch()
    held = os.open(lock, os.O_RDWR)
    fcntl.flock(held, fcntl.LOCK_EX)  # the other worker's expensive search, running
    client = TestClient(web.create_app(tmp_path, slow_lock=str(lock)), base_url="http://127.0.0.1")
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        try:
            began = time.monotonic()
            asked = pool.submit(client.get, "/api/search", params={"q": "chair NOT text:[a TO z]"})
            answer = asked.result(timeout=10)  # before: waited for as long as the lock was held
            took = time.monotonic() - began
        finally:
            os.close(held)
    assert answer.status_code == 503 and answer.headers["retry-after"] == str(web.RETRY_AFTER)
    assert took >= 0.3
    assert client.get("/api/search", params={"q": "chair NOT text:[a TO z]"}).status_code == 200  # lock free
