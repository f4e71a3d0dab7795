"""A resident search server's address, and the client that hands it a query.

A new ``python -m index search`` process spends most of its time before the first
result starting Python's search stack (Whoosh, NumPy: ≈0.5 s) and opening the index's
segments; the page's server (``python -m index serve``) has done both already, and keeps
the decoded arrays warm. So the server announces itself for its index, and the command
line, when that server answers, sends it the query over HTTP and prints its answer
(:func:`index.cli.run_search`), importing neither Whoosh nor NumPy.

Anything unexpected means "search in this process", as before: no announcement, a
stopped server (its file is removed), a server running other code than this process's
(started before an upgrade), a server whose index folder is no longer the one the client
means (a symlink swapped since it started: the announcement names the folder by the path
the user gave and by its identity, device and inode, and the client sends the identity it
means), another program on the port (it cannot answer the challenge: an HMAC, under the
announcement's secret, which never leaves the file, of a fresh nonce *and of the answer's
digest*, so a relay that borrows the real server's proof cannot change the answer), an
error answer (the process search then gives the error message), an answer that does not
arrive whole within :data:`ANSWER_SECONDS` (however slowly it drips).

The client connects to the numeric address the server bound, never to a name it would
resolve again (``localhost`` may be ``::1`` first, where another user can listen on the
same port). It brings the announcement's token, without which the server answers no one:
another local user, who cannot read the index folder, cannot read it through the server.
The announcement lives in a per-user folder of mode 0700 (``$XDG_RUNTIME_DIR/pages-crawler``,
else ``<tmp>/pages-crawler-<uid>``); a folder that another user owns or may write to is not
used.

Only this module's standard-library imports may run on the client's path: see
``tests/test_serve_remote.py::test_the_client_imports_neither_whoosh_nor_numpy``.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import hmac
import ipaddress
import json
import os
import socket
import stat
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from index.api import SERVER_SEARCH_SECONDS

__all__ = [
    "CHALLENGE_HEADER",
    "INDEX_HEADER",
    "PROOF_HEADER",
    "TOKEN_HEADER",
    "announce",
    "announced",
    "announcement_path",
    "ask",
    "identity",
    "proof",
]

# The client sends a fresh nonce; the server answers with proof(secret, nonce). Only the
# announced server knows the secret (the file is the user's own, mode 0600).
CHALLENGE_HEADER = "X-Pages-Challenge"
PROOF_HEADER = "X-Pages-Proof"
# The announcement's token: the server answers only requests that bring it (or the
# page's cookie, set from the URL the server printed).
TOKEN_HEADER = "X-Pages-Token"
# The identity of the index folder the client means: a server whose folder is now
# another one (a symlink swapped) refuses instead of answering for the other index.
INDEX_HEADER = "X-Pages-Index"
CONNECT_SECONDS = 1.0
# The page's time budget and a margin, for the whole answer (not per read: a server that
# drips a byte at a time is as stuck as one that says nothing); past it the process search
# is the better bet.
ANSWER_SECONDS = SERVER_SEARCH_SECONDS + 2.0


def _folder(create: bool) -> Path | None:
    uid = getattr(os, "getuid", lambda: None)()
    if uid is None:  # no per-user folders to trust (Windows): always search in process
        return None
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        folder = Path(runtime) / "pages-crawler"
    else:
        import tempfile

        folder = Path(tempfile.gettempdir()) / f"pages-crawler-{uid}"
    if create:
        with contextlib.suppress(OSError):
            folder.mkdir(mode=0o700, exist_ok=True)
    try:
        st = os.lstat(folder)
    except OSError:
        return None
    # Someone else's folder (made first in a shared /tmp), or one others may write to,
    # could hand the client a server of theirs.
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != uid or st.st_mode & 0o077:
        return None
    return folder


def announcement_path(index_dir: str | os.PathLike[str], create: bool = False) -> Path | None:
    """Where the server of ``index_dir`` announces itself (``None``: nowhere safe)."""
    folder = _folder(create)
    if folder is None:
        return None
    key = hashlib.sha256(os.path.realpath(index_dir).encode("utf-8", "surrogateescape")).hexdigest()[:24]
    return folder / f"serve-{key}.json"


def proof(secret: str, nonce: str, body: bytes = b"") -> str:
    """The server's proof of ``body`` for the client's ``nonce``: only the announced
    server knows ``secret``, and the proof of one answer is worth nothing for another."""
    message = f"{nonce}:{hashlib.sha256(body).hexdigest()}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def identity(index_dir: str | os.PathLike[str]) -> str | None:
    """The index folder's identity (device and inode, through symlinks); None: none."""
    try:
        st = os.stat(index_dir)
    except OSError:
        return None
    return f"{st.st_dev}:{st.st_ino}"


@functools.cache  # the code a process runs is the code it imported: once is enough
def code_version() -> str:
    """A digest of this package's code: a server started before an upgrade runs other
    code than the client's, and may answer differently."""
    digest = hashlib.sha256()
    package = Path(__file__).resolve().parent
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:24]


