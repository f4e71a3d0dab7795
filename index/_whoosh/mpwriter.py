"""Whoosh's multiprocess writer made safe to fail.

Overrides private parts of ``whoosh.multiproc`` (``MpWriter._new_task``, ``_commit``,
``cancel``, its ``jobqueue``/``resultqueue``, ``SubWriterTask.join``) and
multiprocessing's ``Process._Popen``: written against whoosh-reloaded 2.7.5, which
pyproject.toml pins below 2.8.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
from typing import Any

from whoosh.multiproc import MpWriter, SubWriterTask

from index.errors import WriterError
from index.writing.parentwatch import die_with_parent

__all__ = ["SafeMpWriter"]


class _SubWriter(SubWriterTask):
    """A Whoosh sub-writer that dies with the writer process that started it (an orphan
    would go on waiting for work forever after a kill -9)."""

    def __init__(self, *args: Any, siblings: list[Any]) -> None:
        super().__init__(*args)
        self.parent = os.getpid()
        self.siblings = siblings

    # Spawned, never forked: the writer may run inside the crawl process (Twisted's
    # threads, which a fork would copy mid-flight), and a fork would hand the sub-writer
    # copies of the lock file descriptors.
    _Popen = staticmethod(mp.get_context("spawn").Process._Popen)

    def __getstate__(self) -> dict[str, Any]:
        # Spawning pickles this object; the siblings (started processes) stay here.
        return {k: v for k, v in self.__dict__.items() if k != "siblings"}

    def run(self) -> None:
        die_with_parent(self.parent)
        super().run()

    def join(self, timeout: float | None = None) -> None:
        """``MpWriter._commit`` joins each sub-writer without a timeout. A sub-writer
        killed while it held the job queue's lock leaves the others waiting for that
        lock forever, so once a sibling has died, stop waiting and stop this one too:
        the commit then fails for want of their results (see :class:`_Guarded`)."""
        if timeout is not None:
            return super().join(timeout)
        while self.exitcode is None:
            super().join(0.5)
            if self.exitcode is None and any(t.exitcode not in (None, 0) for t in self.siblings):
                self.kill()
                super().join()
        return None


class _Guarded:
    """A queue between ``MpWriter`` and its sub-writers, as the parent uses it, that
    notices dead sub-writers. Whoosh commits without the documents of a sub-writer that
    sent no result (it died: out of memory, disk full), and waits forever to hand a job
    to sub-writers that are all dead. Both raise here instead, before the new table of
    contents is written, so the index keeps its last commit."""

    def __init__(self, real: Any, tasks: list[Any]) -> None:
        self.real = real
        self.tasks = tasks

    def _died(self) -> WriterError:
        codes = ", ".join(str(t.exitcode) for t in self.tasks)
        return WriterError(f"a Whoosh sub-writer died (exit codes {codes}); nothing of this batch was committed")

    def get(self, timeout: float) -> Any:
        try:
            return self.real.get(timeout=timeout)
        except queue.Empty:
            raise self._died() from None

    def put(self, job: Any) -> None:
        while True:
            try:
                return self.real.put(job, timeout=1.0)
            except queue.Full:
                if not any(t.is_alive() for t in self.tasks):
                    raise self._died() from None


class SafeMpWriter(MpWriter):
    """Whoosh's multiprocess writer (``procs`` sub-writer processes, one segment each per
    commit) made safe to fail: sub-writers are spawned and die with their parent
    (:class:`_SubWriter`); a sub-writer that dies fails the writer instead of losing its
    documents silently, and does not leave the commit waiting on a stuck sibling
    (:class:`_Guarded`, ``_SubWriter.join``); and ``cancel`` stops the sub-writers
    (Whoosh's only sets a flag on its own copy of them, so they wait forever and the
    writer process hangs on exit)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The sub-writers get the real queues (of the spawn context, like the processes);
        # this process uses them through the guard.
        spawn = mp.get_context("spawn")
        self.jobs, self.results = spawn.Queue(self.procs * 4), spawn.Queue()
        self.jobqueue, self.resultqueue = _Guarded(self.jobs, self.tasks), _Guarded(self.results, self.tasks)

    def _new_task(self) -> Any:
        args = (self.storage, self.indexname, self.jobs, self.results, self.subargs, self.multisegment)
        task = _SubWriter(*args, siblings=self.tasks)
        task.start()
        self.tasks.append(task)
        return task

    def _commit(self, mergetype: Any, optimize: Any, merge: Any) -> None:
        try:
            super()._commit(mergetype, optimize, merge)
        except BaseException:
            self.cancel()
            raise

    def cancel(self) -> None:
        for task in self.tasks:
            if task.is_alive():
                task.kill()  # its work is being thrown away
        for task in self.tasks:
            task.join(10)
        self.tasks.clear()
        if not self.is_closed:
            super(MpWriter, self).cancel()
