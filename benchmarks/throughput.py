"""Throughput of the hot paths as ratios against the database's own speed, measured interleaved.

    PYTHONPATH=src python benchmarks/throughput.py [--workers N] [--rounds 3] [--clients 32]
        [--per-client 10] [--sweep 1,4,16,32] [--out benchmarks/out] [--only webhook]

Starts a throwaway embedded PostgreSQL (or uses DATABASE_URL), migrates it, seeds one clinic, then
starts `prm serve --workers N` as a separate process on 127.0.0.1 (N: one per core by default, as
in production: N API processes and the job worker as its own process, at a lower CPU priority, as
are the embedded database's processes serving its queries;
`--workers 1`: development's single process with the worker inside) and drives it over real HTTP
with `--clients` concurrent clients. Each round runs, one after the other on the same database and
the same loaded machine:

1. raw SQL: the booking's INSERT from `--clients` psycopg connections (the ceiling);
2. HTTP `POST /appointments` on distinct free slots; then the benchmark waits until the server's
   worker has delivered the events the bookings published (confirmations), reported apart;
3. HTTP `GET /auth/me` (authenticated, no writes: the framework floor);
4. raw SQL: the rows a signed inbound webhook must write synchronously (its inbound event row and
   one queued job, in one transaction);
5. HTTP signed Twilio webhooks (`POST /webhooks/twilio/messaging`, valid signatures); then the
   benchmark waits until the server's worker has processed the jobs they queued (and the jobs those
   queued), so the next phase does not pay for them, and reports that CPU separately.

Before the rounds, uncounted: `GET /auth/me`, then ~10 bookings per pooled database connection of
every API process (each connection prepares the booking's statement on its 5th use, and PostgreSQL
settles on its plan after 5 more): the rounds measure the steady state. The raw phases' statements
are prepared from their first execution, so the ceiling is the warm one too (unprepared, a round of
10 per client ran half its inserts parsed and planned anew, and the raw ceiling read ~30 % low).

Every HTTP phase is sent by a minimal keep-alive HTTP/1.1 client, `RawHttp`, about as light as the
raw phases' psycopg (httpx cost this process more CPU per request than the server spent answering;
`--client httpx` for it).

`--only webhook` runs phases 3-5 only (no booking phases, sweep, race or in-process booking profile).

Every figure is service ÷ raw measured in the same round; the report gives the median and the
min–max over rounds, so the noise of a shared machine shows instead of hiding. It also reports the
CPU the server processes used per booking (all of `prm serve`: HTTP, framework, service, the
job worker; with `--workers 2` or more the worker is its own process and the API's share is given
apart) read from /proc, the statements one booking sends (counted by SQLAlchemy in an in-process
run of the same app), and checks a 200-way race for one slot. After the rounds, bookings are run at
each client count of `--sweep` against the raw insert at the same count (throughput vs clients).

A markdown report is written to `<out>/throughput.md` with PNG charts (latency distribution,
`throughput-latency.png`; throughput vs clients, `throughput-clients.png`).
Nothing here is asserted as a timing: it prints figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from datetime import time as wall
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import psycopg
from twilio.request_validator import RequestValidator

PRACTITIONERS = 20
RACE = 200
SWEEP_REQUESTS = 256  # bookings per point of the clients sweep
PHASES = {"all": ("raw_booking", "booking", "me", "raw_webhook", "webhook"),
          "webhook": ("me", "raw_webhook", "webhook")}
TICKS = os.sysconf("SC_CLK_TCK")


def warm_up_bookings(args: argparse.Namespace) -> int:
    """Bookings before the rounds: ~10 per pooled connection of every API process (prepared on the
    5th use; PostgreSQL settles on one plan after 5 more), a whole number per client."""
    from prm.settings import Settings

    pool = args.pool or Settings.model_fields["db_pool_size"].default
    wanted = 10 * pool * max(1, args.workers)
    return max(1, wanted // args.clients + 1) * args.clients


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


@dataclass
class Phase:
    """One measured phase of one round."""

    count: int
    seconds: float
    latencies: list[float]
    cpu_seconds: float | None = None  # all server processes
    worker_cpu_seconds: float | None = None  # of which the job worker process (when it is one)
    client_cpu_seconds: float | None = None  # this benchmark process (the HTTP clients) meanwhile
    queued_after: int | None = None  # its jobs still waiting when the phase ended
    drain_cpu_seconds: float | None = None  # server CPU while those jobs were worked off
    db_cpu_seconds: float | None = None  # the database server's processes (embedded PostgreSQL only)

    @property
    def rate(self) -> float:
        return self.count / self.seconds

    @property
    def p95_ms(self) -> float:
        return pct(self.latencies, 95) * 1000


@dataclass
class Results:
    phases: dict[str, list[Phase]] = field(default_factory=dict)

    def add(self, name: str, phase: Phase) -> None:
        self.phases.setdefault(name, []).append(phase)


# --- the database and the clinic ------------------------------------------------------------------


DATABASE_DIR: dict[str, Path] = {}  # the embedded PostgreSQL's data directory (not with DATABASE_URL)


def prepare() -> str:
    from alembic import command
    from alembic.config import Config

    from prm.app import migrations_dir
    from prm.core import embedded

    url = os.environ.get("DATABASE_URL")
    if not url:
        DATABASE_DIR["pg"] = Path(tempfile.mkdtemp(prefix="prm-bench-")) / "pg"
        url = embedded.start(DATABASE_DIR["pg"], throwaway=True)
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.attributes["database_url"] = url
    command.upgrade(config, "head")
    return url


async def seed(url: str, patients: int, clinic_number: str) -> dict[str, Any]:
    """An organisation, a UTC location open all day, 20 practitioners, a 15-minute service, patients."""
    from sqlalchemy import insert

    from prm import context, modules
    from prm.appointments import service
    from prm.appointments.schemas import LocationCreate, PractitionerCreate, RuleCreate, ServiceCreate
    from prm.communications import service as communications
    from prm.communications.schemas import ChannelConfigWrite
    from prm.core.auth import Principal
    from prm.core.db import Database
    from prm.identity import service as identity
    from prm.identity.schemas import ApiKeyCreate, OrganisationCreate
    from prm.patients.models import Patient

    modules.load()
    db = Database.connect(url, pool_size=2)
    context.bind(db.sessionmaker, context.Context.build(bench_settings(url)))
    try:
        async with db.sessionmaker() as s:
            org = await identity.create_organisation(
                s, OrganisationCreate(name="Bench", slug=f"bench-{uuid.uuid4().hex[:8]}", timezone="UTC")
            )
            _, key = await identity.create_api_key(s, org.id, ApiKeyCreate(name="bench", role="admin"))
            location = await service.create_location(s, org.id, LocationCreate(name="Main", timezone="UTC"))
            practitioners = []
            for i in range(PRACTITIONERS):
                p = await service.create_practitioner(s, org.id, PractitionerCreate(name=f"Dr {i}"))
                practitioners.append(p.id)
                for weekday in range(7):
                    await service.add_rule(s, org.id, p.id, RuleCreate(
                        location_id=location.id, weekday=weekday, start_time=wall(0), end_time=wall(23, 59)))
            svc = await service.create_service(s, org.id, ServiceCreate(
                name="Visit", duration_minutes=15, min_notice_minutes=0, horizon_days=365,
                practitioner_ids=practitioners))
            ids = [uuid.uuid4() for _ in range(patients)]
            await s.execute(insert(Patient), [
                {"id": pid, "org_id": org.id, "given_name": "Bench", "family_name": str(n)}
                for n, pid in enumerate(ids)])
            await communications.put_channel_config(
                s, Principal.system(org.id), "whatsapp", ChannelConfigWrite(sender=clinic_number))
            await s.commit()
            return {"org": org.id, "key": key, "location": location.id, "practitioners": practitioners,
                    "service": svc.id, "patients": ids}
    finally:
        await db.dispose()


def bench_settings(url: str) -> Any:
    from prm.settings import Settings

    return Settings(_env_file=None, environment="test", database_url=url, run_worker=False,  # type: ignore[call-arg]
                    log_level="ERROR", secret_key=secrets.token_hex(32), seed_demo=False,  # type: ignore[arg-type]
                    prm_data_dir=Path(tempfile.mkdtemp(prefix="prm-bench-data-")))


# --- the server -------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def server(url: str, args: argparse.Namespace, token: str) -> Iterator[tuple[str, int]]:
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "ENVIRONMENT": "development",
        "SEED_DEMO": "false",
        "LOG_LEVEL": "WARNING",
        "SECRET_KEY": secrets.token_hex(32),
        "PUBLIC_BASE_URL": "https://bench.test",
        "TWILIO_ACCOUNT_SID": "ACbench",
        "TWILIO_AUTH_TOKEN": token,
        "RATE_LIMIT_WEBHOOKS": "100000000/minute",
        "PRM_DATA_DIR": tempfile.mkdtemp(prefix="prm-bench-serve-"),
        **({"DB_POOL_SIZE": str(args.pool)} if args.pool else {}),  # else the service's defaults
        "WEBHOOK_INGEST": args.webhook_ingest,
    }
    command = [sys.executable, "-m", "prm", "serve", "--no-migrate", "--host", "127.0.0.1", "--port", str(port)]
    if args.workers is not None:
        command += ["--workers", str(args.workers)]
    command += args.serve_arg
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=sys.stderr)
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"prm serve exited with {proc.returncode}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("prm serve did not become ready in 90 s")
            time.sleep(0.3)
        yield f"http://127.0.0.1:{port}", proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def tree_cpu_seconds(root: int) -> dict[str, float]:
    """user+system CPU of `root` and all its live descendants (Linux /proc), by role: the job worker
    process (`prm worker`, when it is one) and the API (everything else)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    total = {"api": 0.0, "worker": 0.0}
    todo = [root]
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        try:
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read()
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                command = fh.read()
        except OSError:
            continue
        rest = fields[fields.rindex(")") + 2:].split()
        role = "worker" if b"prm\x00worker" in command else "api"
        total[role] += (int(rest[11]) + int(rest[12])) / TICKS  # utime, stime
    return total


