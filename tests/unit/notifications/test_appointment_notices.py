"""Pure parts of the appointment notices: dates in the patient's language, template variables from
the event payload, the built-in `appointment_rescheduled` template, the APPOINTMENT_NOTIFICATIONS
setting."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from prm.notifications import defaults
from prm.notifications.subscribers import APPOINTMENT_NOTICES, friendly_time, notice_variables
from prm.notifications.templates import check, render
from prm.settings import Settings

PAYLOAD = {
    "appointment_id": "a1",
    "patient_id": "p1",
    "start_at": "2026-12-01T09:30:00+00:00",
    "local_start": "2026-12-01T10:30:00+01:00",
    "previous_local_start": "2026-11-30T16:00:00+01:00",
    "timezone": "Europe/Madrid",
    "service_name": "Cleaning",
    "practitioner_name": "Dr Vega",
    "location_name": "Centro",
}


def test_friendly_time_speaks_the_patients_language() -> None:
    assert friendly_time("2026-12-01T10:30:00+01:00") == "Tuesday 1 December 2026, 10:30"
    assert friendly_time("2026-12-01T10:30:00+01:00", "es") == "martes 1 de diciembre de 2026, 10:30"
    assert friendly_time("2026-12-01T10:30:00+01:00", "es-MX") == "martes 1 de diciembre de 2026, 10:30"
    # any other language by babel's CLDR data, not by the process locale (%A/%B)
    assert friendly_time("2026-12-01T10:30:00+01:00", "fr") == "mardi 1 décembre 2026, 10:30"
    assert friendly_time("2026-12-01T10:30:00+01:00", "de-DE") == "Dienstag, 1. Dezember 2026, 10:30"
    assert friendly_time("2026-12-01T10:30:00+01:00", "xx-nowhere") == "Tuesday 1 December 2026, 10:30"
    assert friendly_time("2026-03-29T03:30:00+02:00", "en") == "Sunday 29 March 2026, 03:30"  # its own offset
    assert friendly_time(None) == "" and friendly_time("soon") == "soon"


def test_notice_variables_come_from_the_event_payload() -> None:
    values = notice_variables(PAYLOAD, "en")
    assert values["when"] == "Tuesday 1 December 2026, 10:30"  # local time of the location
    assert values["previous_when"] == "Monday 30 November 2026, 16:00"
    assert (values["service_name"], values["practitioner_name"], values["location_name"]) == (
        "Cleaning",
        "Dr Vega",
        "Centro",
    )
    assert notice_variables({"patient_id": "p1"})["previous_when"] == ""  # never None: no 422


def test_each_event_has_its_template_and_setting() -> None:
    assert APPOINTMENT_NOTICES == {
        "appointment.booked": ("booked", "appointment_confirmation"),
        "appointment.rescheduled": ("rescheduled", "appointment_rescheduled"),
        "appointment.cancelled": ("cancelled", "appointment_cancelled"),
    }


@pytest.mark.parametrize("channel", ["sms", "whatsapp", "email", "voice"])
@pytest.mark.parametrize("locale", ["en", "es"])
def test_builtin_rescheduled_template_in_every_channel_and_locale(channel: str, locale: str) -> None:
    for key in ("appointment_confirmation", "appointment_rescheduled", "appointment_cancelled"):
        assert defaults.builtin(key, channel, locale) is not None
    source = defaults.builtin("appointment_rescheduled", channel, locale)
    assert source is not None
    check(source)
    values = {"patient_name": "Ana", **notice_variables(PAYLOAD, locale)}
    body = render(source, values).body
    assert "Ana" in body and "Cleaning" in body and "Centro" in body
    assert values["when"] in body and values["previous_when"] in body
    without_previous = render(source, {**values, "previous_when": ""}).body
    assert values["when"] in without_previous and "  " not in without_previous


def test_appointment_notifications_setting() -> None:
    assert Settings(_env_file=None).appointment_notifications == "booked,rescheduled,cancelled"  # type: ignore[call-arg]
    assert Settings(_env_file=None, appointment_notifications=" Cancelled, booked ").appointment_notifications == (  # type: ignore[call-arg]
        "cancelled,booked"
    )
    assert Settings(_env_file=None, appointment_notifications="").appointment_notifications == ""  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        Settings(_env_file=None, appointment_notifications="booked,confirmed")  # type: ignore[call-arg]
