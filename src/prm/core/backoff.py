"""Exponential backoff: the one formula for job retries (`core.jobs.BackoffRetry`, with jitter),
message resends (`communications.rules.retry_delay`, without) and inbound media downloads
(`media.inbound`). Outbound webhooks and n8n follow a fixed published schedule instead
(`integrations.payloads.next_delay`, the Standard Webhooks convention)."""

from __future__ import annotations


def backoff_seconds(retries_before: int, *, base_seconds: float, max_seconds: float) -> float:
    """`base_seconds` doubled once per earlier retry (0: the first wait is `base_seconds`), capped."""
    return float(min(max_seconds, base_seconds * 2 ** max(0, retries_before)))
