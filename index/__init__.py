"""Whoosh index: schema, writer and search. No Scrapy imports anywhere in this package,
so ``python -m index search`` starts fast.

Importing the package applies the project's Whoosh fixes once (:mod:`index._whoosh`),
so every reader and writer of the index, in any process, behaves the same."""

from index import _whoosh

_whoosh.apply()
