"""Pure pieces of the edge (issue 9): forwarded-header resolution, settings from the environment,
the production checks and the startup report, the NUL guard's walk."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from prm.core import startup
from prm.core.db import resolve_database_url
from prm.core.nul_guard import _json_field, nul_path
from prm.core.proxy import is_trusted, parse_networks, resolve
from prm.settings import Settings

PROXIES = parse_networks(["10.0.0.0/8", "2001:db8:ffff::/48"])


def _h(**headers: str) -> list[tuple[bytes, bytes]]:
    return [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]


def test_the_client_is_the_nearest_address_that_is_no_proxy() -> None:
    got = resolve(_h(x_forwarded_for="198.51.100.1, 203.0.113.9, 10.0.0.2"), PROXIES, "x-forwarded")
    assert got.client == "203.0.113.9"  # 198.51.100.1 is what the client claimed
    assert resolve(_h(x_forwarded_for="10.0.0.3, 10.0.0.2"), PROXIES, "x-forwarded").client == "10.0.0.3"
    assert resolve(_h(x_forwarded_for="203.0.113.9:5555"), PROXIES, "x-forwarded").client == "203.0.113.9"
    assert resolve(_h(x_forwarded_for="1.2.3.4, unknown"), PROXIES, "x-forwarded").client is None
    assert resolve([], PROXIES, "x-forwarded").client is None


def test_scheme_and_host_come_from_the_nearest_proxy_only() -> None:
    got = resolve(_h(x_forwarded_proto="http, https", x_forwarded_host="evil.example, prm.example.org"),
                  PROXIES, "x-forwarded")
    assert (got.proto, got.host) == ("https", "prm.example.org")
    bad = resolve(_h(x_forwarded_proto="gopher", x_forwarded_host="a b/c"), PROXIES, "x-forwarded")
    assert (bad.proto, bad.host) == (None, None)


def test_rfc7239_forwarded_and_the_configured_style_only() -> None:
    headers = _h(forwarded='for=198.51.100.1, for="[2001:db8::7]:4711";proto=https;host=prm.example.org',
                 x_forwarded_for="203.0.113.50")
    got = resolve(headers, PROXIES, "forwarded")
    assert (got.client, got.proto, got.host) == ("2001:db8::7", "https", "prm.example.org")
    assert resolve(headers, PROXIES, "x-forwarded").client == "203.0.113.50"


def test_trust_is_by_network() -> None:
    assert is_trusted("10.1.2.3", PROXIES) and is_trusted("::ffff:10.1.2.3", PROXIES)
    assert not is_trusted("11.0.0.1", PROXIES) and not is_trusted("127.0.0.1", ())
    with pytest.raises(ValueError, match="not an IP"):
        parse_networks(["proxy.internal"])


def test_comma_separated_lists_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORS_ORIGINS", "https://app.example, https://admin.example")
    monkeypatch.setenv("TRUSTED_PROXIES", "10.0.0.0/8,127.0.0.1")
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert s.cors_origins == ["https://app.example", "https://admin.example"]
    assert s.trusted_proxies == ["10.0.0.0/8", "127.0.0.1"]
    monkeypatch.setenv("CORS_ORIGINS", '["https://json.example"]')
    assert Settings(_env_file=None).cors_origins == ["https://json.example"]  # type: ignore[call-arg]
    monkeypatch.setenv("TRUSTED_PROXIES", "10.0.0.0/8,proxy.internal")
    with pytest.raises(ValidationError, match=r"proxy\.internal"):
        Settings(_env_file=None)  # type: ignore[call-arg]


def test_docs_default_by_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_DOCS", "")
    assert Settings(_env_file=None, environment="development").docs_enabled  # type: ignore[call-arg]
    assert not Settings(_env_file=None, environment="production").docs_enabled  # type: ignore[call-arg]
    assert Settings(_env_file=None, environment="production", api_docs=True).docs_enabled  # type: ignore[call-arg]


def _production(**values: object) -> Settings:
    base: dict[str, object] = {"environment": "production", "secret_key": "k" * 40,
                               "database_url": "postgresql://prm:pw-123@db.internal:5432/prm",
                               "public_base_url": "https://prm.example.org"}
    return Settings(_env_file=None, **{**base, **values})  # type: ignore[arg-type]


def test_a_safe_production_configuration_has_no_problems() -> None:
    assert startup.problems(_production()) == []
    assert startup.problems(Settings(_env_file=None, environment="development")) == []  # type: ignore[call-arg]


@pytest.mark.parametrize(("change", "names"), [
    ({"secret_key": None}, ["SECRET_KEY"]),
    ({"secret_key": "secret"}, ["SECRET_KEY"]),
    ({"database_url": None}, ["DATABASE_URL"]),
    ({"cors_origins": ["*"]}, ["CORS_ORIGINS"]),
    ({"trusted_proxies": ["0.0.0.0/0"]}, ["TRUSTED_PROXIES"]),
    ({"db_echo": True}, ["DB_ECHO"]),
    ({"outbound_allow_private_targets": True}, ["OUTBOUND_ALLOW_PRIVATE_TARGETS"]),
    ({"public_base_url": "http://127.0.0.1:8000"}, ["PUBLIC_BASE_URL"]),
    ({"secret_key": "short", "database_url": None, "db_echo": True}, ["SECRET_KEY", "DATABASE_URL", "DB_ECHO"]),
])
def test_each_unsafe_production_setting_is_one_clear_problem(change: dict[str, object], names: list[str]) -> None:
    found = startup.problems(_production(**change))
    assert [n for n in names] == [p.split()[0].split("=")[0] for p in found]


def test_the_embedded_database_in_production_only_when_opted_in() -> None:
    assert startup.problems(_production(database_url=None, allow_embedded_database=True)) == []
    with pytest.raises(RuntimeError, match="DATABASE_URL is required"):
        resolve_database_url(_production(database_url=None))


def test_the_startup_report_holds_no_secret() -> None:
    s = _production(redis_url="redis://:redis-pw-9@cache.internal:6379/0", twilio_auth_token="tw-token-77",
                    twilio_account_sid="AC123", smtp_password="smtp-pw-55")
    report = startup.report(s)
    text = repr(report)
    for secret in ("k" * 40, "pw-123", "redis-pw-9", "tw-token-77", "smtp-pw-55"):
        assert secret not in text
    assert report["database"] == "postgresql://db.internal:5432/prm"
    assert report["redis"] == "redis://cache.internal:6379/0"
    assert report["signing_key"] == "set (40 bytes)" and report["problems"] == []
    assert isinstance(s.secret_key, SecretStr)


def test_the_nul_guard_walks_any_depth_without_recursion() -> None:
    deep: object = "\x00"
    for _ in range(20000):
        deep = [deep]
    assert nul_path(deep) == ("0",) * 20000
    assert nul_path({"a": [{"b": "ok"}, {"c\x00": 1}]}) == ("a", "1", "c\\u0000")
    assert _json_field(b"[" * 100000 + b'"\\u0000"' + b"]" * 100000) == ("body", "is nested too deeply")
