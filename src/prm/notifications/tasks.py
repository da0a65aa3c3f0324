"""Jobs of notifications: `notifications.send_batch_item` is defined in `service.py`."""

from prm.notifications import service  # noqa: F401  (registers notifications.send_batch_item)
