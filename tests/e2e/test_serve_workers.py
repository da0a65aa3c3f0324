"""`prm serve --workers 2` (issue 19): two API processes on one port and the job worker as its own
process, all on one database. The 200-way race for one slot still gives exactly one booking, both
API processes serve it, a killed API process or worker is replaced, and SIGTERM stops them all.
With a second `prm worker` beside it (two API processes, two workers), a 1,000-recipient batch is
sent exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import uuid
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy import insert

from prm import context
from prm.appointments import service
from prm.appointments.schemas import LocationCreate, PractitionerCreate, RuleCreate, ServiceCreate
from prm.core.db import Database
from prm.patients.models import Patient, PatientPhone
from prm.settings import Settings
from tests.e2e.processes import OwnPostgres, free_port, prm_env, start_prm, stop_process, wait_ready, wait_until
from tests.fixtures.factories import make_api_key, make_org, make_patient
from tests.fixtures.messaging import new_phone

pytestmark = pytest.mark.slow
RACERS = 200
RECIPIENTS = 1000


async def _clinic(url: str, settings: Settings) -> dict[str, Any]:
    """A committed clinic: one practitioner open all day every day, a service, 200 patients, a key."""
    db = Database.connect(url, pool_size=1, max_overflow=0)
    context.bind(db.sessionmaker, context.Context.build(settings))
    try:
        async with db.sessionmaker() as s:
            org = await make_org(s, name="Scaled Clinic", timezone="UTC")
            location = await service.create_location(s, org.id, LocationCreate(name="Main", timezone="UTC"))
            vega = await service.create_practitioner(s, org.id, PractitionerCreate(name="Dr Vega", timezone="UTC"))
            for weekday in range(7):
                await service.add_rule(s, org.id, vega.id, RuleCreate(
                    location_id=location.id, weekday=weekday, start_time=time(0), end_time=time(23, 59)))
            visit = await service.create_service(s, org.id, ServiceCreate(
                name="Visit", duration_minutes=30, min_notice_minutes=0, practitioner_ids=[vega.id]))
            patients = [str((await make_patient(s, org, phone=new_phone() if i == 0 else None)).id)  # type: ignore[attr-defined]
                        for i in range(RACERS)]
            _, key = await make_api_key(s, org)
            recipients = [uuid.uuid4() for _ in range(RECIPIENTS)]
            await s.execute(insert(Patient), [
                {"id": pid, "org_id": org.id, "given_name": f"R{n}", "family_name": "Batch",
                 "primary_phone": f"+3462{n:07d}", "preferred_channel": "sms"} for n, pid in enumerate(recipients)])
            await s.execute(insert(PatientPhone), [
                {"id": uuid.uuid4(), "org_id": org.id, "patient_id": pid, "number": f"+3462{n:07d}",
                 "is_primary": True} for n, pid in enumerate(recipients)])
            await s.commit()
            return {"key": key, "practitioner": str(vega.id), "service": str(visit.id), "patients": patients,
                    "org": str(org.id), "recipients": [str(r) for r in recipients]}
    finally:
        await db.dispose()


def _children(pid: int) -> dict[int, str]:
    """The live child processes of `pid` and their command lines."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if int(stat[stat.rindex(")") + 2:].split()[1]) == pid and stat[stat.rindex(")") + 2] != "Z":
            found[int(entry)] = cmdline
    return found


def _sockets_by_process(port: int, pids: list[int], state: str) -> dict[int, set[str]]:
    """The TCP sockets of local port `port` in `state` (/proc/net/tcp: "01" established, "0A"
    listening) each process holds, by inode (matched against its socket fds)."""
    wanted = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == state:
            wanted.add(fields[9])  # inode
    found = {}
    for pid in pids:
        inodes = set()
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
        found[pid] = inodes & wanted
    return found


