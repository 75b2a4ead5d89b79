"""Gateway settings: required secrets from the environment, comma lists, consistent limits."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from frontend.settings import GatewaySettings

GOOD = {
    "GATEWAY_API_KEYS": "k" * 20 + ", " + "j" * 20,
    "GATEWAY_ADMIN_API_KEY": "a" * 20,
    "GATEWAY_AGENT_KEYS": "alice:" + "g" * 20 + ", bob:" + "h" * 20,
}


def test_reads_keys_and_lists_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Comma-separated keys and origins become lists; defaults match the blueprint (5 turns)."""
    for name, value in {**GOOD, "GATEWAY_ALLOWED_ORIGINS": "https://a.cn/, https://b.cn"}.items():
        monkeypatch.setenv(name, value)
    settings = GatewaySettings()  # type: ignore[call-arg]
    assert settings.api_key_values() == ["k" * 20, "j" * 20]
    assert settings.origins == {"https://a.cn", "https://b.cn"}
    assert settings.max_history_turns == 5 and settings.store_redacted and settings.site_key is None


@pytest.mark.parametrize(
    "broken",
    [
        {"GATEWAY_ADMIN_API_KEY": ""},
        {"GATEWAY_API_KEYS": "short"},
        {"GATEWAY_AGENT_KEYS": "alice:tooshort"},
        {"GATEWAY_AGENT_KEYS": "g" * 20},
        {"GATEWAY_AGENT_KEYS": "alice:" + "g" * 20 + ",alice:" + "h" * 20},
        {"GATEWAY_AGENT_KEYS": "bad name:" + "g" * 20},
        {"GATEWAY_DEFAULT_MAX_TOKENS": "900", "GATEWAY_MAX_TOKENS_LIMIT": "100"},
    ],
)
def test_missing_or_weak_secrets_and_bad_limits_are_refused(monkeypatch: pytest.MonkeyPatch, broken: dict) -> None:
    """The gateway will not start with a missing/short key or a default above the token limit."""
    for name, value in {**GOOD, **broken}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        GatewaySettings()  # type: ignore[call-arg]


def test_keys_never_show_in_repr_or_validation_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every key is a SecretStr: neither the settings' repr nor a validation error prints one."""
    for name, value in GOOD.items():
        monkeypatch.setenv(name, value)
    settings = GatewaySettings()  # type: ignore[call-arg]
    assert settings.agent_key_pairs() == [("alice", "g" * 20), ("bob", "h" * 20)]
    for key in ("k" * 20, "j" * 20, "a" * 20, "g" * 20):
        assert key not in repr(settings) and key not in str(settings.model_dump())
    monkeypatch.setenv("GATEWAY_API_KEYS", "k" * 20 + ",tooshort-key")
    with pytest.raises(ValidationError) as info:
        GatewaySettings()  # type: ignore[call-arg]
    assert "tooshort-key" not in str(info.value) and "k" * 20 not in str(info.value)


def test_trusted_proxies_take_addresses_and_networks_and_refuse_anything_else(monkeypatch: pytest.MonkeyPatch) -> None:
    """GATEWAY_TRUSTED_PROXIES is a comma list of IPs/CIDRs (empty: X-Forwarded-For is never honoured); a bad
    entry stops the gateway with an error that does not echo it."""
    for name, value in GOOD.items():
        monkeypatch.setenv(name, value)
    assert GatewaySettings().trusted_proxies == []  # type: ignore[call-arg]
    monkeypatch.setenv("GATEWAY_TRUSTED_PROXIES", "127.0.0.1, 10.0.0.0/8,::1")
    assert GatewaySettings().trusted_proxies == ["127.0.0.1", "10.0.0.0/8", "::1"]  # type: ignore[call-arg]
    monkeypatch.setenv("GATEWAY_TRUSTED_PROXIES", "127.0.0.1,proxy.internal-secret")
    with pytest.raises(ValidationError) as error:
        GatewaySettings()  # type: ignore[call-arg]
    assert "proxy.internal-secret" not in str(error.value) and "TRUSTED_PROXIES" in str(error.value)
