"""Moved to :mod:`index._whoosh.fixes` (applied once by ``import index``). Kept only for
``index/search.py``'s import until it drops it; nothing else should import this."""

from index._whoosh.fixes import MemoryCursor, apply

__all__ = ["MemoryCursor", "apply"]
