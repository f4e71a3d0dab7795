"""The two ways writing an index fails, shared by every writer module (and the CLI)."""

from __future__ import annotations

__all__ = ["IndexLocked", "WriterError"]


class IndexLocked(RuntimeError):
    """Another process is writing this index."""


class WriterError(RuntimeError):
    """The writer process failed; the message says why."""
