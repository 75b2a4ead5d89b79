"""What the client frames of both sockets share: each frame kind is a pydantic model in a union told apart by
`type`; its field checks fail with the gateway's own codes and Chinese messages, and `parse_frame` turns the first
failed check back into that `GatewayError`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar, Union, get_args

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Tag,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from frontend.errors import GatewayError, invalid_request

T = TypeVar("T")


class FrameModel(BaseModel):
    """A client frame kind. Its `kind` field reads the frame's `type`; absent fields are checked like present ones
    (as their default), so "absent" and "blank" fail alike; unknown fields are ignored."""

    model_config = ConfigDict(frozen=True, validate_default=True)


def field_check(check: Callable[[Any, ValidationInfo], object]) -> BeforeValidator:
    """A field validator from a check that raises `GatewayError` (carried through pydantic to `parse_frame`)."""

    def run(value: Any, info: ValidationInfo) -> object:
        try:
            return check(value, info)
        except GatewayError as exc:
            raise PydanticCustomError(exc.code, "{message}", {"message": exc.message, "status": exc.status}) from None

    return BeforeValidator(run)


def text_or_none(value: Any, info: ValidationInfo) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise invalid_request(f"`{info.field_name}` 必须是字符串。")
    return value


OptionalText = Annotated[str | None, field_check(text_or_none)]  # absent or "" is None; any other non-string fails


def required_text(missing: str) -> BeforeValidator:
    """Like `OptionalText`, but absent or "" fails with `invalid_request(missing)`."""

    def check(value: Any, info: ValidationInfo) -> str:
        text = text_or_none(value, info)
        if text is None:
            raise invalid_request(missing)
        return text

    return field_check(check)


def frame_union(union: Any, default: str | None = None) -> TypeAdapter[Any]:
    """The adapter for a union of `FrameModel`s, told apart by the frame's `type` (`default` when absent; any other
    value is an unknown kind). Each model's tag is the one value of its `kind` field."""

    def kind(value: Any) -> str | None:
        if isinstance(value, dict):
            return str(value.get("type", default))
        return getattr(value, "kind", None)

    tagged = tuple(Annotated[model, Tag(_kind_of(model))] for model in get_args(union))
    built: Any = Annotated[Union[tagged], Discriminator(kind)]  # noqa: UP007  # a union built at run time
    return TypeAdapter(built)


def _kind_of(model: type[FrameModel]) -> str:
    (kind,) = get_args(model.model_fields["kind"].annotation)
    return str(kind)


def parse_frame(
    adapter: TypeAdapter[T], data: dict[str, Any], unknown_kind: Callable[[str], GatewayError], **context: Any
) -> T:
    """Validate one decoded frame (`context` reaches the field checks); raises the first failure as `GatewayError`."""
    try:
        return adapter.validate_python(data, context=context)
    except ValidationError as exc:
        raise _gateway_error(exc.errors()[0], unknown_kind) from None


def _gateway_error(error: ErrorDetails, unknown_kind: Callable[[str], GatewayError]) -> GatewayError:
    ctx = error.get("ctx") or {}
    if error["type"] == "union_tag_invalid":
        return unknown_kind(str(ctx.get("tag", "")))
    if "status" in ctx:  # one of our field checks
        return GatewayError(error["type"], str(ctx["message"]), int(ctx["status"]))
    field = ".".join(str(part) for part in error["loc"][1:])
    return invalid_request(f"`{field}` 无效。")  # pydantic's own check on a field our checks do not cover
