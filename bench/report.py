"""The figures as bench/RESULTS.md shows them: the preset's table and its ratios, the
partial runs' sections, and the file's update (one section replaced, the others kept).

Formatting only: every function here takes figures already measured, so a saved
``result-*.json`` can be reported again."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from bench.coldstart import COLD_QUERIES
from bench.common import PRESETS, machine

COLD_START_LABEL = (
    f"`python -m index search` cold start to first result, median of {len(COLD_QUERIES)} queries "
    "(two words, three, a typo), best of 2 each"
)
HEADER = "# Benchmark results\n\nWritten by `make bench` / `make bench-large` (`bench/run.py`).\n\n"


# -- pieces of rows ----------------------------------------------------------------------------


def ms(d: dict[str, float], key: str) -> str:
    """``key``'s p50 / p99 in milliseconds."""
    return f"{d[f'{key}_p50']:.1f} / {d[f'{key}_p99']:.1f} ms"


def plain_and_facet(d: dict[str, float], plain: str, facet: str, lead: str = "") -> str:
    """p50 / p99 without a facet, then with `--facet domain` (after ``lead``)."""
    return f"{ms(d, plain)}; {lead}`--facet domain` {ms(d, facet)}"


def writer_rss(crawl_result: dict[str, float]) -> float:
    """The writer's peak memory, counted high: its own peak plus procs times the largest
    sub-writer's (they run side by side, but need not peak at the same moment)."""
    return crawl_result["writer_rss_mb"] + crawl_result["procs"] * crawl_result["subwriter_rss_mb"]


def cold_start_text(cs: dict[str, float]) -> str:
    served = (
        f"; with `python -m index serve` running for the index: {cs['served_ms']:.0f} ms" if "served_ms" in cs else ""
    )
    return (
        f"{cs['empty_ms']:.0f} ms with the array store empty, {cs['stored_ms']:.0f} ms with it holding their arrays "
        f"(imports alone {cs['import_ms']:.0f} ms; Whoosh alone, open + parse + top 10: {cs['whoosh_ms']:.0f} ms)"
        f"{served}"
    )


def cold_start_row(cs: dict[str, float]) -> str:
    return f"| {COLD_START_LABEL} | {cold_start_text(cs)} |"


def latency_rows(ty: dict[str, float]) -> list[str]:
    """Rows for exact, one-typo and word-start latency, with and without a facet."""
    return [
        f"| search p50 / p99, {label}, result cache off | {plain_and_facet(ty, f'{kind}_plain', f'{kind}_facet')} |"
        for kind, label in (("exact", "exact"), ("one_typo", "one typo"), ("prefix", "last word a word start"))
    ]


def typo_rows(ty: dict[str, float], ct: dict[str, float]) -> list[str]:
    """Rows for typo tolerance, word starts and contention."""
    return [
        *latency_rows(ty),
        f"| search p50 / p99, exact queries with `--exact` (no tolerance) | {ms(ty, 'exact_flag')} |",
        f"| `/api/search` fast queries, alone ({int(ct['fast_alone_n'])}) / while {3} clients send slow ones "
        f"({int(ct['fast_loaded_n'])}), p50 / p99 | {ms(ct, 'fast_alone')}; "
        f"{ms(ct, 'fast_loaded')} (slow ones: {ct.get('slow_p50', 0):.0f} / "
        f"{ct.get('slow_p99', 0):.0f} ms, {int(ct.get('slow_n', 0))} sent) |",
    ]


def crawl_rows(e: dict[str, float]) -> list[str]:
    """A crawl's time, rate, index and memory (the partial runs' rows)."""
    return [
        f"| end-to-end crawl, defaults | {e['seconds']:.1f} s, {e['documents']:,.0f} image documents, "
        f"{e['documents'] / e['seconds']:,.0f} docs/s |",
        f"| index | {e['index_mb']:,.0f} MB, {e['segments']:.0f} segments |",
        f"| peak RSS: crawl process / writer counted high (own + {e['procs']:.0f} × sub-writer) | "
        f"{e['crawl_rss_mb']:.0f} / {writer_rss(e):.0f} MB ({e['writer_rss_mb']:.0f} + "
        f"{e['procs']:.0f} × {e['subwriter_rss_mb']:.0f}) |",
    ]


def refresh_rows(rf: dict[str, float]) -> list[str]:
    return [
        f"| refresh, nothing changed / full crawl | {rf['unchanged_seconds']:.1f} s / {rf['full_seconds']:.1f} s = "
        f"{rf['unchanged_seconds'] / rf['full_seconds']:.3f} |",
        f"| refresh, {rf['changed_pages']} of {rf['pages']:,} pages changed (1%) / full crawl | {rf['changed_seconds']:.1f} s = "
        f"{rf['changed_seconds'] / rf['full_seconds']:.3f} |",
    ]


