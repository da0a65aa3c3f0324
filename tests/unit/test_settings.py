"""deploy/.env.example documents every setting, and only settings that exist."""

from __future__ import annotations

import re
from pathlib import Path

from prm.settings import Settings

ENV_EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / ".env.example"


def _documented() -> set[str]:
    names = set()
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = re.match(r"^([A-Z][A-Z0-9_]*)=", line)
        if match:
            names.add(match.group(1))
    return names


def test_env_example_lists_every_setting() -> None:
    fields = {name.upper() for name in Settings.model_fields}
    documented = _documented()
    assert fields - documented == set(), "settings missing from deploy/.env.example"
    assert documented - fields == set(), "deploy/.env.example lists variables the service does not read"


def test_env_example_values_parse() -> None:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = re.match(r"^([A-Z][A-Z0-9_]*)=(.*)$", line)
        if match and match.group(2):
            values[match.group(1).lower()] = match.group(2)
    Settings(_env_file=None, **values)  # type: ignore[call-arg]


def test_public_base_url_follows_host_and_port_unless_set(monkeypatch) -> None:
    monkeypatch.setenv("PORT", "8791")
    monkeypatch.delenv("PUBLIC_BASE_URL", raising=False)
    assert Settings(_env_file=None).public_base_url == "http://127.0.0.1:8791"  # type: ignore[call-arg]
    assert Settings(_env_file=None, host="0.0.0.0").public_base_url == "http://127.0.0.1:8791"  # type: ignore[call-arg]
    assert Settings(_env_file=None, host="::1").public_base_url == "http://[::1]:8791"  # type: ignore[call-arg]
    # `prm serve --host/--port` move a derived URL with them ...
    derived = Settings(_env_file=None)  # type: ignore[call-arg]
    assert derived.serving_at("127.0.0.2", 9001).public_base_url == "http://127.0.0.2:9001"
    assert derived.serving_at(None, None).public_base_url == "http://127.0.0.1:8791"
    # ... and never an explicit one (a proxy or tunnel in front)
    monkeypatch.setenv("PUBLIC_BASE_URL", "https://prm.example.org/")
    explicit = Settings(_env_file=None)  # type: ignore[call-arg]
    assert explicit.public_base_url == "https://prm.example.org"
    assert explicit.serving_at("0.0.0.0", 9001).public_base_url == "https://prm.example.org"


def test_development_generates_and_keeps_a_twilio_webhook_token(tmp_path) -> None:
    dev = Settings(_env_file=None, environment="development", prm_data_dir=tmp_path)  # type: ignore[call-arg]
    token = dev.twilio_webhook_token()
    assert token and len(token) >= 32
    assert (tmp_path / "twilio_auth_token").read_text().strip() == token
    assert (tmp_path / "twilio_auth_token").stat().st_mode & 0o077 == 0  # readable by its owner only
    again = Settings(_env_file=None, environment="development", prm_data_dir=tmp_path)  # type: ignore[call-arg]
    assert again.twilio_webhook_token() == token  # survives a restart
    configured = Settings(_env_file=None, environment="development", prm_data_dir=tmp_path,  # type: ignore[call-arg]
                          twilio_auth_token="from-twilio-console")
    assert configured.twilio_webhook_token() == "from-twilio-console"
    for environment in ("test", "production"):
        other = Settings(_env_file=None, environment=environment, prm_data_dir=tmp_path / environment)  # type: ignore[call-arg]
        assert other.twilio_webhook_token() is None  # nothing generated outside development
        assert not (tmp_path / environment / "twilio_auth_token").exists()
