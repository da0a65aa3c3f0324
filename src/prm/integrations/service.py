"""The integrations domain's published interface (outbound webhooks and n8n)."""

from __future__ import annotations

from prm.integrations.n8n import (
    create_integration as create_integration,
)
from prm.integrations.n8n import (
    trigger as trigger_workflow,
)
from prm.integrations.outbound import (
    create_endpoint as create_endpoint,
)
from prm.integrations.outbound import (
    fan_out as fan_out,
)
from prm.integrations.ssrf import UnsafeTarget as UnsafeTarget  # the URL policy for other outbound callers (fhir)
from prm.integrations.ssrf import check_url as check_url

__all__ = ["UnsafeTarget", "check_url", "create_endpoint", "create_integration", "fan_out", "trigger_workflow"]
