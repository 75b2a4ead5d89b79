"""Constrained prompt and strict reply parsing for the optional LLM last resort."""

from __future__ import annotations

import re

from python_backends.intent.labels import LABELS

LABEL_DESCRIPTIONS: dict[str, str] = {
    "greeting": "问候、感谢、告别",
    "order_query": "订单状态、发货、修改或取消订单",
    "shipping": "物流进度、快递、配送时效、运费与配送范围",
    "refund": "退款申请、退款进度、退款到账",
    "return_exchange": "退货、换货、七天无理由、寄回",
    "payment": "支付失败、支付方式、扣款异常、分期",
    "invoice": "发票开具、抬头、税号",
    "account": "登录、注册、密码、绑定、会员、账号安全",
    "product_inquiry": "规格、尺码、材质、库存、真伪、保修",
    "promotion": "优惠券、满减、活动、保价、积分抵扣",
    "complaint": "投诉、强烈不满",
    "suggestion": "建议与意见",
    "human_agent": "要求人工客服",
    "other": "与客服业务无关的内容",
}

_PROMPT = """你是电商客服系统的意图分类器。从下列标签中选出最符合客户消息的一个，只输出标签本身，不要解释。
{labels}

客户消息：<<<{text}>>>
标签："""

_TOKEN = re.compile(r"[a-z_]+")


def build_prompt(text: str) -> str:
    """The prompt sent to the LLM; the message is fenced so instructions inside it read as data."""
    labels = "\n".join(f"- {label}: {LABEL_DESCRIPTIONS[label]}" for label in LABELS)
    return _PROMPT.format(labels=labels, text=text.replace(">>>", ">> >"))


def parse_label(reply: str) -> str | None:
    """The one label the reply names, or None when it names none or several (never guess)."""
    named = {token for token in _TOKEN.findall(reply.lower()) if token in LABELS}
    return named.pop() if len(named) == 1 else None
