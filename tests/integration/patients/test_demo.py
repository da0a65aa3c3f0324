"""The demo seeder adds patients the other demo seeders can use."""

from __future__ import annotations

from prm.patients import demo
from prm.patients import service as patients


async def test_demo_seed_adds_patients_to_the_context(session, org):
    context: dict = {}
    await demo.seed(session, org, context)

    made = context["patients"]
    assert len(made) == len(demo.DEMO_PATIENTS) + 1
    assert made[-1].is_provisional
    assert all(p.org_id == org.id for p in made)
    olivia = made[0]
    assert (await patients.find_by_phone(session, org.id, "0044 20 7946 0101")).id == olivia.id
    assert (await patients.consent_allows(session, org.id, olivia.id, channel="whatsapp",
                                          purpose="marketing")).allowed
    assert not (await patients.consent_allows(session, org.id, made[5].id, channel="sms", purpose="care")).allowed
    duplicates = await patients.find_duplicates(session, org.id, patients._facts(made[9]), exclude=[made[9].id])
    assert [c.patient.id for c in duplicates] == [olivia.id]
