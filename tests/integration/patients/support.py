"""Helpers shared by the patient service tests."""

from __future__ import annotations

PATIENT = {
    "given_name": "José",
    "family_name": "Núñez García",
    "birth_date": "1984-03-07",
    "gender": "male",
    "phones": [{"number": "+34 612 34 56 78", "kind": "mobile"},
               {"number": "(415) 555-0132", "kind": "work"}],
    "emails": [{"email": "Jose.Nunez@Example.org"}],
    "identifiers": [{"system": "mrn", "value": "MRN-0001", "label": "Hospital MRN"}],
    "address": {"line": ["Calle Mayor 1"], "city": "Madrid", "postal_code": "28013", "country": "ES"},
    "preferred_language": "es-es",
    "preferred_channel": "whatsapp",
    "timezone": "Europe/Madrid",
    "tags": ["VIP", " diabetes "],
}
