"""``python -m index serve``: a local page for looking at the results as an image grid.

A thin Starlette app over :func:`index.search.run.search`, the same library (and query
language) as the terminal command. It only reads the index; the shared searcher cache
refreshes on every request, so a running crawl's commits show up without a restart.

Everything that comes from a crawled page is untrusted: templates autoescape, highlight
marks are private-use characters swapped for ``<mark>`` only after escaping, links keep
only http(s)/file URLs, and the Content-Security-Policy forbids any script but our own.

Nobody else is trusted either: ``serve`` answers only requests that bring its token (the
link it prints sets a cookie; the command line reads it from the announcement, a file only
its user can read), so another local user does not read through the server an index
whose folder they cannot read. Cheap queries never wait behind expensive ones: each query
is priced before it runs (:func:`index.search.budget.cost`) and runs in the fast lane (as
many threads as cores) or the slow lane (one); a lane whose queue is full answers 503 with
``Retry-After`` at once. A query's budget starts when its thread does.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import hashlib
import heapq
import hmac
import ipaddress
import itertools
import logging
import math
import os
import re
import secrets
import signal
import socket
import sys
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import anyio
import anyio.to_thread
from markupsafe import Markup, escape
from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from index.api import (
    FILTERS,
    MARK_END,
    MARK_START,
    MAX_LIMIT,
    MAX_PAGE,
    SERVER_SEARCH_SECONDS,
    IndexMissing,
    IndexUnreadable,
    Results,
    SearchCancelled,
    SearchError,
    to_api,
)
from index.search.budget import CHEAP_COST, Budget, cost
from index.search.run import search, start_warming, stop_warming
from index.serve.overview import search_link, start_page
from index.serve.remote import (
    CHALLENGE_HEADER,
    INDEX_HEADER,
    PROOF_HEADER,
    TOKEN_HEADER,
    announce,
    connect_host,
    identity,
    proof,
)

__all__ = ["SIDEBAR_FACETS", "allowed_hosts", "create_app", "serve"]

HERE = Path(__file__).parent
SIDEBAR_FACETS = ("domain", "site", "board", "author")
PAGE_SIZE = 24
# Searches run in worker threads (each with its own searcher): cheap ones (by
# index.search.budget.cost) in the fast lane, as many at once as there are cores, the
# others in the slow lane, one at a time, so that they cannot take every core (and the
# interpreter lock) from the cheap ones. Of all of them, SLOW_LANES at most walk matches
# in Whoosh's one-by-one searcher (index.search.budget.Budget.slow_lane). Per process;
# more processes with `serve --workers N`, which share the cores: each worker's fast lane
# then has cores / N threads (at least one). More threads than that in one process share
# its interpreter lock (a search is mostly Python) and make every cheap query slower
# without answering more of them.
FAST_THREADS = os.cpu_count() or 2
SLOW_THREADS = 1
SLOW_LANES = 1
# How many searches may wait for a lane's thread: past it, 503 and Retry-After at once
# rather than a queue that answers after everyone has given up.
FAST_QUEUE = 32
SLOW_QUEUE = 2
# ...and how long one may wait for it: past that, 503 as well, so that no answer takes
# much longer than the budget however full the lanes are (waiting is not charged to it).
MAX_QUEUED_SECONDS = 0.25
# Who waits least (FairLane): a connection's recent service halves this often, and so
# many connections are remembered (the one heard from longest ago forgotten first).
USAGE_HALF_LIFE = 2.0
USAGE_CONNECTIONS = 1024
# The bytes of intermediate arrays one query may build (index.search.budget.Budget.charge).
SEARCH_BYTES = 512 * 2**20
RETRY_AFTER = math.ceil(SERVER_SEARCH_SECONDS)
# The interpreter lock changes hands this often (Python's default: 5 ms): a slow-lane search
# in Python loops then holds up a cheap one in the fast lane by at most this much per turn.
SWITCH_INTERVAL = 0.001
DISCONNECT_POLL = 0.05
# No access log: a line per request (a keystroke, as you type) is a write on the event
# loop, and every write gives the interpreter lock away and waits to have it back while a
# search runs. Errors and the server's own messages are still logged.
UVICORN_OPTIONS = {"log_level": "info", "access_log": False}
# glibc malloc arenas per process. Its default (8 per core) gives each search thread its
# own arena, which keeps the peak of that thread's biggest query as free but unreturned
# memory; two arenas (the event loop's and the searches') keep a server's memory at what
# its caches hold. `serve` sets MALLOC_ARENA_MAX for its worker processes (read when they
# start); create_app sets it in its own process with mallopt before any thread exists.
MALLOC_ARENAS = 2
_M_ARENA_MAX = -8  # glibc's malloc.h
SORT_LABELS = {"relevance": "relevance", "-date": "newest", "date": "oldest", "domain": "domain"}
_MARKED = re.compile(f"{MARK_START}([^{MARK_START}{MARK_END}]*){MARK_END}")
LINK_SCHEMES = frozenset({"http", "https", "file"})

# Images may come from anywhere (that is the point of the page); code only from us.
CSP = (
    "default-src 'none'; img-src * data:; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def marked(text: str | None) -> Markup:
    """Escape page text, then turn the search's highlight marks into ``<mark>`` tags."""
    safe = _MARKED.sub(r"<mark>\1</mark>", str(escape(text or "")))
    # Marks only ever come in pairs from the search; a stray one (page text holding the
    # private-use characters) never opens a tag.
    return Markup(safe.replace(MARK_START, "").replace(MARK_END, ""))


