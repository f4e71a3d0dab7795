"""`python -m index search` handing its query to a resident `python -m index serve` of the
same index (index.serve.remote): the same output as searching in the process, without importing
Whoosh or NumPy, and a search in the process whenever the server cannot be trusted
(stopped, replaced, another program on its port, an unsafe folder, an error answer).

The server is a real `python -m index serve` process: the announcement is its business."""

from __future__ import annotations

import argparse
import ast
import http.server
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from conftest import FIXTURES, ROOT, crawl_in_process, free_port
from index.cli import BOLD, add_search_arguments, main, one_line_errors, run_search
from index.search import run as search_module
from index.serve import remote

EXAMPLES = ROOT / "examples" / "pages"


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(scope="module")
def index(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("remote") / "pages"
    shutil.copytree(EXAMPLES, folder)
    index = folder.parent / "index"
    assert crawl_in_process(index, str(folder)).returncode == 0
    return index


@pytest.fixture(scope="module")
def server(index, tmp_path_factory) -> Iterator[subprocess.Popen[bytes]]:
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(  # any free port: the announcement says which
            [sys.executable, "-m", "index", "serve", "--index", str(index), "--port", "0"],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        path = remote.announcement_path(index, create=True)
        assert path is not None
        deadline = time.monotonic() + 120  # a loaded CI machine starts Python slowly
        while remote.ask(index, {"q": "chair"}) is None:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the server never answered"
            time.sleep(0.1)
        assert "is answered here" in log.read_text()
    except BaseException:
        proc.kill()
        raise
    yield proc
    proc.terminate()
    proc.wait(timeout=10)
    assert not path.exists(), "a stopped server leaves no announcement"


def run(index: Path, *args: str, out: io.StringIO | None = None) -> tuple[int, str, str]:
    out = out if out is not None else io.StringIO()
    err = io.StringIO()
    parser = one_line_errors(argparse.ArgumentParser(), "search")  # reads `--sort -date`
    add_search_arguments(parser)
    opts = parser.parse_args(list(args))
    code = run_search(opts, str(index), out, err)
    return code, out.getvalue(), err.getvalue()


def without_timing(text: str) -> str:
    # The last line says how long the search took: the one thing allowed to differ.
    return "\n".join(line for line in text.splitlines() if " results in " not in line)


class FellBack(Exception):
    """The command searched in its own process: the server's answer was not taken."""


def served(index: Path, *args: str, tty: bool = False) -> tuple[int, str, str]:
    """``run`` where the answer must come from the server. A server may turn a search away
    when it cannot give it a thread within its queue wait (a 503, which a starved CI
    machine can cause with nothing else asked): the command then searches in its own
    process, as it should, so the search is asked again. A server that is not trusted
    would make every attempt fall back."""

    def refuse(*a: object, **k: object) -> None:
        raise FellBack

    for _ in range(5):
        with pytest.MonkeyPatch.context() as m:
            m.setattr(search_module, "search", refuse)
            try:
                return run(index, *args, out=Tty() if tty else None)
            except FellBack:
                continue
    pytest.fail("searched in the process: the server's answer was never taken")


QUERIES = [
    ("chair", "yoga"),
    ("strech",),  # a typo: the corrections line
    ("upper", "bac"),  # a word start
    ("chair", "--facet", "domain,site,board", "--limit", "7"),
    ("stretch", "--sort", "-date", "--page", "2", "--limit", "3"),
    ("stretch", "--site", "YouTube", "--no-collapse"),
    ("exercise", "--since", "2019-01-01", "--exact"),
    ('"upper back"', "OR", "neck*"),
]


@pytest.mark.parametrize("args", QUERIES, ids=lambda a: " ".join(a))
def test_the_server_answers_exactly_as_the_process(index, server, args):
    local = run(index, "--local", *args)
    local_json = run(index, "--local", "--json", *args)
    local_tty = run(index, "--local", *args, out=Tty())
    answer = served(index, *args)
    answer_json = served(index, "--json", *args)
    answer_tty = served(index, *args, tty=True)
    assert local[0] == answer[0] == 0
    assert without_timing(answer[1]) == without_timing(local[1])
    assert answer_json == local_json
    assert without_timing(answer_tty[1]) == without_timing(local_tty[1])
    if args[0] != '"upper back"':
        assert BOLD in answer_tty[1]


def test_no_results_and_its_suggestion_come_back_too(index, server):
    local = [run(index, "--local", *args) for args in (("strech", "--exact"), ("--json", "strech", "--exact"))]
    answers = [served(index, *args) for args in (("strech", "--exact"), ("--json", "strech", "--exact"))]
    assert [without_timing(r[1]) for r in answers] == [without_timing(r[1]) for r in local]
    assert answers[1] == local[1] == (1, "", "no results; did you mean: stretch?\n")
    assert "Did you mean: stretch?" in answers[0][1]


def test_an_error_is_the_process_search_own_message(index, server):
    served = run(index, "chair", "--facet", "colour")
    local = run(index, "--local", "chair", "--facet", "colour")
    assert served == local
    assert served[0] == 2 and served[2].startswith("error: unknown facet 'colour'")
    assert run(index, "(chair") == run(index, "--local", "(chair")


def test_the_server_sees_a_refresh(index, server, tmp_path):
    assert served(index, "hostile")[0] == 1
    folder = index.parent / "pages"
    shutil.copy(FIXTURES / "hostile" / "hostile.md", folder)
    assert crawl_in_process(index, str(folder)).returncode == 0
    code, out, _ = served(index, "--json", "hostile")
    assert code == 0 and len(out.splitlines()) == 3


def test_the_client_imports_neither_whoosh_nor_numpy(index, server):
    probe = (
        "import sys, io, contextlib\n"
        "from index.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    code = main(['search', '--index', {str(index)!r}, 'chair', 'yoga', '--facet', 'domain'])\n"
        "print(code, sorted(m for m in ('whoosh', 'numpy', 'index.search.run', 'scrapy') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.stdout.split(" ", 1) == ["0", "[]\n"], result.stderr


# --- when the server is not to be trusted -----------------------------------------------------


def announce_by_hand(index_dir: Path, **fields: object) -> Path:
    path = remote.announcement_path(index_dir, create=True)
    assert path is not None
    body = {"pid": os.getpid(), "host": "127.0.0.1", "port": free_port(), "index": os.path.realpath(index_dir)}
    body["identity"] = remote.identity(index_dir)
    path.write_text(json.dumps({**body, "secret": "s3cret", "code": remote.code_version(), **fields}))
    return path


class Impostor(http.server.BaseHTTPRequestHandler):
    """Another program on the announced port: it answers like the API, and claims a proof."""

    asked: ClassVar[list[str]] = []

    def do_GET(self):
        body = json.dumps({"query": "x", "hits": [{"headline": "forged"}], "total": 1}).encode()
        Impostor.asked.append(self.headers.get(remote.CHALLENGE_HEADER, ""))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header(remote.PROOF_HEADER, remote.proof("a guess", self.headers.get(remote.CHALLENGE_HEADER, "")))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def impostor() -> Iterator[int]:
    Impostor.asked = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Impostor)
    # A short poll: shutdown() waits for it (0.5 s by default, at every teardown).
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    yield httpd.server_address[1]
    httpd.shutdown()


@pytest.fixture
def unserved(tmp_path, monkeypatch) -> Iterator[Path]:
    """The module's index, as a copy that no real server announces."""
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "runtime"))
    (tmp_path / "runtime").mkdir(mode=0o700)
    yield tmp_path


