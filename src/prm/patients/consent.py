"""Consent rules: what is allowed when the patient said something, and when they said nothing. Pure.

Contact consent is per channel (sms, whatsapp, email, voice) and purpose (care, reminders,
marketing). The newest recorded decision for a (channel, purpose) wins. With no record:

* `care` and `reminders` are **allowed** (messages about the patient's own care are part of the
  service they asked for; they can opt out at any time, e.g. by replying STOP);
* `marketing` is **denied** until the patient opts in.

Data-sharing consent has no channel: `ai_processing` and `ehr_export`; their defaults come from the
settings `CONSENT_DEFAULT_AI_PROCESSING` and `CONSENT_DEFAULT_EHR_EXPORT`.

Whatever is recorded, a deceased, merged or deleted patient is never contacted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from prm.patients.models import CHANNELS, CONTACT_PURPOSES, DATA_SHARING_PURPOSES

CONTACT_DEFAULTS: dict[str, bool] = {"care": True, "reminders": True, "marketing": False}


@dataclass(frozen=True)
class ConsentDecision:
    """Whether a contact (or a use of data) is allowed, and why not when it is not.

    `reason` is None when allowed; otherwise one of `opted_out` (the patient said no),
    `not_opted_in` (the default for this purpose is no and the patient never said yes),
    `patient_deceased`, `patient_merged`, `patient_deleted`.
    `basis` says where the answer came from: `record` or `default` (or `status`).
    """

    allowed: bool
    reason: str | None = None
    basis: str = "default"
    recorded_at: datetime | None = None
    source: str | None = None


def check_key(channel: str | None, purpose: str) -> None:
    """Raise ValueError when (channel, purpose) is not a consent this service knows."""
    if channel is None:
        if purpose not in DATA_SHARING_PURPOSES:
            raise ValueError(f"purpose must be one of {', '.join(DATA_SHARING_PURPOSES)}")
        return
    if channel not in CHANNELS:
        raise ValueError(f"channel must be one of {', '.join(CHANNELS)}")
    if purpose not in CONTACT_PURPOSES:
        raise ValueError(f"purpose must be one of {', '.join(CONTACT_PURPOSES)}")


def default_for(channel: str | None, purpose: str,
                data_sharing_defaults: dict[str, bool] | None = None) -> bool:
    if channel is None:
        return bool((data_sharing_defaults or {}).get(purpose, False))
    return CONTACT_DEFAULTS[purpose]


def decide(
    *,
    channel: str | None,
    purpose: str,
    granted: bool | None,
    recorded_at: datetime | None = None,
    source: str | None = None,
    patient_status: str = "active",
    deleted: bool = False,
    data_sharing_defaults: dict[str, bool] | None = None,
) -> ConsentDecision:
    """The decision for one (channel, purpose), given the newest record (`granted` None: no record)."""
    check_key(channel, purpose)
    if deleted:
        return ConsentDecision(False, "patient_deleted", basis="status")
    if patient_status == "merged":
        return ConsentDecision(False, "patient_merged", basis="status")
    if patient_status == "deceased" and channel is not None:
        return ConsentDecision(False, "patient_deceased", basis="status")
    if granted is not None:
        return ConsentDecision(granted, None if granted else "opted_out", basis="record",
                               recorded_at=recorded_at, source=source)
    allowed = default_for(channel, purpose, data_sharing_defaults)
    return ConsentDecision(allowed, None if allowed else "not_opted_in", basis="default")


def merged_state(survivor: bool | None, duplicate: bool | None) -> bool | None:
    """After a merge, the consent that holds when the two records disagree: an opt-out wins.

    None means "no record" on that side; the result is None when neither side has a record,
    or when only one side does (its history moves over and stays the newest record).
    """
    if survivor is None or duplicate is None or survivor == duplicate:
        return None
    return False
