from __future__ import annotations

import pytest

from prm.patients.consent import check_key, decide, merged_state


def test_defaults_without_a_record():
    assert decide(channel="sms", purpose="care", granted=None).allowed
    assert decide(channel="email", purpose="reminders", granted=None).allowed
    marketing = decide(channel="whatsapp", purpose="marketing", granted=None)
    assert not marketing.allowed and marketing.reason == "not_opted_in" and marketing.basis == "default"


def test_a_record_wins_over_the_default():
    assert decide(channel="sms", purpose="marketing", granted=True).allowed
    out = decide(channel="sms", purpose="care", granted=False, source="keyword:STOP")
    assert not out.allowed and out.reason == "opted_out"
    assert out.basis == "record" and out.source == "keyword:STOP"


def test_patient_status_overrides_everything():
    def reason(**kwargs):
        return decide(channel="sms", purpose="care", granted=True, **kwargs).reason

    assert reason(patient_status="deceased") == "patient_deceased"
    assert reason(patient_status="merged") == "patient_merged"
    assert reason(deleted=True) == "patient_deleted"


def test_data_sharing_defaults_come_from_settings():
    assert decide(channel=None, purpose="ai_processing", granted=None,
                  data_sharing_defaults={"ai_processing": True}).allowed
    assert not decide(channel=None, purpose="ehr_export", granted=None, data_sharing_defaults={}).allowed
    # a deceased patient's record may still be exported
    assert decide(channel=None, purpose="ehr_export", granted=True, patient_status="deceased").allowed


@pytest.mark.parametrize("channel, purpose", [("fax", "care"), ("sms", "ai_processing"), (None, "care"),
                                              ("sms", "spam")])
def test_unknown_keys_are_rejected(channel, purpose):
    with pytest.raises(ValueError):
        check_key(channel, purpose)


def test_merged_state_an_opt_out_wins():
    assert merged_state(True, False) is False
    assert merged_state(False, True) is False
    assert merged_state(True, True) is None
    assert merged_state(None, False) is None
