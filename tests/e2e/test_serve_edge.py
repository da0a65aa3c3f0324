"""`prm serve` as a process, probed at its edge (issue 9): forwarded headers from a client that is no
proxy are not believed (login limit, audit, Twilio signature URL), failed logins are limited per
account, and request bodies are bounded in size and time on the real uvicorn server."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from twilio.request_validator import RequestValidator

from prm.core.audit import AuditEntry
from tests.fixtures.factories import DEFAULT_PASSWORD, make_user

pytestmark = pytest.mark.slow

SECRET = "e2e-edge-secret-key-0123456789-abcdefghijklmnop"
TWILIO_SID = "ACe2e00000000000000000000000000000"
BODY_LIMIT = 65536


@dataclass
class Served:
    base: str
    port: int
    twilio_token: str
    log: Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def served(database_url: str) -> Iterator[Served]:
    workdir = Path(tempfile.mkdtemp(prefix="prm-edge-"))
    port = _free_port()
    token = secrets.token_hex(16)
    env = {k: v for k, v in os.environ.items()
           if k not in {"DATABASE_URL", "REDIS_URL", "SECRET_KEY", "TRUSTED_PROXIES", "PUBLIC_BASE_URL"}}
    env.update(
        DATABASE_URL=database_url, ENVIRONMENT="test", SECRET_KEY=SECRET, PRM_DATA_DIR=str(workdir / "data"),
        LOG_LEVEL="INFO", LOG_JSON="true", PUBLIC_BASE_URL=f"http://127.0.0.1:{port}", RUN_WORKER="false",
        TWILIO_ACCOUNT_SID=TWILIO_SID, TWILIO_AUTH_TOKEN=token, MAX_REQUEST_BODY_BYTES=str(BODY_LIMIT),
        REQUEST_BODY_TIMEOUT_SECONDS="1", SEED_DEMO="false",
    )
    log = workdir / "serve.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "prm", "serve", "--port", str(port), "--no-worker", "--no-migrate", "--no-demo"],
        env=env, cwd=workdir, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180  # a loaded machine starts slowly
        while True:
            assert proc.poll() is None, "server exited early:\n" + log.read_text()[-4000:]
            assert time.monotonic() < deadline, "server never became ready:\n" + log.read_text()[-4000:]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        yield Served(f"http://127.0.0.1:{port}", port, token, log)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def _raw_exchange(port: int, head: bytes, body: bytes = b"", wait_seconds: float = 10) -> bytes:
    """Send `head` + `body` and read until the server closes (or `wait_seconds` pass: test bound)."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait_seconds) as sock:
        sock.sendall(head + body)
        received = b""
        deadline = time.monotonic() + wait_seconds
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                return received
            received += chunk
        raise AssertionError(f"the server held the connection open; received so far: {received[:300]!r}")


def _problem(raw: bytes) -> tuple[int, dict[str, str], dict[str, object]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return status, headers, json.loads(body)


async def test_rotating_forwarded_for_after_429_is_still_429(served: Served, committed) -> None:
    org, _ = await committed.org()
    email = f"edge-{secrets.token_hex(4)}@example.org"
    async with committed.session() as s:
        await make_user(s, org, email=email)
        await s.commit()
    async with httpx.AsyncClient(base_url=served.base, timeout=10) as c:
        statuses = [(await c.post("/auth/token", data={"username": email, "password": "wrong-password"})).status_code
                    for _ in range(11)]
        assert statuses[:10] == [401] * 10 and statuses[10] == 429
        rotated = []
        for i in range(20):
            r = await c.post("/auth/token", data={"username": email, "password": "wrong-password"},
                             headers={"X-Forwarded-For": f"198.51.100.{i + 1}"})
            rotated.append(r.status_code)
            assert r.status_code != 429 or int(r.headers["retry-after"]) >= 1
        assert rotated == [429] * 20
        right = await c.post("/auth/token", data={"username": email, "password": DEFAULT_PASSWORD},
                             headers={"X-Forwarded-For": "203.0.113.250"})
        assert right.status_code == 429


async def test_audit_records_the_peer_not_a_claimed_address(served: Served, committed) -> None:
    org, key = await committed.org()
    async with httpx.AsyncClient(base_url=served.base, timeout=10, headers={"Authorization": f"Bearer {key}"}) as c:
        r = await c.post("/patients", json={"given_name": "Ada", "family_name": "Edge"},
                         headers={"X-Forwarded-For": "203.0.113.77", "Forwarded": "for=203.0.113.78"})
        assert r.status_code == 201, r.text
    async with committed.session() as s:
        ips = set((await s.scalars(select(AuditEntry.ip).where(AuditEntry.org_id == org.id))).all())
    assert ips and {str(ip) for ip in ips} == {"127.0.0.1"}


@pytest.mark.parametrize("forwarded_host", ["staging.example", "staging.example, 127.0.0.1:{port}"])
async def test_twilio_signature_made_for_another_host_is_refused(served: Served, forwarded_host: str) -> None:
    params = {"MessageSid": f"SM{secrets.token_hex(16)}", "From": "+34600000123", "To": "+34910000999",
              "Body": "hi", "NumMedia": "0", "AccountSid": TWILIO_SID}
    validator = RequestValidator(served.twilio_token)
    other = validator.compute_signature("https://staging.example/webhooks/twilio/messaging", params)
    async with httpx.AsyncClient(base_url=served.base, timeout=10) as c:
        replayed = await c.post("/webhooks/twilio/messaging", data=params, headers={
            "X-Twilio-Signature": other, "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": forwarded_host.format(port=served.port)})
        assert replayed.status_code == 403
        assert replayed.json()["code"] == "invalid_signature"
        # The same message signed for PUBLIC_BASE_URL is accepted: the refusal is about the URL.
        own = validator.compute_signature(f"{served.base}/webhooks/twilio/messaging", params)
        accepted = await c.post("/webhooks/twilio/messaging", data=params, headers={"X-Twilio-Signature": own})
        assert accepted.status_code == 200, accepted.text


def test_a_declared_body_that_never_arrives_is_408(served: Served) -> None:
    head = (b"POST /auth/token HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\n")
    status, headers, problem = _problem(_raw_exchange(served.port, head, b"username=a"))
    assert status == 408
    assert headers["content-type"] == "application/problem+json"
    assert problem["code"] == "request_timeout" and headers["x-request-id"]


def test_a_declared_oversize_body_is_413_before_it_is_sent(served: Served) -> None:
    head = (b"POST /patients HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 104857600\r\n\r\n")
    status, headers, problem = _problem(_raw_exchange(served.port, head))
    assert status == 413
    assert headers["content-type"] == "application/problem+json" and headers["x-request-id"]
    assert problem["code"] == "payload_too_large" and problem["limit_bytes"] == BODY_LIMIT


def test_startup_report_is_logged_without_secrets(served: Served) -> None:
    text = served.log.read_text()
    report = next(json.loads(line) for line in text.splitlines() if '"startup.config"' in line)
    assert report["database"].startswith("postgresql://") and report["trusted_proxies"] == []
    assert report["max_request_body_bytes"] == BODY_LIMIT
    assert SECRET not in text and served.twilio_token not in text
