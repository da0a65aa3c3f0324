"""SIGTERM (what `docker stop` and systemd send) shuts `prm serve` down in order: it stops accepting
connections, lets the request in flight finish (the database is still there for it), stops the
worker, stops the embedded PostgreSQL and exits 0."""

from __future__ import annotations

import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.processes import free_port, prm_env, start_prm, stop_process, wait_ready, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def root() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="prm-term-"))  # traversable by the database's own user
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError:
        return True
    return False


def _read_response(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return head + b"\r\n\r\n" + rest


def test_sigterm_drains_stops_the_worker_and_the_embedded_database(root: Path) -> None:
    port, log = free_port(), root / "serve.log"
    serve = start_prm(["serve", "--port", str(port)], prm_env(root), log, root)
    pgdata = root / ".prm" / "pgdata"
    try:
        wait_ready(serve, f"http://127.0.0.1:{port}", log, timeout=120)
        assert (pgdata / "postmaster.pid").exists()

        # A request in flight: its body is only half sent when SIGTERM arrives.
        body = b"username=nobody%40example.org&password=not-the-password"
        sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        sock.sendall(b"POST /auth/token HTTP/1.1\r\nHost: prm\r\nContent-Type: application/x-www-form-urlencoded"
                     b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body[:12])
        time.sleep(2)  # let the server read the request head (not a timing assertion)
        serve.send_signal(signal.SIGTERM)
        wait_until(lambda: _refused(port), timeout=60, what="the server to stop accepting", logs=[log])
        assert serve.poll() is None, "the server exited with a request in flight"

        sock.sendall(body[12:])
        response = _read_response(sock)
        sock.close()
        assert response.startswith(b"HTTP/1.1 401"), response[:300]
        assert b"application/problem+json" in response
        code = serve.wait(timeout=90)
    finally:
        if serve.poll() is None:
            stop_process(serve, signal.SIGKILL)
    assert code == 0, log.read_text()[-3000:]
    assert "worker.stopped" in log.read_text()
    assert not (pgdata / "postmaster.pid").exists(), "the embedded PostgreSQL is still running"
