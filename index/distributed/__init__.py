"""Distributed crawling's index side: the Redis key protocol shared with the crawlers, and
the one indexer that writes what they push.
"""
