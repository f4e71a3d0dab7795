"""Issue 30 #5, #8-11: the server and its client trust no neighbour.

The client connects to the numeric address the server bound (a listener on the other
address family of `localhost` gets nothing), the proof covers the answer (a relay that
borrows the real server's proof cannot change the answer), the whole answer arrives in
bounded time (a dripping server is given up on), a symlink swapped under the server's
index is not answered for, the server answers no one without its token, and kept-alive
requests do not wait for delayed ACKs. Real `python -m index serve` processes."""

from __future__ import annotations

import argparse
import http.client
import http.server
import io
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from conftest import ROOT
from helpers import item, write
from index.cli import add_search_arguments, one_line_errors, run_search
from index.serve import remote


@pytest.fixture(scope="module")
def indexes(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("trust")
    small, other = base / "small", base / "other"
    write(small, *[item(f"file:///s{n}.md", [f"Chair stretch {n}"]) for n in range(10)], procs=1)
    write(other, *[item(f"file:///o{n}.md", [f"Chair swapped {n}"], title="Other") for n in range(30)], procs=1)
    return small, other


def start(index: Path, *args: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "index", "serve", "--index", str(index), "--port", "0", *args],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    try:
        while remote.ask(index, {"q": "chair"}) is None:
            assert proc.poll() is None, "the server stopped"
            assert time.monotonic() < deadline, "the server never answered"
            time.sleep(0.1)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    proc.wait(timeout=20)


@pytest.fixture(scope="module")
def served(indexes) -> Iterator[Path]:
    proc = start(indexes[0], "--host", "localhost")
    yield indexes[0]
    stop(proc)


def run(index: Path, *args: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    parser = one_line_errors(argparse.ArgumentParser(), "search")
    add_search_arguments(parser)
    return run_search(parser.parse_args(list(args)), str(index), out, err), out.getvalue()


class Recorder(http.server.BaseHTTPRequestHandler):
    """Another user's program: records who came, and answers with a forged result."""

    asked: ClassVar[list[dict[str, str]]] = []
    relay_to: ClassVar[tuple[str, int] | None] = None
    drip: ClassVar[bool] = False

    def do_GET(self):
        Recorder.asked.append(dict(self.headers))
        if Recorder.drip:
            self.wfile.write(b"HTTP/1.1 200 OK\r\n")
            for _ in range(200):
                time.sleep(0.1)
                self.wfile.write(b"X")
                self.wfile.flush()
            return
        forged = json.dumps({"query": "chair", "hits": [{"headline": "forged"}], "total": 1}).encode()
        proof = ""
        if Recorder.relay_to is not None:
            # Relays the client's request, challenge and all, to the real server, and
            # passes its proof off with another answer.
            conn = http.client.HTTPConnection(*Recorder.relay_to, timeout=10)
            conn.request("GET", self.path, headers=dict(self.headers))
            real = conn.getresponse()
            real.read()
            proof = real.getheader(remote.PROOF_HEADER) or ""
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header(remote.PROOF_HEADER, proof)
        self.send_header("Content-Length", str(len(forged)))
        self.end_headers()
        self.wfile.write(forged)

    def log_message(self, *args):
        pass


class V6Server(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6


@pytest.fixture
def recorder() -> Iterator[type[Recorder]]:
    Recorder.asked, Recorder.relay_to, Recorder.drip = [], None, False
    servers: list[http.server.ThreadingHTTPServer] = []

    def listen(family_server: type, host: str, port: int = 0) -> int:
        httpd = family_server((host, port), Recorder)
        servers.append(httpd)
        # A short poll: shutdown() waits for it (0.5 s by default, at every teardown).
        threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
        return httpd.server_address[1]

    Recorder.listen = staticmethod(listen)  # type: ignore[attr-defined]
    yield Recorder
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()


def announcement(index: Path) -> tuple[Path, dict]:
    path = remote.announcement_path(index)
    assert path is not None
    return path, json.loads(path.read_text())


def test_the_announcement_names_the_bound_address_the_path_given_and_the_folder(served):
    _, body = announcement(served)
    assert body["host"] == "127.0.0.1"  # `--host localhost`, as bound
    assert body["path"] == os.path.abspath(served) and body["identity"] == remote.identity(served)
    assert body["token"] and body["token"] != body["secret"]


def test_a_listener_on_the_other_address_family_gets_nothing(served, recorder, monkeypatch):
    """The review's takeover: `localhost` resolved again by the client led to ::1 first,
    where another user listened on the same port and relayed the challenge."""
    _, body = announcement(served)
    try:
        recorder.listen(V6Server, "::1", body["port"])
    except OSError:
        pytest.skip("no IPv6 loopback here")
    real = socket.getaddrinfo

    def v6_first(host, *args, **kwargs):  # a machine whose /etc/hosts lists ::1 localhost first
        if host == "localhost":
            return real("::1", *args, **kwargs) + real("127.0.0.1", *args, **kwargs)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", v6_first)
    code, out = run(served, "chair")
    assert code == 0 and "forged" not in out and "Chair stretch" in out
    assert recorder.asked == []


def test_a_relay_cannot_pass_off_another_answer_with_the_real_proof(served, recorder):
    path, body = announcement(served)
    recorder.relay_to = ("127.0.0.1", body["port"])
    relay = recorder.listen(http.server.ThreadingHTTPServer, "127.0.0.1")
    try:
        path.write_text(json.dumps({**body, "port": relay}))  # the client reached the relay somehow
        assert remote.ask(served, {"q": "chair"}) is None
        assert len(recorder.asked) == 1, "the relay was asked: the proof, not the address, refused it"
        code, out = run(served, "chair")
        assert code == 0 and "forged" not in out
    finally:
        path.write_text(json.dumps(body))


def test_a_dripping_server_is_given_up_on_in_bounded_time(served, recorder, monkeypatch):
    path, body = announcement(served)
    recorder.drip = True
    drip = recorder.listen(http.server.ThreadingHTTPServer, "127.0.0.1")
    monkeypatch.setattr(remote, "ANSWER_SECONDS", 1.0)
    try:
        path.write_text(json.dumps({**body, "port": drip}))
        began = time.monotonic()
        assert remote.ask(served, {"q": "chair"}) is None
        assert time.monotonic() - began < 1.5
        assert recorder.asked
    finally:
        path.write_text(json.dumps(body))


def test_a_symlink_swapped_under_the_server_is_not_answered_for(indexes, tmp_path):
    small, other = indexes
    idx, big, cur = tmp_path / "idx", tmp_path / "big", tmp_path / "cur"
    shutil.copytree(small, idx)
    shutil.copytree(other, big)
    cur.symlink_to(idx)
    proc = start(cur)
    try:
        assert remote.ask(idx, {"q": "chair"}) is not None  # idx is what `cur` serves
        swap = tmp_path / "swap"
        swap.symlink_to(big)
        os.replace(swap, cur)  # ln -sfn big cur
        assert remote.ask(idx, {"q": "chair"}) is None
        code, out = run(idx, "chair", "--limit", "50")
        assert code == 0 and "swapped" not in out and "Chair stretch" in out
    finally:
        stop(proc)


def _get(port: int, target: str, headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", target, headers={"Host": f"127.0.0.1:{port}", **(headers or {})})
    response = conn.getresponse()
    response.read()
    conn.close()
    return response


def test_the_server_answers_no_one_without_its_token(served):
    """Another local user, who cannot read the index folder, cannot read it through the server."""
    _, body = announcement(served)
    port, token = body["port"], body["token"]
    assert _get(port, "/api/search?q=*:*").status == 403
    assert _get(port, "/?q=chair").status == 403
    assert _get(port, "/api/search?q=chair", {remote.TOKEN_HEADER: "guess"}).status == 403
    assert _get(port, "/api/search?q=chair", {remote.TOKEN_HEADER: token}).status == 200
    link = _get(port, f"/?token={token}&q=chair")
    assert link.status == 303 and link.getheader("Location") == "/?q=chair"
    cookie = link.getheader("Set-Cookie").split(";")[0]
    assert "HttpOnly" in link.getheader("Set-Cookie") and "samesite=strict" in link.getheader("Set-Cookie").lower()
    assert _get(port, "/?q=chair", {"Cookie": cookie}).status == 200
    assert _get(port, "/static/app.js").status == 200  # no index data there


def test_kept_alive_requests_do_not_wait_for_delayed_acks(served):
    """Nagle plus the client's delayed ACK held every kept-alive answer's body ~40 ms."""
    _, body = announcement(served)
    conn = http.client.HTTPConnection("127.0.0.1", body["port"], timeout=10)
    times = []
    for _ in range(25):
        began = time.perf_counter()
        conn.request("GET", "/api/search?q=chair", headers={remote.TOKEN_HEADER: body["token"]})
        response = conn.getresponse()
        response.read()
        assert response.status == 200
        times.append(time.perf_counter() - began)
    conn.close()
    assert statistics.median(times[5:]) < 0.030, times


def test_the_listening_socket_has_nodelay_for_its_connections():
    from index.serve.web import _listen

    sock = _listen("127.0.0.1", 0)
    assert sock is not None
    try:
        client = socket.create_connection(sock.getsockname())
        accepted, _ = sock.accept()
        assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        accepted.close()
        client.close()
    finally:
        sock.close()
