"""Mapping tables of the normalizers (data, not code): platforms, proxies, publishers."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

__all__ = ["load_table"]


def load_table(name: str) -> dict[str, Any]:
    """A JSON table of this package, without its `_comment`-style keys."""
    table = json.loads(resources.files(__name__).joinpath(name).read_text("utf-8"))
    return {k: v for k, v in table.items() if not k.startswith("_")}
