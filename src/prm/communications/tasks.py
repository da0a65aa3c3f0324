"""Jobs of communications: `communications.send` is defined with the rules in `service.py`."""

from prm.communications import service  # noqa: F401  (registers communications.send)
