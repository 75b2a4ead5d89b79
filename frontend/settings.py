"""Gateway configuration: one pydantic-settings class, environment prefix `GATEWAY_`, secrets required.

Every key is a `SecretStr`, so the settings' repr and validation errors never print one.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from python_backends.limits import DEFAULT_LIMITS

DATA_DIR = Path(__file__).resolve().parent / "data"
AGENT_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MIN_SECRET_CHARS = 16

CommaList = Annotated[list[str], NoDecode]
SecretCommaList = Annotated[list[SecretStr], NoDecode]


def _split_commas(value: object) -> object:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class GatewaySettings(BaseSettings):
    """Every knob of the gateway; API keys come from the environment only and must be long random strings."""

    # Validation errors name the field and the rule, never the value (a key could be it).
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore", frozen=True, hide_input_in_errors=True)

    redis_url: str = "redis://127.0.0.1:6379/0"
    triton_grpc_url: str = "127.0.0.1:8001"
    triton_model: str = "customer_service"
    model_variant: str = Field(default="cpu-default", description="A/B arm name stored with every reply and rating")

    api_keys: SecretCommaList = Field(description="REST client keys (comma-separated)")
    admin_api_key: SecretStr
    site_key: SecretStr | None = Field(default=None, description="optional key the chat page sends on the socket")

    allowed_origins: CommaList = Field(default_factory=list, description="CORS/WebSocket origins besides same-origin")

    # Conversation limits: defaults shared with the models (python_backends/limits.py); the gateway enforces these,
    # lowered to what Triton serves (frontend/services/limits.py). The history token budget is the prompt builder's.
    max_history_turns: int = Field(default=DEFAULT_LIMITS.max_history_turns, ge=1, le=50, description="kept, sent")
    session_ttl_seconds: int = Field(default=24 * 3600, ge=60)
    events_retained: int = Field(default=500, ge=50, description="session event stream length kept for replay")
    store_redacted: bool = True

    max_message_chars: int = Field(default=DEFAULT_LIMITS.max_message_chars, ge=1)
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    max_ws_frame_bytes: int = Field(default=32 * 1024, ge=1024)
    default_max_tokens: int = Field(default=256, ge=1)
    max_tokens_limit: int = Field(default=DEFAULT_LIMITS.max_tokens_limit, ge=1)

    rate_limit_per_ip: int = Field(default=120, ge=1, description="requests per window per client IP")
    rate_limit_per_user: int = Field(default=30, ge=1, description="messages per window per session or API key")
    rate_limit_window_seconds: int = Field(default=60, ge=1)

    triton_first_response_timeout_seconds: float = Field(default=30.0, gt=0)
    triton_reply_timeout_seconds: float = Field(default=120.0, gt=0)
    triton_retry_seconds: float = Field(default=20.0, ge=0, description="keep retrying while Triton is restarting")
    turn_lock_wait_seconds: float = Field(default=60.0, gt=0, description="wait for the session's previous turn")

    faq_seed_file: Path = DATA_DIR / "faq_seed.yaml"
    log_level: str = "INFO"
    log_json: bool = True

    # Canary release (issue 12): the candidate variant seeded at start, automatic rollback, stepwise promotion.
    canary_model: str = Field(default="", description="Triton model of a candidate to start with (empty: none)")
    canary_variant: str = Field(default="", description="the candidate's variant name (default: its model name)")
    canary_triton_grpc_url: str = Field(default="", description="the candidate's Triton (default: the stable one)")
    canary_weight: int = Field(default=10, ge=0, le=100, description="percent of new sessions on the candidate")
    rollback_error_rate: float = Field(default=0.05, gt=0, lt=1, description="candidate rolled back above this")
    rollback_min_sample: int = Field(default=20, ge=1, description="replies in the window before deciding")
    rollback_window_seconds: float = Field(default=300.0, gt=0, description="sliding window of the error rate")
    promotion_steps: Annotated[list[int], NoDecode] = Field(default_factory=lambda: [10, 25, 50, 100])
    promotion_step_seconds: float = Field(default=0.0, ge=0, description="healthy time per step; 0 = manual only")
    session_hash_key: SecretStr | None = Field(default=None, description="HMAC key of session hashes in logs")

    @field_validator("promotion_steps", mode="before")
    @classmethod
    def _steps_from_commas(cls, value: object) -> object:
        return _split_commas(value)

    @field_validator("promotion_steps")
    @classmethod
    def _steps_rise_to_100(cls, steps: list[int]) -> list[int]:
        if not steps or steps != sorted(set(steps)) or steps[0] < 1 or steps[-1] > 100:
            raise ValueError("promotion steps must rise strictly within 1-100 percent")
        return steps

    @field_validator("session_hash_key", mode="before")
    @classmethod
    def _empty_hash_key_is_none(cls, value: object) -> object:
        return None if value == "" else value
    # OpenAI API (issue 19): a client's `system`/`developer` messages are honoured as additional instructions after
    # the platform's per-intent system prompt ("instructions"), or refused with a 400 naming them ("reject").
    openai_system_messages: Literal["instructions", "reject"] = "instructions"
    # WeChat Official Account and WeCom channels (frontend/channels/wechat): account `default` from these,
    # more from a mounted YAML file; unset token = channel off. API bases are configurable for tests.
    wechat_token: SecretStr | None = None
    wechat_appid: str = ""
    wechat_aes_key: SecretStr | None = Field(default=None, description="EncodingAESKey; unset = plaintext mode")
    wechat_secret: SecretStr | None = Field(default=None, description="AppSecret, for custom/send")
    wecom_token: SecretStr | None = None
    wecom_corpid: str = ""
    wecom_aes_key: SecretStr | None = None
    wecom_secret: SecretStr | None = None
    wecom_agentid: int | None = None
    wechat_accounts_file: Path | None = Field(default=None, description="YAML with more wechat/wecom accounts")
    wechat_api_base: str = "https://api.weixin.qq.com"
    wecom_api_base: str = "https://qyapi.weixin.qq.com"
    wechat_passive_wait_seconds: float = Field(default=4.0, ge=0, lt=5, description="a callback's wait for the reply")
    wechat_passive_tries: int = Field(default=3, ge=1, le=3, description="WeChat tries that may wait (~14 s at 3)")
    # Scale and overload (issue 9): bounded Redis pool, fan-out readers, in-flight generation bound, owner leases
    # of streaming replies, reply storage rate, trusted proxies and per-IP caps on sockets and new sessions.
    redis_max_connections: int = Field(default=64, ge=4, description="pooled Redis connections per replica")
    redis_pool_timeout_seconds: float = Field(default=15.0, gt=0, description="wait for a free pooled connection")
    fanout_readers: int = Field(default=4, ge=1, le=32, description="blocking XREAD connections per replica")
    max_inflight_generations: int = Field(default=8, ge=1, description="LLM replies at once per replica; then busy")
    busy_retry_after_seconds: int = Field(default=3, ge=1, description="`retry_after` of a `busy` answer")
    owner_lease_seconds: float = Field(default=10.0, ge=1.0, description="a streaming reply's owner renews within")
    reply_store_interval_seconds: float = Field(default=1.0, ge=0.0, description="stored reply text write period")
    trusted_proxies: CommaList = Field(default_factory=list, description="IPs/CIDRs whose X-Forwarded-For counts")
    max_sockets_per_ip: int = Field(default=20, ge=1, description="concurrent customer sockets per IP, all replicas")
    ip_socket_claim_seconds: float = Field(default=90, ge=1, description="a dead replica's sockets count this long")
    new_sessions_per_ip_per_minute: int = Field(default=30, ge=1)

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _proxy_list(cls, value: object) -> object:
        items = _split_commas(value)
        for item in items if isinstance(items, list) else []:
            try:
                ipaddress.ip_network(str(item), strict=False)
            except ValueError:
                raise ValueError("GATEWAY_TRUSTED_PROXIES takes IP addresses or CIDR networks") from None
        return items
    # Human agents and handoff: one key per agent (`name:key` pairs), how long a customer waits in the queue.
    agent_keys: SecretCommaList = Field(description="human agents as comma-separated name:key pairs")
    handoff_wait_seconds: float = Field(default=300.0, gt=0, description="queued longer: back to the bot")
    handoff_queue_max_entries: int = Field(default=10_000, ge=100, description="handoff stream cap (MAXLEN ~)")
    handoff_reclaim_seconds: float = Field(default=30.0, gt=0, description="unacknowledged queue entry: reclaim")
    # Bounded storage: how long a reply's rating is kept (the per-variant totals stay).
    feedback_retention_seconds: int = Field(default=90 * 24 * 3600, ge=3600)

    @field_validator("agent_keys", mode="before")
    @classmethod
    def _agent_key_list(cls, value: object) -> object:
        return _split_commas(value)

    @field_validator("agent_keys")
    @classmethod
    def _agent_keys_valid(cls, pairs: list[SecretStr]) -> list[SecretStr]:
        if not pairs:
            raise ValueError("GATEWAY_AGENT_KEYS needs at least one name:key pair")
        names = []
        for pair in pairs:
            name, sep, key = pair.get_secret_value().partition(":")
            if not sep or not AGENT_NAME.match(name):
                raise ValueError("each GATEWAY_AGENT_KEYS entry is name:key, name of letters, digits, . _ - (≤ 64)")
            if len(key) < MIN_SECRET_CHARS:
                raise ValueError(f"every agent key needs at least {MIN_SECRET_CHARS} characters")
            names.append(name)
        if len(set(names)) != len(names):
            raise ValueError("agent names in GATEWAY_AGENT_KEYS must be unique")
        return pairs

    def session_log_hash_key(self) -> bytes:
        """Key of the session-id hash in logs: derived from the admin key, so every replica tags alike."""
        return hashlib.sha256(b"session-log-tag:" + self.admin_api_key.get_secret_value().encode()).digest()

    def agent_names(self) -> list[str]:
        return [name for name, _ in self.agent_key_pairs()]

    def agent_key_pairs(self) -> list[tuple[str, str]]:
        """(agent name, key) for each configured agent."""
        pairs = (p.get_secret_value().partition(":") for p in self.agent_keys)
        return [(name, key) for name, _, key in pairs]

    # Agent console (/agent): queue refresh, the long-wait highlight, reply-suggestion length, sign-in deadline.
    agent_queue_refresh_seconds: float = Field(default=1.0, gt=0, le=30, description="queue/presence poll")
    agent_long_wait_seconds: float = Field(default=120.0, gt=0, description="queued longer: highlighted")
    agent_suggestion_max_tokens: int = Field(default=128, ge=1, description="tokens per drafted reply")
    agent_sign_in_seconds: float = Field(default=10.0, gt=0, description="socket closed without a credential")
    agent_sign_in_per_ip: int = Field(default=20, ge=1, description="failed agent sign-ins per window per IP")
    # WeChat/WeCom channel hardening (issue 13): replayed callbacks, satisfaction menus, deliveries that survive
    # a replica's death (each pending delivery's owner renews within `owner_lease_seconds`).
    wechat_timestamp_window_seconds: int = Field(
        default=300, ge=0, description="callbacks whose timestamp is further from now are refused; 0 = off"
    )
    wechat_feedback_menu: bool = Field(default=False, description="after a bot answer, send a 满意/不满意 menu")

    @field_validator("api_keys", "allowed_origins", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        return _split_commas(value)

    @field_validator("api_keys")
    @classmethod
    def _api_keys_strong(cls, keys: list[SecretStr]) -> list[SecretStr]:
        if not keys:
            raise ValueError("GATEWAY_API_KEYS needs at least one key")
        short = [k for k in keys if len(k.get_secret_value()) < MIN_SECRET_CHARS]
        if short:
            raise ValueError(f"every GATEWAY_API_KEYS entry needs at least {MIN_SECRET_CHARS} characters")
        return keys

    @field_validator("admin_api_key")
    @classmethod
    def _secret_strong(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < MIN_SECRET_CHARS:
            raise ValueError(f"must be at least {MIN_SECRET_CHARS} characters")
        return value

    @field_validator("site_key", mode="before")
    @classmethod
    def _empty_site_key_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @model_validator(mode="after")
    def _limits_consistent(self) -> GatewaySettings:
        if self.default_max_tokens > self.max_tokens_limit:
            raise ValueError("default_max_tokens must not exceed max_tokens_limit")
        return self

    def api_key_values(self) -> list[str]:
        return [key.get_secret_value() for key in self.api_keys]

    @cached_property
    def origins(self) -> frozenset[str]:
        return frozenset(o.rstrip("/") for o in self.allowed_origins)
