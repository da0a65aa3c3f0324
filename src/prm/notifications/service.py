"""Notifications: templates per channel and locale, previews, single and batch sends.

`send_notification` renders a template for a patient and sends it through `communications.send`.
Without a named channel it walks the patient's preferred channel and then WhatsApp → SMS → email,
skipping a channel the patient cannot be reached on (no address, no consent, WhatsApp window closed
and no approved template, no template in any locale) and says why when none is left.

The code lives in one module per capability; this module is the published interface and
re-exports them: `catalogue` (templates and previews), `org_settings` (the organisation's
notification settings), `dispatch` (one notification, with channel fallback) and `batches`.
"""

from __future__ import annotations

from prm.notifications.batches import (
    BATCH_ITEM_JOB,
    batch_items,
    batch_report,
    create_batch,
    get_batch,
    send_batch_item,
)
from prm.notifications.catalogue import (
    create_template,
    delete_template,
    find_template,
    get_template,
    list_templates,
    locales_for,
    preview,
    update_template,
)
from prm.notifications.dispatch import (
    FALLBACK_ORDER,
    fallback_chain,
    patient_variables,
    send_notification,
)
from prm.notifications.org_settings import (
    APPOINTMENT_NOTICES,
    appointment_notice_enabled,
    default_appointment_notices,
    notification_settings,
    update_notification_settings,
)

__all__ = [
    "APPOINTMENT_NOTICES",
    "BATCH_ITEM_JOB",
    "FALLBACK_ORDER",
    "appointment_notice_enabled",
    "batch_items",
    "batch_report",
    "create_batch",
    "create_template",
    "default_appointment_notices",
    "delete_template",
    "fallback_chain",
    "find_template",
    "get_batch",
    "get_template",
    "list_templates",
    "locales_for",
    "notification_settings",
    "patient_variables",
    "preview",
    "send_batch_item",
    "send_notification",
    "update_notification_settings",
    "update_template",
]
