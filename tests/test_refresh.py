"""Periodic refresh: unchanged pages cost nothing, the index converges to a clean crawl,
interrupted crawls delete nothing, kill -9 never breaks the index."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import (
    ROOT,
    crawl_in_process,
    image_documents,
    no_stat,
    page_documents,
    sitemap,
    stat,
)

EXAMPLES = ROOT / "examples" / "pages"


def docs(index: Path) -> list[dict]:
    return sorted(image_documents(index), key=lambda d: d["id"])


def toc_files(index: Path) -> list[str]:
    return sorted(p.name for p in index.glob("*.toc"))


def test_unchanged_refresh_writes_nothing(pages, tmp_path):
    index = tmp_path / "index"
    first = crawl_in_process(index, str(pages))
    assert stat(first, "pages/new") == 4
    before, tocs = docs(index), toc_files(index)
    again = crawl_in_process(index, str(pages))
    assert stat(again, "pages/unchanged") == 4
    assert no_stat(again, "images/indexed") and no_stat(again, "index/commits")
    assert toc_files(index) == tocs  # not a single commit
    assert docs(index) == before
    assert "crawl finished: pages seen 4, new 0, changed 0, unchanged 4, deleted 0" in again.stderr


def test_refresh_converges_to_a_clean_crawl(pages, tmp_path):
    index = tmp_path / "index"
    crawl_in_process(index, str(pages))
    (pages / "desk-stretches.md").unlink()
    notes = pages / "notes-without-front-matter.md"
    notes.write_text(notes.read_text() + "![](https://x.test/added.jpg) An added image\n")
    (pages / "sub").mkdir()
    (pages / "sub" / "new.md").write_text("---\ntitle: New\n---\n![](https://x.test/n.jpg) new page\n")
    seed = pages / "chair-exercises-upper-back.md"
    os.utime(seed, ns=(time.time_ns(), time.time_ns() + 10**9))  # touched, same bytes
    result = crawl_in_process(index, str(pages))
    assert (stat(result, "pages/new"), stat(result, "pages/changed"), stat(result, "pages/deleted")) == (1, 1, 1)
    assert stat(result, "pages/unchanged") == 2  # one by size+mtime, one by content hash
    assert stat(result, "images/deleted") == 3
    clean = tmp_path / "clean"
    crawl_in_process(clean, str(pages))
    strip = lambda ds: [{k: v for k, v in d.items() if k != "score"} for d in ds]  # noqa: E731
    assert strip(docs(index)) == strip(docs(clean))
    assert {p["url"] for p in page_documents(index)} == {p["url"] for p in page_documents(clean)}


def test_interrupted_crawl_deletes_nothing(pages, tmp_path):
    index = tmp_path / "index"
    crawl_in_process(index, str(pages))
    (pages / "desk-stretches.md").unlink()
    for name in ("notes-without-front-matter.md", "chair-yoga-basics.json.md"):
        (pages / name).write_text((pages / name).read_text() + "\n![](https://x.test/z.jpg) more\n")
    result = crawl_in_process(index, str(pages), settings={"CLOSESPIDER_ITEMCOUNT": "1"})
    assert result.stats["finish_reason"] == "closespider_itemcount"
    assert no_stat(result, "pages/deleted")
    assert "nothing deleted: the crawl did not finish" in result.stderr
    assert any(p["url"].endswith("desk-stretches.md") for p in page_documents(index))
    finished = crawl_in_process(index, str(pages))
    assert stat(finished, "pages/deleted") == 1


def test_other_starts_are_left_alone(pages, tmp_path):
    index = tmp_path / "index"
    other = tmp_path / "other"
    other.mkdir()
    (other / "o.md").write_text("![](https://x.test/o.jpg) other start\n")
    crawl_in_process(index, str(pages), str(other))
    result = crawl_in_process(index, str(other))  # only one of the two starts this time
    assert no_stat(result, "pages/deleted")
    assert len(page_documents(index)) == 5


def serve_examples(www: Path, base: str, lastmod: str | None = None) -> list[str]:
    """The example pages on the test server, all listed in /sitemap.xml."""
    names = sorted(p.name for p in EXAMPLES.iterdir())
    for name in names:
        shutil.copy(EXAMPLES / name, www / name)
    (www / "sitemap.xml").write_text(sitemap([(f"{base}/{n}", lastmod) for n in names]))
    return names


def test_http_refresh_304_404_500_and_sitemap(tmp_path, http_root):
    www, base, server = http_root
    names = serve_examples(www, base)
    index = tmp_path / "index"
    first = crawl_in_process(index, f"{base}/sitemap.xml")
    assert stat(first, "pages/new") == 4
    assert all("last_modified" in p for p in page_documents(index))

    server.requests.clear()
    again = crawl_in_process(index, f"{base}/sitemap.xml")
    assert stat(again, "pages/unchanged") == 4  # If-Modified-Since → 304, nothing downloaded or parsed
    assert no_stat(again, "images/indexed")

    server.failing.add(f"/{names[0]}")  # 500: keep what we have
    (www / names[1]).unlink()  # 404: gone
    result = crawl_in_process(index, f"{base}/sitemap.xml")
    assert stat(result, "pages/errors") == 1 and stat(result, "pages/gone") == 1
    assert stat(result, "pages/deleted") == 1
    urls = {p["url"] for p in page_documents(index)}
    assert f"{base}/{names[0]}" in urls and f"{base}/{names[1]}" not in urls

    # Dropped from the sitemap: deleted. A sitemap that fails: nothing deleted.
    server.failing.clear()
    (www / "sitemap.xml").write_text(sitemap([(f"{base}/{n}", None) for n in names[2:]]))
    dropped = crawl_in_process(index, f"{base}/sitemap.xml")
    assert stat(dropped, "pages/deleted") == 1
    server.failing.add("/sitemap.xml")
    broken = crawl_in_process(index, f"{base}/sitemap.xml")
    assert no_stat(broken, "pages/deleted")
    assert len(page_documents(index)) == 2


def test_sitemap_lastmod_skips_requests(tmp_path, http_root):
    www, base, server = http_root
    serve_examples(www, base, lastmod="2024-05-01")
    index = tmp_path / "index"
    crawl_in_process(index, f"{base}/sitemap.xml")
    server.requests.clear()
    again = crawl_in_process(index, f"{base}/sitemap.xml")
    assert stat(again, "pages/unchanged") == 4
    assert [r for r in server.requests if r.endswith(".md")] == []


def _wait_gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    status = Path(f"/proc/{pid}/status")
    while time.monotonic() < deadline:
        try:
            if "State:\tZ" in status.read_text():  # exited; waits for init to reap it
                return True
        except OSError:
            return True
        time.sleep(0.05)
    return False


def test_kill_9_at_random_moments_converges(tmp_path):
    """kill -9 the crawl at several random moments: the index always opens and serves
    its last commit, no writer is left behind, and the next run converges exactly."""
    _kill_rounds(tmp_path, int(os.environ.get("KILL_ROUNDS", "5")), int(os.environ.get("KILL_SEED", "5")))


@pytest.mark.slow
def test_kill_9_fifty_times(tmp_path):
    """The long version (make test-slow): 50 kills at random moments."""
    _kill_rounds(tmp_path, 50, 1234)


def _kill_rounds(tmp_path: Path, rounds: int, seed: int) -> None:
    from bench.corpus import generate
    from index.admin import check

    # 12 pages (~950 images) committed every 120 documents: some eight commits for the
    # kills to fall between and into, as 40 pages at 400 gave, at a third of the crawls.
    corpus = tmp_path / "corpus"
    generate(corpus, 12, seed=99)
    clean = tmp_path / "clean"
    crawl_in_process(clean, str(corpus))
    expected = docs(clean)
    index = tmp_path / "index"
    rng = random.Random(seed)
    args = [
        sys.executable,
        "-m",
        "scrapy",
        "crawl",
        "pages",
        "-a",
        f"start={corpus}",
        "-s",
        f"INDEX_DIR={index}",
        "-s",
        "INDEX_COMMIT_DOCS=120",
        "-s",
        "LOG_LEVEL=WARNING",
    ]
    for round_ in range(rounds):
        # Both writers, taking turns on one index: Whoosh's multiprocess writer (the
        # default on 2+ CPUs, whose sub-writers are grandchildren of the crawl) and the
        # plain one.
        procs = ["-s", f"INDEX_WRITER_PROCS={2 if round_ % 2 == 0 else 1}"]
        proc = subprocess.Popen(args + procs, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.8, 3.0))
        family = _kill_9(proc)
        for pid in family:  # each notices its parent is gone and exits by itself
            assert _wait_gone(pid), f"process {pid} outlived the crawl that started it"
        if list(index.glob("*.toc")):
            assert check(index) == []  # opens, and pages and images agree
    final = crawl_in_process(index, str(corpus))
    assert final.returncode == 0
    assert docs(index) == expected
    assert check(index) == []
    assert not list(index.glob("*.tmp")), "a killed writer's sort folders were left behind"


def test_kill_9_while_sub_writers_write(tmp_path):
    """The multiprocess writer's sub-writers are the crawl's grandchildren and hold a copy
    of Whoosh's lock: killed mid-batch, none of them may outlive the crawl, and the next
    crawl (which could not lock the index otherwise) converges."""
    from bench.corpus import generate
    from index.admin import check

    # Sub-writers start with the first batch: a small corpus has them as a large one does.
    corpus = tmp_path / "corpus"
    generate(corpus, 12, seed=7)
    index = tmp_path / "index"
    args = [sys.executable, "-m", "scrapy", "crawl", "pages", "-a", f"start={corpus}", "-s", f"INDEX_DIR={index}"]
    args += ["-s", "INDEX_WRITER_PROCS=2", "-s", "LOG_LEVEL=WARNING"]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    family: list[int] = []
    while time.monotonic() < deadline and proc.poll() is None:
        family = _descendants(proc.pid)
        if len(family) > len(_descendants(proc.pid, depth=1)):
            break  # a grandchild: a sub-writer is running
        time.sleep(0.02)
    else:
        pytest.fail("the crawl never started a sub-writer")
    family = _kill_9(proc)
    for pid in family:
        assert _wait_gone(pid), f"process {pid} outlived the crawl that started it"
    # The command's writer (a writer process, two sub-writers) on the index they left:
    # a lock any of them still held would fail it.
    final = crawl_in_process(index, str(corpus), settings={"INDEX_WRITER_PROCESS": True, "INDEX_WRITER_PROCS": 2})
    assert final.returncode == 0
    clean = tmp_path / "clean"
    crawl_in_process(clean, str(corpus), settings={"INDEX_WRITER_PROCS": "1"})
    assert docs(index) == docs(clean)
    assert check(index) == []
    assert not list(index.glob("*.tmp"))


def _children(pid: int) -> list[int]:
    # Read off /proc, not `pgrep -P`: the sub-writer test polls this every 20 ms, and the
    # pgrep processes took more CPU than the crawl they watched.
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):  # the process or thread is gone
            found += [int(p) for p in task.read_text().split()]
    return found


def _kill_9(proc: subprocess.Popen) -> list[int]:
    """kill -9 the crawl; its descendants, all of them, to wait for. A look at them before
    the kill can miss a sub-writer started just after it, which then outlives the look
    (and left its sort folder in the index after the next crawl had cleaned it): the
    family is stopped first, level by level until no new process appears, the crawl
    killed, the others let go on to notice it."""
    os.kill(proc.pid, signal.SIGSTOP)
    family: list[int] = []
    while new := [pid for pid in _descendants(proc.pid) if pid not in family]:
        for pid in new:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        family += new
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    for pid in family:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
    return family


def _descendants(pid: int, depth: int = 5) -> list[int]:
    found, level = [], [pid]
    for _ in range(depth):
        level = [child for parent in level for child in _children(parent)]
        found += level
    return found


def test_jobdir_pause_and_resume_deletes_exactly_what_one_run_would(pages, tmp_path):
    index = tmp_path / "index"
    crawl_in_process(index, str(pages))
    (pages / "desk-stretches.md").unlink()
    for page in pages.glob("*.md"):
        page.write_text(page.read_text() + "\n![](https://x.test/more.jpg) one more\n")
    job = tmp_path / "job"
    paused = crawl_in_process(index, str(pages), settings={"JOBDIR": str(job), "CLOSESPIDER_ITEMCOUNT": "1"})
    assert no_stat(paused, "pages/deleted")
    assert (job / "pages-seen.txt").exists()
    resumed = crawl_in_process(index, str(pages), settings={"JOBDIR": str(job)})
    assert resumed.stats["finish_reason"] == "finished"
    assert stat(resumed, "pages/deleted") == 1
    assert not (job / "pages-seen.txt").exists()
    clean = tmp_path / "clean"
    crawl_in_process(clean, str(pages))
    strip = lambda ds: [{k: v for k, v in d.items() if k != "score"} for d in ds]  # noqa: E731
    assert strip(docs(index)) == strip(docs(clean))


def test_relative_starts_delete_vanished_pages_whatever_the_spelling(pages, tmp_path):
    # Found late: a page remembered its start as typed (`pages`), while the vanished
    # rule compared absolute paths, so refreshes of relative starts deleted nothing.
    index = tmp_path / "index"
    assert crawl_in_process(index, "pages", cwd=tmp_path).returncode == 0
    (pages / "chair-yoga-basics.json.md").unlink()
    result = crawl_in_process(index, "./pages", cwd=tmp_path)
    assert result.returncode == 0
    assert stat(result, "pages/deleted") == 1
    assert not [d for d in page_documents(index) if d["url"].endswith("chair-yoga-basics.json.md")]
