"""Which Official Accounts and WeCom apps this gateway serves: account `default` from `GATEWAY_WECHAT_*` /
`GATEWAY_WECOM_*`, more from a mounted YAML file (`GATEWAY_WECHAT_ACCOUNTS_FILE`). Never from the repository.

File shape (names are URL path segments: letters, digits, `-`, `_`):
    wechat:
      shop: {token: ..., app_id: wx..., aes_key: ..., secret: ...}
    wecom:
      support: {token: ..., corp_id: ww..., aes_key: ..., secret: ..., agent_id: 1000002}
Optional per account: `passive_wait_seconds`, `passive_tries`, `timestamp_window_seconds` (else the gateway's
settings).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from frontend.channels.wechat.crypto import decode_aes_key
from frontend.settings import GatewaySettings

ACCOUNT_NAME = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
DEFAULT = "default"


def _secret_or_none(value: SecretStr | None) -> SecretStr | None:
    return value if value is not None and value.get_secret_value() else None


class _Account(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    token: SecretStr
    aes_key: SecretStr | None = None
    secret: SecretStr | None = Field(default=None, description="AppSecret/Secret for outbound calls")
    passive_wait_seconds: float | None = Field(default=None, ge=0, lt=5, description="overrides the gateway's")
    passive_tries: int | None = Field(default=None, ge=1, le=3, description="overrides the gateway's")
    timestamp_window_seconds: int | None = Field(default=None, ge=0, description="overrides the gateway's")

    @field_validator("token")
    @classmethod
    def _token_set(cls, value: SecretStr) -> SecretStr:
        if not 3 <= len(value.get_secret_value()) <= 32:
            raise ValueError("token must be 3 to 32 characters")
        return value

    @field_validator("aes_key")
    @classmethod
    def _aes_key_valid(cls, value: SecretStr | None) -> SecretStr | None:
        value = _secret_or_none(value)
        if value is not None:
            decode_aes_key(value.get_secret_value())
        return value

    @field_validator("secret")
    @classmethod
    def _empty_secret_is_none(cls, value: SecretStr | None) -> SecretStr | None:
        return _secret_or_none(value)


class OfficialAccount(_Account):
    """A 公众号: plaintext mode without `aes_key`; passive replies only without `secret`."""

    app_id: str = Field(min_length=1)


class WeComAccount(_Account):
    """A WeCom self-built app (自建应用); with 微信客服 permission it also receives `kf_msg_or_event`."""

    corp_id: str = Field(min_length=1)
    agent_id: int | None = None

    @model_validator(mode="after")
    def _aes_key_required(self) -> WeComAccount:
        if self.aes_key is None:
            raise ValueError("WeCom callbacks are always encrypted: aes_key is required")
        return self


class ChannelAccounts(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    wechat: dict[str, OfficialAccount] = Field(default_factory=dict)
    wecom: dict[str, WeComAccount] = Field(default_factory=dict)

    @field_validator("wechat", "wecom")
    @classmethod
    def _names(cls, accounts: dict[str, Any]) -> dict[str, Any]:
        bad = [name for name in accounts if not ACCOUNT_NAME.match(name)]
        if bad:
            raise ValueError("account names may hold letters, digits, '-' and '_' (1-32)")
        return accounts


class AccountsError(ValueError):
    """The accounts configuration is invalid; the message names the field and rule, never a value."""


def _describe(exc: ValidationError) -> str:
    return "; ".join(".".join(str(p) for p in err["loc"]) + ": " + err["msg"] for err in exc.errors())


def load_accounts(settings: GatewaySettings) -> ChannelAccounts:
    data: dict[str, dict[str, Any]] = {"wechat": {}, "wecom": {}}
    if settings.wechat_accounts_file is not None:
        try:
            loaded = yaml.safe_load(Path(settings.wechat_accounts_file).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise AccountsError(f"cannot read the WeChat accounts file: {type(exc).__name__}") from None
        if not isinstance(loaded, dict):
            raise AccountsError("the WeChat accounts file must be a mapping with `wechat:` and/or `wecom:`")
        for kind in ("wechat", "wecom"):
            data[kind].update(loaded.get(kind) or {})
        unknown = set(loaded) - {"wechat", "wecom"}
        if unknown:
            raise AccountsError("the WeChat accounts file allows only `wechat:` and `wecom:`")
    if settings.wechat_token is not None and settings.wechat_token.get_secret_value():
        data["wechat"][DEFAULT] = {
            "token": settings.wechat_token,
            "app_id": settings.wechat_appid,
            "aes_key": settings.wechat_aes_key,
            "secret": settings.wechat_secret,
        }
    if settings.wecom_token is not None and settings.wecom_token.get_secret_value():
        data["wecom"][DEFAULT] = {
            "token": settings.wecom_token,
            "corp_id": settings.wecom_corpid,
            "aes_key": settings.wecom_aes_key,
            "secret": settings.wecom_secret,
            "agent_id": settings.wecom_agentid,
        }
    try:
        return ChannelAccounts.model_validate(data)
    except ValidationError as exc:
        raise AccountsError("invalid WeChat/WeCom account: " + _describe(exc)) from None
