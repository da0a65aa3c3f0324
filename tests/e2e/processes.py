"""Real processes for fault-injection tests: a test-owned embedded PostgreSQL that a test can stop
and start, `prm worker` / `prm serve` subprocesses on it, and bounded waiting.

Every wait has a deadline and fails with the process log; nothing asserts a duration.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from prm.core import embedded
from tests.conftest import migrate

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: Callable[[], T], *, timeout: float, what: str, logs: list[Path] | None = None,
               interval: float = 0.2, state: Callable[[], str] | None = None) -> T:
    """Poll `check` until it returns something truthy; fail after `timeout` seconds with the logs
    (and what `state` describes of the system at that moment)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
                              for p in logs or [] if p.exists())
            seen = f"\nstate: {state()}" if state is not None else ""
            raise AssertionError(f"timed out waiting for {what}{seen}\n{tails}")
        time.sleep(interval)


class OwnPostgres:
    """An embedded PostgreSQL owned by one test: migrated, stoppable and restartable on its data."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.pgdata = root / "pgdata"
        self.url = embedded.start(self.pgdata)
        migrate(self.url)

    def stop(self) -> None:
        embedded.stop(self.pgdata)

    def start(self) -> None:
        url = embedded.start(self.pgdata)
        assert url == self.url, "the restarted server moved"


@pytest.fixture
def own_postgres() -> Iterator[OwnPostgres]:
    # outside pytest's 0700 temp root: the server runs as an unprivileged user who must traverse it
    root = Path(tempfile.mkdtemp(prefix="prm-fault-"))
    server = OwnPostgres(root)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def prm_env(root: Path, **overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "SECRET_KEY"}}
    env.update(PRM_DATA_DIR=str(root / ".prm"), LOG_LEVEL="INFO", LOG_JSON="true", ENVIRONMENT="development",
               SEED_DEMO="false")
    env.update(overrides)
    return env


def start_prm(args: list[str], env: dict[str, str], log: Path, cwd: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "prm", *args], env=env, cwd=cwd,
                            stdout=log.open("ab"), stderr=subprocess.STDOUT)


def wait_ready(proc: subprocess.Popen[bytes], base: str, log: Path, *, timeout: float = 120) -> None:
    """Wait until the `prm serve` process `proc` answers 200 on `{base}/ready` (fails at once, with its
    log, if it exits first)."""

    def ready() -> bool:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            return httpx.get(f"{base}/ready", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(ready, timeout=timeout, what="the server to be ready", logs=[log])


def stop_process(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 60) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
        raise AssertionError(f"process {proc.args} did not stop within {timeout} s of signal {sig}") from None


async def until(check: Callable[[], Awaitable[Any]], what: str, within: float = 120) -> Any:
    """Poll an async check until it returns something truthy (returned), or fail naming `what`."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        found = await check()
        if found:
            return found
        await asyncio.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")
