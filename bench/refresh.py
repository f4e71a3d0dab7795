"""A refresh (row 4): the same folder crawled again into its index, unchanged and then with
1% of its pages changed, each as a ratio to the full crawl of the same run."""

from __future__ import annotations

import random
from pathlib import Path

from bench.common import crawl, page_files


def refresh(folder: Path, index: Path, full: dict[str, float] | None = None) -> dict[str, float]:
    """A full crawl of ``folder`` (or the one given), then a refresh of it unchanged,
    then with 1% of the pages changed. Ratios are to the full crawl of the same run."""
    if full is None:
        full = crawl(folder, index)
    unchanged = crawl(folder, index, keep=True)
    files = page_files(folder)
    changed_files = random.Random(3).sample(files, max(1, len(files) // 100))
    for f in changed_files:
        with f.open("a", encoding="utf-8") as out:
            out.write("[ ![](https://changed.example.com/new.jpg)](https://changed.example.com/) A changed page\n")
    changed = crawl(folder, index, keep=True)
    return {
        "pages": len(files),
        "full_seconds": full["seconds"],
        "full_documents": full["documents"],
        "unchanged_seconds": unchanged["seconds"],
        "changed_pages": len(changed_files),
        "changed_seconds": changed["seconds"],
        "changed_indexed": changed["documents"],
    }