def safe_href(url: str | None) -> str | None:
    """The URL if a browser may follow it from our page; ``javascript:`` and friends never."""
    if not url:
        return None
    try:
        scheme = urlsplit(url.strip()).scheme.lower()
    except ValueError:
        return None
    return url if scheme in LINK_SCHEMES else None


def _int(value: str | None, default: int, low: int, high: int) -> int:
    try:
        return max(low, min(high, int(value))) if value else default
    except ValueError:
        return default


def _on(value: str | None) -> bool:
    """A flag parameter that is off unless given as on (``exact=1``, ``marks=true``)."""
    return value in {"1", "true", "yes", "on"}


def _options(request: Request, limit_default: int) -> dict[str, Any]:
    p = request.query_params
    facets_param = p.get("facet")
    return {
        "limit": _int(p.get("limit"), limit_default, 1, MAX_LIMIT),
        "page": _int(p.get("page"), 1, 1, MAX_PAGE),
        "sort": p.get("sort") or "relevance",
        "filters": {name: p[name] for name in FILTERS if p.get(name)},
        "since": p.get("since") or None,
        "until": p.get("until") or None,
        "collapse": p.get("collapse", "1") not in {"0", "false", "no", "off"},
        "exact": _on(p.get("exact")),
        "facets": tuple(f for f in (facets_param or "").split(",") if f) if facets_param is not None else None,
    }


def _link(request: Request, **changes: str | int | None) -> str:
    """This page's URL with some parameters changed (``None`` removes one)."""
    params = dict(request.query_params)
    for key, value in changes.items():
        if value is None or value == "":
            params.pop(key, None)
        else:
            params[key] = str(value)
    if "page" not in changes:
        params.pop("page", None)  # any new filter starts again at page 1
    return "/?" + urlencode(params) if params else "/"


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")  # Starlette keeps IPv6 brackets


