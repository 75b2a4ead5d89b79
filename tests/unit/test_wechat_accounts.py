"""Channel accounts: `default` from GATEWAY_WECHAT_* / GATEWAY_WECOM_*, more from a mounted YAML file; errors
name the field and rule, never a secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from frontend.channels.wechat.accounts import AccountsError, load_accounts
from frontend.settings import GatewaySettings

KEYS = {"api_keys": ["k" * 20], "admin_api_key": "a" * 20, "agent_keys": ["agent:" + "g" * 20]}
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"


def settings(**values: object) -> GatewaySettings:
    return GatewaySettings(**KEYS, **values)  # type: ignore[arg-type]


def test_no_token_means_no_channel() -> None:
    accounts = load_accounts(settings())
    assert accounts.wechat == {} and accounts.wecom == {}


def test_default_account_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"TOKEN": "tok-123", "APPID": "wxapp", "AES_KEY": "", "SECRET": "app-secret"}.items():
        monkeypatch.setenv(f"GATEWAY_WECHAT_{name}", value)
    account = load_accounts(GatewaySettings(**KEYS)).wechat["default"]  # type: ignore[arg-type]
    assert account.app_id == "wxapp" and account.aes_key is None  # empty key = plaintext mode
    assert account.secret is not None and account.secret.get_secret_value() == "app-secret"
    assert "app-secret" not in repr(account) and "tok-123" not in repr(account)


def test_accounts_file_adds_accounts(tmp_path: Path) -> None:
    path = tmp_path / "accounts.yaml"
    path.write_text(
        f"wechat:\n  shop: {{token: shop-token, app_id: wxshop, aes_key: {AES_KEY}, passive_wait_seconds: 2}}\n"
        f"wecom:\n  support: {{token: corp-token, corp_id: wwcorp, aes_key: {AES_KEY}, agent_id: 1000002}}\n",
        encoding="utf-8",
    )
    accounts = load_accounts(settings(wechat_accounts_file=path, wechat_token="env-token", wechat_appid="wxenv"))
    assert sorted(accounts.wechat) == ["default", "shop"]
    assert accounts.wechat["shop"].passive_wait_seconds == 2
    assert accounts.wecom["support"].agent_id == 1000002


@pytest.mark.parametrize(
    ("content", "rule"),
    [
        ("wechat:\n  shop: {token: secret-token-value, app_id: wx1, aes_key: short-secret-key}\n", "EncodingAESKey"),
        ("wecom:\n  support: {token: secret-token-value, corp_id: ww1}\n", "aes_key is required"),
        ("wechat:\n  'bad name': {token: secret-token-value, app_id: wx1}\n", "account names"),
        ("wechat:\n  shop: {token: secret-token-value, app_id: wx1, extra: 1}\n", "extra"),
        ("other: {}\n", "only `wechat:` and `wecom:`"),
    ],
)
def test_invalid_accounts_are_refused_without_echoing_secrets(tmp_path: Path, content: str, rule: str) -> None:
    path = tmp_path / "accounts.yaml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(AccountsError, match=rule) as refused:
        load_accounts(settings(wechat_accounts_file=path))
    assert "secret-token-value" not in str(refused.value) and "short-secret-key" not in str(refused.value)
