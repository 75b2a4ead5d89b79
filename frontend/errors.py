"""The gateway's one error type; exception handlers turn it into `ErrorResponse`, sockets into error frames."""

from __future__ import annotations


class GatewayError(Exception):
    """An error meant for the client: a stable `code`, a Chinese `message` a customer can read, an HTTP status.

    `param` names the offending request field and `kind` is the OpenAI error `type`, for the OpenAI API's errors.
    """

    def __init__(
        self,
        code: str,
        message: str,
        status: int = 400,
        retry_after: int | None = None,
        param: str | None = None,
        kind: str = "gateway_error",
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.retry_after = retry_after
        self.param = param
        self.kind = kind

    def __repr__(self) -> str:
        return f"GatewayError({self.code!r}, status={self.status})"


class ReplyFailed(GatewayError):
    """A reply that had started ended in `error`. When `published`, its error frame (with `message_id`) is already
    on the session's event stream, after the reply's deltas, so sockets must not send it a second time."""

    def __init__(self, error: GatewayError, message_id: str, published: bool) -> None:
        super().__init__(error.code, error.message, error.status, error.retry_after)
        self.message_id = message_id
        self.published = published


def internal_error() -> GatewayError:
    return GatewayError("internal_error", "服务器内部错误。", 500)


def invalid_request(message: str) -> GatewayError:
    return GatewayError("invalid_request", message, 400)


def unreadable_body(openai_api: bool = False) -> GatewayError:
    """A body that is not JSON in UTF-8 (FastAPI's "error parsing the body"); on the OpenAI API with its type."""
    error = GatewayError("invalid_request", "请求体无法解析：需要 UTF-8 编码的 JSON。", 400)
    if openai_api:
        error.kind = "invalid_request_error"
    return error


def unknown_session() -> GatewayError:
    return GatewayError("unknown_session", "会话不存在或已过期，请开始新的会话。", 404)


def unauthorized() -> GatewayError:
    return GatewayError("unauthorized", "缺少或错误的 API 密钥。", 401)


def forbidden(message: str = "不允许的来源。") -> GatewayError:
    return GatewayError("forbidden", message, 403)


def rate_limited(retry_after: int) -> GatewayError:
    return GatewayError("rate_limited", "请求过于频繁，请稍后再试。", 429, retry_after=retry_after)


def redis_unavailable() -> GatewayError:
    return GatewayError("redis_unavailable", "会话服务暂时不可用，请稍后再试。", 503, retry_after=5)


def triton_unavailable() -> GatewayError:
    return GatewayError("triton_unavailable", "智能客服暂时不可用，请稍后再试。", 503, retry_after=10)


def triton_timeout() -> GatewayError:
    return GatewayError("timeout", "回复超时，请稍后再试。", 504)


def session_busy() -> GatewayError:
    return GatewayError("session_busy", "上一条消息仍在处理中，请稍后再试。", 409)


def busy(retry_after: int) -> GatewayError:
    """This replica runs as many generations as it may: answered at once, never queued (FAQ answers still flow)."""
    return GatewayError("busy", "当前咨询人数较多，请稍后再试。", 503, retry_after=retry_after)


def interrupted() -> GatewayError:
    """The replica writing this reply died; the partial text is kept and the customer may ask again."""
    return GatewayError("interrupted", "回复因服务切换而中断，请重新提问。", 503, retry_after=1)


def too_many_connections(retry_after: int) -> GatewayError:
    message = "来自您网络的连接过多，请关闭其他窗口后重试。"
    return GatewayError("too_many_connections", message, 429, retry_after=retry_after)