def test_a_stopped_server_leaves_the_process_search_and_its_file_goes(index, unserved):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    path = announce_by_hand(index, pid=gone.pid)
    code, out, _ = run(index, "chair")
    assert code == 0 and "chair" in out.lower()
    assert not path.exists()


def test_nobody_on_the_port_means_the_process_search(index, unserved):
    announce_by_hand(index)  # this process is alive, its port closed
    started = time.monotonic()
    assert run(index, "chair")[0] == 0
    assert time.monotonic() - started < 30


def test_another_program_on_the_port_is_not_trusted(index, unserved, impostor):
    announce_by_hand(index, port=impostor)
    code, out, _ = run(index, "chair")
    assert len(Impostor.asked) == 1 and len(Impostor.asked[0]) == 32, "the client asked, with a fresh nonce"
    assert code == 0 and "forged" not in out


def test_a_server_running_other_code_is_not_asked(index, unserved, impostor):
    announce_by_hand(index, port=impostor, code="before-the-upgrade")
    assert run(index, "chair")[0] == 0
    assert Impostor.asked == []


def test_a_query_the_url_cannot_carry_is_searched_in_the_process(index, unserved, impostor):
    announce_by_hand(index, port=impostor)
    code, _, err = run(index, "chair", "caf\udce9")  # undecodable bytes from the shell
    assert code in (0, 1) and "Traceback" not in err
    assert Impostor.asked == []


