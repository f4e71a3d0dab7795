"""Page state kept in the index's page documents (``kind=page``): what a refresh needs
to know about every page it has indexed (content hash, HTTP validators, file size and
mtime, which start reached it), read back without touching the image documents."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from whoosh import index as whoosh_index

from index import _whoosh  # noqa: F401  (applies the project's Whoosh fixes)

__all__ = ["load_page_states"]


def load_page_states(index_dir: str | Path) -> dict[str, dict[str, Any]]:
    """url → page record for every page document of the index ({} when there is none)."""
    path = Path(index_dir)
    if not path.is_dir() or not whoosh_index.exists_in(str(path)):
        return {}
    ix = whoosh_index.open_dir(str(path))
    states: dict[str, dict[str, Any]] = {}
    with ix.searcher() as searcher:
        for docnum in searcher.document_numbers(kind="page"):
            record = json.loads(searcher.stored_fields(docnum)["record"])
            states[record["url"]] = record
    return states
