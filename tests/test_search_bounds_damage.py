"""Issue 30 #6, #7: every failure is one line.

A damaged or unreadable index, in every state the review produced, is one line and exit 2
on the command line (never a traceback and exit 1, which scripts read as "no hits"), a
JSON error from the API and the error on the page (never a plain-text 500, never the
previous results); an unreadable folder is not reported as a missing index. The same for
a query nested too deeply for the parser."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from conftest import ROOT, index_main
from helpers import item, write
from index.serve.web import create_app


def _segments(ix: Path) -> list[Path]:
    return sorted(ix.glob("*.seg"), key=lambda p: p.stat().st_size)


def _toc(ix: Path) -> Path:
    return sorted(ix.glob("_MAIN_*.toc"))[-1]


def truncated_segment(ix: Path) -> None:
    seg = _segments(ix)[-1]
    data = seg.read_bytes()
    seg.write_bytes(data[: len(data) // 2])


def empty_segment(ix: Path) -> None:
    _segments(ix)[-1].write_bytes(b"")


def deleted_segment(ix: Path) -> None:
    _segments(ix)[-1].unlink()


def random_toc(ix: Path) -> None:
    toc = _toc(ix)
    toc.write_bytes(random.Random(3).randbytes(toc.stat().st_size))


def empty_toc(ix: Path) -> None:
    _toc(ix).write_bytes(b"")


def unreadable_files(ix: Path) -> None:
    for path in ix.iterdir():
        path.chmod(0)


def unreadable_folder(ix: Path) -> None:
    ix.chmod(0)


DAMAGES: dict[str, Callable[[Path], None]] = {
    f.__name__: f
    for f in (
        truncated_segment,
        empty_segment,
        deleted_segment,
        random_toc,
        empty_toc,
        unreadable_files,
        unreadable_folder,
    )
}
# Permissions do not stop root: these run in a process without the capabilities that
# let root read anything (or need a user who is not root).
PERMISSIONS = {"unreadable_files", "unreadable_folder"}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    index = tmp_path_factory.mktemp("damage") / "ix"
    pages = [item(f"file:///p{n}.md", [f"Chair stretch {n}", f"Upper back {n}"]) for n in range(40)]
    write(index, *pages[:20], procs=1)
    write(index, *pages[20:], procs=1)  # two commits: a damaged segment among healthy ones
    return index


@pytest.fixture
def damaged(pristine, tmp_path, request) -> Path:
    ix = tmp_path / "ix"
    shutil.copytree(pristine, ix)
    DAMAGES[request.param](ix)
    yield ix
    for path in [ix, *ix.iterdir()] if ix.exists() else []:
        os.chmod(path, 0o700)
    os.chmod(ix, 0o700)


def _without_dac(argv: list[str]) -> list[str]:
    if os.getuid() != 0:
        return argv
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: cannot make a file unreadable to this test")
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search", *argv]


@pytest.mark.parametrize("damaged", list(DAMAGES), indirect=True)
def test_the_command_line_says_one_line_and_exits_2(damaged, request):
    argv = [sys.executable, "-m", "index", "search", "--local", "--index", str(damaged), "chair"]
    if request.node.callspec.params["damaged"] in PERMISSIONS:
        argv = _without_dac(argv)
    result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "no index" not in lines[0] and "create it" not in lines[0]


@pytest.mark.parametrize("damaged", sorted(set(DAMAGES) - PERMISSIONS), indirect=True)
def test_the_api_answers_json_and_the_page_shows_the_error(damaged):
    client = TestClient(create_app(damaged), base_url="http://127.0.0.1", raise_server_exceptions=False)
    answer = client.get("/api/search", params={"q": "chair"})
    assert answer.status_code == 503
    assert answer.headers["content-type"] == "application/json"
    assert "\n" not in answer.json()["error"] and answer.json()["error"]
    page = client.get("/", params={"q": "chair"})
    assert page.status_code == 503 and 'id="error"' in page.text
    assert "Chair stretch" not in page.text
    start = client.get("/")  # the start page counts the index: the same one line, not a bare 500
    assert start.status_code == 503 and 'id="error"' in start.text and "cannot read index" in start.text


@pytest.mark.parametrize("command", ["stats", "check"])
@pytest.mark.parametrize("damaged", sorted(set(DAMAGES) - PERMISSIONS), indirect=True)
def test_operating_a_damaged_index_is_one_line_and_exit_2(damaged, command, capsys):
    """`check` is what people run on a damaged index: it must say so, not raise."""
    result = index_main(capsys, command, "--index", str(damaged))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot read index"), result.stderr


def test_a_query_nested_too_deeply_is_one_line_everywhere(pristine):
    deep = "-(" * 330 + "chair" + ")" * 330  # 995 characters: under the length cap
    result = subprocess.run(
        [sys.executable, "-m", "index", "search", "--local", "--index", str(pristine), "--", deep],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "nested" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    client = TestClient(create_app(pristine), base_url="http://127.0.0.1", raise_server_exceptions=False)
    answer = client.get("/api/search", params={"q": deep})
    assert answer.status_code == 400 and "nested" in answer.json()["error"]
    page = client.get("/", params={"q": deep})
    assert page.status_code == 400 and 'id="error"' in page.text


def test_an_unexpected_failure_is_json_from_the_api_and_the_error_on_the_page(pristine, monkeypatch):
    import index.serve.web as web

    def broken(*args, **kwargs):
        raise RuntimeError("something nobody expected\nsecond line")

    monkeypatch.setattr(web, "search", broken)
    client = TestClient(create_app(pristine), base_url="http://127.0.0.1", raise_server_exceptions=False)
    answer = client.get("/api/search", params={"q": "chair"})
    assert answer.status_code == 500 and answer.json() == {
        "error": "search failed: RuntimeError: something nobody expected"
    }
    page = client.get("/", params={"q": "chair"})
    assert page.status_code == 500 and 'id="error"' in page.text
