"""Messaging benchmark: signed inbound-webhook throughput and p95, and a 1,000-recipient batch.

    PYTHONPATH=src python benchmarks/messaging_webhooks.py \
        [--webhooks 500] [--concurrency 8] [--recipients 1000]

Starts its own throwaway embedded PostgreSQL (or uses DATABASE_URL), migrates it, and drives the
ASGI app in-process (no network): each webhook is signed with the Twilio SDK's RequestValidator,
checked, stored, matched to a (provisional) patient and published as `message.received`. The batch
part times queueing a notification to 1,000 patients and delivering it through the sandbox provider
with a real procrastinate worker (`prm worker`'s code) draining the queue.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from pydantic import SecretStr
from sqlalchemy import insert, text
from twilio.request_validator import RequestValidator


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def database() -> str:
    from alembic import command
    from alembic.config import Config

    from prm.app import migrations_dir
    from prm.core import embedded

    url = os.environ.get("DATABASE_URL") or embedded.start(
        Path(tempfile.mkdtemp(prefix="prm-bench-")) / "pg", throwaway=True
    )
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.attributes["database_url"] = url
    command.upgrade(config, "head")
    return url


async def main(args: argparse.Namespace, url: str) -> None:
    from prm.app import create_app
    from prm.core import jobs
    from prm.core.auth import Principal
    from prm.core.db import Database
    from prm.identity import service as identity
    from prm.identity.schemas import OrganisationCreate
    from prm.notifications import service as notifications
    from prm.notifications.schemas import BatchCreate
    from prm.patients.models import Patient, PatientPhone
    from prm.settings import Settings

    token = secrets.token_hex(16)
    settings = Settings(
        _env_file=None,
        environment="test",
        database_url=url,
        run_worker=False,  # type: ignore[call-arg]
        log_level="ERROR",
        secret_key=SecretStr(secrets.token_hex(32)),
        public_base_url="https://bench.test",
        twilio_account_sid="ACbench",
        twilio_auth_token=SecretStr(token),
        rate_limit_webhooks="1000000/minute",
        seed_demo=False,
    )
    db = Database.connect(url, pool_size=args.concurrency + 2, max_overflow=4)
    app = create_app(settings, database=db)
    clinic_number = "+34910000777"
    async with db.sessionmaker() as s:
        org = await identity.create_organisation(
            s,
            OrganisationCreate(name="Bench Clinic", slug=f"bench-{uuid.uuid4().hex[:8]}", timezone="Europe/Madrid"),
        )
        from prm.communications import service as communications
        from prm.communications.schemas import ChannelConfigWrite

        await communications.put_channel_config(
            s,
            Principal.system(org.id),
            "whatsapp",
            ChannelConfigWrite(sender=clinic_number),
        )
        await s.commit()

    validator = RequestValidator(token)
    path = "/webhooks/twilio/messaging"
    senders = [f"+3460{n:07d}" for n in range(max(1, args.webhooks // 5))]  # repeat senders: known patients too
    latencies: list[float] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(args.webhooks):
        queue.put_nowait(i)

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            i = queue.get_nowait()
            params = {
                "MessageSid": f"SM{uuid.uuid4().hex}",
                "AccountSid": "ACbench",
                "From": f"whatsapp:{senders[i % len(senders)]}",
                "To": f"whatsapp:{clinic_number}",
                "Body": f"message {i}",
                "NumMedia": "0",
            }
            sig = validator.compute_signature(f"https://bench.test{path}", params)
            start = time.perf_counter()
            r = await client.post(path, data=params, headers={"X-Twilio-Signature": sig})
            latencies.append(time.perf_counter() - start)
            assert r.status_code == 200, r.text

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://bench.test") as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(args.concurrency)))
        elapsed = time.perf_counter() - started
    print(f"signed inbound webhooks: {args.webhooks} in {elapsed:.2f} s with concurrency {args.concurrency}")
    print(
        f"  throughput {args.webhooks / elapsed:.0f}/s · p50 {statistics.median(latencies) * 1000:.1f} ms · "
        f"p95 {percentile(latencies, 95) * 1000:.1f} ms · max {max(latencies) * 1000:.1f} ms"
    )

    # --- 1,000-recipient batch through the sandbox ----------------------------------------------------
    async with db.sessionmaker() as s:
        ids = [uuid.uuid4() for _ in range(args.recipients)]
        await s.execute(
            insert(Patient),
            [
                {
                    "id": pid,
                    "org_id": org.id,
                    "given_name": f"P{n}",
                    "family_name": "Bench",
                    "primary_phone": f"+3461{n:07d}",
                    "preferred_channel": "sms",
                }
                for n, pid in enumerate(ids)
            ],
        )
        await s.execute(
            insert(PatientPhone),
            [
                {
                    "id": uuid.uuid4(),
                    "org_id": org.id,
                    "patient_id": pid,
                    "number": f"+3461{n:07d}",
                    "is_primary": True,
                }
                for n, pid in enumerate(ids)
            ],
        )
        await s.commit()
    jobs.bind(db.sessionmaker)
    async with db.sessionmaker() as s:
        started = time.perf_counter()
        batch = await notifications.create_batch(
            s,
            Principal.system(org.id),
            BatchCreate(
                template_key="appointment_reminder",
                channel="sms",
                purpose="reminders",
                patient_ids=ids,
                variables={
                    "service_name": "Check-up",
                    "practitioner_name": "Dr Vega",
                    "location_name": "Centre",
                    "when": "Monday 7 December 2026, 09:00",
                },
            ),
        )
        await s.commit()
        queued = time.perf_counter() - started
    from prm import worker

    async with db.sessionmaker() as s:
        await s.execute(text("DELETE FROM procrastinate_jobs WHERE task_name = 'events.deliver'"))
        await s.commit()
    started = time.perf_counter()
    await worker.run(db.url, concurrency=args.concurrency, wait=False)
    delivered = time.perf_counter() - started
    async with db.sessionmaker() as s:
        result = await notifications.batch_report(s, org.id, batch.id)
    print(
        f"batch of {args.recipients}: queued in {queued:.2f} s; rendered, consent-checked and delivered to the "
        f"sandbox by a worker (concurrency {args.concurrency}) in {delivered:.2f} s "
        f"({args.recipients / delivered:.0f} recipients/s, 2 jobs each)"
    )
    print(f"  result {result['counts']} · done={result['done']}")
    await db.dispose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--webhooks", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--recipients", type=int, default=1000)
    arguments = parser.parse_args()
    asyncio.run(main(arguments, database()))
