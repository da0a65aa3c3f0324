"""The production-shaped compose file passes the production checks (issue 9) once its required
variables are given: `prm serve` / `prm worker` in it would not refuse to start."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from prm.core import startup
from prm.settings import Settings

COMPOSE = Path(__file__).resolve().parents[2] / "deploy" / "docker-compose.yml"
REQUIRED = {"SECRET_KEY": "s" * 48, "PUBLIC_BASE_URL": "https://prm.example.org", "POSTGRES_PASSWORD": "pw"}


def _substitute(value: str) -> str:
    """Compose's `${VAR:-default}` / `${VAR:?message}` with only the required variables set."""

    def one(match: re.Match[str]) -> str:
        name, op, rest = match.group(1), match.group(2), match.group(3)
        if name in REQUIRED:
            return REQUIRED[name]
        assert op != ":?", f"{name} is required by the compose file but not by this test"
        return rest if op == ":-" else ""

    return re.sub(r"\$\{([A-Z_]+)(?:(:[-?])([^}]*))?\}", one, value)


def test_compose_app_services_are_safe_for_production() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    for name in ("api", "worker"):
        env = {k: _substitute(str(v)) for k, v in compose["services"][name]["environment"].items()}
        assert env["ENVIRONMENT"] == "production"
        settings = Settings(_env_file=None, **{k.lower(): v for k, v in env.items() if v != ""})  # type: ignore[arg-type]
        assert startup.problems(settings) == [], name
        assert not settings.docs_enabled and settings.trusted_proxies == []
        assert "--demo" not in compose["services"][name]["command"]
