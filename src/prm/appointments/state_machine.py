"""The appointment lifecycle as data: statuses, actions, and which action is allowed from where.

    booked ──confirm──▶ confirmed ──check_in──▶ checked_in ──complete──▶ completed
      │  ╲                 │  ╲
      │   check_in ────────┼───▶ (walk-ins may check in without confirming)
      ├── cancel / no_show ┴── cancel / no_show ──▶ cancelled / no_show
      └── reschedule (from booked or confirmed; the moved appointment is `booked` again)

`completed`, `no_show` and `cancelled` are final. Statuses that *hold time* (the exclusion
constraints only consider these) are booked, confirmed, checked_in and completed.
"""

from __future__ import annotations

from prm.core.errors import Conflict

STATUSES = ("booked", "confirmed", "checked_in", "completed", "no_show", "cancelled")
HOLDS_TIME = ("booked", "confirmed", "checked_in", "completed")
FINAL = ("completed", "no_show", "cancelled")
REMINDABLE = ("booked", "confirmed")  # reminders are only sent for these

# action -> (statuses it may start from, status it leads to)
ACTIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "confirm": (("booked",), "confirmed"),
    "check_in": (("booked", "confirmed"), "checked_in"),
    "complete": (("checked_in",), "completed"),
    "no_show": (("booked", "confirmed"), "no_show"),
    "cancel": (("booked", "confirmed"), "cancelled"),
    "reschedule": (("booked", "confirmed"), "booked"),
}

# the event each action publishes
EVENTS = {
    "book": "appointment.booked",
    "confirm": "appointment.confirmed",
    "check_in": "appointment.checked_in",
    "complete": "appointment.completed",
    "no_show": "appointment.no_show",
    "cancel": "appointment.cancelled",
    "reschedule": "appointment.rescheduled",
}


class InvalidTransition(Conflict):
    """409 `invalid_transition`, listing the actions allowed from the current status."""

    def __init__(self, status: str, action: str) -> None:
        allowed = allowed_actions(status)
        super().__init__(
            f"Cannot {action.replace('_', ' ')} an appointment that is {status.replace('_', ' ')}; "
            f"allowed: {', '.join(allowed) or 'none (final status)'}",
            code="invalid_transition",
            status_now=status,
            action=action,
            allowed_actions=allowed,
            allowed_transitions=[{"action": a, "to": ACTIONS[a][1]} for a in allowed],
        )


def allowed_actions(status: str) -> list[str]:
    return [action for action, (sources, _) in ACTIONS.items() if status in sources]


def transition(status: str, action: str) -> str:
    """The status after `action`, or InvalidTransition."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    sources, target = ACTIONS[action]
    if status not in sources:
        raise InvalidTransition(status, action)
    return target


def holds_time(status: str) -> bool:
    return status in HOLDS_TIME
