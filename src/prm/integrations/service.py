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

__all__ = ["create_endpoint", "create_integration", "fan_out", "trigger_workflow"]
