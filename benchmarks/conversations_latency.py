"""Conversations benchmark: time from a signed inbound WhatsApp webhook to the assistant's reply being
queued, with 16 patients chatting at once.

    PYTHONPATH=src python benchmarks/conversations_latency.py [--patients 16] [--worker-concurrency 8]

Starts its own throwaway embedded PostgreSQL (or uses DATABASE_URL), migrates it, serves the ASGI app
in-process and runs a real procrastinate worker beside it (as `prm serve` does). Each simulated
patient sends a booking dialogue ("Hi", "I need a cleaning", "more", "tomorrow morning", "1", "yes"),
one message at a time: the message is signed with the Twilio SDK's RequestValidator and posted to
/webhooks/twilio/messaging; the clock stops when the assistant's first reply to it is committed as a
queued outbound communication (event delivery, row lock, assistant, slots/booking, reply), read
from the reply's `queued_at` (the pacing poll is light and does not set the figure). Printed:
count, p50, p95 and max, and the replies' throughput.
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
from datetime import UTC, datetime
from datetime import time as wall_time
from pathlib import Path

import httpx
from pydantic import SecretStr
from sqlalchemy import func, select
from twilio.request_validator import RequestValidator

POLL_SECONDS = 0.1
DIALOGUE = ("Hi", "I need a cleaning", "more", "tomorrow morning", "1", "yes")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def database() -> str:
    from alembic import command
    from alembic.config import Config

    from prm.app import migrations_dir
    from prm.core import embedded

    url = os.environ.get("DATABASE_URL") or embedded.start(
        Path(tempfile.mkdtemp(prefix="prm-bench-conv-")) / "pg", throwaway=True
    )
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.attributes["database_url"] = url
    command.upgrade(config, "head")
    return url


async def setup_clinic(sessionmaker, clinic_number: str) -> uuid.UUID:  # type: ignore[no-untyped-def]
    from prm.appointments import service as appointments
    from prm.appointments.schemas import LocationCreate, PractitionerCreate, RuleCreate, ServiceCreate
    from prm.communications import service as communications
    from prm.communications.schemas import ChannelConfigWrite
    from prm.core.auth import Principal
    from prm.identity import service as identity
    from prm.identity.schemas import OrganisationCreate

    async with sessionmaker() as s:
        org = await identity.create_organisation(
            s, OrganisationCreate(name="Bench Clinic", slug=f"bench-{uuid.uuid4().hex[:8]}", timezone="UTC")
        )
        location = await appointments.create_location(s, org.id, LocationCreate(name="Main", timezone="UTC"))
        practitioners = []
        for name in ("Dr A", "Dr B", "Dr C", "Dr D"):
            p = await appointments.create_practitioner(
                s, org.id, PractitionerCreate(name=name, timezone="UTC")
            )
            for weekday in range(7):  # open around the clock, so the benchmark runs at any hour
                await appointments.add_rule(
                    s,
                    org.id,
                    p.id,
                    RuleCreate(
                        location_id=location.id,
                        weekday=weekday,
                        start_time=wall_time(0),
                        end_time=wall_time(23, 59),
                    ),
                )
            practitioners.append(p.id)
        for name, keywords in (("Dental cleaning", ["cleaning"]), ("Check-up", ["checkup"])):
            await appointments.create_service(
                s,
                org.id,
                ServiceCreate(
                    name=name,
                    duration_minutes=30,
                    min_notice_minutes=60,
                    slot_step_minutes=15,
                    keywords=keywords,
                    practitioner_ids=practitioners,
                ),
            )
        await communications.put_channel_config(
            s,
            Principal.system(org.id),
            "whatsapp",
            ChannelConfigWrite(provider="sandbox", sender=clinic_number),
        )
        await s.commit()
        return org.id


async def main(args: argparse.Namespace, url: str) -> None:
    from prm.app import create_app
    from prm.communications.models import Communication
    from prm.core import jobs
    from prm.core.db import Database
    from prm.patients.models import Patient
    from prm.settings import Settings
    from prm.worker import InProcessWorker

    token = secrets.token_hex(16)
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        environment="test",
        database_url=url,
        run_worker=False,
        log_level="ERROR",
        secret_key=SecretStr(secrets.token_hex(32)),
        public_base_url="https://bench.test",
        twilio_auth_token=SecretStr(token),
        rate_limit_webhooks="1000000/minute",
        seed_demo=False,
    )
    db = Database.connect(url, pool_size=args.patients + args.worker_concurrency + 4, max_overflow=8)
    app = create_app(settings, database=db)
    jobs.bind(db.sessionmaker)
    clinic_number = "+34910000888"
    org_id = await setup_clinic(db.sessionmaker, clinic_number)
    worker = InProcessWorker(db.url, concurrency=args.worker_concurrency)
    await worker.start()

    validator = RequestValidator(token)
    path = "/webhooks/twilio/messaging"
    latencies: list[float] = []
    unanswered = 0

    async def first_reply_since(phone: str, since: datetime) -> datetime | None:
        """When the first outbound message to `phone` queued at or after `since` was queued."""
        async with db.sessionmaker() as s:
            return await s.scalar(  # type: ignore[no-any-return]
                select(func.min(Communication.queued_at))
                .join(Patient, Patient.id == Communication.patient_id)
                .where(
                    Communication.org_id == org_id,
                    Patient.primary_phone == phone,
                    Communication.direction == "outbound",
                    Communication.queued_at >= since,
                )
            )

    async def patient(client: httpx.AsyncClient, n: int) -> None:
        nonlocal unanswered
        phone = f"+3461{n:07d}"
        for text in DIALOGUE:
            params = {
                "MessageSid": f"SM{uuid.uuid4().hex}",
                "AccountSid": "ACbench",
                "From": f"whatsapp:{phone}",
                "To": f"whatsapp:{clinic_number}",
                "Body": text,
                "NumMedia": "0",
            }
            signature = validator.compute_signature(f"https://bench.test{path}", params)
            started = datetime.now(UTC)
            r = await client.post(path, data=params, headers={"X-Twilio-Signature": signature})
            assert r.status_code == 200, r.text
            # Wait for the answer before the next message (polled lightly, so the polling does not load
            # the database); the latency itself comes from the reply's queued_at timestamp.
            while (replied := await first_reply_since(phone, started)) is None:
                if (datetime.now(UTC) - started).total_seconds() > args.timeout:
                    unanswered += 1
                    break
                await asyncio.sleep(POLL_SECONDS)
            else:
                latencies.append((replied - started).total_seconds())

    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="https://bench.test") as client,
    ):
        started = time.perf_counter()
        await asyncio.gather(*[patient(client, n) for n in range(args.patients)])
        elapsed = time.perf_counter() - started
    await worker.stop()
    await db.dispose()

    print(f"patients chatting at once: {args.patients}, worker concurrency: {args.worker_concurrency}")
    print(
        f"messages: {len(latencies) + unanswered} ({unanswered} without a reply within {args.timeout:.0f} s)"
    )
    if latencies:
        print(
            f"webhook -> reply queued: p50 {percentile(latencies, 50) * 1000:.0f} ms, "
            f"p95 {percentile(latencies, 95) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms, "
            f"mean {statistics.mean(latencies) * 1000:.0f} ms"
        )
        print(f"replied messages per second: {len(latencies) / elapsed:.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--patients", type=int, default=16)
    parser.add_argument("--worker-concurrency", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=30.0)
    arguments = parser.parse_args()
    asyncio.run(main(arguments, database()))
