"""The optional LLM last resort: a constrained label prompt, strict reply parsing and a time budget."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

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

logger = logging.getLogger(__name__)

_TOKEN = re.compile(r"[a-z_]+")


def build_prompt(text: str) -> str:
    """The prompt sent to the LLM; the message is fenced so instructions inside it read as data."""
    labels = "\n".join(f"- {label}: {LABEL_DESCRIPTIONS[label]}" for label in LABELS)
    return _PROMPT.format(labels=labels, text=text.replace(">>>", ">> >"))


def parse_label(reply: str) -> str | None:
    """The one label the reply names, or None when it names none or several (never guess)."""
    named = {token for token in _TOKEN.findall(reply.lower()) if token in LABELS}
    return named.pop() if len(named) == 1 else None


class BudgetedLLM:
    """Calls `generate(prompt)` on a worker thread and gives up after `budget_s`: the fallback never holds a
    message longer than that. A late reply is dropped (the worker finishes it in the background); `None`
    tells the classifier to keep its rule/model label. At most `max_pending` calls run at once; beyond that
    the fallback is skipped rather than queued.
    """

    def __init__(self, generate: Callable[[str], str], budget_s: float, max_pending: int = 4) -> None:
        if budget_s <= 0:
            raise ValueError("the LLM fallback budget must be positive")
        self._generate = generate
        self._budget_s = budget_s
        self._pool = ThreadPoolExecutor(max_workers=max_pending, thread_name_prefix="intent-llm")
        self._slots = threading.BoundedSemaphore(max_pending)

    def __call__(self, prompt: str) -> str | None:
        if not self._slots.acquire(blocking=False):
            logger.warning("intent LLM fallback busy; keeping the model label")
            return None
        future = self._pool.submit(self._generate, prompt)
        future.add_done_callback(lambda _: self._slots.release())
        try:
            return future.result(timeout=self._budget_s)
        except FutureTimeout:
            logger.warning(
                "intent LLM fallback gave no label within %.0f ms; keeping the model label", self._budget_s * 1000
            )
            return None

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
