"""The callback XML: parsed with `xmltodict` with entities disabled (no DTD, no entity expansion), built by hand
from a fixed template with CDATA sections."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from xml.parsers.expat import ExpatError

import xmltodict

from frontend.channels.wechat.crypto import BadPayload

MAX_FIELD_CHARS = 8192


def parse_xml(body: bytes | str) -> dict[str, str]:
    """The flat `<xml>` element of a callback as {tag: text}; `BadPayload` for anything else.

    Nested elements (ScanCodeInfo, SendPicsInfo…) are dropped: nothing here reads them.
    """
    try:
        tree: Any = xmltodict.parse(body, disable_entities=True)
    except (ExpatError, ValueError, TypeError) as exc:
        raise BadPayload("malformed XML") from exc
    root = tree.get("xml") if isinstance(tree, dict) else None
    if not isinstance(root, dict):
        raise BadPayload("expected an <xml> root element")
    fields: dict[str, str] = {}
    for tag, value in root.items():
        if isinstance(value, str):
            fields[tag] = value[:MAX_FIELD_CHARS]
        elif value is None:
            fields[tag] = ""
    return fields


@dataclass(frozen=True)
class Inbound:
    """One callback message: who sent it, to whom, and what (text, or an event/other type)."""

    to_user: str
    from_user: str
    create_time: str
    msg_type: str
    content: str = ""
    msg_id: str = ""
    event: str = ""
    fields: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_fields(cls, fields: dict[str, str]) -> Inbound:
        required = ["ToUserName", "CreateTime", "MsgType"]
        if fields.get("MsgType", "").strip().lower() != "event":  # kf_msg_or_event has no FromUserName
            required.append("FromUserName")
        missing = [tag for tag in required if not fields.get(tag)]
        if missing:
            raise BadPayload("missing " + ", ".join(missing))
        return cls(
            to_user=fields["ToUserName"],
            from_user=fields.get("FromUserName", ""),
            create_time=fields["CreateTime"],
            msg_type=fields["MsgType"].strip().lower(),
            content=fields.get("Content", ""),
            msg_id=fields.get("MsgId", ""),
            event=fields.get("Event", "").strip(),
            fields=tuple(sorted(fields.items())),
        )

    def get(self, tag: str) -> str:
        return dict(self.fields).get(tag, "")

    @property
    def dedup_key(self) -> str:
        """MsgId can collide across users, events have none: key on MsgId *and* FromUserName+CreateTime."""
        return f"{self.msg_id}|{self.from_user}|{self.create_time}"


def _cdata(text: str) -> str:
    return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def text_reply(inbound: Inbound, content: str, now: int | None = None) -> str:
    """A passive text reply to `inbound` (sender and receiver swapped)."""
    return (
        f"<xml><ToUserName>{_cdata(inbound.from_user)}</ToUserName>"
        f"<FromUserName>{_cdata(inbound.to_user)}</FromUserName>"
        f"<CreateTime>{int(now if now is not None else time.time())}</CreateTime>"
        f"<MsgType>{_cdata('text')}</MsgType><Content>{_cdata(content)}</Content></xml>"
    )


def encrypted_envelope(encrypt: str, signature: str, timestamp: str, nonce: str) -> str:
    return (
        f"<xml><Encrypt>{_cdata(encrypt)}</Encrypt><MsgSignature>{_cdata(signature)}</MsgSignature>"
        f"<TimeStamp>{timestamp}</TimeStamp><Nonce>{_cdata(nonce)}</Nonce></xml>"
    )
