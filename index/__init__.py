"""Whoosh index: schema, writer and search. No Scrapy imports anywhere in this package.

Importing the package imports nothing else: ``python -m index search`` with a resident
server (:mod:`index.serve.remote`) must not pay for Whoosh or NumPy. The project's Whoosh fixes
are applied by :mod:`index._whoosh` when it is first imported, and every module of the
package that imports Whoosh imports it (``tests/test_serve_remote.py`` checks), so every
reader and writer of the index, in any process, behaves the same."""
