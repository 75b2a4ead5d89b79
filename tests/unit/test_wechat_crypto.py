"""The callback crypto against the official WXBizMsgCrypt samples (公众号 and 企业微信), and its failure modes."""

from __future__ import annotations

import base64

import pytest

from frontend.channels.wechat.crypto import (
    BadPayload,
    BadSignature,
    CallbackCrypto,
    StaleTimestamp,
    check_fresh,
    decode_aes_key,
    sha1_signature,
)
from frontend.channels.wechat.messages import Inbound, encrypted_envelope, parse_xml, text_reply

# Official Account sample (WXBizMsgCrypt Sample.py, 公众平台 消息加解密 示例).
MP_TOKEN = "spamtest"
MP_AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
MP_APPID = "wx2c2769f8efd9abc2"
MP_TIMESTAMP, MP_NONCE = "1409735669", "1320562132"
MP_MSG_SIGNATURE = "5d197aaffba7e9b25a30732f161a50dee96bd5fa"
MP_ENCRYPT = (
    "hyzAe4OzmOMbd6TvGdIOO6uBmdJoD0Fk53REIHvxYtJlE2B655HuD0m8KUePWB3+LrPXo87wzQ1QLvbeUgmBM4x6F8PGHQHFVAFmOD2LdJF9F"
    "rXpbUAh0B5GIItb52sn896wVsMSHGuPE328HnRGBcrS7C41IzDWyWNlZkyyXwon8T332jisa+h6tEDYsVticbSnyU8dKOIbgU6ux5VTjg3yt+W"
    "GzjlpKn6NPhRjpA912xMezR4kw6KWwMrCVKSVCZciVGCgavjIQ6X8tCOp3yZbGpy0VxpAe+77TszTfRd5RJSVO/HTnifJpXgCSUdUue1v6h0EIB"
    "YYI1BD1DlD+C0CR8e6OewpusjZ4uBl9FyJvnhvQl+q5rv1ixrcpCumEPo5MJSgM9ehVsNPfUM669WuMyVWQLCzpu9GhglF2PE="
)

# WeCom sample (企业微信 加解密库 Sample: VerifyURL and DecryptMsg).
WECOM_TOKEN = "QDG6eK"
WECOM_AES_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
WECOM_CORPID = "wx5823bf96d3bd56c7"
WECOM_VERIFY = {
    "msg_signature": "5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3",
    "timestamp": "1409659589",
    "nonce": "263014780",
    "echostr": "P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ==",
}
WECOM_ECHO_PLAIN = "1616140317555161061"
WECOM_MSG_SIGNATURE = "477715d11cdb4164915debcba66cb864d751f3e6"
WECOM_TIMESTAMP, WECOM_NONCE = "1409659813", "1372623149"
WECOM_ENCRYPT = (
    "RypEvHKD8QQKFhvQ6QleEB4J58tiPdvo+rtK1I9qca6aM/wvqnLSV5zEPeusUiX5L5X/0lWfrf0QADHHhGd3QczcdCUpj911L3vg3W/sYYvuJTs"
    "3TUUkSUXxaccAS0qhxchrRYt66wiSpGLYL42aM6A8dTT+6k4aSknmPj48kzJs8qLjvd4Xgpue06DOdnLxAUHzM6+kDZ+HMZfJYuR+LtwGc2hgf5g"
    "sijff0ekUNXZiqATP7PF5mZxZ3Izoun1s4zG4LUMnvw2r+KqCKIw+3IQH03v+BCA9nMELNqbSf6tiWSrXJB3LAVGUcallcrw8V2t9EL4EhzJWrQ"
    "Uax5wLVMNS0+rUPA3k22Ncx4XXZS9o0MBH27Bo6BpNelZpS+/uh9KsNlY6bHCmJU9p8g7m3fVKn28H3KDYA5Pl/T8Z1ptDAVe0lXdQ2YoyyH2uy"
    "PIGHBZZIs2pDBS8R07+qN+E7Q=="
)


def test_official_account_sample_signature_and_plaintext() -> None:
    """The 公众号 sample: msg_signature covers the Encrypt element, which decrypts to the sample message."""
    crypto = CallbackCrypto(MP_TOKEN, MP_AES_KEY, MP_APPID)
    assert crypto.signature(MP_TIMESTAMP, MP_NONCE, MP_ENCRYPT) == MP_MSG_SIGNATURE
    crypto.verify(MP_MSG_SIGNATURE, MP_TIMESTAMP, MP_NONCE, MP_ENCRYPT)
    message = Inbound.from_fields(parse_xml(crypto.decrypt(MP_ENCRYPT)))
    assert (message.from_user, message.to_user) == ("oyORnuP8q7ou2gfYjqLzSIWZf0rs", "gh_10f6c3c3ac5a")
    assert (message.msg_type, message.content, message.msg_id) == ("text", "abcdteT", "6054768590064713728")
    assert message.create_time == "1409735668"


