"""Moved to :mod:`index._whoosh.fixes` (applied once by ``import index``). Kept only for
``tests/test_index.py``'s import of ``MemoryCursor`` until it imports it from there;
nothing else should import this."""

from index._whoosh.fixes import MemoryCursor, apply

__all__ = ["MemoryCursor", "apply"]
