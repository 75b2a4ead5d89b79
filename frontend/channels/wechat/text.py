"""WeChat's text limits count UTF-8 bytes: cut and split on character boundaries, never inside a character."""

from __future__ import annotations

PASSIVE_REPLY_BYTES = 2047  # a passive text reply longer than this is rejected by WeChat
SEND_TEXT_BYTES = 2048  # custom/send, WeCom message/send and kf/send_msg text content


def truncate_utf8(text: str, limit: int) -> str:
    """The longest prefix of `text` whose UTF-8 encoding fits in `limit` bytes."""
    encoded = text.encode("utf-8")
    if len(encoded) <= limit:
        return text
    return encoded[:limit].decode("utf-8", errors="ignore")


def split_utf8(text: str, limit: int) -> list[str]:
    """`text` in consecutive pieces of at most `limit` UTF-8 bytes each; joined they give `text` back."""
    if limit < 4:
        raise ValueError("limit must hold one UTF-8 character (4 bytes)")
    pieces: list[str] = []
    rest = text
    while rest:
        piece = truncate_utf8(rest, limit)
        pieces.append(piece)
        rest = rest[len(piece) :]
    return pieces
