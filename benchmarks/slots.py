"""Available slots over real HTTP against the pure slot arithmetic, measured interleaved.

    PYTHONPATH=src python benchmarks/slots.py [--rounds 9] [--days 30] [--practitioners 20]

Starts a throwaway embedded PostgreSQL (or uses DATABASE_URL), migrates it and stores a clinic:
20 practitioners in Madrid working Monday to Friday 09-13 and 14-18, a 30-minute service with a
10-minute after-buffer, one booking a working day each. The range is 30 days from the next 15 March,
so it spans the spring DST change. Then it starts `prm serve` (one API process, no job worker) on
127.0.0.1 and drives it over real HTTP (httpx, one keep-alive connection, one request at a time).

Each round measures, one after the other on the same loaded machine:

1. the pure function `slots.compute_slots` (slot objects) on the same inputs as the service reads
   (loaded once from the database through `availability.slot_query`);
2. the pure function `slots.start_times` (the compact form);
3. `GET /slots` (the full list, the default shape) over HTTP;
4. `GET /slots?shape=compact` over HTTP.

It prints the median and min-max over rounds of each, the ratios HTTP ÷ pure computed per round,
the CPU the server used per request (from /proc, in 10 ms ticks: summed over all rounds; less
sensitive to other load than wall time) against the pure function's CPU, and the answer sizes.
Nothing is asserted as a timing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from datetime import time as wall
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx

TICKS = os.sysconf("SC_CLK_TCK")
ZONE = "Europe/Madrid"


def prepare() -> str:
    """The database URL (a throwaway embedded server unless DATABASE_URL), migrated to head."""
    from prm.cli import migrate_database
    from prm.core import embedded
    from prm.settings import Settings

    url = os.environ.get("DATABASE_URL") or embedded.start(
        Path(tempfile.mkdtemp(prefix="prm-bench-slots-")) / "pg", throwaway=True
    )
    migrate_database(Settings(_env_file=None, database_url=url))  # type: ignore[call-arg]
    return url


def first_day() -> date:
    """The next 15 March: the 30 days from it contain the spring change of Europe/Madrid."""
    today = datetime.now(UTC).date()
    candidate = date(today.year, 3, 15)
    return candidate if candidate > today else date(today.year + 1, 3, 15)


async def seed(url: str, practitioners: int, first: date, days: int) -> dict[str, Any]:
    """The clinic (see the module docstring), an API key, and the inputs of the pure function."""
    from sqlalchemy import insert

    from prm import context, modules
    from prm.appointments import availability, service
    from prm.appointments.models import Appointment
    from prm.appointments.schemas import LocationCreate, PractitionerCreate, RuleCreate, ServiceCreate
    from prm.core.db import Database
    from prm.identity import service as identity
    from prm.identity.schemas import ApiKeyCreate, OrganisationCreate
    from prm.patients.models import Patient
    from prm.settings import Settings

    modules.load()
    db = Database.connect(url, pool_size=2)
    context.bind(db.sessionmaker, context.Context.build(Settings(_env_file=None, database_url=url)))  # type: ignore[call-arg]
    try:
        async with db.sessionmaker() as s:
            org = await identity.create_organisation(
                s, OrganisationCreate(name="Slots", slug=f"slots-{uuid.uuid4().hex[:8]}", timezone=ZONE)
            )
            _, key = await identity.create_api_key(s, org.id, ApiKeyCreate(name="bench", role="admin"))
            location = await service.create_location(s, org.id, LocationCreate(name="Centro", timezone=ZONE))
            ids = []
            for i in range(practitioners):
                p = await service.create_practitioner(s, org.id, PractitionerCreate(name=f"Dr {i}", timezone=ZONE))
                ids.append(p.id)
                for weekday in range(5):
                    for opens, closes in ((wall(9), wall(13)), (wall(14), wall(18))):
                        await service.add_rule(s, org.id, p.id, RuleCreate(
                            location_id=location.id, weekday=weekday, start_time=opens, end_time=closes))
            svc = await service.create_service(s, org.id, ServiceCreate(
                name="Cleaning", duration_minutes=30, buffer_after_minutes=10, min_notice_minutes=0,
                horizon_days=730, practitioner_ids=ids))
            patient_ids = [uuid.uuid4() for _ in ids]
            await s.execute(insert(Patient), [{"id": pid, "org_id": org.id, "given_name": "Slots",
                                               "family_name": str(n)} for n, pid in enumerate(patient_ids)])
            tz = ZoneInfo(ZONE)
            bookings = []
            for pid, patient_id in zip(ids, patient_ids, strict=True):
                for d in range(days):
                    day = first + timedelta(days=d)
                    if day.weekday() < 5:  # 10:00 local, 30 minutes, blocked until 10:40
                        start = datetime.combine(day, wall(10), tzinfo=tz).astimezone(UTC)
                        bookings.append({
                            "org_id": org.id, "patient_id": patient_id, "practitioner_id": pid,
                            "service_id": svc.id, "location_id": location.id, "start_at": start,
                            "end_at": start + timedelta(minutes=30), "blocked_from": start,
                            "blocked_until": start + timedelta(minutes=40)})
            await s.execute(insert(Appointment), bookings)
            await s.commit()
            last = first + timedelta(days=days - 1)
            inputs = await availability.slot_query(s, org.id, service_id=svc.id, start_date=first, end_date=last)
            return {"key": key, "service_id": svc.id, "first": first, "last": last, "inputs": inputs}
    finally:
        await db.dispose()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def prm_serve(url: str) -> Iterator[tuple[str, int]]:
    """`prm serve` on a free port of 127.0.0.1 (one process, no job worker): its base URL and pid."""
    port = free_port()
    env = {**os.environ, "DATABASE_URL": url, "ENVIRONMENT": "development", "LOG_LEVEL": "WARNING",
           "SECRET_KEY": secrets.token_hex(32), "PRM_DATA_DIR": tempfile.mkdtemp(prefix="prm-bench-slots-serve-")}
    command = [sys.executable, "-m", "prm", "serve", "--no-migrate", "--no-demo", "--no-worker",
               "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):  # 90 s
            if proc.poll() is not None:
                raise SystemExit(f"prm serve exited with {proc.returncode}")
            if ready(base):
                break
            time.sleep(0.3)
        else:
            raise SystemExit("prm serve did not become ready in 90 s")
        yield base, proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def ready(base: str) -> bool:
    try:
        return httpx.get(f"{base}/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def cpu_seconds(pid: int) -> float:
    """user + system CPU of one process so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as fh:
        rest = fh.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / TICKS


def timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """(wall seconds, this process's CPU seconds, result) of one call."""
    c0, t0 = time.process_time(), time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, time.process_time() - c0, result


def summary(values: list[float], scale: float = 1000.0, unit: str = "ms") -> str:
    return (f"median {statistics.median(values) * scale:8.1f} {unit}   "
            f"min-max {min(values) * scale:7.1f}-{max(values) * scale:.1f} {unit}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--practitioners", type=int, default=20)
    args = parser.parse_args()

    from prm.appointments import slots

    url = prepare()
    ctx = asyncio.run(seed(url, args.practitioners, first_day(), args.days))
    schedules, times, query = ctx["inputs"]
    params = {"service_id": str(ctx["service_id"]), "start_date": str(ctx["first"]), "end_date": str(ctx["last"])}
    rows: dict[str, list[float]] = {name: [] for name in ("pure full", "pure compact", "http full", "http compact")}
    cpu: dict[str, list[float]] = {name: [] for name in rows}
    with prm_serve(url) as (base, pid), httpx.Client(
        base_url=base, headers={"Authorization": f"Bearer {ctx['key']}"}, timeout=60
    ) as http:

        def get(shape: str) -> httpx.Response:
            c0 = cpu_seconds(pid)
            r = http.get("/slots", params={**params, "shape": shape})
            if r.status_code != 200:
                raise SystemExit(f"GET /slots?shape={shape}: {r.status_code} {r.text[:300]}")
            cpu[f"http {shape}"].append(cpu_seconds(pid) - c0)
            return r

        full, compact = get("full"), get("compact")  # warm-up (imports, caches, connections), not counted
        cpu["http full"].clear()
        cpu["http compact"].clear()
        found = slots.compute_slots(schedules, times, query)
        if len(full.json()) != len(found):
            raise SystemExit(f"the service answered {len(full.json())} slots, the pure function {len(found)}")
        for _ in range(args.rounds):
            for name, call in (
                ("pure full", lambda: slots.compute_slots(schedules, times, query)),
                ("pure compact", lambda: slots.start_times(schedules, times, query)),
                ("http full", lambda: get("full")),
                ("http compact", lambda: get("compact")),
            ):
                seconds, cpu_used, _ = timed(call)
                rows[name].append(seconds)
                if name.startswith("pure"):
                    cpu[name].append(cpu_used)

    print(f"slots of 1 service, {args.practitioners} practitioners x {args.days} days "
          f"({ctx['first']}..{ctx['last']}, {ZONE}, across the spring change), {len(found)} slots; "
          f"over real HTTP to `prm serve` (1 process), {args.rounds} rounds interleaved")
    for name, values in rows.items():
        print(f"  {name:<13} wall {summary(values)}   CPU {sum(cpu[name]) / len(cpu[name]) * 1000:6.1f} ms a call")
    print(f"  answer sizes: full {len(full.content) / 1e6:.2f} MB, compact {len(compact.content) / 1e6:.3f} MB")

    def ratio(a: str, b: str) -> str:
        per_round = [x / y for x, y in zip(rows[a], rows[b], strict=True)]
        return (f"wall per round: median {statistics.median(per_round):5.2f}x, "
                f"min-max {min(per_round):.2f}-{max(per_round):.2f}x   CPU: {sum(cpu[a]) / sum(cpu[b]):5.2f}x")

    print("  ratios (goal of issue 19: HTTP <= 1.5x the pure function)")
    for a, b in (("http compact", "pure full"), ("http compact", "pure compact"), ("http full", "pure full")):
        print(f"    {a} / {b:<13} {ratio(a, b)}")


if __name__ == "__main__":
    main()