# -- the preset's section ----------------------------------------------------------------------


def _crawl_rows(r: dict[str, Any]) -> list[str]:
    """Rows 1 to 1d and 2b: the crawls, the crawl side and the plainest writer."""
    e, single = r["e2e"], r.get("single")
    rows = [
        f"| 1 | end-to-end `scrapy crawl pages` into a fresh index (defaults: writer process, {int(e['procs'])} Whoosh "
        f"sub-writers) | {e['seconds']:.1f} s, "
        f"{e['pages'] / e['seconds']:.0f} pages/s, {e['documents'] / e['seconds']:,.0f} docs/s; index "
        f"{e.get('index_mb', 0):,.0f} MB in {int(e.get('segments', 0))} segments |",
    ]
    if "inproc" in r:
        i = r["inproc"]
        rows.append(
            f"| 1b | end-to-end, writer inside the crawl process | {i['seconds']:.1f} s, "
            f"{i['documents'] / i['seconds']:,.0f} docs/s |"
        )
    if single:
        rows.append(
            f"| 1c | end-to-end, `-s INDEX_WRITER_PROCS=1` (one plain Whoosh writer) | {single['seconds']:.1f} s, "
            f"{single['documents'] / single['seconds']:,.0f} docs/s; writer peak RSS {single['writer_rss_mb']:.0f} MB |"
        )
    if "crawl_side" in r:
        cs, sa = r["crawl_side"], r["scrapy_alone"]
        rows.append(
            f"| 1d | crawl side only (`-s INDEX_ENABLED=False`) / Scrapy alone (a minimal spider reading the same "
            f"files, one small item per page, no parsing) | {cs['seconds']:.1f} s / {sa['seconds']:.1f} s |"
        )
    if "plainest" in r:
        rows.append(
            f"| 2b | the plainest Whoosh writer: 8 fields (id, caption stemmed, title, site, domain, image_url, "
            f"page_url, date), `limitmb=256`, one commit, same image documents | {r['plainest']['wall_seconds']:.1f} s "
            f"(process start included), {r['plainest']['documents'] / r['plainest']['wall_seconds']:,.0f} docs/s |"
        )
    return rows


def _writer_rows(r: dict[str, Any]) -> list[str]:
    """Rows 2 to 4: the plain and naive writers, the refresh."""
    p, n, rf = r["plain"], r["naive"], r["refresh"]
    return [
        f"| 2 | baseline: plain Whoosh writer, same documents from JSON Lines, one commit | {p['seconds']:.1f} s, "
        f"{p['documents'] / p['seconds']:,.0f} docs/s |",
        f"| 3 | naive baseline: `update_document` + `commit` per document ({n['documents']} docs) | "
        f"{n['documents'] / n['seconds']:,.0f} docs/s |",
        f"| 4 | refresh of {rf['pages']:,} pages: full crawl / unchanged / {rf['changed_pages']} pages (1%) changed | "
        f"{rf['full_seconds']:.1f} s / {rf['unchanged_seconds']:.1f} s / {rf['changed_seconds']:.1f} s |",
    ]


def _search_rows(r: dict[str, Any]) -> list[str]:
    """Rows 5 to 5d: search latency, cold start, typos and the page under slow queries."""
    lat = r["latency"]
    baseline = f'baseline: plain `QueryParser("caption")` + `search` {ms(lat, "baseline")}'
    return [
        f"| 5 | search p50 / p99, limit 10, {PRESETS[r['preset']]['queries']} queries of 1–3 words "
        f"({int(lat['distinct_queries'])} distinct), warm process, result cache on | "
        f"ours {plain_and_facet(lat, 'ours_plain', 'ours_facet', 'with ')} |",
        f"| 5a | the same, result cache emptied before every query (first {int(lat['nocache_queries'])} queries) | "
        f"ours {plain_and_facet(lat, 'ours_plain_nocache', 'ours_facet_nocache', 'with ')}; {baseline} |",
        f"| 5c | the same, result cache and posting arrays emptied before every query (first {int(lat['cold_queries'])}) | "
        f"ours {plain_and_facet(lat, 'ours_plain_cold', 'ours_facet_cold', 'with ')} |",
        f"| 5b | {COLD_START_LABEL} | {cold_start_text(lat['cold_start'])} |",
        *(f"| 5d | {row[2:]}" for row in (typo_rows(r["typos"], r["contention"]) if "typos" in r else [])),
    ]


