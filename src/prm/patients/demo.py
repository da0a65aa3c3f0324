"""Demo patients for the demo clinic: varied names (with accents), languages, channels and consent."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession

from prm.core.auth import Principal
from prm.patients import service
from prm.patients.schemas import PatientCreate

if TYPE_CHECKING:
    from prm.identity.models import Organisation

# Numbers in Ofcom's drama range (+44 20 7946 0xxx) and the US 555-01xx fictional range.
DEMO_PATIENTS: list[dict[str, Any]] = [
    {"given_name": "Olivia", "family_name": "Bennett", "birth_date": date(1986, 4, 12), "gender": "female",
     "phones": [{"number": "+44 20 7946 0101"}], "emails": [{"email": "olivia.bennett@example.org"}],
     "preferred_channel": "whatsapp", "tags": ["diabetes"], "identifiers": [{"system": "mrn", "value": "D-1001"}]},
    {"given_name": "José", "family_name": "Núñez García", "birth_date": date(1979, 11, 3), "gender": "male",
     "phones": [{"number": "+34 612 345 678"}], "preferred_language": "es", "preferred_channel": "whatsapp",
     "timezone": "Europe/Madrid", "identifiers": [{"system": "mrn", "value": "D-1002"}]},
    {"given_name": "Amara", "family_name": "Okafor", "birth_date": date(1992, 2, 28), "gender": "female",
     "phones": [{"number": "+44 20 7946 0103"}], "emails": [{"email": "amara.okafor@example.org"}],
     "preferred_channel": "sms", "tags": ["prenatal"], "identifiers": [{"system": "mrn", "value": "D-1003"}]},
    {"given_name": "Liam", "family_name": "O'Connor", "birth_date": date(1958, 7, 19), "gender": "male",
     "phones": [{"number": "+44 20 7946 0104"}, {"number": "+44 20 7946 0114", "kind": "home"}],
     "preferred_channel": "voice", "tags": ["cardiology"], "identifiers": [{"system": "mrn", "value": "D-1004"}]},
    {"given_name": "Zoë", "family_name": "Müller", "birth_date": date(2001, 9, 5), "gender": "female",
     "phones": [{"number": "+44 20 7946 0105"}], "emails": [{"email": "zoe.mueller@example.org"}],
     "preferred_language": "de", "preferred_channel": "email", "identifiers": [{"system": "mrn", "value": "D-1005"}]},
    {"given_name": "Mohammed", "family_name": "Rahman", "birth_date": date(1970, 1, 30), "gender": "male",
     "phones": [{"number": "+44 20 7946 0106"}], "preferred_channel": "sms",
     "identifiers": [{"system": "mrn", "value": "D-1006"}]},
    {"given_name": "Grace", "family_name": "Thompson", "birth_date": date(1948, 12, 24), "gender": "female",
     "phones": [{"number": "+44 20 7946 0107", "kind": "home"}], "preferred_channel": "voice",
     "tags": ["mobility"], "identifiers": [{"system": "mrn", "value": "D-1007"}]},
    {"given_name": "Ethan", "family_name": "Walker", "birth_date": date(2015, 6, 1), "gender": "male",
     "phones": [{"number": "+44 20 7946 0101"}], "tags": ["paediatrics"],  # a parent's (Olivia's) phone
     "identifiers": [{"system": "mrn", "value": "D-1008"}]},
    {"given_name": "Sofia", "family_name": "Rossi", "birth_date": date(1988, 3, 15), "gender": "female",
     "phones": [{"number": "+1 415 555 0109"}], "emails": [{"email": "sofia.rossi@example.org"}],
     "preferred_language": "it", "preferred_channel": "email", "timezone": "America/Los_Angeles",
     "identifiers": [{"system": "mrn", "value": "D-1009"}]},
    # A likely duplicate of Olivia Bennett (typo, transposed birth date, same email), to try merging.
    {"given_name": "Olivia", "family_name": "Benett", "birth_date": date(1986, 12, 4), "gender": "female",
     "emails": [{"email": "olivia.bennett@example.org"}]},
]


async def seed(session: AsyncSession, org: Organisation, context: dict[str, Any]) -> None:
    """Add the demo patients to `org` and put them in `context["patients"]` (creation order)."""
    who = Principal.system(org.id)
    created = []
    for data in DEMO_PATIENTS:
        patient, _ = await service.create(session, who, PatientCreate(**data), source="demo")
        created.append(patient)
    # Consent examples: Olivia opted in to WhatsApp marketing; Mohammed replied STOP by SMS.
    await service.set_consent(
        session,
        who,
        created[0].id,
        channel="whatsapp",
        purpose="marketing",
        granted=True,
        source="demo:intake_form",
    )
    await service.set_consent(
        session,
        who,
        created[5].id,
        channel="sms",
        purpose=None,
        granted=False,
        source="keyword:STOP",
    )
    # Someone who messaged the clinic from an unknown number.
    created.append(await service.create_provisional(session, org.id, phone="+44 20 7946 0199", source="whatsapp"))
    context["patients"] = created
