"""I/O: the background tasks a daemon owns (the node's and the tower's).

asyncio keeps only weak references to tasks and reports a failure of a task nobody awaits
only when it is garbage-collected, if ever. A daemon therefore keeps its tasks here: each
failure is logged at once, and :meth:`BackgroundTasks.cancel_all` ends them all on stop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Iterable
from typing import Any

__all__ = ["BackgroundTasks", "cancel_and_wait"]


class BackgroundTasks:
    """A set of running tasks; failures go to ``log``."""

    def __init__(self, log: logging.Logger) -> None:
        self._log = log
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._log.error("background task failed: %r", task.exception(),
                            exc_info=task.exception())

    async def cancel_all(self) -> None:
        """Cancel every task and wait until each has ended."""
        await cancel_and_wait(list(self._tasks))


async def cancel_and_wait(tasks: Iterable[asyncio.Future[Any]]) -> None:
    """Cancel ``tasks`` and wait until each has ended. Their outcomes (cancelled, or failed:
    already reported by whoever owns them) are collected, not raised; a cancellation of the
    caller itself still propagates."""
    pending = list(tasks)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)
