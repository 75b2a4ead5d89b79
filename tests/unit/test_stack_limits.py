"""`make run` renders Triton with the conversation limits the gateway reads from the same environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine_build.cli import render_for
from frontend.stack import StackError, limit_overrides
from python_backends.limits import ConversationLimits
from tests.unit.test_render import parse_served


def test_limits_set_for_the_gateway_are_rendered_into_triton(tmp_path: Path) -> None:
    """GATEWAY_MAX_MESSAGE_CHARS=9000 (and the others) reach the served configs; unset ones stay the defaults."""
    environ = {"GATEWAY_MAX_MESSAGE_CHARS": "9000", "GATEWAY_MAX_TOKENS_LIMIT": "700", "HISTORY_TOKEN_BUDGET": "2000"}
    repo = render_for("cpu", "", tmp_path / "repo", limit_overrides(environ))
    served = ConversationLimits.served_by(parse_served(repo))
    assert served == ConversationLimits(max_message_chars=9000, max_tokens_limit=700, history_token_budget=2000)
    assert limit_overrides({}) == {}


@pytest.mark.parametrize("bad", ["lots", "0", "-1"])
def test_a_limit_that_is_not_a_positive_integer_stops_the_stack_naming_it(bad: str) -> None:
    with pytest.raises(StackError, match="GATEWAY_MAX_HISTORY_TURNS must be a positive integer"):
        limit_overrides({"GATEWAY_MAX_HISTORY_TURNS": bad})
