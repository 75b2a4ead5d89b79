"""The tiny Qwen3 checkpoint carries the real Qwen3 tokenizer: same ids as tiktoken, Qwen3's special tokens."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import AutoConfig, AutoTokenizer, GenerationConfig

from engine_build.qwen3_tokenizer import qwen3_tiktoken_encoding

MIXED_CORPUS = [
    "您好，我的订单 202611270001 还没有发货，能帮我查一下吗？",
    "Where is my package? 快递单号 SF1234567890123，已经三天没更新了。",
    "退款多久到账？I paid with 支付宝 on 11/11, ¥1,299.00 😀😀",
    "請問這件衣服有XL碼嗎？繁體字也要能處理。",
    "  multiple   spaces\tand\nnewlines\r\n混在一起  ",
    "API_KEY=abc123; print('hello'); x += 1 // 注释",
    "Qwen3 的 <think> 标签和 </think> 是普通 token，<|im_start|>user\n你好<|im_end|>",
    "emoji 🇨🇳👍🏽 and combining é, ñ, 𠀀 (CJK ext B)",
]


@pytest.fixture(scope="module")
def tokenizer(tiny_checkpoint: Path):  # type: ignore[no-untyped-def]
    return AutoTokenizer.from_pretrained(tiny_checkpoint)


@pytest.mark.parametrize("text", MIXED_CORPUS)
def test_ids_equal_tiktoken_on_mixed_chinese_english_text(tokenizer, text: str) -> None:  # type: ignore[no-untyped-def]
    """Our converted fast tokenizer encodes exactly like tiktoken over qwen.tiktoken."""
    encoding = qwen3_tiktoken_encoding()
    assert tokenizer(text, add_special_tokens=False)["input_ids"] == encoding.encode(text, allowed_special="all")


def test_qwen3_added_tokens_sit_at_their_published_ids(tokenizer) -> None:  # type: ignore[no-untyped-def]
    """<|endoftext|> 151643, <|im_start|> 151644, <|im_end|> 151645, <think> 151667, </think> 151668."""
    expected = {
        "<|endoftext|>": 151643,
        "<|im_start|>": 151644,
        "<|im_end|>": 151645,
        "<think>": 151667,
        "</think>": 151668,
    }
    assert {tok: tokenizer.convert_tokens_to_ids(tok) for tok in expected} == expected
    assert tokenizer.eos_token_id == 151645


def test_think_markers_are_not_special_and_survive_decoding(tokenizer) -> None:  # type: ignore[no-untyped-def]
    """skip_special_tokens drops <|im_end|> but keeps <think>, as in Qwen3."""
    ids = tokenizer("<think>x</think><|im_end|>", add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids, skip_special_tokens=True) == "<think>x</think>"


def test_chat_template_is_chatml_with_thinking_off(tokenizer) -> None:  # type: ignore[no-untyped-def]
    """The generation prompt opens an assistant turn with an empty think block when thinking is off."""
    text = tokenizer.apply_chat_template(
        [{"role": "system", "content": "S"}, {"role": "user", "content": "你好"}],
        tokenize=False,
        add_generation_prompt=True,
        enable_thinking=False,
    )
    assert text == (
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\n你好<|im_end|>\n"
        "<|im_start|>assistant\n<think>\n\n</think>\n\n"
    )


def test_checkpoint_is_qwen3_architecture_ending_on_both_end_ids(tiny_checkpoint: Path) -> None:
    """config says Qwen3ForCausalLM; generation ends on <|im_end|> and <|endoftext|>."""
    assert AutoConfig.from_pretrained(tiny_checkpoint).architectures == ["Qwen3ForCausalLM"]
    assert set(GenerationConfig.from_pretrained(tiny_checkpoint).eos_token_id) == {151645, 151643}
