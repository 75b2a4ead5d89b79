"""Callback signatures and safe-mode (安全模式) encryption, over `wechatpy`'s WXBizMsgCrypt implementation.

Signature: SHA1 of the sorted strings (token, timestamp, nonce[, Encrypt or echostr]). Encryption:
AES-256-CBC with the key decoded from the 43-character EncodingAESKey and IV = its first 16 bytes, over
random(16) + length(4, network order) + message + AppID/CorpID, PKCS#7-padded to 32 bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import struct
import time

from wechatpy.crypto import PrpCrypto
from wechatpy.exceptions import InvalidAppIdException


class CallbackRejected(Exception):
    """A callback that did not come from WeChat (bad signature) or cannot be read (bad payload)."""


class BadSignature(CallbackRejected):
    pass


class BadPayload(CallbackRejected):
    pass


class StaleTimestamp(CallbackRejected):
    """Correctly signed, but its `timestamp` is too far from now: a replay of a captured request."""


def decode_aes_key(encoding_aes_key: str) -> bytes:
    """The 32-byte AES key from the console's 43-character EncodingAESKey; ValueError when it is not one."""
    if len(encoding_aes_key) != 43:
        raise ValueError("EncodingAESKey must be 43 characters")
    try:
        key = base64.b64decode(encoding_aes_key + "=", validate=True)
    except binascii.Error as exc:
        raise ValueError("EncodingAESKey is not base64") from exc
    if len(key) != 32:
        raise ValueError("EncodingAESKey must decode to 32 bytes")
    return key


def check_fresh(timestamp: str, window_seconds: int, now: float | None = None) -> None:
    """Raise `StaleTimestamp` unless `timestamp` (Unix seconds) is within `window_seconds` of now (0: no check)."""
    if window_seconds <= 0:
        return
    try:
        sent = int(timestamp)
    except ValueError:
        raise StaleTimestamp("timestamp is not a number") from None
    if abs((time.time() if now is None else now) - sent) > window_seconds:
        raise StaleTimestamp("timestamp outside the accepted window")


def sha1_signature(*parts: str) -> str:
    return hashlib.sha1("".join(sorted(parts)).encode("utf-8")).hexdigest()


class CallbackCrypto:
    """One account's callback crypto: `token` signs, `aes_key` (None: plaintext mode) encrypts for `receiver_id`."""

    def __init__(self, token: str, aes_key: str | None, receiver_id: str) -> None:
        self._token = token
        self._key = decode_aes_key(aes_key) if aes_key else None
        self._receiver_id = receiver_id

    @property
    def encrypted(self) -> bool:
        return self._key is not None

    def signature(self, timestamp: str, nonce: str, *extra: str) -> str:
        return sha1_signature(self._token, timestamp, nonce, *extra)

    def verify(self, signature: str, timestamp: str, nonce: str, *extra: str) -> None:
        """Raise `BadSignature` unless `signature` signs (token, timestamp, nonce, *extra); constant time."""
        expected = self.signature(timestamp, nonce, *extra)
        if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", errors="replace")):
            raise BadSignature("signature mismatch")

    def decrypt(self, encrypted: str) -> str:
        """The plaintext of an `Encrypt` element or an encrypted `echostr`; `BadPayload` when it is not ours."""
        if self._key is None:
            raise BadPayload("account is in plaintext mode")
        try:
            return str(PrpCrypto(self._key).decrypt(encrypted, self._receiver_id))
        except InvalidAppIdException as exc:
            raise BadPayload("message is for another AppID/CorpID") from exc
        except (ValueError, TypeError, IndexError, struct.error, UnicodeDecodeError, binascii.Error) as exc:
            raise BadPayload("undecryptable payload") from exc

    def encrypt(self, plaintext: str, timestamp: str, nonce: str) -> tuple[str, str]:
        """(Encrypt, MsgSignature) of a reply: the base64 ciphertext and its signature."""
        if self._key is None:
            raise ValueError("account is in plaintext mode")
        encrypted = PrpCrypto(self._key).encrypt(plaintext, self._receiver_id)
        text = encrypted.decode("ascii") if isinstance(encrypted, bytes) else str(encrypted)
        return text, self.signature(timestamp, nonce, text)
