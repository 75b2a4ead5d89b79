"""History the gateway sends: its newest stored turns, as many exchanges and as much JSON as the models accept.

Trimming by tokens is the prompt builder's (tests/unit/test_prompt_builder.py); here only the transport bound.
"""

from __future__ import annotations

from frontend.services.history import Turn, encode_history, history_to_send
from python_backends.limits import ConversationLimits


def exchanges(n: int, size: int = 1) -> list[Turn]:
    turns = []
    for i in range(n):
        turns += [Turn("user", f"问{i}" * size), Turn("assistant", f"答{i}" * size)]
    return turns


def test_sends_the_last_n_exchanges_in_order() -> None:
    """Only the newest `max_history_turns` user+assistant pairs go, in order, untrimmed by tokens."""
    sent = history_to_send(exchanges(8, size=500), ConversationLimits(max_history_turns=5))
    assert len(sent) == 10 and sent[0] == {"role": "user", "content": "问3" * 500}
    assert sent[-1] == {"role": "assistant", "content": "答7" * 500}


def test_drops_the_oldest_while_the_json_is_over_what_the_models_accept() -> None:
    """A long stored reply never makes Triton refuse the turn: the oldest messages go until the JSON fits."""
    limits = ConversationLimits(max_history_chars=1000)
    sent = history_to_send([Turn("user", "问"), Turn("assistant", "长" * 900), *exchanges(2, size=20)], limits)
    assert len(encode_history(sent)) <= 1000
    assert [t["content"] for t in sent] == ["问0" * 20, "答0" * 20, "问1" * 20, "答1" * 20]


def test_the_json_is_measured_as_the_models_read_it() -> None:
    """Chinese text is sent as is (not \\u-escaped), so its length is what prompt_builder measures."""
    assert encode_history([{"role": "user", "content": "你好"}]) == '[{"role": "user", "content": "你好"}]'
