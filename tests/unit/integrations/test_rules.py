"""Pure rules of the integrations module: SSRF checks, thin payloads, subscriptions, retries."""

from __future__ import annotations

import ipaddress

import pytest

from prm.integrations import payloads, ssrf


@pytest.mark.parametrize("address", ["127.0.0.1", "10.1.2.3", "172.16.0.5", "192.168.1.1", "169.254.169.254",
                                     "100.64.0.1", "0.0.0.0", "::1", "fe80::1", "fd00::1", "::ffff:127.0.0.1",
                                     "224.0.0.1"])
def test_private_loopback_link_local_addresses_are_not_public(address: str) -> None:
    assert not ssrf.is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"])
def test_global_addresses_are_public(address: str) -> None:
    assert ssrf.is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("url", ["ftp://example.org/x", "https://user:pw@example.org/", "http:///nohost",
                                 "https://example.org:99999/"])
def test_unusable_urls_are_refused(url: str) -> None:
    with pytest.raises(ssrf.UnsafeTarget):
        ssrf.parse(url)


def test_private_targets_refused_unless_allowed() -> None:
    loopback = [ipaddress.ip_address("127.0.0.1")]
    with pytest.raises(ssrf.UnsafeTarget):
        ssrf.check_addresses(loopback, allow_private=False)
    ssrf.check_addresses(loopback, allow_private=True)
    with pytest.raises(ssrf.UnsafeTarget):  # one private address among public ones is enough to refuse
        ssrf.check_addresses([ipaddress.ip_address("8.8.8.8"), ipaddress.ip_address("10.0.0.1")],
                             allow_private=False)


async def test_literal_and_named_hosts_resolve() -> None:
    with pytest.raises(ssrf.UnsafeTarget):
        await ssrf.check_url("http://localhost:8080/hook", allow_private=False)
    with pytest.raises(ssrf.UnsafeTarget):
        await ssrf.check_url("http://[::1]/hook", allow_private=False)
    await ssrf.check_url("http://localhost:8080/hook", allow_private=True)


def test_thin_payload_keeps_ids_and_drops_free_text() -> None:
    event = {"appointment_id": "a1", "patient_id": "p1", "status": "booked", "start_at": "2026-12-01T09:00:00Z",
             "patient_name": "Ana García", "phone": "+34600000000", "body": "I have chest pain",
             "changed_fields": ["start_at"], "notes": "allergic to penicillin",
             "practitioner": {"id": "pr1", "name": "Dr Vega"}}
    thin = payloads.thin(event)
    assert thin == {"appointment_id": "a1", "patient_id": "p1", "status": "booked",
                    "start_at": "2026-12-01T09:00:00Z", "changed_fields": ["start_at"]}


def test_subscriptions_match_exact_prefix_and_all() -> None:
    assert payloads.wants(["appointment.*"], "appointment.booked")
    assert payloads.wants(["*"], "ticket.created")
    assert payloads.wants(["patient.created"], "patient.created")
    assert not payloads.wants(["patient.created"], "patient.updated")
    assert not payloads.wants(["appointment.*"], "appointments_extra.booked")


def test_retry_schedule_is_bounded_and_honours_retry_after() -> None:
    assert payloads.next_delay(0) is None
    first = payloads.next_delay(1)
    assert first is not None and 4 <= first <= 6
    assert payloads.next_delay(len(payloads.RETRY_SCHEDULE_SECONDS) + 1) is None
    slow = payloads.next_delay(1, retry_after=120)
    assert slow is not None and slow >= 120
    capped = payloads.next_delay(1, retry_after=10**9)
    assert capped is not None and capped <= payloads.MAX_RETRY_AFTER_SECONDS


def test_retry_after_header_forms() -> None:
    assert payloads.retry_after_seconds("30", now_epoch=0) == 30
    assert payloads.retry_after_seconds(None, now_epoch=0) is None
    assert payloads.retry_after_seconds("soon", now_epoch=0) is None
    http_date = payloads.retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now_epoch=1445412470)
    assert http_date == pytest.approx(10)
