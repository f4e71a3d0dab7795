"""Settings that the index side reads as well as the crawl, with their defaults, defined
once: how the index is written (``INDEX_*``, :class:`WriterOptions`) and when a refresh
may delete (``REFRESH_*``, :class:`DeletionGuard`).

The crawl reads them from Scrapy's settings (``pipeline.settings`` takes its defaults
from here, ``pipeline.pipelines`` builds the options from the crawler's settings);
``python -m index ingest`` the writer options from its ``-s NAME=VALUE`` options. Values
given as text are read the way Scrapy's ``getint``/``getfloat``/``getbool`` read them,
so ``-s INDEX_WRITER_PROCS=1`` means the same to both.

No Scrapy and no Whoosh here: Scrapy's settings module imports this.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Self

__all__ = ["DEFAULTS", "DeletionGuard", "WriterOptions", "default_index_dir", "megabytes_from_env", "parse_settings"]


# The search processes' cache of decoded arrays, kept in the index folder
# (index.fast.store); not part of the index, and not counted in its size.
ARRAY_STORE_FILE = "pages-arrays.sqlite"


def default_index_dir() -> str:
    """Where the index lives unless ``INDEX_DIR`` says otherwise: ``$PAGES_INDEX``, else
    ``data/index``."""
    return os.environ.get("PAGES_INDEX", "data/index")


def megabytes_from_env(name: str, default_mb: int, minimum: int = 0) -> int:
    """The byte bound set by the environment variable ``name`` in MiB (``default_mb``
    when unset, empty or not a number), at least ``minimum`` MiB."""
    try:
        mb = int(os.environ.get(name) or default_mb)
    except ValueError:
        mb = default_mb
    return max(minimum, mb) * 2**20


def _setting(name: str, default: Any) -> Any:
    return field(default=default, metadata={"setting": name})


class _FromSettings:
    """Options whose every field is set by the setting named in its metadata."""

    @classmethod
    def settings(cls) -> dict[str, str]:
        """Setting name → field name."""
        return {f.metadata["setting"]: f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]

    @classmethod
    def from_settings(cls, values: Mapping[str, Any]) -> Self:
        """The options named in ``values`` (setting name → value or its text; None and
        absent names keep the default); ValueError, one line, on a value that does not
        read as its type. Names that are not settings of these options are ignored."""
        kinds = {f.name: f.type for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        chosen: dict[str, Any] = {}
        for setting, name in cls.settings().items():
            value = values.get(setting)
            if value is not None:
                chosen[name] = _read(setting, value, kinds[name])
        return cls(**chosen)


@dataclass(frozen=True)
class WriterOptions(_FromSettings):
    """Every option of an index writer, each with the Scrapy setting that sets it."""

    commit_docs: int = _setting("INDEX_COMMIT_DOCS", 100_000)
    commit_seconds: float = _setting("INDEX_COMMIT_SECONDS", 60.0)
    segment_max_docs: int = _setting("INDEX_SEGMENT_MAX_DOCS", 100_000)
    limitmb: int = _setting("INDEX_WRITER_LIMITMB", 256)
    procs: int = _setting("INDEX_WRITER_PROCS", 0)
    multisegment: bool = _setting("INDEX_WRITER_MULTISEGMENT", True)
    lock_wait: bool = _setting("INDEX_LOCK_WAIT", False)
    # How the crawl hands pages to the writer (ingest always writes in its own process).
    writer_process: bool = _setting("INDEX_WRITER_PROCESS", True)
    queue_pages: int = _setting("INDEX_QUEUE_PAGES", 64)

    def page_writer(self) -> dict[str, Any]:
        """The keyword arguments of :class:`index.writing.pagewriter.PageWriter`."""
        return {
            "commit_docs": self.commit_docs,
            "commit_seconds": self.commit_seconds,
            "limitmb": self.limitmb,
            "procs": self.procs,
            "multisegment": self.multisegment,
            "lock_wait": self.lock_wait,
            "segment_max_docs": self.segment_max_docs,
        }


DEFAULTS = WriterOptions()


@dataclass(frozen=True)
class DeletionGuard(_FromSettings):
    """The mass-deletion guard of a refresh (:func:`index.deletion.plan_deletions`'s
    keyword arguments): a start that would lose more than ``max_share`` of its pages,
    and more than ``few``, deletes none of them unless ``accept_mass_delete``."""

    max_share: float = _setting("REFRESH_MAX_DELETE_SHARE", 0.2)
    few: int = _setting("REFRESH_MAX_DELETE_FEW", 5)
    accept_mass_delete: bool = _setting("REFRESH_ACCEPT_MASS_DELETE", False)

    def plan_deletions(self) -> dict[str, Any]:
        """The keyword arguments of :func:`index.deletion.plan_deletions`."""
        return dataclasses.asdict(self)


def _read(setting: str, value: Any, kind: Any) -> Any:
    # Annotations are strings here (``from __future__ import annotations``).
    kind = getattr(kind, "__name__", kind)
    try:
        if kind == "bool":
            return _bool(value)
        if kind == "int":
            return int(value)
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{setting}={value!r} is not {'an' if kind == 'int' else 'a'} {kind}") from None


def _bool(value: Any) -> bool:
    """As Scrapy's ``Settings.getbool``: 1/0, True/False, "1"/"0", "True"/"true"/"False"/"false"."""
    try:
        return bool(int(value))
    except ValueError:
        if value in ("True", "true"):
            return True
        if value in ("False", "false"):
            return False
        raise


def parse_settings(pairs: Iterable[str]) -> dict[str, str]:
    """``NAME=VALUE`` texts (``-s`` options) → {NAME: VALUE}; ValueError on a text without
    ``=`` or on a name that is not a writer setting (a typo must not pass silently)."""
    known = WriterOptions.settings()
    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        name = name.strip()
        if not sep:
            raise ValueError(f"-s {pair!r}: expected NAME=VALUE")
        if name not in known:
            raise ValueError(f"-s {name}: not a writer setting (one of {', '.join(sorted(known))})")
        out[name] = value
    return out
