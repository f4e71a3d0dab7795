"""Benchmarks: what a crawl, its index and its searches cost, measured against baselines
in the same run and written to bench/RESULTS.md.

run.py is the command line, preset.py and partial.py the runs, report.py the tables,
common.py what they share; each other module opens by saying what it measures.
"""
