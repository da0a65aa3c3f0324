"""Sends at the provider boundary: an attempt whose outcome was lost is reconciled, not resent blindly.

Real committed transactions (the send job runs as a worker runs it), Twilio faked at the HTTP layer
with its Messages list API, and the commit of the job's result made to fail by a deferred
constraint trigger (it fires at COMMIT, after the provider accepted the message).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from prm.communications import service as communications
from prm.communications.models import Communication, DeliveryAttempt, SandboxMessage
from prm.communications.schemas import CommunicationCreate
from prm.core import clock, jobs
from prm.settings import Settings
from tests.conftest import Committed
from tests.fixtures.factories import make_org, principal
from tests.fixtures.messaging import TwilioFake, configure_channel, new_phone, patient_with_contacts

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
LATER = timedelta(minutes=5)  # past the time a pending attempt may still be in flight


async def _queued_sms(committed: Committed, provider: str) -> tuple[uuid.UUID, uuid.UUID]:
    async with committed.session() as s:
        org = await make_org(s)
        await configure_channel(s, org, "sms", provider=provider, sender=new_phone())
        patient = await patient_with_contacts(s, org)
        comm = await communications.send(
            s, principal(org), CommunicationCreate(patient_id=patient.id, channel="sms", body="Your results are ready"))
        await s.commit()
        return org.id, comm.id


async def _deliver(org_id: uuid.UUID, comm_id: uuid.UUID) -> Any:
    return await jobs.run_job(communications.SEND_JOB, org_id=str(org_id), communication_id=str(comm_id))


async def _state(committed: Committed, comm_id: uuid.UUID) -> tuple[str, str | None, list[str]]:
    async with committed.session() as s:
        comm = await s.get(Communication, comm_id)
        assert comm is not None
        attempts = (await s.scalars(select(DeliveryAttempt.state).where(DeliveryAttempt.communication_id == comm_id)
                                    .order_by(DeliveryAttempt.number))).all()
        return comm.status, comm.provider_message_id, list(attempts)


@pytest.fixture
async def failing_result_commit(committed: Committed) -> AsyncIterator[Any]:
    """`arm(comm_id)`: the next commit that marks an attempt of that message accepted fails."""
    name = f"test_fail_accept_{uuid.uuid4().hex[:10]}"

    async def arm(comm_id: uuid.UUID) -> None:
        async with committed.session() as s:
            await s.execute(text(
                f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                f"IF NEW.state = 'accepted' AND NEW.communication_id = '{comm_id}' THEN "
                "RAISE EXCEPTION 'the commit failed'; END IF; RETURN NEW; END $$"))
            await s.execute(text(
                f"CREATE CONSTRAINT TRIGGER {name} AFTER UPDATE ON delivery_attempts "
                f"DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION {name}()"))
            await s.commit()

    async def disarm() -> None:
        async with committed.session() as s:
            await s.execute(text(f"DROP TRIGGER IF EXISTS {name} ON delivery_attempts"))
            await s.execute(text(f"DROP FUNCTION IF EXISTS {name}()"))
            await s.commit()

    arm.disarm = disarm  # type: ignore[attr-defined]
    try:
        yield arm
    finally:
        await disarm()


async def _forget_jobs(committed: Committed, comm_id: uuid.UUID) -> None:
    """The reconciliation jobs these tests leave queued must not run in other tests."""
    async with committed.session() as s:
        await s.execute(text("DELETE FROM procrastinate_jobs WHERE status = 'todo' "
                             "AND args->>'communication_id' = :id"), {"id": str(comm_id)})
        await s.commit()


async def test_commit_failing_after_twilio_accepted_sends_nothing_twice(
    committed: Committed, messaging_settings: Settings, twilio_api: TwilioFake, failing_result_commit: Any,
) -> None:
    org_id, comm_id = await _queued_sms(committed, "twilio")
    await failing_result_commit(comm_id)
    try:
        with clock.frozen(T0) as c:
            with pytest.raises(DBAPIError):
                await _deliver(org_id, comm_id)
            assert len(twilio_api.messages.calls) == 1  # Twilio has it ...
            assert await _state(committed, comm_id) == ("sending", None, ["pending"])  # ... we do not know
            await failing_result_commit.disarm()

            c.advance(timedelta(seconds=5))  # too early: the first call might still be in flight
            assert await _deliver(org_id, comm_id) == "sending"
            assert len(twilio_api.message_list.calls) == 0

            c.advance(LATER)
            assert await _deliver(org_id, comm_id) == "sent"
        assert len(twilio_api.messages.calls) == 1, "the message was sent twice"
        assert len(twilio_api.message_list.calls) == 1
        assert await _state(committed, comm_id) == ("sent", twilio_api.accepted[0]["sid"], ["accepted"])
        async with committed.session() as s:
            attempt = await s.scalar(select(DeliveryAttempt).where(DeliveryAttempt.communication_id == comm_id))
            assert attempt is not None and attempt.reconciled
    finally:
        await _forget_jobs(committed, comm_id)


async def test_uncertain_attempt_that_twilio_never_got_is_sent_again(
    committed: Committed, messaging_settings: Settings, twilio_api: TwilioFake,
) -> None:
    org_id, comm_id = await _queued_sms(committed, "twilio")
    answers = iter([httpx.ReadTimeout("no answer")])

    def lost_then_accept(request: httpx.Request) -> httpx.Response:
        try:
            raise next(answers)  # the request went out; no answer came back and Twilio kept nothing
        except StopIteration:
            return twilio_api._accept(request)

    twilio_api.messages.side_effect = lost_then_accept
    try:
        with clock.frozen(T0) as c:
            assert await _deliver(org_id, comm_id) == "sending"  # uncertain: not retried blindly
            assert await _state(committed, comm_id) == ("sending", None, ["pending"])
            c.advance(LATER)
            assert await _deliver(org_id, comm_id) == "sent"
        assert len(twilio_api.message_list.calls) == 1  # looked up first: nothing there
        assert len(twilio_api.messages.calls) == 2  # so sent again, once
        assert await _state(committed, comm_id) == ("sent", twilio_api.accepted[0]["sid"], ["lost", "accepted"])
    finally:
        await _forget_jobs(committed, comm_id)


async def test_sandbox_send_whose_result_was_not_committed_is_found_in_the_outbox(
    committed: Committed, messaging_settings: Settings, failing_result_commit: Any,
) -> None:
    org_id, comm_id = await _queued_sms(committed, "sandbox")
    await failing_result_commit(comm_id)
    try:
        with clock.frozen(T0) as c:
            with pytest.raises(DBAPIError):
                await _deliver(org_id, comm_id)
            await failing_result_commit.disarm()
            c.advance(LATER)
            assert await _deliver(org_id, comm_id) == "sent"
        async with committed.session() as s:
            outbox = (await s.scalars(select(SandboxMessage).where(SandboxMessage.communication_id == comm_id))).all()
        assert len(outbox) == 1
        assert await _state(committed, comm_id) == ("sent", f"SB{outbox[0].id.hex}", ["accepted"])
    finally:
        await _forget_jobs(committed, comm_id)
