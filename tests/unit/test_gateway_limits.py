"""The gateway never enforces a limit above what the served Triton pipeline accepts: it lowers its own setting,
says so in the log and in /readyz, and until Triton has been asked it is not ready."""

from __future__ import annotations

import logging

import pytest

from frontend.services.limits import GatewayLimits
from frontend.settings import GatewaySettings
from python_backends.limits import ConversationLimits

KEYS = {"api_keys": ["k" * 20], "admin_api_key": "a" * 20, "agent_keys": ["agent:" + "g" * 20]}


def settings(**overrides: object) -> GatewaySettings:
    return GatewaySettings(**KEYS, **overrides)  # type: ignore[arg-type]


class Served:
    """Stands in for TritonChat.served_limits: what Triton serves, or None while it cannot be asked."""

    def __init__(self, limits: ConversationLimits | None) -> None:
        self.limits = limits

    async def __call__(self) -> ConversationLimits | None:
        return self.limits


def test_the_gateway_defaults_are_the_shared_limits() -> None:
    """Unset, the gateway's limits are the numbers the models are rendered with."""
    assert GatewayLimits(settings()).current == ConversationLimits()


async def test_a_setting_above_what_triton_accepts_is_lowered_with_a_reason(caplog: pytest.LogCaptureFixture) -> None:
    """GATEWAY_MAX_MESSAGE_CHARS=10000 against a prompt builder taking 4000: 4000 is enforced, the log says why."""
    served = Served(ConversationLimits(max_message_chars=4000, max_tokens_limit=512, history_token_budget=900))
    limits = GatewayLimits(settings(max_message_chars=10_000, max_tokens_limit=2048, default_max_tokens=256), served)
    assert not limits.verified and limits.current.max_message_chars == 10_000
    with caplog.at_level(logging.WARNING, "frontend.services.limits"):
        assert await limits.refresh()
    assert limits.verified
    assert (limits.current.max_message_chars, limits.current.max_tokens_limit) == (4000, 512)
    assert limits.current.history_token_budget == 900  # the models' own limits are taken as served
    assert limits.max_tokens(None, 256) == 256 and limits.max_tokens(4096, 256) == 512
    status = limits.status()
    assert status["verified"] is True and status["max_message_chars"] == 4000
    assert [r.split(" is")[0] for r in limits.clamped] == [
        "GATEWAY_MAX_MESSAGE_CHARS=10000",
        "GATEWAY_MAX_TOKENS_LIMIT=2048",
    ]
    assert "enforcing 4000" in caplog.text and "enforcing 512" in caplog.text


async def test_a_lower_gateway_setting_stands_and_is_not_a_clamp() -> None:
    """The gateway may be stricter than Triton (fewer stored turns, shorter messages)."""
    limits = GatewayLimits(settings(max_message_chars=500, max_history_turns=2), Served(ConversationLimits()))
    assert await limits.refresh()
    assert (limits.current.max_message_chars, limits.current.max_history_turns) == (500, 2) and not limits.clamped


async def test_while_triton_cannot_be_asked_the_limits_stay_unverified() -> None:
    limits = GatewayLimits(settings(), Served(None))
    assert not await limits.refresh() and not limits.verified and limits.status()["verified"] is False
    assert not await GatewayLimits(settings()).refresh()  # no reader at all (unit tests of other services)


async def test_a_triton_restarted_with_higher_limits_raises_them_back_to_the_setting() -> None:
    served = Served(ConversationLimits(max_message_chars=1000))
    limits = GatewayLimits(settings(max_message_chars=3000), served)
    await limits.refresh()
    assert limits.current.max_message_chars == 1000 and limits.clamped
    served.limits = ConversationLimits(max_message_chars=8000)
    await limits.refresh()
    assert limits.current.max_message_chars == 3000 and not limits.clamped
