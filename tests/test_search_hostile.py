"""Issue 16's search findings, each reproduced first: page-state documents, terminal
escapes, sorts, out-of-range dates, argument errors, collapse totals, highlight marks."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_index import item, write

from index.cli import main
from index.search import search


@pytest.fixture(scope="module")
def index(tmp_path_factory) -> Path:
    index = tmp_path_factory.mktemp("hostile-search") / "ix"
    write(
        index,
        item("file:///a.md", ["Upper back stretch", "Chair yoga for seniors"], title="Chair exercises"),
        item("file:///b.md", ["Neck stretch at the desk"], title="Office", author="Bob", date="2019-05-01"),
    )
    return index


def run_main(*argv: str, capsys) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# -- 4: page-state documents are never hits ---------------------------------------------------


@pytest.mark.parametrize("query", ["*:*", "-stretch", "NOT stretch", "url:*", "kind:page", "id:*", "page_url:*"])
def test_no_query_shape_returns_page_state_documents(index, query):
    hits = search(index, query, limit=200, collapse=False).hits
    assert all("front_matter" not in h and h.get("position") is not None for h in hits), query
    assert search(index, query, limit=200, collapse=False).total == len(hits)