def _distributed_times(dist: dict[str, float]) -> tuple[float, float, float]:
    """Seconds of 1 crawler, 2 crawlers and the local crawl."""
    return dist["crawlers_1_seconds"], dist["crawlers_2_seconds"], dist["local_seconds"]


def _resource_rows(r: dict[str, Any]) -> list[str]:
    """Rows 6 to 9: memory, per-stage throughput, the page's render, distributed mode."""
    e, p, s, rd, dist = r["e2e"], r["plain"], r["stages"], r["render"], r.get("distributed")
    rows = [
        f"| 6 | peak RSS: crawl process / writer (its process + {int(e['procs'])} × the largest sub-writer) / plain baseline | "
        f"{e['crawl_rss_mb']:.0f} / {writer_rss(e):.0f} ({e['writer_rss_mb']:.0f} + {int(e['procs'])} × "
        f"{e['subwriter_rss_mb']:.0f}) / {p['rss_mb']:.0f} MB |",
        f"| 7 | per stage, one core: parse / domain / caption / build documents | {s['parse_images_per_s']:,.0f} / "
        f"{s['domain_urls_per_s']:,.0f} / {s['caption_per_s']:,.0f} / {s['documents_per_s']:,.0f} images/s |",
        f"| 8 | search page render, server side (4 facets + template), p50 / p99; `/api/search`; CLI `--json`, same queries | "
        f"{ms(rd, 'page')}; {ms(rd, 'api')}; {ms(rd, 'cli_json')} |",
    ]
    if dist:
        d1, d2, dl = _distributed_times(dist)
        rows.append(
            f"| 9 | distributed, {int(dist['pages']):,} pages / {int(dist['documents']):,} docs: local crawl / 1 crawler + "
            f"indexer / 2 crawlers + indexer (Redis) | {dl:.1f} s / {d1:.1f} s / {d2:.1f} s "
            f"({dist['documents'] / d1:,.0f} / {dist['documents'] / d2:,.0f} docs/s; indexed "
            f"{int(dist['crawlers_1_documents']):,} / {int(dist['crawlers_2_documents']):,}) |"
        )
    return rows


def _ratios(r: dict[str, Any]) -> list[str]:
    """The ratios of the same run, each beside its target."""
    e, p, n, lat, rf, s, rd = (r[k] for k in ("e2e", "plain", "naive", "latency", "refresh", "stages", "render"))
    single, dist = r.get("single"), r.get("distributed")
    n_rate = n["documents"] / n["seconds"]
    ratios = [
        f"- end-to-end time / plain-writer baseline time: **{e['seconds'] / p['seconds']:.2f}** (target ≤ 1.15)"
        + (f"; with one plain writer: **{single['seconds'] / p['seconds']:.2f}**" if single else ""),
        f"- end-to-end docs/s ÷ naive baseline docs/s: **{e['documents'] / e['seconds'] / n_rate:.1f}×** (target ≥ 15×)"
        + (f"; with one plain writer: **{single['documents'] / single['seconds'] / n_rate:.1f}×**" if single else ""),
        f"- refresh unchanged / full crawl: **{rf['unchanged_seconds'] / rf['full_seconds']:.3f}** (target ≤ 0.05); "
        f"1% changed / full: **{rf['changed_seconds'] / rf['full_seconds']:.3f}** (target ≤ 0.10)",
        f"- search, result cache off, vs the plain one-field Whoosh baseline (p50 / p99): "
        f"**{lat['ours_plain_nocache_p50'] / lat['baseline_p50']:.2f} / {lat['ours_plain_nocache_p99'] / lat['baseline_p99']:.2f}** "
        f"(targets at 1M: p50 ≤ 20 ms, p99 ≤ 150 ms; cold start ≤ 400 ms)",
        f"- search page render p50 **{rd['page_p50']:.1f} ms** (target ≤ 50 ms at 100k), "
        f"{rd['page_p50'] / rd['cli_json_p50']:.1f}× the CLI's `--json` search",
        f"- domain step {s['domain_urls_per_s']:,.0f} URLs/s (target ≥ 100,000); caption step "
        f"{s['caption_per_s']:,.0f} captions/s (target ≥ 20,000)",
    ]
    if "crawl_side" in r:
        ratios.append(
            f"- crawl side / Scrapy alone (time): **{r['crawl_side']['seconds'] / r['scrapy_alone']['seconds']:.2f}** "
            f"(target ≤ 3, issue 19)"
        )
    if "plainest" in r:
        ratios.append(
            f"- end-to-end time / the plainest writer's: **{e['seconds'] / r['plainest']['wall_seconds']:.2f}** "
            f"(target ≤ 1.0, issue 19)"
            + (f"; with one sub-writer: **{single['seconds'] / r['plainest']['wall_seconds']:.2f}**" if single else "")
        )
    if single:
        ratios.append(
            f"- end-to-end, {int(e['procs'])} sub-writers vs 1 (time): **{e['seconds'] / single['seconds']:.2f}**"
        )
    if dist:
        d1, d2, dl = _distributed_times(dist)
        ratios.append(
            f"- distributed, 2 crawlers vs 1 (time): **{d2 / d1:.2f}**; one indexer vs the local crawl's writer "
            f"(time, same pages): **{d1 / dl:.2f}** — the single Whoosh writer is the ceiling either way"
        )
    if "inproc" in r:
        ratios.append(
            f"- writer process vs writer in the crawl process: **{r['inproc']['seconds'] / e['seconds']:.2f}×** faster"
        )
    return ratios


