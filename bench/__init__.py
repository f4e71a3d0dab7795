"""Benchmarks: what a crawl, its index and its searches cost, measured against baselines
in the same run and written to bench/RESULTS.md.

    run.py          the command line (`python -m bench.run --preset small`, `make bench`)
    preset.py       a whole preset, every measurement in order; partial.py: a part again
    report.py       the RESULTS.md tables and ratios from measured figures
    common.py       presets, the corpus (corpus.py), the crawl as a process, work dir, queries
    stages.py       per-stage throughput of the pure steps, and the baselines' documents
    baselines.py    Scrapy alone and the plain, naive and plainest Whoosh writers
    refresh.py      a refresh unchanged and 1% changed; distributed.py: crawlers + indexer
    search.py       warm search latency, typos and word starts; coldstart.py: a new process
    page.py         the search page rendered, and its API under slow queries
    crawlside.py, fields.py, scaling.py, replicate.py: issue 19's and 18's own studies
"""
