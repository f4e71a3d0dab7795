"""Scaling model of a crawl's writer side, from CPU-seconds measured on this machine.

    .venv/bin/python -m bench.scaling --pages 300 [--repeat 2]

Wall time says little on a shared 2-core machine; CPU-seconds per 1,000 image documents
of each process do not depend on how many cores there are or who else runs, so they are
what is measured here, and the docs/s at 8, 16 and 32 cores are computed from them:

- the crawl process, with ``INDEX_ENABLED=False`` and with indexing (the second less the
  writer processes' share: building documents and handing them to the writer);
- the writer process that feeds the sub-writers (what it does between commits), one
  sub-writer (all sub-writers' CPU-seconds over the documents: each document goes to one),
  and the commits, which run in the writer process while it feeds nobody;
- the serial merge of segments (``index optimize``'s work, which the merge policy does
  inside a commit when a commit leaves small segments behind).

The writer side is measured twice: inside real crawls (the total CPU of the crawl and its
descendants) and by feeding the same documents to :class:`index.writing.process.WriterProcess`
from here, which returns each process's CPU-seconds in its stats.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import pickle
import shutil
import time
from pathlib import Path
from typing import Any

from bench.common import DEFAULT_WORK, children_cpu_s, corpus, crawl, page_files

__all__ = ["Costs", "measure", "model", "report"]


def crawl_cpu(folder: Path, index: Path, settings: dict[str, str]) -> dict[str, float]:
    """A real ``scrapy crawl`` (bench.common.crawl) and the CPU-seconds of it and every
    process it started (the writer, the sub-writers: each waits for its children)."""
    before = children_cpu_s()
    result = crawl(folder, index, settings)
    result["cpu_s"] = children_cpu_s() - before
    return result


def crawl_pages(folder: Path) -> tuple[list[list[dict[str, Any]]], dict[str, float]]:
    """Each page's documents as the crawl's IndexWriter pipeline hands them to the
    writer (the same steps, in the same order), and CPU-seconds of the per-page work that
    moves between processes with the mode: ``build``, what indexing adds to a local crawl
    process (build the documents, pickle them for the writer process); ``encode``, what a
    distributed crawler does instead (the page as JSON for the Redis stream); ``ingest``,
    what ``index ingest`` does per page before its writer (decode, validate, build the
    documents, the page's refresh state as JSON)."""
    from index.distributed.ingest import state_of
    from index.model.contract import page_problem
    from index.model.documents import page_documents
    from pipeline import steps
    from pipeline.items import PageItem
    from pipeline.parsing import parse_page

    out = []
    cpu = {"build": 0.0, "encode": 0.0, "ingest": 0.0}
    for path in page_files(folder):
        st = path.stat()
        page = parse_page(path.resolve().as_uri(), path.read_bytes())
        item = PageItem.from_page(page, fetch={"start": str(folder), "size": st.st_size, "mtime": st.st_mtime_ns})
        steps.normalize_domains(item.url, item.images)
        steps.normalize_captions(item.url, item.images)
        steps.mark_duplicates(item.images)
        t0 = time.process_time()
        docs = page_documents(steps.stamped_page(item))
        pickle.dumps(("page", docs), pickle.HIGHEST_PROTOCOL)
        t1 = time.process_time()
        text = json.dumps(steps.stamped_page(item), ensure_ascii=False)
        t2 = time.process_time()
        received = json.loads(text)
        assert not page_problem(received)
        page_documents(received)
        json.dumps(state_of(received), sort_keys=True)
        t3 = time.process_time()
        cpu["build"] += t1 - t0
        cpu["encode"] += t2 - t1
        cpu["ingest"] += t3 - t2
        out.append(docs)
    return out, cpu


def writer_side(pages: list[list[dict[str, Any]]], index: Path, procs: int) -> dict[str, float]:
    """The crawl's writer process fed from here: its own CPU-seconds (feeding plus
    commits) and its sub-writers'."""
    from index.writing.process import WriterProcess

    shutil.rmtree(index, ignore_errors=True)
    proc = WriterProcess(index, procs=procs)
    proc.start()
    t0 = time.perf_counter()
    for docs in pages:
        proc.add_page(docs)
    stats = proc.close()
    return {
        "seconds": time.perf_counter() - t0,
        "documents": stats["documents"],
        "writer_cpu_s": stats["cpu_s"],
        "commit_cpu_s": stats["commit_cpu_s"],
        "subwriter_cpu_s": stats["subwriter_cpu_s"],
        "procs": stats["procs"],
    }


def merge_cpu(index: Path) -> dict[str, float]:
    """CPU-seconds of merging every segment of ``index`` into one, in this process: the
    serial work a commit does when the merge policy picks segments."""
    from whoosh import index as whoosh_index

    ix = whoosh_index.open_dir(str(index))
    segments = len(ix._segments())
    docs = ix.doc_count_all()
    cpu = time.process_time()
    ix.writer(limitmb=256).commit(optimize=True)
    return {"segments": segments, "documents": docs, "cpu_s": time.process_time() - cpu}


@dataclasses.dataclass
class Costs:
    """CPU-seconds per 1,000 image documents (best of the repeats), each less what the
    same process spends on a one-page run (starting Python, importing, spawning)."""

    crawl_alone: float  # crawl process, INDEX_ENABLED=False
    build: float  # what indexing adds to the crawl process: documents, pickling
    encode: float  # distributed: what a crawler does instead (the page as JSON for Redis)
    ingest: float  # distributed: index ingest before its writer (decode, validate, documents)
    crawl_total: dict[int, float]  # whole crawl (every process), by sub-writers
    plain_writer: float  # procs=1: the writer process does everything
    feeder: float  # procs=2: writer process between commits (job files for the sub-writers)
    commit: dict[int, float]  # the writer process inside its commits, by sub-writers
    subwriter: float  # procs=2: one document through one sub-writer
    merge: float  # merging segments, per merged document
    documents: int
    merge_segments: int
    startup: dict[str, float]  # CPU-seconds of each one-page run

    @property
    def crawl_indexing(self) -> float:
        return self.crawl_alone + self.build

    def check(self, procs: int) -> float:
        """The whole crawl's CPU less the sum of its parts (0 if the parts add up)."""
        parts = self.crawl_indexing + (
            self.plain_writer if procs == 1 else self.feeder + self.commit[2] + self.subwriter
        )
        return self.crawl_total[procs] - parts


CRAWLS = {
    "crawl_alone": {"INDEX_ENABLED": "False"},
    "crawl_1": {"INDEX_WRITER_PROCS": "1"},
    "crawl_2": {"INDEX_WRITER_PROCS": "2"},
}


def one_page(work: Path, folder: Path) -> Path:
    small = work / "scaling" / "one-page"
    if not small.exists():
        small.mkdir(parents=True)
        first = page_files(folder)[0]
        shutil.copy(first, small / first.name)
    return small


def measure(work: Path, pages: int, repeat: int) -> tuple[Costs, dict[str, Any]]:
    folder = corpus(work, pages)
    index = work / "scaling" / "index"
    small = one_page(work, folder)
    batches, moved = crawl_pages(folder)
    first, _ = crawl_pages(small)
    raw: dict[str, list[dict[str, float]]] = {}
    # Interleaved: each repeat measures everything once, so drift in the machine's load
    # touches every figure alike; the best of the repeats is kept.
    for _ in range(repeat):
        for name, settings in CRAWLS.items():
            raw.setdefault(name, []).append(crawl_cpu(folder, index, settings))
            raw.setdefault(f"{name}_startup", []).append(crawl_cpu(small, index, settings))
        for procs in (1, 2):
            raw.setdefault(f"writer_{procs}", []).append(writer_side(batches, index, procs))
            if procs == 2:  # the sub-writers' segments, as a commit leaves them
                raw.setdefault("merge", []).append(merge_cpu(index))
            raw.setdefault(f"writer_{procs}_startup", []).append(writer_side(first, index, procs))

    documents = int(raw["writer_1"][0]["documents"])
    k = 1000 / documents

    def best(name: str, key: str) -> float:
        """Per 1,000 documents, less the one-page run's."""
        return (min(r[key] for r in raw[name]) - min(r[key] for r in raw[f"{name}_startup"])) * k

    merged = raw["merge"][0]
    costs = Costs(
        crawl_alone=best("crawl_alone", "cpu_s"),
        build=moved["build"] * k,
        encode=moved["encode"] * k,
        ingest=moved["ingest"] * k,
        crawl_total={p: best(f"crawl_{p}", "cpu_s") for p in (1, 2)},
        plain_writer=best("writer_1", "writer_cpu_s"),
        feeder=best("writer_2", "writer_cpu_s") - best("writer_2", "commit_cpu_s"),
        commit={p: best(f"writer_{p}", "commit_cpu_s") for p in (1, 2)},
        subwriter=best("writer_2", "subwriter_cpu_s"),
        merge=min(r["cpu_s"] for r in raw["merge"]) * 1000 / merged["documents"],
        documents=documents,
        merge_segments=int(merged["segments"]),
        startup={
            name.removesuffix("_startup"): min(
                r.get("cpu_s", r.get("writer_cpu_s", 0) + r.get("subwriter_cpu_s", 0)) for r in runs
            )
            for name, runs in raw.items()
            if name.endswith("_startup")
        },
    )
    return costs, raw


# -- the model ----------------------------------------------------------------------------


def _rate(cost_per_1000: float) -> float:
    """Documents per second of one core busy with a cost of CPU-seconds per 1,000."""
    return 1000 / cost_per_1000 if cost_per_1000 > 0 else math.inf


@dataclasses.dataclass
class Plan:
    cores: int
    crawlers: int
    subwriters: int
    docs_per_s: float
    limit: str


def model(
    c: Costs, cores: int, subwriters: int, crawlers: int = 1, *, distributed: bool = False, commit_docs: int = 100_000
) -> Plan:
    """docs/s of ``crawlers`` crawl processes, one feeding process and ``subwriters``
    sub-writers on ``cores`` cores:

        min(crawlers × crawl rate, feeder rate, sub-writers × sub-writer rate,
            cores / CPU-seconds of one document in all processes)

    with the serial part then added in time: the feeder's commits and, when the merge
    policy merges each commit's segments again (:func:`merged_share`), that merge; the
    feeder feeds nobody meanwhile (the crawl fills the bounded queue, then waits).
    ``distributed`` is several crawlers feeding ``index ingest`` through Redis: the
    crawlers encode pages as JSON instead of building documents, and the ingest process
    (the feeder) decodes them and builds the documents."""
    share = merged_share(subwriters, commit_docs)
    serial = (c.commit[2] + share * c.merge) / 1000  # seconds per document, one core
    crawl = c.crawl_alone + c.encode if distributed else c.crawl_indexing
    feeder = c.feeder + (c.ingest if distributed else 0.0)
    total = crawl + feeder + c.subwriter  # CPU-seconds per 1,000 documents, every process
    limits = {
        "crawl process" if crawlers == 1 else f"{crawlers} crawl processes": crawlers * _rate(crawl),
        "feeding process": _rate(feeder),
        f"{subwriters} sub-writers": subwriters * _rate(c.subwriter),
        "cores": cores * _rate(total),
    }
    limit = min(limits, key=lambda name: limits[name])
    rate = 1 / (1 / limits[limit] + serial)
    if share:
        limit += " + merge"
    return Plan(cores, crawlers, subwriters, rate, limit)


def best_distributed(c: Costs, cores: int, scaled_commits: bool = False) -> Plan:
    """The numbers of crawlers and sub-writers (processes share the cores: the model's
    ``cores`` limit counts the CPU they all need) that the model rates fastest; with ``scaled_commits``, ``INDEX_COMMIT_DOCS`` raised to
    10,000 per sub-writer, so that no commit's segments are small enough to merge again."""
    plans = [
        model(c, cores, n, k, distributed=True, commit_docs=max(100_000, 10_000 * n) if scaled_commits else 100_000)
        for k in range(1, cores + 1)
        for n in range(1, cores + 1)
    ]
    # The fewest processes among the fastest.
    return max(plans, key=lambda plan: (round(plan.docs_per_s), -plan.crawlers - plan.subwriters))


def merged_share(subwriters: int, commit_docs: int = 100_000, segment_max_docs: int = 100_000) -> float:
    """Share of documents that index.writing.merging's policy merges once more: every commit
    leaves one segment per sub-writer of ``commit_docs / subwriters`` documents, and
    segments under a tenth of ``segment_max_docs`` are merged at a later commit (with
    one sub-writer or two, as here, they never are)."""
    return 1.0 if commit_docs / subwriters < max(1, segment_max_docs // 10) else 0.0


# -- the report ---------------------------------------------------------------------------


def report(c: Costs, pages: int, repeat: int) -> str:
    from index.writing.pagewriter import auto_procs

    rows = []
    for cores in (2, 4, 8, 16, 32):
        procs = auto_procs(0, cpus=cores)
        local = model(c, cores, procs)
        wide = model(c, cores, cores)
        dist = best_distributed(c, cores)
        scaled = best_distributed(c, cores, scaled_commits=True)
        rows.append(
            f"| {cores} | {procs}: {local.docs_per_s:,.0f} ({local.limit}) "
            f"| {wide.subwriters}: {wide.docs_per_s:,.0f} ({wide.limit}) "
            f"| {dist.crawlers} + 1 + {dist.subwriters}: {dist.docs_per_s:,.0f} ({dist.limit}) "
            f"| {scaled.crawlers} + 1 + {scaled.subwriters}: {scaled.docs_per_s:,.0f} ({scaled.limit}) |"
        )
    f = lambda x: f"{x:.3f}"  # noqa: E731
    r = lambda x: f"{_rate(x):,.0f}"  # noqa: E731
    return "\n".join(
        [
            "### Scaling model (issue 19)",
            "",
            f"`python -m bench.scaling --pages {pages} --repeat {repeat}`: {c.documents:,} image documents; "
            "CPU-seconds (user + system) of each process per 1,000 image documents, less what the same "
            f"process spends on a one-page run (startup, imports, spawning); best of {repeat}, interleaved. "
            "CPU-seconds, not wall time: they do not depend on the number of cores or on the machine's load.",
            "",
            "| process | CPU-s / 1,000 docs | docs/s of one core |",
            "|---|---|---|",
            f"| crawl process, `INDEX_ENABLED=False` (read, parse, normalize) | {f(c.crawl_alone)} | {r(c.crawl_alone)} |",
            f"| what indexing adds to it (build documents, pickle them for the writer) | {f(c.build)} | |",
            f"| crawl process when indexing | {f(c.crawl_indexing)} | {r(c.crawl_indexing)} |",
            f"| distributed crawler: the page as JSON for Redis instead | {f(c.encode)} | |",
            f"| `index ingest` per page before its writer (decode, validate, documents, state) | {f(c.ingest)} "
            f"| {r(c.ingest)} |",
            f"| one plain writer (`INDEX_WRITER_PROCS=1`), all of it | {f(c.plain_writer)} | {r(c.plain_writer)} |",
            f"| of which its commit (sort, write the segment) | {f(c.commit[1])} | |",
            f"| writer process feeding sub-writers (job files), between commits | {f(c.feeder)} | {r(c.feeder)} |",
            f"| writer process inside its commits, 2 sub-writers | {f(c.commit[2])} | |",
            f"| one sub-writer, per document it indexes | {f(c.subwriter)} | {r(c.subwriter)} |",
            f"| merging segments, per merged document ({c.merge_segments} segments into one) | {f(c.merge)} "
            f"| {r(c.merge)} |",
            f"| whole crawl, 1 sub-writer (every process; parts sum to it ± {f(abs(c.check(1)))}) "
            f"| {f(c.crawl_total[1])} | |",
            f"| whole crawl, 2 sub-writers (every process; parts sum to it ± {f(abs(c.check(2)))}) "
            f"| {f(c.crawl_total[2])} | |",
            "",
            "docs/s at N cores = min(crawl processes × crawl rate, feeder rate, sub-writers × sub-writer rate, "
            "N / CPU-seconds of a document in every process), then the feeder's serial commit work added in "
            "time, and the merge too when the merge policy merges every commit's segments again (more than 10 "
            "sub-writers at the default `INDEX_COMMIT_DOCS` and `INDEX_SEGMENT_MAX_DOCS`: each sub-writer's "
            "segment is then under a tenth of the maximum). Local: one crawl process, the writer process, and "
            "the default sub-writers (`INDEX_WRITER_PROCS=0`), or one per core (no cap). Distributed "
            "(`pipeline/distributed.py`): k crawl processes feed one `index ingest` through Redis, which builds "
            "the documents and feeds the sub-writers (Redis itself not counted); the best split shown.",
            "",
            "| cores | local, default sub-writers: docs/s (limit) | local, N sub-writers (no cap) | distributed: "
            "crawlers + ingest + sub-writers: docs/s (limit) | distributed, `INDEX_COMMIT_DOCS` = 10,000 × "
            "sub-writers |",
            "|---|---|---|---|---|",
            *rows,
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--raw", type=Path, help="also write every measurement here (JSON)")
    parser.add_argument("--load", type=Path, help="measure nothing: the report of a --raw file")
    args = parser.parse_args()
    if args.load:
        saved = json.loads(args.load.read_text())["costs"]
        for name in ("crawl_total", "commit"):
            saved[name] = {int(k): v for k, v in saved[name].items()}
        costs = Costs(**saved)
    else:
        costs, raw = measure(DEFAULT_WORK, args.pages, args.repeat)
        if args.raw:
            args.raw.write_text(json.dumps({"costs": dataclasses.asdict(costs), "raw": raw}, indent=1))
    print(report(costs, args.pages, args.repeat))


if __name__ == "__main__":
    main()