def database_cpu_seconds() -> float | None:
    """CPU used so far by the embedded PostgreSQL: the postmaster, its live backends and, through
    the postmaster's cutime/cstime, the backends that have exited (None with DATABASE_URL)."""
    if "pg" not in DATABASE_DIR:
        return None
    try:
        postmaster = int((DATABASE_DIR["pg"] / "postmaster.pid").read_text().split()[0])
        with open(f"/proc/{postmaster}/stat") as fh:
            rest = fh.read().rsplit(")", 1)[1].split()
    except (OSError, ValueError, IndexError):
        return None
    reaped = (int(rest[13]) + int(rest[14])) / TICKS  # cutime, cstime: children already waited for
    return sum(tree_cpu_seconds(postmaster).values()) + reaped


# --- phases -------------------------------------------------------------------------------------------


class RawHttp:
    """One keep-alive HTTP/1.1 connection that posts a form and reads the answer, and little else.

    httpx costs this process ~3.5 ms of CPU per webhook, more than the server spends answering it,
    on the same two cores: the HTTP phase then measured the client. The raw phases' psycopg client
    is C; this one costs ~0.2 ms (`--webhook-client httpx` for the former)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str) -> None:
        self.reader, self.writer, self.host = reader, writer, host

    @classmethod
    async def open(cls, base: str) -> RawHttp:
        parts = httpx.URL(base)
        reader, writer = await asyncio.open_connection(parts.host, parts.port)
        return cls(reader, writer, f"{parts.host}:{parts.port}")

    async def post_form(self, path: str, form: dict[str, str], headers: dict[str, str]) -> tuple[int, str]:
        return await self.request("POST", path, urlencode(form).encode(), "application/x-www-form-urlencoded",
                                  headers)

    async def request(self, method: str, path: str, body: bytes = b"", content_type: str = "application/json",
                      headers: dict[str, str] | None = None) -> tuple[int, str]:
        head = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
        self.writer.write(f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: {content_type}\r\n"
                          f"Content-Length: {len(body)}\r\n{head}\r\n".encode() + body)
        answer = await self.reader.readuntil(b"\r\n\r\n")
        lines = answer.decode("latin-1").split("\r\n")
        length = next((int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length:")), 0)
        return int(lines[0].split(" ", 2)[1]), (await self.reader.readexactly(length)).decode()

    def close(self) -> None:
        self.writer.close()



RECONNECTS = {"count": 0}


async def run_clients(clients: int, per_client: int, one: Any) -> Phase:
    latencies: list[float] = []

    async def client(c: int) -> None:
        for k in range(per_client):
            t0 = time.perf_counter()
            try:
                await one(c, k)
            except httpx.RemoteProtocolError:
                # the server closed an idle keep-alive connection as the request went out (a client
                # starved of CPU for longer than uvicorn's 5 s keep-alive): it never read it, send again
                RECONNECTS["count"] += 1
                await one(c, k)
            latencies.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(client(c) for c in range(clients)))
    return Phase(clients * per_client, time.perf_counter() - t0, latencies)


class Bench:
    def __init__(self, args: argparse.Namespace, url: str, ctx: dict[str, Any], base: str, pid: int,
                 token: str, clinic_number: str) -> None:
        self.args = args
        self.url = url
        self.ctx = ctx
        self.base = base
        self.pid = pid
        self.validator = RequestValidator(token)
        self.clinic_number = clinic_number
        self.patients = iter(ctx["patients"])
        self.slot = 0
        self.day0 = datetime.combine(datetime.now(UTC).date() + timedelta(days=2), wall(0), tzinfo=UTC)
        self.results = Results()
        self.auth = {"Authorization": f"Bearer {ctx['key']}"}
        self.sweep: list[tuple[int, Phase, Phase]] = []

    def next_slots(self, n: int) -> list[tuple[uuid.UUID, datetime]]:
        """`n` distinct free (practitioner, start) pairs."""
        out = []
        for _ in range(n):
            i = self.slot
            self.slot += 1
            q = i // PRACTITIONERS  # 95 quarter-hours a day fit in the 00:00-23:59 rules
            out.append((self.ctx["practitioners"][i % PRACTITIONERS],
                        self.day0 + timedelta(days=q // 95, minutes=15 * (q % 95))))
        return out

    async def raw_bookings(self, clients: int | None = None, per_client: int | None = None) -> Phase:
        a = argparse.Namespace(clients=clients or self.args.clients, per_client=per_client or self.args.per_client)
        plan = self.next_slots(a.clients * a.per_client)
        patients = [next(self.patients) for _ in plan]
        sql = ("INSERT INTO appointments (id, org_id, patient_id, practitioner_id, service_id, location_id, "
               "start_at, end_at, blocked_from, blocked_until, status, mode, created_at, updated_at) "
               "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 'booked', 'in_person', now(), now())")
        conns = [await psycopg.AsyncConnection.connect(self.url) for _ in range(a.clients)]
        try:
            async def one(c: int, k: int) -> None:
                n = k * a.clients + c  # at each step the clients book consecutive slots: different practitioners
                practitioner, start = plan[n]
                end = start + timedelta(minutes=15)
                async with conns[c].transaction():
                    await conns[c].execute(sql, (uuid.uuid4(), self.ctx["org"], patients[n], practitioner,
                                                 self.ctx["service"], self.ctx["location"], start, end, start, end),
                                         prepare=True)

            return await run_clients(a.clients, a.per_client, one)
        finally:
            for conn in conns:
                await conn.close()

    async def http_bookings(self, http: httpx.AsyncClient, clients: int | None = None,
                            per_client: int | None = None) -> Phase:
        a = argparse.Namespace(clients=clients or self.args.clients, per_client=per_client or self.args.per_client)
        plan = self.next_slots(a.clients * a.per_client)
        patients = [next(self.patients) for _ in plan]

        async def one(raw_http: list[RawHttp] | None, c: int, k: int) -> None:
            n = k * a.clients + c  # at each step the clients book consecutive slots: different practitioners
            practitioner, start = plan[n]
            body = {"patient_id": str(patients[n]), "service_id": str(self.ctx["service"]),
                    "practitioner_id": str(practitioner), "start_at": start.isoformat()}
            status, text = await self.send(http, raw_http, c, "POST", "/appointments", json.dumps(body).encode())
            if status != 201:
                raise SystemExit(f"booking: unexpected {status}: {text}")

        return await self.over_connections(a.clients, a.per_client, one)

    async def http_me(self, http: httpx.AsyncClient) -> Phase:
        async def one(raw_http: list[RawHttp] | None, c: int, k: int) -> None:
            status, text = await self.send(http, raw_http, c, "GET", "/auth/me")
            if status != 200:
                raise SystemExit(f"/auth/me: unexpected {status}: {text}")

        return await self.over_connections(self.args.clients, self.args.per_client, one)

    async def send(self, http: httpx.AsyncClient, raw_http: list[RawHttp] | None, c: int, method: str, path: str,
                   body: bytes = b"") -> tuple[int, str]:
        """One authenticated JSON request by client `c`: on its raw connection, or through httpx."""
        if raw_http is None:
            r = await http.request(method, path, content=body or None,
                                   headers={"Content-Type": "application/json"} if body else None)
            return r.status_code, r.text
        return await raw_http[c].request(method, path, body, headers=self.auth)

    async def over_connections(self, clients: int, per_client: int, one: Any) -> Phase:
        """`run_clients` with `one(raw_http, c, k)`, given one minimal keep-alive connection per
        client (None: `--client httpx`), closed afterwards."""
        raw_http = None if self.args.client == "httpx" else [await RawHttp.open(self.base) for _ in range(clients)]
        try:
            return await run_clients(clients, per_client, lambda c, k: one(raw_http, c, k))
        finally:
            for conn in raw_http or []:
                conn.close()

    async def raw_webhooks(self) -> Phase:
        a = self.args
        conns = [await psycopg.AsyncConnection.connect(self.url) for _ in range(a.clients)]
        args_json = json.dumps({"event_id": str(uuid.uuid4())})
        # the job is scheduled far ahead, so the server's worker never picks up this benchmark's rows
        try:
            async def one(c: int, k: int) -> None:
                async with conns[c].transaction():
                    await conns[c].execute(
                        "INSERT INTO inbound_events (id, org_id, provider, external_id, kind, outcome, received_at) "
                        "VALUES (%s, NULL, 'twilio', %s, 'message', 'received', now())",
                        (uuid.uuid4(), f"RAW{uuid.uuid4().hex}"), prepare=True)
                    await conns[c].execute(
                        "SELECT unnest(procrastinate_defer_jobs_v1(ARRAY[ROW('bench', 'bench.noop', 0, NULL, "
                        "NULL, %s::jsonb, now() + interval '10 years')::procrastinate_job_to_defer_v1]))", (args_json,),
                        prepare=True)

            return await run_clients(a.clients, a.per_client, one)
        finally:
            for conn in conns:
                await conn.close()

    async def http_webhooks(self, http: httpx.AsyncClient) -> Phase:
        path = "/webhooks/twilio/messaging"
        senders = [f"+3460{n:07d}" for n in range(200)]

        async def one(raw_http: list[RawHttp] | None, c: int, k: int) -> None:
            params = {"MessageSid": f"SM{uuid.uuid4().hex}", "AccountSid": "ACbench",
                      "From": f"whatsapp:{senders[(c * 7 + k) % len(senders)]}",
                      "To": f"whatsapp:{self.clinic_number}", "Body": f"hello {c}/{k}", "NumMedia": "0"}
            sig = self.validator.compute_signature(f"https://bench.test{path}", params)
            if raw_http is None:
                r = await http.post(path, data=params, headers={"X-Twilio-Signature": sig})
                status, text = r.status_code, r.text
            else:
                status, text = await raw_http[c].post_form(path, params, {"X-Twilio-Signature": sig})
            if status != 200:
                raise SystemExit(f"webhook: unexpected {status}: {text}")

        return await self.over_connections(self.args.clients, self.args.per_client, one)

    async def drain_jobs(self, phase: Phase, task: str) -> None:
        """Wait until the server's worker has processed the jobs the webhook phase queued (and those
        they queued in turn), so the next phase does not pay for them; records how many of the
        webhook's own were left and the CPU the drain took."""
        sql = ("SELECT count(*) FILTER (WHERE task_name = %s), count(*) FROM procrastinate_jobs "
               "WHERE status IN ('todo', 'doing') AND (scheduled_at IS NULL OR scheduled_at <= now())")
        cpu0 = sum(tree_cpu_seconds(self.pid).values())
        async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
            deadline, stalled_since, before = time.monotonic() + 300, time.monotonic(), -1
            while True:
                row = await (await conn.execute(sql, (task,))).fetchone()
                own, left = row if row else (0, 0)
                if phase.queued_after is None:
                    phase.queued_after = own
                if left != before:
                    stalled_since, before = time.monotonic(), left
                # done, or no worker making progress (`--serve-arg=--no-worker`): leave the rest queued
                if left == 0 or time.monotonic() > deadline or time.monotonic() - stalled_since > 10:
                    break
                await asyncio.sleep(0.2)
        phase.drain_cpu_seconds = sum(tree_cpu_seconds(self.pid).values()) - cpu0

    async def race(self, http: httpx.AsyncClient) -> str:
        (practitioner, start), = self.next_slots(1)
        racers = [next(self.patients) for _ in range(RACE)]

        async def attempt(patient: uuid.UUID) -> int:
            r = await http.post("/appointments", json={
                "patient_id": str(patient), "service_id": str(self.ctx["service"]),
                "practitioner_id": str(practitioner), "start_at": start.isoformat()})
            return r.status_code

        codes = await asyncio.gather(*(attempt(p) for p in racers))
        async with await psycopg.AsyncConnection.connect(self.url) as conn:
            cur = await conn.execute("SELECT count(*) FROM appointments WHERE practitioner_id = %s AND start_at = %s",
                                     (practitioner, start))
            row = await cur.fetchone()
            held = row[0] if row else -1
        summary = {code: codes.count(code) for code in sorted(set(codes))}
        ok = held == 1 and summary.get(201) == 1
        return f"{RACE}-way race for one slot: responses {summary}, bookings held {held} [{'OK' if ok else 'FAILED'}]"

    def client(self, clients: int | None = None) -> httpx.AsyncClient:
        """A fresh client per phase: an idle keep-alive connection may be closed by the server meanwhile."""
        clients = clients or self.args.clients
        limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
        return httpx.AsyncClient(base_url=self.base, limits=limits, timeout=60,
                                 headers={"Authorization": f"Bearer {self.ctx['key']}"})

    async def over_http(self, phase: Any, clients: int | None = None) -> Phase:
        """One HTTP phase, with the CPU the server processes used meanwhile (their whole tree)."""
        async with self.client(clients) as http:
            cpu0, own0 = tree_cpu_seconds(self.pid), time.process_time()
            result: Phase = await phase(http)
            cpu1, result.client_cpu_seconds = tree_cpu_seconds(self.pid), time.process_time() - own0
            result.cpu_seconds = sum(cpu1.values()) - sum(cpu0.values())
            result.worker_cpu_seconds = cpu1["worker"] - cpu0["worker"]
            return result

    async def run(self) -> str:
        a = self.args
        # warm-up, not counted: every pooled connection of every API process opened and its statements
        # prepared (psycopg prepares a statement on its 5th use on a connection, PostgreSQL then plans
        # it once for all), the processes' reference copies loaded, the first requests' routing built
        await self.over_http(self.http_me)
        if "booking" in PHASES[a.only]:
            warm = await self.over_http(lambda http: self.http_bookings(http, a.clients,
                                                                        warm_up_bookings(a) // a.clients))
            await self.drain_jobs(warm, "events.deliver")
        for r in range(a.rounds):
            order = ["raw_booking", "booking", "me", "raw_webhook", "webhook"]
            if r % 2:  # alternate which side goes first, so a trend in load does not favour one
                order = ["booking", "raw_booking", "me", "webhook", "raw_webhook"]
            order = [name for name in order if name in PHASES[a.only]]
            for name in order:
                db0 = database_cpu_seconds()
                phase = await {
                    "raw_booking": self.raw_bookings, "raw_webhook": self.raw_webhooks,
                    "booking": lambda: self.over_http(self.http_bookings),
                    "me": lambda: self.over_http(self.http_me),
                    "webhook": lambda: self.over_http(self.http_webhooks),
                }[name]()
                await asyncio.sleep(0.2)  # the backends of closed connections reaped into the postmaster's total
                db1 = database_cpu_seconds()
                phase.db_cpu_seconds = None if db0 is None or db1 is None else db1 - db0
                if name == "webhook":
                    await self.drain_jobs(phase, "webhooks.process_twilio_message")
                elif name == "booking":  # its event deliveries (confirmations): the next phase must not pay
                    await self.drain_jobs(phase, "events.deliver")
                self.results.add(name, phase)
            print(f"  round {r + 1}/{a.rounds}: " + "; ".join(
                f"{name} {self.results.phases[name][-1].rate:.0f}/s" for name in order), flush=True)
        if "booking" not in PHASES[a.only]:
            return "race for one slot: not run (--only webhook)"
        for clients in self.args.sweep:  # throughput against the number of clients (the chart)
            per_client = max(1, SWEEP_REQUESTS // clients)
            raw = await self.raw_bookings(clients, per_client)
            served = await self.over_http(lambda http, c=clients, k=per_client: self.http_bookings(http, c, k),
                                          clients)
            self.sweep.append((clients, raw, served))
            print(f"  {clients} clients: booking {served.rate:.0f}/s vs raw {raw.rate:.0f}/s", flush=True)
        async with self.client() as http:
            return await self.race(http)


# --- statements and CPU of one booking, in process ----------------------------------------------


async def asgi_call(app: Any, method: str, path: str, key: str, body: bytes = b"") -> tuple[int, bytes]:
    """One request handed to the ASGI app directly (no HTTP client, no server): what the app itself costs."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": [(b"host", b"bench"), (b"content-type", b"application/json"),
                         (b"content-length", str(len(body)).encode()), (b"authorization", f"Bearer {key}".encode())],
             "client": ("127.0.0.1", 40000), "server": ("bench", 80), "state": {}}
    sent = False
    status, chunks = 0, []

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)  # no disconnect while the answer is written
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, b"".join(chunks)


async def profile_in_process(url: str, ctx: dict[str, Any], bookings: int, slots: list[tuple[uuid.UUID, datetime]],
                             patients: list[uuid.UUID]) -> dict[str, float]:
    """Statements sent and CPU used per booking by the app in this process, each request handed to the
    ASGI app directly (no HTTP client or server, no job worker; one at a time), counted by SQLAlchemy
    (statements inside PL/pgSQL functions are not seen)."""
    from sqlalchemy import event

    from prm.app import create_app
    from prm.core.db import Database

    settings = bench_settings(url)
    db = Database.connect(url, pool_size=2)
    app = create_app(settings, database=db)
    counter = {"n": 0}

    def count(*_: Any) -> None:
        counter["n"] += 1

    event.listen(db.engine.sync_engine, "before_cursor_execute", count)
    async with app.router.lifespan_context(app):
        async def book(i: int) -> None:
            practitioner, start = slots[i]
            status, answer = await asgi_call(app, "POST", "/appointments", ctx["key"], json.dumps({
                "patient_id": str(patients[i]), "service_id": str(ctx["service"]),
                "practitioner_id": str(practitioner), "start_at": start.isoformat()}).encode())
            assert status == 201, answer

        for i in range(10):  # warm-up
            await book(i)
        counter["n"] = 0
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for i in range(10, 10 + bookings):
            await book(i)
        cpu, elapsed = time.process_time() - cpu0, time.perf_counter() - wall0
        statements = counter["n"] / bookings
        counter["n"] = 0
        cpu0 = time.process_time()
        for _ in range(bookings):
            status, answer = await asgi_call(app, "GET", "/auth/me", ctx["key"])
            assert status == 200, answer
        me_cpu = time.process_time() - cpu0
        me_statements = counter["n"] / bookings
    await db.dispose()
    return {"statements": statements, "cpu_ms": cpu / bookings * 1000, "wall_ms": elapsed / bookings * 1000,
            "me_statements": me_statements, "me_cpu_ms": me_cpu / bookings * 1000}


# --- report -------------------------------------------------------------------------------------------


def spread(values: list[float], fmt: str = "{:.3f}") -> str:
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}–{fmt.format(max(values))})"


def report(args: argparse.Namespace, results: Results, race: str, profile: dict[str, float] | None,
           sweep: list[tuple[int, Phase, Phase]]) -> str:
    p = {name: results.phases.get(name, []) for name in PHASES["all"]}  # `--only` leaves some empty

    def spread_of(values: list[float], fmt: str = "{:.3f}") -> str:
        return spread(values, fmt) if values else "—"

    def ratios(service: str, raw: str) -> list[float]:
        if not (p[service] and p[raw]):
            return []
        return [s.rate / r.rate for s, r in zip(p[service], p[raw], strict=True)]

    booking_ratio, me_ratio, webhook_ratio = ratios("booking", "raw_booking"), ratios("me", "raw_booking"), \
        ratios("webhook", "raw_webhook")

    def cpu(name: str) -> str:
        return spread_of([ph.cpu_seconds / ph.count * 1000 for ph in p[name] if ph.cpu_seconds is not None],
                         "{:.1f}")

    def client_cpu(name: str) -> str:
        return spread_of([ph.client_cpu_seconds / ph.count * 1000 for ph in p[name]
                          if ph.client_cpu_seconds is not None], "{:.1f}")

    def api_cpu(name: str) -> str:
        return spread_of([(ph.cpu_seconds - (ph.worker_cpu_seconds or 0)) / ph.count * 1000 for ph in p[name]
                          if ph.cpu_seconds is not None], "{:.1f}")

    def with_jobs(name: str) -> list[float]:
        return [(ph.cpu_seconds + ph.drain_cpu_seconds) / ph.count * 1000 for ph in p[name]
                if ph.cpu_seconds is not None and ph.drain_cpu_seconds is not None]

    def db_cpu(name: str) -> str:
        return spread_of([ph.db_cpu_seconds / ph.count * 1000 for ph in p[name] if ph.db_cpu_seconds is not None],
                         "{:.2f}")

    webhook_total, booking_total = with_jobs("webhook"), with_jobs("booking")
    separate = any(ph.worker_cpu_seconds for ph in p["booking"] + p["webhook"])
    sweep_lines = ["", "Booking throughput against concurrent clients (one run each, after the rounds):", "",
                   "| clients | service | p95 | raw inserts | ratio |", "|---|---|---|---|---|"] + [
        f"| {clients} | {served.rate:.0f}/s | {served.p95_ms:.0f} ms | {raw.rate:.0f}/s | "
        f"{served.rate / raw.rate:.3f} |" for clients, raw, served in sweep] if sweep else []

    lines = [
        f"# Throughput ({args.rounds} rounds, {args.clients} clients, "
        f"`prm serve{'' if args.workers is None else f' --workers {args.workers}'}"
        f"{''.join(' ' + s for s in args.serve_arg)}`, WEBHOOK_INGEST={args.webhook_ingest}, "
        f"HTTP client {args.client}, "
        f"{os.cpu_count()} cores)",
        "",
        "Median (min–max over rounds). Each ratio is service ÷ raw SQL measured in the same round.",
        "",
        "| figure | service | raw database | ratio |",
        "|---|---|---|---|",
        f"| booking | {spread_of([x.rate for x in p['booking']], '{:.0f}')}/s, p95 "
        f"{spread_of([x.p95_ms for x in p['booking']], '{:.0f}')} ms | "
        f"{spread_of([x.rate for x in p['raw_booking']], '{:.0f}')} inserts/s | {spread_of(booking_ratio)} |",
        f"| `GET /auth/me` (no writes) | {spread_of([x.rate for x in p['me']], '{:.0f}')}/s, p95 "
        f"{spread_of([x.p95_ms for x in p['me']], '{:.0f}')} ms | (raw booking insert) | {spread_of(me_ratio)} |",
        f"| signed WhatsApp webhook ingest | {spread_of([x.rate for x in p['webhook']], '{:.0f}')}/s, p95 "
        f"{spread_of([x.p95_ms for x in p['webhook']], '{:.0f}')} ms | "
        f"{spread_of([x.rate for x in p['raw_webhook']], '{:.0f}')}/s (event row + job) | "
        f"{spread_of(webhook_ratio)} |",
        "",
        f"- server CPU per request (all `prm serve` processes incl. the job worker, from /proc): booking "
        f"{cpu('booking')} ms, webhook {cpu('webhook')} ms, `GET /auth/me` {cpu('me')} ms",
        f"- database CPU per request (the embedded PostgreSQL's processes, from /proc; jobs the worker ran "
        f"meanwhile included): booking {db_cpu('booking')} ms against {db_cpu('raw_booking')} ms per raw insert; "
        f"webhook {db_cpu('webhook')} ms against {db_cpu('raw_webhook')} ms per raw event row + job; "
        f"`GET /auth/me` {db_cpu('me')} ms",
        f"- the benchmark's own CPU per request (its HTTP clients, one Python process: when it nears a whole "
        f"core, the clients are the limit, not the server): booking {client_cpu('booking')} ms, webhook "
        f"{client_cpu('webhook')} ms, `GET /auth/me` {client_cpu('me')} ms",
        (f"- of which the API processes (the job worker is its own process): booking {api_cpu('booking')} ms, "
         f"webhook {api_cpu('webhook')} ms, `GET /auth/me` {api_cpu('me')} ms" if separate else
         "- (the job worker runs inside the API process here: its work for a phase's jobs is counted in it, "
         "and what it does late in the next phase)"),
        f"- webhook jobs still queued when the phase ended: "
        f"{spread_of([float(ph.queued_after or 0) for ph in p['webhook']], '{:.0f}')} of "
        f"{args.clients * args.per_client}; server CPU per webhook including the jobs it caused (phase + "
        f"drain): {spread_of(webhook_total, '{:.1f}')} ms",
        (f"- server CPU per booking including the event deliveries it caused (phase + drain): "
         f"{spread_of(booking_total, '{:.1f}')} ms; deliveries still queued when the phase ended (the "
         f"worker's share of the phase is what it did of the rest): "
         f"{spread_of([float(ph.queued_after or 0) for ph in p['booking']], '{:.0f}')} of "
         f"{args.clients * args.per_client}" if booking_total else "- booking phases: not run"),
        (f"- the app alone (requests handed to it in process, one at a time, no HTTP client, server or job "
         f"worker): {profile['statements']:.1f} statements and {profile['cpu_ms']:.2f} ms CPU per booking, "
         f"{profile['wall_ms']:.1f} ms wall; `GET /auth/me`: {profile['me_statements']:.0f} statements, "
         f"{profile['me_cpu_ms']:.2f} ms CPU" if profile is not None
         else "- in-process booking profile: not run (--only webhook)"),
        f"- {race}",
        f"- requests sent again after the server closed an idle keep-alive connection: {RECONNECTS['count']}",
        *sweep_lines,
        "",
    ]
    return "\n".join(lines)


def charts(out: Path, results: Results, sweep: list[tuple[int, Phase, Phase]]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(7, 4))
    for name in ("booking", "raw_booking", "webhook", "raw_webhook", "me"):
        if name not in results.phases:
            continue
        values = sorted(x * 1000 for ph in results.phases[name] for x in ph.latencies)
        ax.plot(values, [i / len(values) for i in range(len(values))], label=name)
    ax.set_xscale("log")
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("fraction of requests")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "throughput-latency.png")
    plt.close(fig)
    if not sweep:
        return
    fig, ax = plt.subplots(figsize=(7, 4))
    clients = [c for c, _, _ in sweep]
    ax.plot(clients, [served.rate for _, _, served in sweep], marker="o", label="POST /appointments")
    ax.plot(clients, [raw.rate for _, raw, _ in sweep], marker="o", label="raw INSERT (ceiling)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("concurrent clients")
    ax.set_ylabel("bookings per second")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "throughput-clients.png")
    plt.close(fig)


def write_report(out: Path, text: str, results: Results, sweep: list[tuple[int, Phase, Phase]]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "throughput.md").write_text(text)
    charts(out, results, sweep)


async def main(args: argparse.Namespace, url: str) -> None:
    from prm.core.db import libpq_url

    url = libpq_url(url)
    clinic_number = "+34910000777"
    token = secrets.token_hex(16)
    per_round = args.clients * args.per_client
    ctx = await seed(url, patients=2 * args.rounds * per_round + 2 * SWEEP_REQUESTS * len(args.sweep) + RACE + 400
                     + warm_up_bookings(args),
                     clinic_number=clinic_number)
    with server(url, args, token) as (base, pid):
        bench = Bench(args, url, ctx, base, pid, token, clinic_number)
        race = await bench.run()
    profile = None
    if "booking" in PHASES[args.only]:
        profile_slots = bench.next_slots(210)
        profile = await profile_in_process(url, ctx, 200, profile_slots, [next(bench.patients) for _ in range(210)])
    text = report(args, bench.results, race, profile, bench.sweep)
    print(text)
    write_report(Path(args.out), text, bench.results, bench.sweep)
    if "FAILED" in race:
        sys.exit(1)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="prm serve --workers N (default: one per core, as in production, with the job "
                             "worker its own process; 1: development's one process with the worker inside)")
    parser.add_argument("--serve-arg", action="append", default=[], help="extra argument for prm serve")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--per-client", type=int, default=10)
    parser.add_argument("--webhook-ingest", default="deferred", choices=["deferred", "inline"],
                        help="WEBHOOK_INGEST of the server (deferred: the fast path, production's default)")
    parser.add_argument("--client", "--webhook-client", dest="client", default="raw", choices=["raw", "httpx"],
                        help="HTTP client of the measured phases (raw: a minimal keep-alive HTTP/1.1 client)")
    parser.add_argument("--only", default="all", choices=sorted(PHASES),
                        help="run only these phases (webhook: raw_webhook, webhook and /auth/me; no race)")
    parser.add_argument("--pool", type=int, default=None,
                        help="DB_POOL_SIZE of each server process (default: the service's own default)")
    parser.add_argument("--sweep", type=lambda v: [int(x) for x in v.split(",") if x], default=[1, 4, 16, 32],
                        help="client counts for the booking throughput-vs-clients chart (empty: none)")
    parser.add_argument("--out", default="benchmarks/out")
    asyncio.run(main(parser.parse_args(), prepare()))  # alembic runs its own loop first