def test_wecom_sample_url_verification_decrypts_echostr() -> None:
    """The 企业微信 VerifyURL sample: msg_signature over the encrypted echostr, whose plaintext is answered."""
    crypto = CallbackCrypto(WECOM_TOKEN, WECOM_AES_KEY, WECOM_CORPID)
    q = WECOM_VERIFY
    crypto.verify(q["msg_signature"], q["timestamp"], q["nonce"], q["echostr"])
    assert crypto.decrypt(q["echostr"]) == WECOM_ECHO_PLAIN


def test_wecom_sample_message_decrypts() -> None:
    crypto = CallbackCrypto(WECOM_TOKEN, WECOM_AES_KEY, WECOM_CORPID)
    crypto.verify(WECOM_MSG_SIGNATURE, WECOM_TIMESTAMP, WECOM_NONCE, WECOM_ENCRYPT)
    message = Inbound.from_fields(parse_xml(crypto.decrypt(WECOM_ENCRYPT)))
    assert (message.from_user, message.content, message.msg_id) == ("mycreate", "hello", "4561255354251345929")
    assert message.get("AgentID") == "218"


def test_plain_url_signature_is_sha1_of_sorted_token_timestamp_nonce() -> None:
    assert sha1_signature("token", "1409735669", "1320562132") == sha1_signature("1320562132", "token", "1409735669")
    crypto = CallbackCrypto("token", None, "wxappid")
    crypto.verify(sha1_signature("token", "1", "2"), "1", "2")
    with pytest.raises(BadSignature):
        crypto.verify(sha1_signature("other", "1", "2"), "1", "2")


def test_encrypted_reply_round_trip_with_chinese_text() -> None:
    """A reply encrypted for the AppID decrypts back to the same XML; its envelope is signed with msg_signature."""
    crypto = CallbackCrypto(MP_TOKEN, MP_AES_KEY, MP_APPID)
    inbound = Inbound("gh_service", "o-user", "1700000000", "text", "你好", "1")
    content = "您好，请问有什么可以帮您？]]> 结束"
    reply = text_reply(inbound, content, now=1700000001)
    encrypt, signature = crypto.encrypt(reply, "1700000001", "nonce123")
    envelope = parse_xml(encrypted_envelope(encrypt, signature, "1700000001", "nonce123"))
    crypto.verify(envelope["MsgSignature"], envelope["TimeStamp"], envelope["Nonce"], envelope["Encrypt"])
    back = Inbound.from_fields(parse_xml(crypto.decrypt(envelope["Encrypt"])))
    assert (back.to_user, back.from_user, back.content) == ("o-user", "gh_service", content)
    assert len(base64.b64decode(encrypt)) % 32 == 0  # PKCS#7 to 32-byte blocks


def test_wrong_appid_or_tampered_ciphertext_is_rejected() -> None:
    other = CallbackCrypto(MP_TOKEN, MP_AES_KEY, "wx0000000000000000")
    with pytest.raises(BadPayload):
        other.decrypt(MP_ENCRYPT)
    crypto = CallbackCrypto(MP_TOKEN, MP_AES_KEY, MP_APPID)
    for garbage in ("not base64!", "", MP_ENCRYPT[:-8] + "AAAAAAA=", "QUJD"):
        with pytest.raises(BadPayload):
            crypto.decrypt(garbage)
    with pytest.raises(BadSignature):
        crypto.verify("0" * 40, MP_TIMESTAMP, MP_NONCE, MP_ENCRYPT)


@pytest.mark.parametrize("key", ["short", "abcdefghijklmnopqrstuvwxyz0123456789ABCDEF!", "a" * 44])
def test_encoding_aes_key_must_be_43_base64_characters(key: str) -> None:
    with pytest.raises(ValueError, match="EncodingAESKey"):
        decode_aes_key(key)


@pytest.mark.parametrize(
    ("timestamp", "fresh"),
    [("1700000000", True), ("1699999701", True), ("1700000299", True), ("1699999699", False), ("1700000301", False),
     ("", False), ("17e8", False), ("not-a-time", False)],
)
def test_callback_timestamp_must_be_within_the_window(timestamp: str, fresh: bool) -> None:
    """A correctly signed callback more than 300 s from now (either way), or without a numeric timestamp, is a
    replay; a window of 0 turns the check off."""
    if fresh:
        check_fresh(timestamp, 300, now=1_700_000_000)
    else:
        with pytest.raises(StaleTimestamp):
            check_fresh(timestamp, 300, now=1_700_000_000)
    check_fresh(timestamp, 0, now=1_700_000_000)