def allowed_hosts(bind: str, extra: Sequence[str] = ()) -> list[str]:
    """The Host header values the page answers: the names it is bound to. A page on
    127.0.0.1 must not answer `Host: attacker.example` -- a DNS-rebinding page in the
    user's browser would otherwise read /api/search as same-origin."""
    names: list[str] = []
    try:
        address = ipaddress.ip_address(bind.strip("[]"))
        loopback, wildcard = address.is_loopback, address.is_unspecified
    except ValueError:  # a name: `localhost` is bound (and announced) as its loopback address
        loopback, wildcard = bind == "localhost", False
    if loopback or wildcard:
        names += LOOPBACK_HOSTS
    if wildcard:  # every address of this machine: its own names (add others with --allow-host)
        names += [socket.gethostname(), socket.getfqdn()]
    elif not loopback:
        bare = bind.strip("[]")
        names.append(f"[{bare}]" if ":" in bare else bare)
    names += extra
    return list(dict.fromkeys(n.lower() for n in names if n))


class _SecurityHeaders:
    """The security headers on every response, the middleware's own 400 included."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, with_headers)


class Overloaded(SearchError):
    """The query's lane has as many searches waiting as it may: try again later."""


class FairLane:
    """One lane's threads, handed to the waiting search whose connection has used the
    least service lately.

    A first-come queue lets every client that sends back to back keep a search in it at
    all times, so that a light client (a person typing, a probe) waits behind one search
    of each of them. Here each connection's recent service is the prices
    (:func:`index.search.budget.cost`) of its searches, halved every USAGE_HALF_LIFE
    seconds; a free thread takes the waiting search whose connection had the least when
    it arrived (first come first among equals). A client that sends back to back then
    waits behind the light ones, not they behind it. A connection seen for the first time
    starts at the mean of the known ones, so that opening new connections buys nothing.
    Per process and on its event loop: no lock."""

    def __init__(self, threads: int, queue: int) -> None:
        self.threads = threads
        self.queue = queue
        self.running = 0
        self._usage: OrderedDict[Any, tuple[float, float]] = OrderedDict()  # who: (usage, when)
        self._waiting: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def usage(self, who: Any, now: float | None = None) -> float:
        """The connection's recent service as of ``now``: what it was charged, decayed."""
        now = time.monotonic() if now is None else now
        found = self._usage.get(who)
        if found is None:
            known = [self.usage(k, now) for k in self._usage]
            return sum(known) / len(known) if known else 0.0
        used, when = found
        return used * 0.5 ** ((now - when) / USAGE_HALF_LIFE)

    def admit(self, who: Any, price: float) -> asyncio.Future[None]:
        """A future that is done when the search of connection ``who`` has a thread;
        :class:`Overloaded` at once when the lane already has ``queue`` searches waiting."""
        if self.running >= self.threads and len(self._waiting) >= self.queue:
            raise Overloaded(f"the server is busy: try again in {RETRY_AFTER} s")
        now = time.monotonic()
        used = self.usage(who, now)
        self._usage[who] = (used + max(1.0, price), now)
        self._usage.move_to_end(who)
        while len(self._usage) > USAGE_CONNECTIONS:
            self._usage.popitem(last=False)  # the connection heard from longest ago
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (used, next(self._order), turn))
        self._dispatch()
        return turn

    def leave(self, turn: asyncio.Future[None]) -> None:
        """A search that had its thread is done, or one still waiting gives up its place."""
        if turn.done() and not turn.cancelled():
            self.running -= 1
        else:
            turn.cancel()
            self._waiting = [w for w in self._waiting if w[2] is not turn]
            heapq.heapify(self._waiting)
        self._dispatch()

    def _dispatch(self) -> None:
        while self.running < self.threads and self._waiting:
            turn = heapq.heappop(self._waiting)[2]
            self.running += 1
            turn.set_result(None)


def _across_processes(lock_path: str, call: Any, budget: Budget) -> Any:
    """``call`` once this process holds the lock file shared by the server's workers: the
    slow lane is one thread for the whole server, not one per worker (each would take a
    core from the cheap queries). Waiting for it is queueing, not charged to the budget."""
    import fcntl

    def run() -> Any:
        fd = os.open(lock_path, os.O_RDWR)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if budget.cancel.is_set():
                        raise SearchCancelled("turned away while waiting for the slow lane") from None
                    time.sleep(0.01)
            return call()
        finally:
            os.close(fd)  # and with it the lock

    return run