def preset_section(r: dict[str, Any]) -> str:
    """The preset's RESULTS.md section from a whole run's figures (bench.preset.measure)."""
    m, s = r["machine"], r["stages"]
    lines = [
        f"## `{r['preset']}` preset — {int(s['pages']):,} pages, {int(s['images']):,} image documents",
        "",
        f"Machine: {m['cpu']}, {m['ram']} RAM, Python {m['python']}, {m['os']}; run {m['date']}.",
        f"Command: `python -m bench.run --preset {r['preset']}`",
        "",
        "| # | measurement | result |",
        "|---|---|---|",
        *_crawl_rows(r),
        *_writer_rows(r),
        *_search_rows(r),
        *_resource_rows(r),
        "",
        "Ratios (same run):",
        "",
        *_ratios(r),
        "",
    ]
    return "\n".join(lines)


# -- the partial runs' sections ----------------------------------------------------------------


def partial_section(heading: str, command: str, column: str, rows: list[str]) -> str:
    """A RESULTS.md section for a partial re-run: heading, machine, command, table."""
    m = machine()
    head = [heading, "", f"Machine: {m['cpu']}, {m['ram']} RAM, Python {m['python']}; run {m['date']}."]
    return "\n".join([*head, f"Command: `{command}`", "", f"| measurement | {column} |", "|---|---|", *rows, ""])


def follow_up_rows(e2e: dict[str, float], segments: int, lat: dict[str, Any], sample: int) -> list[str]:
    """`--follow-up`: the crawl and a short search sample of ``sample`` queries."""
    return [
        f"| end-to-end crawl | {e2e['seconds']:.1f} s, {e2e['documents'] / e2e['seconds']:,.0f} docs/s, {segments} segments, "
        f"{e2e['index_mb']:,.0f} MB |",
        f"| peak RSS crawl / writer (with its sub-writers) | {e2e['crawl_rss_mb']:.0f} / {writer_rss(e2e):.0f} MB |",
        f"| search p50 / p99, result cache on (first {sample} queries, {int(lat['distinct_queries'])} distinct) | "
        f"{plain_and_facet(lat, 'ours_plain', 'ours_facet')} |",
        f"| search p50 / p99, cache emptied each query (first {int(lat['nocache_queries'])}) | "
        f"{plain_and_facet(lat, 'ours_plain_nocache', 'ours_facet_nocache')}; plain baseline {ms(lat, 'baseline')} |",
        cold_start_row(lat["cold_start"]),
    ]


def search_follow_up_rows(lat: dict[str, Any], n_queries: int) -> list[str]:
    """`--search-follow-up`: search latency of the full query list, and cold start."""
    return [
        f"| search, {n_queries} queries of 1–3 words, limit 10, warm process, result cache on | "
        f"{plain_and_facet(lat, 'ours_plain', 'ours_facet')} |",
        f"| the same, result cache emptied before every query | "
        f"{plain_and_facet(lat, 'ours_plain_nocache', 'ours_facet_nocache')} |",
        f'| plain `QueryParser("caption")` + `searcher.search` baseline, same queries | {ms(lat, "baseline")} |',
        cold_start_row(lat["cold_start"]),
    ]


# -- RESULTS.md ----------------------------------------------------------------------------------


def update_results(path: Path, prefix: str, section: str) -> None:
    """Replace the sections of RESULTS.md whose heading starts with ``prefix``, keep the others."""
    text = path.read_text("utf-8") if path.exists() else HEADER
    sections = re.split(r"(?m)^(?=## `)", text)
    kept = [sec for sec in sections[1:] if not sec.startswith(prefix)]
    path.write_text(sections[0] + "".join(sorted([*kept, section + "\n"])), "utf-8")
