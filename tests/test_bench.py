"""The benchmark's own code: its modules import without cycles and share no state a runner
rewrites, its in-process measurements run against the current search code, and its report
formats every row from the figures alone."""

from __future__ import annotations

import ast
import re
import shutil
from pathlib import Path

import pytest

from bench import partial, report, run, tenmillion
from bench.distributed import distributed
from bench.page import page_render
from bench.replicate import replicate
from bench.search import search_latency, typo_latency
from helpers import item, write

BENCH = Path(__file__).resolve().parent.parent / "bench"
MODULES = sorted(BENCH.glob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_bench_module_imports_no_bench_module_inside_a_function(path: Path) -> None:
    # An import of a sibling inside a function is how a cycle between them was dodged.
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for inner in ast.walk(node):
                names = []
                if isinstance(inner, ast.Import):
                    names = [a.name for a in inner.names]
                elif isinstance(inner, ast.ImportFrom):
                    names = [inner.module or ""]
                assert not [n for n in names if n == "bench" or n.startswith("bench.")], (path.name, node.name)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_bench_module_rewrites_no_global_at_run_time(path: Path) -> None:
    # The work dir is a parameter: no `globals()[...] =`, `global X` or `bench.x.Y = ...`.
    source = path.read_text("utf-8")
    tree = ast.parse(source)
    assert "globals()" not in source
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.Global)]
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                assert not (isinstance(target, ast.Attribute) and ast.unparse(target).startswith("bench.")), path.name


def test_every_partial_flag_has_its_run() -> None:
    flags = {a.dest for a in run.parser()._actions if a.const is True and a.dest != "inprocess"}
    assert flags == set(partial.RUNS)


def test_partial_runs_look_in_the_work_dir_they_are_given(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match=re.escape(str(tmp_path / "index-e2e"))):
        run.main(["--preset", "tiny", "--cold-start", "--work", str(tmp_path), "--results", str(tmp_path / "R.md")])


@pytest.fixture(scope="module")
def small_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    index = tmp_path_factory.mktemp("bench") / "index"
    captions = ["upper back stretch", "seated chair yoga", "neck pain relief", "desk posture exercises"]
    write(index, *(item(f"https://example.com/p{n}", captions[n:] + captions[:n]) for n in range(4)), procs=1)
    return index


QUERIES = ["chair yoga", "upper back", "stretch", "posture exercises"]


def test_search_latency_measures_every_mode_on_the_current_search_code(small_index: Path) -> None:
    # The cold mode empties the posting arrays through the search side's current names.
    lat = search_latency(small_index, QUERIES, nocache=3, cold=2)
    for label in ("plain", "facet"):
        for mode in ("", "_nocache", "_cold"):
            assert lat[f"ours_{label}{mode}_p50"] <= lat[f"ours_{label}{mode}_p99"]
    assert (lat["nocache_queries"], lat["cold_queries"], lat["distinct_queries"]) == (3, 2, 4)
    assert lat["baseline_p50"] <= lat["baseline_p99"]


def test_typo_latency_and_page_render_run_on_the_current_search_code(small_index: Path) -> None:
    ty = typo_latency(small_index, QUERIES)
    assert {f"{k}_{f}_p50" for k in ("exact", "one_typo", "prefix") for f in ("plain", "facet")} <= set(ty)
    rd = page_render(small_index, QUERIES)
    assert set(rd) == {f"{k}_{p}" for k in ("page", "api", "cli_json") for p in ("p50", "p99")}


def test_replicate_appends_copies_that_search_finds(small_index: Path, tmp_path: Path) -> None:
    from index.search.run import search

    target = tmp_path / "big"
    assert replicate(small_index, target, 2) == 2 * (docs := replicate(small_index, tmp_path / "one", 1))
    assert replicate(small_index, target, 1, append=True) == 3 * docs
    assert (
        search(target, "chair yoga", collapse=False).total
        == 3 * search(small_index, "chair yoga", collapse=False).total
    )


def test_tenmillion_measures_in_process_and_reports(small_index: Path, tmp_path: Path) -> None:
    # The 10M steps record into the work dir; the in-process step runs on any index there.
    shutil.copytree(small_index, tmp_path / "index-10m")
    for facet in (False, True):
        tenmillion.inproc(tmp_path, facet, 4)
    table = tenmillion.report(tmp_path)
    assert "| in the process | " in table and "–" not in table.split("| in the process | ")[1].split("\n")[0]


class Figures(dict):
    """Any figure a row asks for: 2.0 (and never empty: the report skips an empty part)."""

    def __init__(self) -> None:
        super().__init__(measured=1)

    def __missing__(self, key: str) -> float:
        return 2.0


def _result(**drop: bool) -> dict:
    parts = "stages e2e single inproc crawl_side scrapy_alone plainest plain naive refresh latency typos contention"
    r = {"preset": "tiny", "machine": {k: k for k in ("date", "cpu", "ram", "python", "os")}}
    r |= {k: Figures() for k in (*parts.split(), "distributed", "render") if not drop.get(k)}
    r["latency"]["cold_start"] = Figures()
    return r


@pytest.mark.parametrize("drop", [{}, {"single": True, "inproc": True, "distributed": True, "typos": True}])
def test_preset_section_has_its_rows_in_order(drop: dict[str, bool]) -> None:
    text = report.preset_section(_result(**drop))
    numbers = re.findall(r"(?m)^\| (\w+) \|", text)
    expected = "1 1b 1c 1d 2b 2 3 4 5 5a 5c 5b 5d 5d 5d 5d 5d 6 7 8 9".split()
    gone = {"single": ["1c"], "inproc": ["1b"], "distributed": ["9"], "typos": ["5d"]}
    assert numbers == [n for n in expected if not any(n in gone[k] for k in drop)]
    assert text.startswith("## `tiny` preset — 2 pages, 2 image documents\n")
    assert "Ratios (same run):" in text


def test_update_results_replaces_only_its_own_section(tmp_path: Path) -> None:
    path = tmp_path / "RESULTS.md"
    report.update_results(path, "## `b` preset", "## `b` preset\n\nold b")
    report.update_results(path, "## `a` cold start", "## `a` cold start\n\na")
    report.update_results(path, "## `b` preset", "## `b` preset\n\nnew b")
    assert path.read_text() == report.HEADER + "## `a` cold start\n\na\n## `b` preset\n\nnew b\n"


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("redis-server"), reason="redis-server not installed")
def test_distributed_row_indexes_every_page_with_one_and_two_crawlers(tmp_path: Path) -> None:
    # The indexer's idle exit counts from its start: started beside crawlers slower to
    # start than that (a loaded machine), it exited having indexed nothing.
    out = distributed(tmp_path, 20)
    assert out is not None
    assert out["documents"] > 0
    assert out["crawlers_1_documents"] == out["crawlers_2_documents"] == out["documents"]
