"""Make caller-supplied text inert inside a chat template: no control token can be written through it.

Chat templates splice text between special tokens (`<|im_start|>`, `<|im_end|>`, Qwen3's `<think>`), and the
tokenizer turns those strings back into the real tokens. A caller who types one could close the system turn and
open their own. We swap the ASCII brackets of anything shaped like such a token for their full-width twins, so the
text still reads the same to a person and to the model but never tokenizes to a control token.
"""

from __future__ import annotations

import re

# `<|anything|>` (ChatML and most templates' special tokens) and Qwen3's tag-shaped ones.
_PIPE_TOKEN = re.compile(r"<\|([^<>|]{0,64})\|>")
_TAG_TOKEN = re.compile(r"<(/?)(think|tool_call|tool_response|tools)>", re.IGNORECASE)


def neutralize_control_tokens(text: str) -> str:
    """`text` with every control-token look-alike rewritten with full-width brackets; other text is unchanged."""
    text = _PIPE_TOKEN.sub(lambda m: f"<｜{m.group(1)}｜>", text)
    return _TAG_TOKEN.sub(lambda m: f"＜{m.group(1)}{m.group(2)}＞", text)
