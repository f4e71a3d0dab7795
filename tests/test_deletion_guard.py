"""The mass-deletion guard is defined once (index.options.DeletionGuard): plan_deletions'
defaults are its defaults, and the distributed run's end (ingest.finish_run, what
`python -m index ingest --finish` calls) applies it as the local crawl does. In process:
a fake Redis holding the run's keys, a fake writer recording what it deletes."""

from __future__ import annotations

import dataclasses
import inspect
import io
from typing import Any

import pytest

from index import cli
from index.deletion import plan_deletions
from index.distributed import ingest
from index.options import DeletionGuard, WriterOptions

START = "https://a.test/sitemap.xml"
STATES = {f"https://a.test/p{i}": {"start": START} for i in range(10)}
SEEN = {f"https://a.test/p{i}" for i in range(4)}  # 6 of 10 vanished: over the default guard
VANISHED = sorted(set(STATES) - SEEN)


def test_plan_deletions_defaults_are_the_guards():
    params = inspect.signature(plan_deletions).parameters
    defaults = {name: params[name].default for name in DeletionGuard().plan_deletions()}
    assert defaults == dataclasses.asdict(DeletionGuard())


@pytest.mark.parametrize("vanished", range(11))
def test_no_guard_given_is_the_default_guard(vanished):
    seen = set(sorted(STATES)[vanished:])
    assert plan_deletions(STATES, [START], seen) == plan_deletions(
        STATES, [START], seen, **DeletionGuard().plan_deletions()
    )


class FakeRedis:
    """The keys finish_run reads: a run whose one start was listed to its end."""

    def __init__(self) -> None:
        keys = ingest.KEYS.of_run("r1")
        self.sets: dict[str, set[str]] = {keys.seen: set(SEEN), keys.incomplete: set()}
        self.hashes: dict[str, dict[str, str]] = {keys.listings: {START: "0"}, keys.listed: {START: "4"}}
        self.deleted_state: list[str] = []

    def get(self, key: str) -> str | None:
        return "r1" if key == ingest.KEYS.run else None

    def eval(self, script: str, numkeys: int, *args: str) -> int:
        return 0  # no work left; the run's end

    def exists(self, key: str) -> int:
        return 0

    def xlen(self, key: str) -> int:
        return 0

    def smembers(self, key: str) -> set[str]:
        return set(self.sets.get(key, ()))

    def hgetall(self, key: str) -> dict[str, str]:
        return dict(self.hashes.get(key, {}))

    def hdel(self, key: str, *fields: str) -> None:
        self.deleted_state.extend(fields)

    def delete(self, *keys: str) -> None:
        for key in keys:
            self.sets.pop(key, None)
            self.hashes.pop(key, None)


@pytest.fixture
def run(monkeypatch):
    """finish_run against a fake run; returns (what the writer deleted, its options)."""
    written: dict[str, Any] = {"deleted": [], "options": None}

    class FakeWriter:
        def __init__(self, index_dir: str, **options: Any) -> None:
            written["options"] = options

        def open(self) -> None:
            pass

        def delete_pages(self, urls: list[str]) -> None:
            written["deleted"].extend(urls)

        def close(self) -> dict[str, int]:
            return {}

    monkeypatch.setattr(ingest, "connect", lambda url: FakeRedis())
    monkeypatch.setattr(ingest, "load_page_states", lambda index_dir: dict(STATES))
    monkeypatch.setattr(ingest, "PageWriter", FakeWriter)
    return written


@pytest.mark.parametrize(
    ("guard", "deleted"),
    [
        (None, []),
        ({}, []),
        (DeletionGuard(), []),
        ({"accept_mass_delete": True}, VANISHED),
        (DeletionGuard(accept_mass_delete=True), VANISHED),
        (DeletionGuard(few=6), VANISHED),  # 6 vanished: not more than few
        (DeletionGuard(max_share=0.6), VANISHED),  # 6 of 10: not more than the share
        (DeletionGuard(max_share=0.59), []),
    ],
)
def test_finish_run_applies_the_guard_it_is_given(run, guard, deleted):
    plan = ingest.finish_run("redis://fake", "/nonexistent/ix", guard=guard)
    assert plan.delete == deleted == run["deleted"]
    assert plan.refused == ({} if deleted else {START: (6, 10)})


def test_finish_run_refuses_what_is_not_a_guard_field(run):
    with pytest.raises(TypeError):
        ingest.finish_run("redis://fake", "/nonexistent/ix", guard={"max_delete": 1})


def test_ingest_finish_uses_the_settings_and_the_flag(run, monkeypatch, tmp_path):
    """`python -m index ingest --finish -s ...`: the deletion writes with the -s writer
    settings, and --accept-mass-delete lets the mass deletion through (exit 0, not 25)."""
    monkeypatch.setattr(ingest, "ingest", lambda *args, **kwargs: ingest.IngestStats())
    monkeypatch.setattr(cli.sys, "stdout", io.StringIO())
    monkeypatch.setattr(cli.sys, "stderr", io.StringIO())
    argv = ["ingest", "--redis", "redis://fake", "--index", str(tmp_path), "--finish", "-s", "INDEX_WRITER_PROCS=1"]
    assert cli.main(argv) == 25 and run["deleted"] == []
    assert cli.main([*argv, "--accept-mass-delete"]) == 0
    assert run["deleted"] == VANISHED
    assert run["options"] == WriterOptions(procs=1).page_writer()
