"""The service as a process, as `make run` starts it: embedded PostgreSQL, migrations, demo clinic,
API and worker; Ctrl-C stops everything and the next start reuses the data."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(data_dir: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "SECRET_KEY"}}
    env.update(PRM_DATA_DIR=str(data_dir), LOG_LEVEL="WARNING", ENVIRONMENT="development")
    return subprocess.Popen([sys.executable, "-m", "prm", "serve", "--port", str(port)], env=env,
                            cwd=data_dir.parent, stdout=log.open("wb"), stderr=subprocess.STDOUT)


def _wait_ready(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 240) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "server exited early:\n" + log.read_text()[-4000:]
        try:
            r = httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2)
            if r.status_code == 200:
                return r
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError("server never became ready")


def _stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGINT)
    return proc.wait(timeout=30)


@pytest.fixture
def tmp_path() -> Iterator[Path]:
    """A directory outside pytest's own temp root: that root is 0700 and pytest resets it at any time,
    while the embedded server runs initdb as an unprivileged user who must traverse the path."""
    path = Path(tempfile.mkdtemp(prefix="prm-e2e-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_serve_on_embedded_database_with_demo_clinic(tmp_path: Path) -> None:
    data_dir, port, log = tmp_path / ".prm", _free_port(), tmp_path / "serve.log"
    proc = _start(data_dir, port, log)
    try:
        _wait_ready(port, proc, log)
        assert httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200
        token = httpx.post(f"http://127.0.0.1:{port}/auth/token",
                           data={"username": "admin@demo-clinic.example", "password": "demo-password-123"})
        assert token.status_code == 200
        printed = log.read_text()
        api_key = next(line.split()[2] for line in printed.splitlines() if line.strip().startswith("API key"))
        me = httpx.get(f"http://127.0.0.1:{port}/auth/me", headers={"Authorization": f"Bearer {api_key}"})
        assert me.status_code == 200 and me.json()["role"] == "integration"
    finally:
        code = _stop(proc)
    assert code == 0, log.read_text()[-3000:]
    assert (data_dir / "pgdata" / "PG_VERSION").exists()

    # Second start: same data, no second demo clinic, the old key still works.
    proc = _start(data_dir, port, tmp_path / "serve2.log")
    try:
        _wait_ready(port, proc, tmp_path / "serve2.log")
        me = httpx.get(f"http://127.0.0.1:{port}/auth/me", headers={"Authorization": f"Bearer {api_key}"})
        assert me.status_code == 200
        assert "Demo clinic created" not in (tmp_path / "serve2.log").read_text()
    finally:
        assert _stop(proc) == 0
