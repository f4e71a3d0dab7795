"""A resident search server's address, and the client that hands it a query.

A new ``python -m index search`` process spends most of its time before the first
result starting Python's search stack (Whoosh, NumPy: ≈0.5 s) and opening the index's
segments; the page's server (``python -m index serve``) has done both already, and keeps
the decoded arrays warm. So the server announces itself for its index, and the command
line, when that server answers, sends it the query over HTTP and prints its answer
(:func:`index.cli.run_search`), importing neither Whoosh nor NumPy.

Anything unexpected means "search in this process", as before: no announcement, a
stopped server (its file is removed), another program on the port (it cannot send the
server's token), an error answer (the process search then gives the error message), a
timeout. The announcement lives in a per-user folder of mode 0700
(``$XDG_RUNTIME_DIR/pages-crawler``, else ``<tmp>/pages-crawler-<uid>``); a folder that
another user owns or may write to is not used.

Only this module's standard-library imports may run on the client's path: see
``tests/test_remote.py::test_the_client_imports_neither_whoosh_nor_numpy``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

__all__ = ["TOKEN_HEADER", "announce", "announcement_path", "ask"]

# Sent with every API answer; the client trusts an answer only when it carries the token
# of the announcement it read (a restarted server, or another program on the port, not).
TOKEN_HEADER = "X-Pages-Server"
CONNECT_SECONDS = 1.0
# The API's own time budget is a few seconds (index.web.SEARCH_SECONDS); past this, the
# server is stuck and the process search is the better bet.
ANSWER_SECONDS = 30.0


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


def _connect_host(bind: str) -> str:
    # A server bound to every address is reached on loopback, whose names it always answers.
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "[::]": "::1", "": "127.0.0.1"}.get(bind, bind.strip("[]"))


@contextlib.contextmanager
def announce(index_dir: str | os.PathLike[str], host: str, port: int, token: str) -> Iterator[Path | None]:
    """Announce the server of ``index_dir`` at ``host``:``port`` for the block's duration."""
    path = announcement_path(index_dir, create=True)
    if path is not None:
        body = {
            "pid": os.getpid(),
            "host": _connect_host(host),
            "port": port,
            "index": os.path.realpath(index_dir),
            "token": token,
        }
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(body, out)
            os.replace(tmp, path)
        except OSError:
            path = None
    try:
        yield path
    finally:
        if path is not None and _read(path).get("token") == token:  # not a newer server's
            path.unlink(missing_ok=True)


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # alive, another user's: its port may still be ours to ask
        return True
    return True


def ask(index_dir: str | os.PathLike[str], params: Mapping[str, str]) -> dict[str, Any] | None:
    """The ``/api/search`` answer of ``index_dir``'s resident server for ``params``, or
    ``None`` when there is no server to trust, or it did not answer with results."""
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
    import http.client
    from urllib.parse import urlencode

    host, port, token = str(found.get("host")), found.get("port"), found.get("token")
    if not isinstance(port, int) or not isinstance(token, str):
        return None
    conn = http.client.HTTPConnection(host, port, timeout=CONNECT_SECONDS)
    try:
        conn.connect()
        conn.sock.settimeout(ANSWER_SECONDS)
        conn.request(
            "GET",
            "/api/search?" + urlencode(params),
            headers={"Host": f"[{host}]" if ":" in host else host, "Accept": "application/json"},
        )
        response = conn.getresponse()
        body = response.read()
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()
    if response.status != 200 or response.getheader(TOKEN_HEADER) != token:
        return None
    try:
        answer = json.loads(body)
    except ValueError:
        return None
    if not isinstance(answer, dict) or not isinstance(answer.get("hits"), list):
        return None
    return answer
