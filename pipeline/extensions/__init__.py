"""Scrapy extensions of the crawl: the progress line and summary, and the monitoring files
(stats JSON, Prometheus metrics).
"""
