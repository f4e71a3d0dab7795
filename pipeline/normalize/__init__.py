"""The normalizers, pure functions: image URLs and domains (:mod:`.domains`), captions
(:mod:`.captions`)."""

from __future__ import annotations

from types import ModuleType

__all__ = ["clear_caches"]


def clear_caches(*modules: ModuleType) -> None:
    """Empty every cache of the given normalizer modules (both when none is named), so
    that a timed run pays for the work it measures, as a fresh crawl process does."""
    if not modules:
        from pipeline.normalize import captions, domains

        modules = (captions, domains)
    for module in modules:
        for value in vars(module).values():
            if hasattr(value, "cache_clear"):
                value.cache_clear()