def few_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Bound this process's malloc arenas (see MALLOC_ARENAS); False where the C library
    is not glibc or the environment already decided (MALLOC_ARENA_MAX set by the user)."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(_M_ARENA_MAX, arenas))


def _cookie_name(token: str) -> str:
    """The token's cookie, named after the token: browsers keep one cookie jar per host,
    not per port, so two servers on one host would replace each other's cookie (and send
    it to each other) under one fixed name."""
    return "pages_token_" + hashlib.sha256(token.encode()).hexdigest()[:12]


def create_app(
    index_dir: str | Path,
    hosts: Sequence[str] | None = None,
    secret: str | None = None,
    token: str | None = None,
    slow_lock: str | None = None,
    workers: int = 1,
) -> Starlette:
    """The page over ``index_dir``, answering only requests whose Host is one of
    ``hosts`` (default: the loopback names). With ``secret``, an API request that brings
    a challenge gets its proof (:mod:`index.serve.remote`: how the command line knows it asks
    the server it read about). With ``token``, only requests that bring it (header or
    cookie) are answered; ``?token=`` on the page sets the cookie. With ``slow_lock`` (a
    file the workers of one server share), the slow lane is one for all of them; the fast
    lane's threads are the cores shared by ``workers`` processes."""
    index_dir = str(index_dir)
    sys.setswitchinterval(SWITCH_INTERVAL)
    few_arenas()
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters["marked"] = marked
    templates.env.globals["safe_href"] = safe_href
    templates.env.globals["search_link"] = search_link
    fast_threads = max(1, FAST_THREADS // max(1, workers))
    lanes = {"fast": FairLane(fast_threads, FAST_QUEUE), "slow": FairLane(SLOW_THREADS, SLOW_QUEUE)}
    # The threads themselves: as many as the lanes hand out (FairLane decides who runs).
    threads = anyio.CapacityLimiter(fast_threads + SLOW_THREADS)
    start_pages = anyio.CapacityLimiter(fast_threads)
    slow_lane = threading.BoundedSemaphore(SLOW_LANES)

    def price_of(query: str, options: dict[str, Any]) -> int:
        return cost(
            query,
            page=options.get("page", 1),
            limit=options.get("limit", 10),
            sort=options.get("sort", "relevance"),
            exact=options.get("exact", False),
        )

    async def off_loop(request: Request, query: str, **options: Any) -> Results:
        """The search in a worker thread of its lane, so that the event loop keeps
        answering, with the query's budget (started when the thread starts), cancelled
        inside the search when the client goes away meanwhile, turned away when its lane
        is full or has not given it a thread within MAX_QUEUED_SECONDS."""
        price = price_of(query, options)
        lane = lanes["fast" if price <= CHEAP_COST else "slow"]
        # The connection, not the address: every local client is 127.0.0.1.
        who = tuple(request.scope.get("client") or ())
        turn = lane.admit(who, price)
        budget = Budget(SERVER_SEARCH_SECONDS, max_bytes=SEARCH_BYTES, slow_lane=slow_lane)
        task: asyncio.Future[Results] | None = None
        try:
            while not turn.done():
                await asyncio.wait({turn}, timeout=DISCONNECT_POLL)
                if turn.done():
                    break
                if budget.queued > MAX_QUEUED_SECONDS:
                    raise Overloaded(f"the server is busy: try again in {RETRY_AFTER} s")
                if await request.is_disconnected():
                    raise SearchCancelled("the client went away while its search waited")
            call = functools.partial(search, index_dir, query, budget=budget, **options)
            if lane is lanes["slow"] and slow_lock is not None:
                call = _across_processes(slow_lock, call, budget)
            task = asyncio.ensure_future(anyio.to_thread.run_sync(call, limiter=threads))
            while True:
                done, _ = await asyncio.wait({task}, timeout=DISCONNECT_POLL)
                if done:
                    return task.result()
                if budget.started is None and budget.queued > MAX_QUEUED_SECONDS:
                    # Its thread waits for the other workers' slow lane (_across_processes):
                    # queued all the same, and turned away like any search left waiting.
                    raise Overloaded(f"the server is busy: try again in {RETRY_AFTER} s")
                if not budget.cancel.is_set() and await request.is_disconnected():
                    budget.cancel.set()
        finally:
            if task is not None and not task.done():
                # Turned away, or this handler cancelled, while its thread runs: the
                # thread is the lane's until the search (told to stop) gives it back.
                budget.cancel.set()
                task.add_done_callback(_discard)
                task.add_done_callback(lambda _: lane.leave(turn))
            else:
                lane.leave(turn)

    def authorized(request: Request) -> bool:
        if token is None:
            return True
        given = request.headers.get(TOKEN_HEADER) or request.cookies.get(_cookie_name(token)) or ""
        return hmac.compare_digest(given.encode(), token.encode())

    def refused() -> Response:
        return _json({"error": "this server needs its token: open the link `serve` printed"}, 403)

    async def page(request: Request) -> Response:
        given = request.query_params.get("token")
        if token is not None and given is not None:
            # The link `serve` printed: the token goes into a cookie and out of the URL
            # (history, screenshots, the Referer is off anyway).
            if not hmac.compare_digest(given.encode(), token.encode()):
                return refused()
            rest = {k: v for k, v in request.query_params.items() if k != "token"}
            response = RedirectResponse("/?" + urlencode(rest) if rest else "/", status_code=303)
            response.set_cookie(_cookie_name(token), token, httponly=True, samesite="strict")
            return response
        if not authorized(request):
            return refused()
        query = (request.query_params.get("q") or "").strip()
        opts = _options(request, PAGE_SIZE)
        opts["facets"] = SIDEBAR_FACETS if opts["facets"] is None else opts["facets"]
        started = time.perf_counter()
        results: Results | None = None
        error = hint = None
        status = 200
        if query:
            try:
                results = await off_loop(request, query, marks=(MARK_START, MARK_END), **opts)
            except SearchCancelled:
                return Response(status_code=499)  # nobody is there to read it
            except SearchError as exc:
                error, hint = str(exc), exc.hint
                status = _status(exc)
            except Exception as exc:  # noqa: BLE001 - one line on the page, not a stale one
                error, status = _unexpected(exc), 500
        pages = 0
        if results is not None:
            pages = max(1, -(-results.total // opts["limit"]))
        context = {
            "query": query,
            "opts": opts,
            "results": results,
            "error": error,
            "hint": hint,
            "pages": pages,
            "sorts": SORT_LABELS,
            "link": lambda **changes: _link(request, **changes),
            "render_ms": (time.perf_counter() - started) * 1000,
        }
        if not query:  # the start page: the index at a glance (index.serve.overview)
            try:
                context.update(await anyio.to_thread.run_sync(start_page, index_dir, limiter=start_pages))
            except SearchError as exc:
                error, status = str(exc), _status(exc)
                context.update(error=error, hint=exc.hint)
            except Exception as exc:  # noqa: BLE001 - one line on the page, never a bare 500
                error, status = _unexpected(exc), 500
                context.update(error=error)
        response = templates.TemplateResponse(request, "search.html", context, status_code=status if error else 200)
        response.headers.update(SECURITY_HEADERS)
        if status == 503:
            response.headers["Retry-After"] = str(RETRY_AFTER)
        return response

    async def api(request: Request) -> Response:
        if not authorized(request):
            return refused()
        means = request.headers.get(INDEX_HEADER)
        if means is not None and means != identity(index_dir):
            # The client means another folder than this server's index now is (a symlink
            # swapped since): no answer for the wrong index.
            return _json({"error": f"this server's index {index_dir} is not the folder asked about"}, 409)
        query = (request.query_params.get("q") or "").strip()
        opts = _options(request, 10)
        opts["facets"] = opts["facets"] or ()
        # Matches between MARK_START and MARK_END in `headline_marked` (the command line's bold).
        if _on(request.query_params.get("marks")):
            opts["marks"] = (MARK_START, MARK_END)
        if not query:
            return _json({"error": "missing q= parameter"}, 400)
        try:
            results = await off_loop(request, query, **opts)
        except SearchCancelled:
            return Response(status_code=499)
        except SearchError as exc:
            body = {"error": str(exc), "hint": exc.hint} if exc.hint else {"error": str(exc)}
            response = _json(body, _status(exc))
            if response.status_code == 503:
                response.headers["Retry-After"] = str(RETRY_AFTER)
            return response
        except Exception as exc:  # noqa: BLE001 - JSON in, JSON out, whatever failed
            return _json({"error": _unexpected(exc)}, 500)
        response = _json(to_api(results), 200)
        nonce = request.headers.get(CHALLENGE_HEADER)
        if secret and nonce:
            response.headers[PROOF_HEADER] = proof(secret, nonce[:128], bytes(response.body))
        return response

    routes = [
        Route("/", page),
        Route("/api/search", api),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(_SecurityHeaders),
            Middleware(TrustedHostMiddleware, allowed_hosts=list(hosts or LOOPBACK_HOSTS), www_redirect=False),
        ],
        lifespan=_warming(index_dir),
    )
    # `/api/search/` would redirect to a URL built from the Host header: a 404 instead.
    app.router.redirect_slashes = False
    # What exists now (modules, the app, its templates: some 40,000 objects) lives as long
    # as the process: out of every full collection, which stops every thread of the process,
    # the probe's answer included, for as long as it walks what is left (88 ms of CPU on a
    # warm server before, 6 ms with this and compact automata, index.search.expand._dfa).
    # Collected first: garbage frozen would never be freed.
    gc.collect()
    gc.freeze()
    return app


def _warming(index_dir: str) -> Any:
    """The app's lifespan: while it serves, its index is warmed in the background (the
    per-index arrays and word lists its first searches need; again after each commit),
    giving way to searches (index.search.run.start_warming). PAGES_SERVE_WARM=0: off."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        stop = start_warming(index_dir, SIDEBAR_FACETS) if os.environ.get("PAGES_SERVE_WARM") != "0" else None
        try:
            yield
        finally:
            if stop is not None:
                stop_warming(stop)

    return lifespan


def _json(body: dict[str, Any], status: int) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=SECURITY_HEADERS)


def _discard(task: asyncio.Future[Any]) -> None:
    """Retrieve an abandoned search's outcome (its cancellation), which nobody awaits."""
    if not task.cancelled():
        task.exception()


def _status(exc: SearchError) -> int:
    """The HTTP status of a search error: the server's state (no index, an unreadable
    one, too busy) is 503, the query's fault 400."""
    return 503 if isinstance(exc, (IndexMissing, IndexUnreadable, Overloaded)) else 400


def _unexpected(exc: Exception) -> str:
    logging.getLogger(__name__).exception("search failed")
    return f"search failed: {type(exc).__name__}: {exc}".splitlines()[0][:300]


def _listen(host: str, port: int) -> socket.socket | None:
    """The server's socket, bound here so that the server is announced with the port it
    really has (``--port 0``: any free one) and only once it has it."""
    bare = host.strip("[]")
    family = socket.AF_INET6 if ":" in bare else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted connections inherit it (uvicorn's workers get the socket as a bare fd,
        # so asyncio would not set it): without it, Nagle and the client's delayed ACK
        # hold every kept-alive answer's body about 40 ms.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((bare, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        sys.stderr.write(f"error: cannot listen on {host}:{port}: {exc.strerror or exc}\n")
        return None
    sock.set_inheritable(True)  # `--workers N`: uvicorn's worker processes take it over
    return sock


def app_from_env() -> Starlette:
    """The app for ``serve --workers N``: uvicorn starts each worker process from an
    import string, so the options travel in the environment."""
    hosts = [h for h in os.environ.get("PAGES_SERVE_HOSTS", "").split(",") if h]
    return create_app(
        os.environ["PAGES_SERVE_INDEX"],
        hosts or None,
        os.environ.get("PAGES_SERVE_SECRET"),
        os.environ.get("PAGES_SERVE_TOKEN"),
        os.environ.get("PAGES_SERVE_SLOW_LOCK"),
        int(os.environ.get("PAGES_SERVE_WORKERS") or 1),
    )


def serve(
    index_dir: str, host: str = "127.0.0.1", port: int = 8000, allow_hosts: Sequence[str] = (), workers: int = 1
) -> int:
    import uvicorn  # only the server needs it; `search` keeps its fast start

    hosts = allowed_hosts(host, allow_hosts)
    secret = secrets.token_hex(16)
    token = secrets.token_urlsafe(24)
    sock = _listen(host, port)
    if sock is None:
        return 2
    # uvicorn stops on SIGTERM, then raises it again under the handler it found: make that
    # one an exit, so the announcement below is taken back (systemd stops with SIGTERM).
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    if workers > 1:
        os.environ["PAGES_SERVE_INDEX"] = index_dir
        os.environ["PAGES_SERVE_HOSTS"] = ",".join(hosts)
        os.environ["PAGES_SERVE_SECRET"] = secret
        os.environ["PAGES_SERVE_TOKEN"] = token
        fd, slow_lock = tempfile.mkstemp(prefix="pages-serve-slow-", suffix=".lock")  # 0600, ours
        os.close(fd)
        os.environ["PAGES_SERVE_SLOW_LOCK"] = slow_lock
        os.environ["PAGES_SERVE_WORKERS"] = str(workers)
        os.environ.setdefault("MALLOC_ARENA_MAX", str(MALLOC_ARENAS))  # read as each worker starts
        options = {**UVICORN_OPTIONS, "factory": True, "workers": workers, "fd": sock.fileno()}
        config = uvicorn.Config("index.serve.web:app_from_env", **options)
    else:
        config = uvicorn.Config(create_app(index_dir, hosts, secret, token), **UVICORN_OPTIONS)
    log = logging.getLogger("uvicorn.error")  # configured by uvicorn.Config: the server's own log
    bound_host, bound_port = sock.getsockname()[:2]
    # A server bound to every address (0.0.0.0, ::) answers its link on loopback.
    reached = connect_host(bound_host)
    shown = f"[{reached}]" if ":" in reached else reached
    # The numeric address it bound: `localhost` may lead a browser to ::1 first, where
    # another user may listen on the same port.
    log.info("Search page on http://%s:%d/?token=%s (Press CTRL+C to quit)", shown, bound_port, token)
    # Announced once the port is ours: `python -m index search` on this index then asks
    # this server (index.serve.remote), at the address it bound, never a name.
    with announce(index_dir, bound_host, bound_port, secret, token) as announcement:
        if isinstance(announcement, Path):
            log.info("`python -m index search` on %s is answered here (%s)", index_dir, announcement)
        else:
            log.info("Not announced to `python -m index search`: %s", announcement)
        try:
            if workers > 1:
                uvicorn.run("index.serve.web:app_from_env", **options)
            else:
                uvicorn.Server(config).run(sockets=[sock])
        except KeyboardInterrupt:  # Ctrl-C: uvicorn has shut down; so does the announcement
            pass
        finally:
            if workers > 1:
                Path(os.environ["PAGES_SERVE_SLOW_LOCK"]).unlink(missing_ok=True)
    return 0