def connect_host(bind: str) -> str:
    # A server bound to every address is reached on loopback, whose names it always answers.
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "[::]": "::1", "": "127.0.0.1"}.get(bind, bind.strip("[]"))


def _numeric(host: object) -> str | None:
    """``host`` if it is an IP address: a name would be resolved again, maybe elsewhere."""
    try:
        return str(ipaddress.ip_address(str(host)))
    except ValueError:
        return None


def announced(index_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The announcement of a running server of ``index_dir`` (a stale one is removed)."""
    path = announcement_path(index_dir)
    if path is None:
        return None
    found = _read(path)
    if not found or found.get("index") != os.path.realpath(index_dir):
        return None
    if not _alive(found.get("pid")):
        with contextlib.suppress(OSError):
            path.unlink()  # a server stopped by kill -9 left it
        return None
    return found


@contextlib.contextmanager
def announce(
    index_dir: str | os.PathLike[str], host: str, port: int, secret: str, token: str | None = None
) -> Iterator[Path | str]:
    """Announce the server of ``index_dir`` at ``host``:``port`` (the numeric address it
    bound) for the block's duration, with the ``token`` its API requires.

    Yields the announcement's path, or why there is none: another running server of the
    index keeps its own (the client then asks that one), or no private folder to write in."""
    other = announced(index_dir)
    if other is not None and other.get("pid") != os.getpid():
        yield f"server {other.get('pid')} at {other.get('host')}:{other.get('port')} answers for this index"
        return
    path = announcement_path(index_dir, create=True)
    if path is None:
        yield "no private folder for it ($XDG_RUNTIME_DIR, or the temporary folder)"
        return
    body = {
        "pid": os.getpid(),
        "host": connect_host(host),
        "port": port,
        "index": os.path.realpath(index_dir),
        "path": os.path.abspath(index_dir),
        "identity": identity(index_dir),
        "secret": secret,
        "token": token,
        "code": code_version(),
    }
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(body, out)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        yield f"cannot write {path}: {exc}"
        return
    try:
        yield path
    finally:
        if _read(path).get("secret") == secret:  # not a newer server's
            path.unlink(missing_ok=True)


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or not 0 < pid < 2**31:
        return False
    try:
        os.kill(pid, 0)
    except OSError:  # gone, or (EPERM) now another user's process: not our server
        return False
    return True


def ask(index_dir: str | os.PathLike[str], params: Mapping[str, str]) -> dict[str, Any] | None:
    """The ``/api/search`` answer of ``index_dir``'s resident server for ``params``, or
    ``None`` when there is no server to trust, or it did not answer with results."""
    found = announced(index_dir)
    if found is None or found.get("code") != code_version():
        return None
    import http.client
    from urllib.parse import urlencode

    host, port, secret, token = _numeric(found.get("host")), found.get("port"), found.get("secret"), found.get("token")
    if host is None or not isinstance(port, int) or not isinstance(secret, str):
        return None
    means = identity(index_dir)
    if means is None or found.get("identity") != means:
        return None  # the announced folder is not (or no longer) the one asked about
    nonce = os.urandom(16).hex()
    deadline = time.monotonic() + ANSWER_SECONDS
    conn = http.client.HTTPConnection(host, port, timeout=CONNECT_SECONDS)
    watchdog = None
    try:
        conn.connect()
        sock = conn.sock
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        # The whole answer within the deadline: a timeout per read would let a server
        # dripping a byte at a time hold the command line for ever.
        watchdog = threading.Timer(max(0.0, deadline - time.monotonic()), _cut, (sock,))
        watchdog.daemon = True
        watchdog.start()
        headers = {
            "Host": f"[{host}]" if ":" in host else host,
            "Accept": "application/json",
            CHALLENGE_HEADER: nonce,
            INDEX_HEADER: means,
        }
        if isinstance(token, str):
            headers[TOKEN_HEADER] = token
        conn.request("GET", "/api/search?" + urlencode(params), headers=headers)
        response = conn.getresponse()
        body = response.read()
    # ValueError: a query the URL cannot carry (undecodable bytes from the shell), or a
    # port out of range; OverflowError: the same, bigger.
    except (OSError, ValueError, OverflowError, http.client.HTTPException):
        return None
    finally:
        if watchdog is not None:
            watchdog.cancel()
        conn.close()
    if time.monotonic() > deadline:
        return None
    claimed = response.getheader(PROOF_HEADER) or ""
    if response.status != 200 or not hmac.compare_digest(claimed, proof(secret, nonce, body)):
        return None
    try:
        answer = json.loads(body)
    except ValueError:
        return None
    if not isinstance(answer, dict) or not isinstance(answer.get("hits"), list):
        return None
    return answer


def _cut(sock: socket.socket) -> None:
    """Past the deadline: end the connection under the read that is waiting on it."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
