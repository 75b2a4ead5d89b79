"""Cost of building one prompt with the real tokenizer, now that history is cut by tokens only in prompt_builder and
the whole prompt is fitted to the llm's `max_input_tokens`.

Run: .venv/bin/python perf/bench_prompt_fit.py [--checkpoint qwen3-tiny] [--repeat 200]
Prints a table (median per build, in-process, no Triton): a short message without and with five long exchanges of
history, and a 3,600-token message with the same history (history then gets only the room the message leaves).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from transformers import AutoTokenizer  # noqa: E402

from python_backends.limits import ConversationLimits  # noqa: E402
from python_backends.prompt import (  # noqa: E402
    ChatMessage,
    ControlTokenEscaper,
    PromptBuilder,
    PromptConfig,
    PromptError,
)

CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints"


def builder(checkpoint: str) -> tuple[PromptBuilder, Callable[[str], int]]:
    tokenizer = AutoTokenizer.from_pretrained(CHECKPOINTS / checkpoint)

    def render(messages: list[dict[str, str]], thinking: bool) -> str:
        text = tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True, enable_thinking=thinking
        )
        return str(text)

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    escaper = ControlTokenEscaper.from_tokenizer(tokenizer)
    return PromptBuilder(PromptConfig(ConversationLimits()), render, count, escaper), count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", default="qwen3-tiny")
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    build, count = builder(args.checkpoint)
    filler = "请帮我查一下订单的物流状态，" * 20
    history = [ChatMessage(r, f"{r}{i}{filler}") for i in range(5) for r in ("user", "assistant")]
    cases = {
        "short message, no history": ("你好，我的快递到哪了", []),
        "short message, 5 long exchanges": ("你好，我的快递到哪了", history),
        "3,600-token message, 5 long exchanges": ("嗯，" * 1800, history),
    }
    print(f"| case ({args.checkpoint}) | prompt tokens | median build |")
    print("| --- | ---: | ---: |")
    for name, (message, turns) in cases.items():
        try:
            prompt = build.build(message, turns)
        except PromptError as exc:  # the message alone is over max_input_tokens with this tokenizer
            print(f"| {name} | refused: {exc} | |")
            continue
        times = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            build.build(message, turns)
            times.append(time.perf_counter() - started)
        print(f"| {name} | {count(prompt)} | {statistics.median(times) * 1000:.2f} ms |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
