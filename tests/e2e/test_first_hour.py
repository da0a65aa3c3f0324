"""A newcomer's first hour, with real processes: `PORT=… prm serve` checks Twilio signatures against the
port it serves on, prints a generated webhook token, `prm simulate whatsapp` plays a patient and prints the
assistant's reply; `prm backup` of the running service restores into a fresh data directory."""

from __future__ import annotations

import os
import re
import shutil
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
from twilio.request_validator import RequestValidator

pytestmark = pytest.mark.slow

UNSET = {"DATABASE_URL", "REDIS_URL", "SECRET_KEY", "PUBLIC_BASE_URL", "TWILIO_AUTH_TOKEN", "HOST", "PORT",
         "TEST_DATABASE_URL"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in UNSET}
    env.update(PRM_DATA_DIR=str(data_dir), LOG_LEVEL="WARNING", ENVIRONMENT="development", **extra)
    return env


def prm(*args: str, env: dict[str, str], cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "prm", *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, check=False)


@dataclass
class Served:
    root: Path
    data_dir: Path
    port: int
    env: dict[str, str]
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    """`prm serve` started the way `PORT=<port> make run` starts it (the port from the environment)."""
    root = Path(tempfile.mkdtemp(prefix="prm-e2e-"))  # outside pytest's 0700 temp root (initdb runs unprivileged)
    data_dir, port, log = root / ".prm", _free_port(), root / "serve.log"
    env = _env(data_dir, PORT=str(port))
    proc = subprocess.Popen([sys.executable, "-m", "prm", "serve"], env=env, cwd=root, stdout=log.open("wb"),
                            stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, "server exited early:\n" + log.read_text()[-4000:]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "server never became ready:\n" + log.read_text()[-4000:]
            time.sleep(0.3)
        yield Served(root, data_dir, port, env, log)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(root, ignore_errors=True)


def test_simulated_patient_gets_the_assistants_reply(served: Served) -> None:
    printed = served.log.read_text()
    token = re.search(r"auth token\s+(\S+)", printed)
    assert token, printed
    assert (served.data_dir / "twilio_auth_token").read_text().strip() == token.group(1)
    assert f"{served.base}/webhooks/twilio/messaging" in printed  # PUBLIC_BASE_URL followed PORT

    r = prm("simulate", "whatsapp", "--from", "+34600000000", "I need an appointment", env=served.env,
            cwd=served.root)
    assert r.returncode == 0, r.stdout + r.stderr
    replies = [line for line in r.stdout.splitlines() if line.startswith("assistant: ")]
    assert replies and replies[0] == "assistant: Hello! I'm the booking assistant of Demo Clinic.", r.stdout

    # the signature is really checked against this port's URL: the same request signed for :8000 is refused
    params = {"MessageSid": "SM" + "1" * 32, "AccountSid": "AC" + "0" * 32, "From": "whatsapp:+34600000001",
              "To": "whatsapp:+15005550006", "Body": "hi", "NumMedia": "0"}
    validator = RequestValidator(token.group(1))
    wrong = validator.compute_signature("http://127.0.0.1:8000/webhooks/twilio/messaging", params)
    right = validator.compute_signature(f"{served.base}/webhooks/twilio/messaging", params)
    url = f"{served.base}/webhooks/twilio/messaging"
    assert httpx.post(url, data=params, headers={"X-Twilio-Signature": wrong}).status_code == 403
    assert httpx.post(url, data=params, headers={"X-Twilio-Signature": right}).status_code == 200


def test_backup_of_the_running_service_restores_into_a_fresh_data_directory(served: Served) -> None:
    dump = served.root / "prm.dump"
    r = prm("backup", "--output", str(dump), env=served.env, cwd=served.root)
    assert r.returncode == 0, r.stderr
    assert "secret_key" in r.stdout  # says which file a restore elsewhere needs

    fresh = _env(served.root / "restored")
    r = prm("restore", str(dump), env=fresh, cwd=served.root)
    assert r.returncode == 0, r.stderr
    assert "secret_key" in r.stdout  # no key in the fresh directory yet: says to copy it
    listed = prm("orgs", "list", env=fresh, cwd=served.root)
    assert listed.returncode == 0, listed.stderr
    assert [line.split()[1] for line in listed.stdout.splitlines()] == ["demo"]  # the served clinic, read back
    assert (served.root / "restored" / "pgdata" / "PG_VERSION").exists()
