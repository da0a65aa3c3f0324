"""CPU and statements of the background work a booking and an inbound message cause, in process.

    PYTHONPATH=src python benchmarks/background.py [--n 200] [--profile deliver|send|webhook] [--trace]

Starts a throwaway embedded PostgreSQL (or uses DATABASE_URL), migrates it and seeds one clinic
(`throughput.seed`), then in this process, with no HTTP server and no procrastinate worker:

1. books `--n` appointments for patients without any address (the throughput benchmark's case: the
   confirmation is refused, no channel) and `--n` for patients with a phone and an email (the
   confirmation is queued), through the ASGI app, untimed;
2. runs the `events.deliver` jobs those bookings queued, each through `jobs.run_job` (its own
   session and transaction, as the worker runs it), timed with `time.process_time` and counted with
   a `before_cursor_execute` listener (statements inside PL/pgSQL functions are not seen);
3. runs the `communications.send` jobs the confirmations queued (sandbox provider), likewise;
4. stores `--n` inbound WhatsApp messages as the webhook's fast path does (`accept_twilio_message`,
   untimed) and runs the jobs they cause until none is left, per job name.

The procrastinate worker's own cost (fetching and finishing the job rows) is not included: this
measures the project's code per job. `--profile X` prints a cProfile (process time) of step X.
Nothing here is asserted: it prints figures.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import sys
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import throughput  # the seed, the database, the ASGI call


async def _todo(db: Any, names: tuple[str, ...]) -> list[tuple[int, str, dict[str, Any]]]:
    from sqlalchemy import text

    async with db.sessionmaker() as s:
        rows = (await s.execute(text(
            "SELECT id, task_name, args FROM procrastinate_jobs WHERE status = 'todo' "
            "AND task_name = ANY(:names) AND (scheduled_at IS NULL OR scheduled_at <= now()) ORDER BY id"),
            {"names": list(names)})).all()
    return [(int(r[0]), str(r[1]), dict(r[2] or {})) for r in rows]


async def _finish(db: Any, ids: list[int]) -> None:
    from sqlalchemy import text

    async with db.sessionmaker() as s:
        await s.execute(text("UPDATE procrastinate_jobs SET status = 'succeeded' WHERE id = ANY(:ids)"),
                        {"ids": ids})
        await s.commit()


class Meter:
    def __init__(self, engine: Any) -> None:
        from sqlalchemy import event

        self.statements = 0
        self.trace = False
        self.trace_jobs = False
        event.listen(engine.sync_engine, "before_cursor_execute", self._count)

    def _count(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        self.statements += 1
        if self.trace:
            print("    SQL", " ".join(statement.split())[:240])


async def run_jobs(db: Any, meter: Meter, names: tuple[str, ...], *, profile: cProfile.Profile | None = None,
                   follow: bool = False) -> dict[str, list[float]]:
    """Run the due jobs of `names` one by one (and those they queue, with `follow`): per name, the
    count, CPU seconds and statements."""
    from prm.core import jobs

    out: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0])
    traced: set[str] = set()
    while True:
        todo = await _todo(db, names)
        if not todo:
            break
        for _job_id, name, args in todo:
            if meter.trace_jobs and name not in traced:
                traced.add(name)
                meter.trace = True
                print(f"  {name} {args}")
            s0, c0 = meter.statements, time.process_time()
            if profile is not None:
                profile.enable()
            try:
                await jobs.run_job(name, **args)
            finally:
                if profile is not None:
                    profile.disable()
            meter.trace = False
            figures = out[f"{name} → {args['subscriber']}" if name == "events.deliver" else name]
            figures[0] += 1
            figures[1] += time.process_time() - c0
            figures[2] += meter.statements - s0
        await _finish(db, [j for j, _, _ in todo])
        if not follow:
            break
    return dict(out)


def show(title: str, figures: dict[str, list[float]]) -> None:
    for name, (n, cpu, statements) in sorted(figures.items()):
        print(f"{title:<24} {name:<58} n={int(n):>4}  {cpu / n * 1000:6.2f} ms CPU/job  "
              f"{statements / n:5.1f} statements/job")


async def main(args: argparse.Namespace, url: str) -> None:
    from sqlalchemy import update

    from prm.app import create_app
    from prm.core import jobs
    from prm.core.db import Database, libpq_url
    from prm.patients.models import Patient
    from prm.webhooks import service as webhooks

    url = libpq_url(url)
    clinic = "+34910000777"
    ctx = await throughput.seed(url, patients=4 * args.n + 40, clinic_number=clinic)
    settings = throughput.bench_settings(url)
    db = Database.connect(url, pool_size=2)
    app = create_app(settings, database=db)
    meter = Meter(db.engine)
    meter.trace_jobs = args.trace
    patients = iter(ctx["patients"])
    reachable = [next(patients) for _ in range(args.n + 20)]
    async with db.sessionmaker() as s:
        for n, pid in enumerate(reachable):
            await s.execute(update(Patient).where(Patient.id == pid).values(
                primary_phone=f"+3461{n:07d}", primary_email=f"p{n}@example.org"))
        await s.commit()
    bench = throughput.Bench(argparse.Namespace(), url, ctx, "", 0, "", clinic)
    profiles = {k: cProfile.Profile(timer=time.process_time) for k in ("deliver", "send", "webhook")}

    async def book(patient_ids: list[uuid.UUID]) -> None:
        for pid, (practitioner, start) in zip(patient_ids, bench.next_slots(len(patient_ids)), strict=True):
            status, answer = await throughput.asgi_call(app, "POST", "/appointments", ctx["key"], json.dumps({
                "patient_id": str(pid), "service_id": str(ctx["service"]),
                "practitioner_id": str(practitioner), "start_at": start.isoformat()}).encode())
            assert status == 201, answer

    async with app.router.lifespan_context(app):
        # warm-up: imports, caches, compiled statements
        await book(reachable[:20])
        await run_jobs(db, meter, ("events.deliver", "communications.send"), follow=True)
        await book([next(patients) for _ in range(20)])
        await run_jobs(db, meter, ("events.deliver",))

        await book([next(patients) for _ in range(args.n)])
        show("deliveries, no address", await run_jobs(db, meter, ("events.deliver",)))
        await book(reachable[20:])
        show("deliveries, reachable", await run_jobs(
            db, meter, ("events.deliver",), profile=profiles["deliver"] if args.profile == "deliver" else None))
        show("sends (sandbox)", await run_jobs(
            db, meter, ("communications.send",), profile=profiles["send"] if args.profile == "send" else None))

        senders = [f"+3460{n:07d}" for n in range(50)]

        async def inbound(count: int) -> None:
            async with db.sessionmaker() as s:
                for k in range(count):
                    await webhooks.accept_twilio_message(s, {
                        "MessageSid": f"SM{uuid.uuid4().hex}", "AccountSid": "ACbench",
                        "From": f"whatsapp:{senders[k % len(senders)]}", "To": f"whatsapp:{clinic}",
                        "Body": f"hello {k}", "NumMedia": "0"})
                await s.commit()

        webhook_jobs = tuple(name for name, spec in jobs.registered().items() if not spec.periodic_cron)
        await inbound(20)
        await run_jobs(db, meter, webhook_jobs, follow=True)
        await inbound(args.n)
        c0 = time.process_time()
        figures = await run_jobs(db, meter, webhook_jobs, follow=True,
                                 profile=profiles["webhook"] if args.profile == "webhook" else None)
        total = time.process_time() - c0
        show("webhook cascade", figures)
        print(f"webhook cascade: {sum(f[1] for f in figures.values()) / args.n * 1000:.2f} ms CPU per inbound "
              f"message in the jobs ({total / args.n * 1000:.2f} ms with this script's bookkeeping), "
              f"{sum(f[2] for f in figures.values()) / args.n:.1f} statements")
    await db.dispose()
    if args.profile:
        pstats.Stats(profiles[args.profile]).sort_stats("cumulative").print_stats(args.lines)
        pstats.Stats(profiles[args.profile]).sort_stats("tottime").print_stats(args.lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--profile", choices=["deliver", "send", "webhook"], default=None)
    parser.add_argument("--lines", type=int, default=45)
    parser.add_argument("--trace", action="store_true", help="print the statements of the first job of each name")
    asyncio.run(main(parser.parse_args(), throughput.prepare()))
