"""The merge policy of every commit: bounded segments, small ones merged, big ones
rewritten only when a third of them is deleted documents."""

from __future__ import annotations

from typing import Any

__all__ = ["merge_bounded"]


def merge_bounded(max_docs: int) -> Any:
    """A Whoosh merge policy for an index that is refreshed often: a commit merges the
    *small* segments (under a tenth of ``max_docs``) together once there are a few, and
    rewrites a big segment only when a third of it is deleted documents; it never builds
    a segment bigger than ``max_docs``.

    Whoosh's MERGE_SMALL keeps merging into ever larger segments, and an earlier version
    of this policy merged every segment that fit under ``max_docs``: either way a refresh
    that changed 1% of the pages rewrote most of the index (44 s of a 67 s crawl at 100k
    documents). Now such a commit writes its own small segment and marks deletions in the
    big ones. `python -m index optimize` merges everything."""
    from whoosh.reading import SegmentReader

    from index import _whoosh  # noqa: F401  (applies the project's Whoosh fixes)

    small = max(1, max_docs // 10)

    def policy(writer: Any, segments: list[Any]) -> list[Any]:
        candidates = [s for s in segments if s.doc_count_all() < small]
        candidates += [s for s in segments if s.doc_count_all() >= small and s.deleted_count() * 3 > s.doc_count_all()]
        reclaim = any(s.doc_count_all() >= small for s in candidates)
        if len(candidates) < 4 and not reclaim:
            return segments
        merge, total = [], 0
        for seg in sorted(candidates, key=lambda s: s.doc_count()):
            if total + seg.doc_count() <= max_docs:
                merge.append(seg)
                total += seg.doc_count()
        if len(merge) < 2 and not any(seg.has_deletions() for seg in merge):
            return segments
        for seg in merge:
            reader = SegmentReader(writer.storage, writer.schema, seg)
            writer.add_reader(reader)
            reader.close()
        merged = {id(seg) for seg in merge}
        return [seg for seg in segments if id(seg) not in merged]

    return policy
