"""Running procrastinate workers: `prm worker` (standalone) and the in-process one of `prm serve`."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import structlog

from prm.core import jobs

log = structlog.get_logger(__name__)


async def run(conninfo: str, *, concurrency: int = 4, queues: list[str] | None = None,
              wait: bool = True) -> None:
    """Run a worker until cancelled (`wait=False`: until the queue is empty)."""
    app = jobs.build_app(conninfo)
    options: dict[str, Any] = {"concurrency": concurrency, "wait": wait, "install_signal_handlers": False,
                               "delete_jobs": "never"}
    if queues:
        options["queues"] = queues
    async with app.open_async():
        await app.run_worker_async(**options)


class InProcessWorker:
    def __init__(self, conninfo: str, *, concurrency: int = 2) -> None:
        self.conninfo = conninfo
        self.concurrency = concurrency
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(run(self.conninfo, concurrency=self.concurrency), name="prm-worker")
        log.info("worker.started", concurrency=self.concurrency)

    async def stop(self) -> None:
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task
        log.info("worker.stopped")