def _nice(pid: int) -> int:
    """The process's nice value (/proc/<pid>/stat, field 19)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2:].split()[16])


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def _roles(pid: int) -> tuple[list[int], list[int]]:
    children = _children(pid)
    api = [p for p, cmd in children.items() if "multiprocessing.spawn" in cmd]
    workers = [p for p, cmd in children.items() if cmd.rstrip().endswith("-m prm worker")]
    return api, workers


def _complete(pid: int) -> tuple[list[int], list[int]] | None:
    """(API processes, worker processes) once there are two and one of them."""
    api, workers = _roles(pid)
    return (api, workers) if len(api) == 2 and len(workers) == 1 else None


def _row(url: str, sql: str, *params: Any) -> tuple[Any, ...]:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(sql, params).fetchone()
    assert row is not None
    return tuple(row)


def _backend_nices(url: str, named: str) -> set[int]:
    """The nice values of the server processes of the connections whose name starts with `named`."""
    with psycopg.connect(url, autocommit=True) as conn:
        pids = [pid for (pid,) in conn.execute("SELECT pid FROM pg_stat_activity WHERE application_name LIKE %s",
                                               (named + "%",))]
    return {_nice(pid) for pid in pids if _alive(pid)}


def _scalar(url: str, sql: str, *params: Any) -> Any:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(sql, params).fetchone()
    return row[0] if row else None


async def test_two_api_processes_and_a_worker_process_on_one_database(
    app: Any, settings: Settings, own_postgres: OwnPostgres,
) -> None:
    url, root = own_postgres.url, own_postgres.root
    clinic = await _clinic(url, settings)
    port, log = free_port(), root / "serve.log"
    # uvicorn's "Application startup complete" (below) is an INFO line of a library: ask for it
    env = prm_env(root, DATABASE_URL=url, LOG_LEVEL="INFO", LOG_LEVEL_LIBRARIES="INFO", DB_POOL_SIZE="20",
                  DB_MAX_OVERFLOW="15", DB_POOL_TIMEOUT_SECONDS="60", JOB_HEARTBEAT_SECONDS="1")
    serve = start_prm(["serve", "--workers", "2", "--no-migrate", "--port", str(port)], env, log, root)
    base = f"http://127.0.0.1:{port}"
    extra: subprocess.Popen[bytes] | None = None

    try:
        wait_ready(serve, base, log, timeout=180)
        api, workers = wait_until(lambda: _complete(serve.pid), timeout=60,
                                  what="two API processes and one worker process", logs=[log])
        wait_until(lambda: log.read_text().count("Application startup complete") >= 2, timeout=120,
                   what="both API processes to have started", logs=[log])
        # 32 keep-alive connections opened at once are spread over both processes (a socket each)
        held = [socket.create_connection(("127.0.0.1", port)) for _ in range(32)]
        try:
            for conn in held:
                conn.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                assert conn.recv(4096).startswith(b"HTTP/1.1 200")
            spread = {pid: len(found) for pid, found in _sockets_by_process(port, api, "01").items()}
        finally:
            for conn in held:
                conn.close()
        assert sorted(spread.values())[0] >= 8 and sum(spread.values()) == 32, spread
        # each process accepts on a listening socket of its own (SO_REUSEPORT: the kernel spreads
        # new connections; on one shared socket the first process to wake takes all that wait)
        listening = _sockets_by_process(port, api, "0A")
        assert all(len(found) == 1 for found in listening.values()), listening
        assert len(set().union(*listening.values())) == 2, listening
        # the worker yields the cores to the API processes (WORKER_NICE, 10 by default)
        wait_until(lambda: _nice(workers[0]) == min(19, os.nice(0) + 10), timeout=60,
                   what="the worker to lower its priority", logs=[log])
        assert [_nice(p) for p in api] == [os.nice(0)] * 2
        # ... and so do the server processes of its connections (the database runs on this host)
        wait_until(lambda: _backend_nices(url, "prm-jobs:") == {10}, timeout=60,
                   what="procrastinate's connections of the worker to run at its priority", logs=[log])
        # (a connection is seen in pg_stat_activity a moment before the worker, which just opened it,
        # has lowered its priority: wait for that moment to pass)
        wait_until(lambda: _backend_nices(url, "prm-worker:") <= {10}, timeout=60,
                   what="the worker's own connections to run at its priority", logs=[log])
        assert _backend_nices(url, "prm-api:") <= {0}

        # 200 clients race for one slot through both processes: exactly one booking
        start = (datetime.now(UTC) + timedelta(days=3)).replace(hour=10, minute=0, second=0, microsecond=0)
        limits = httpx.Limits(max_connections=RACERS)
        async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits,
                                     headers={"Authorization": f"Bearer {clinic['key']}"}) as c:
            responses = await asyncio.gather(*(c.post("/appointments", json={
                "patient_id": patient, "service_id": clinic["service"], "practitioner_id": clinic["practitioner"],
                "start_at": start.isoformat()}) for patient in clinic["patients"]))
        codes = sorted(r.status_code for r in responses)
        assert codes == [201] + [409] * (RACERS - 1), [r.text for r in responses if r.status_code not in (201, 409)]
        assert _scalar(url, "SELECT count(*) FROM appointments WHERE practitioner_id = %s AND start_at = %s",
                       clinic["practitioner"], start) == 1
        serving = _scalar(url, "SELECT count(DISTINCT application_name) FROM pg_stat_activity "
                               "WHERE application_name LIKE 'prm-api:%%'")
        assert serving == 2, "both API processes should hold connections after the race"

        # the worker process runs the jobs; killed, it is replaced and the next job still runs
        async def sent_message() -> str:
            async with httpx.AsyncClient(base_url=base, timeout=60,
                                         headers={"Authorization": f"Bearer {clinic['key']}"}) as c:
                r = await c.post("/communications", json={"patient_id": clinic["patients"][0], "channel": "sms",
                                                          "body": "See you soon"})
            assert r.status_code == 201, r.text
            return str(r.json()["id"])

        first = await sent_message()
        wait_until(lambda: _scalar(url, "SELECT status FROM communications WHERE id = %s", first) == "sent",
                   timeout=120, what="the worker process to send a message", logs=[log])
        os.kill(workers[0], signal.SIGKILL)
        os.kill(api[0], signal.SIGKILL)
        wait_until(lambda: (r := _complete(serve.pid)) and workers[0] not in r[1] and api[0] not in r[0],
                   timeout=120, what="a new API process and a new worker process", logs=[log])
        second = await sent_message()
        wait_until(lambda: _scalar(url, "SELECT status FROM communications WHERE id = %s", second) == "sent",
                   timeout=120, what="the replacement worker to send a message", logs=[log])
        assert uuid.UUID(second)

        # a second worker process beside serve's: a 1,000-recipient batch is sent exactly once
        extra_log = root / "worker.log"
        extra = start_prm(["worker"], env, extra_log, root)
        wait_until(lambda: _scalar(url, "SELECT count(*) FROM procrastinate_workers") == 2, timeout=120,
                   what="two workers registered", logs=[log, extra_log])
        async with httpx.AsyncClient(base_url=base, timeout=120,
                                     headers={"Authorization": f"Bearer {clinic['key']}"}) as c:
            r = await c.post("/notifications/batches", json={
                "template_key": "appointment_reminder", "channel": "sms", "purpose": "reminders",
                "patient_ids": clinic["recipients"],
                "variables": {"service_name": "Check-up", "practitioner_name": "Dr Vega", "location_name": "Main",
                              "when": "Monday 7 December 2026, 09:00"}})
            assert r.status_code == 202, r.text
            batch = r.json()["id"]

            async def report() -> dict[str, Any]:
                got = await c.get(f"/notifications/batches/{batch}")
                assert got.status_code == 200, got.text
                return got.json()  # type: ignore[no-any-return]

            deadline = asyncio.get_running_loop().time() + 600
            while not (done := await report())["done"]:
                assert asyncio.get_running_loop().time() < deadline, f"batch not done: {done['counts']}"
                await asyncio.sleep(2)
        assert done["counts"] == {"sent": RECIPIENTS}, done["counts"]
        sent, distinct = _row(url, "SELECT count(*), count(DISTINCT to_address) FROM sandbox_outbox "
                                   "WHERE org_id = %s AND channel = 'sms' AND to_address LIKE '+3462%%'", clinic["org"])
        assert (sent, distinct) == (RECIPIENTS, RECIPIENTS), "every recipient exactly once"
        assert stop_process(extra) == 0, extra_log.read_text()[-3000:]
    finally:
        if extra is not None and extra.poll() is None:
            extra.kill()
        survivors = list(_children(serve.pid))
        code = stop_process(serve, timeout=120)
    assert code == 0, log.read_text()[-3000:]
    wait_until(lambda: not any(_alive(p) for p in survivors), timeout=60, what="every child process to exit",
               logs=[log])


def test_a_port_already_taken_is_refused_not_shared(own_postgres: OwnPostgres) -> None:
    """The processes listen with SO_REUSEPORT: another server on the port, even one with SO_REUSEPORT
    itself, makes `serve` fail at once instead of silently taking a share of its connections."""
    root, port = own_postgres.root, free_port()
    squatter = socket.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    squatter.bind(("127.0.0.1", port))
    squatter.listen()
    log = root / "taken.log"
    try:
        serve = start_prm(["serve", "--workers", "2", "--no-migrate", "--no-worker", "--port", str(port)],
                          prm_env(root, DATABASE_URL=own_postgres.url), log, root)
        code = serve.wait(timeout=180)
    finally:
        squatter.close()
    assert code != 0, log.read_text()[-2000:]
    assert "cannot listen on" in log.read_text()