def test_an_announcement_for_another_index_is_not_used(index, unserved, tmp_path):
    path = announce_by_hand(index, index=str(tmp_path))
    assert remote.ask(index, {"q": "chair"}) is None
    assert path.exists()


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o755])
def test_a_folder_others_may_write_is_not_used(index, unserved, tmp_path, mode):
    folder = tmp_path / "runtime" / "pages-crawler"
    folder.mkdir(mode=0o700)
    folder.chmod(mode)
    assert remote.announcement_path(index, create=True) is None
    with remote.announce(index, "127.0.0.1", 1, "t") as announcement:
        assert announcement == "no private folder for it ($XDG_RUNTIME_DIR, or the temporary folder)"
    assert list(folder.iterdir()) == []


def test_a_symlinked_folder_is_not_used(index, unserved, tmp_path):
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o700)
    (tmp_path / "runtime" / "pages-crawler").symlink_to(target)
    assert remote.announcement_path(index, create=True) is None


def test_a_running_server_keeps_its_announcement(index, unserved):
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        path = announce_by_hand(index, pid=other.pid, secret="theirs")
        with remote.announce(index, "0.0.0.0", 8000, "ours") as announcement:
            assert (
                announcement
                == f"server {other.pid} at 127.0.0.1:{json.loads(path.read_text())['port']} answers for this index"
            )
        assert json.loads(path.read_text())["secret"] == "theirs"
    finally:
        other.kill()
        other.wait()
    # Once it is gone, its file is stale: the next server takes its place.
    with remote.announce(index, "::", 8001, "ours") as announcement:
        assert announcement == path
        body = json.loads(path.read_text())
        assert (body["host"], body["port"], body["pid"]) == ("::1", 8001, os.getpid())
        assert oct(path.stat().st_mode & 0o777) == oct(0o600)
        announce_by_hand(index, secret="newer")  # replaced meanwhile: not ours to remove
    assert json.loads(path.read_text())["secret"] == "newer"
    with remote.announce(index, "127.0.0.1", 8002, "ours") as announcement:
        assert announcement == path
    assert not path.exists()


def test_serve_on_a_taken_port_is_one_line_and_announces_nothing(index, unserved):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "index", "serve", "--index", str(index), "--port", str(port)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: cannot listen on 127.0.0.1:{port}: ") and result.stderr.count("\n") == 1
    assert not list((unserved / "runtime").rglob("serve-*"))


def test_local_flag_and_main(index, unserved, capsys):
    assert main(["search", "--index", str(index), "--local", "chair"]) == 0
    assert "chair" in capsys.readouterr().out.lower()


# --- `import index` loads nothing; whoever imports Whoosh gets the fixes ------------------------


def _imports_whoosh(node: ast.AST) -> bool:
    if isinstance(node, ast.Import):
        return any(a.name == "whoosh" or a.name.startswith("whoosh.") for a in node.names)
    return isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "whoosh" and not node.level


def _imports_fixes(node: ast.AST) -> bool:
    if isinstance(node, ast.Import):
        return any(a.name.startswith("index._whoosh") for a in node.names)
    if isinstance(node, ast.ImportFrom):
        module = node.module or ""
        return module.startswith("index._whoosh") or (
            module == "index" and any(a.name == "_whoosh" for a in node.names)
        )
    return False


def test_every_whoosh_import_applies_the_project_fixes():
    """The fixes are applied by importing index._whoosh (no longer by `import index`): a
    module, or a function with its own import, that imports Whoosh must import that too."""
    offenders = []
    whoosh_layer = ROOT / "index" / "_whoosh"  # importing any of it runs its __init__, which applies them
    sources = [*(ROOT / "index").rglob("*.py"), *(ROOT / "pipeline").rglob("*.py")]
    for path in sorted(p for p in sources if whoosh_layer not in p.parents):
        tree = ast.parse(path.read_text())
        module_fixed = any(_imports_fixes(n) for n in tree.body)
        for scope in [tree, *(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef))]:
            body = scope.body
            direct = [n for n in body if isinstance(n, ast.Import | ast.ImportFrom)]
            if any(_imports_whoosh(n) for n in direct) and not (module_fixed or any(_imports_fixes(n) for n in direct)):
                offenders.append(f"{path.relative_to(ROOT)}:{getattr(scope, 'name', '<module>')}")
    assert offenders == []


def test_import_index_loads_nothing_and_index_whoosh_applies_the_fixes():
    probe = (
        "import sys, index\n"
        "print(sorted(m for m in ('whoosh', 'numpy', 'index._whoosh') if m in sys.modules))\n"
        "import index.model.schema, index._whoosh\n"
        "print(index._whoosh._applied)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.stdout.splitlines() == ["[]", "True"], result.stderr
