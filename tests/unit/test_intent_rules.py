"""IntentRules: YAML schema, priorities, `unless` vetoes and negation cues, without the model."""

from __future__ import annotations

from pathlib import Path

import pytest

from python_backends.intent.labels import LABELS
from python_backends.intent.normalize import normalize
from python_backends.intent.paths import RULES_PATH
from python_backends.intent.rules import IntentRules

NEGATION = """
negation:
  max_gap: 4
  before: [不用, 不要]
  adjacent: [不]
  after: [算了]
"""


def load(tmp_path: Path, rules: str, negation: str = NEGATION) -> IntentRules:
    path = tmp_path / "rules.yaml"
    path.write_text(negation + "rules:\n" + rules, encoding="utf-8")
    return IntentRules.from_yaml(path, normalize)


def label_of(rules: IntentRules, text: str) -> str | None:
    hit = rules.match(normalize(text))
    return hit.label if hit else None


REFUND = """
  - {label: refund, priority: 70, keywords: [退款]}
"""


def test_keyword_hit_reports_label_confidence_and_rule_name(tmp_path: Path) -> None:
    """A keyword hit returns the rule's label, configured confidence and name."""
    rules = load(tmp_path, "  - {name: money_back, label: refund, priority: 1, confidence: 0.8, keywords: [退款]}\n")
    hit = rules.match("我要退款")
    assert hit is not None
    assert (hit.label, hit.confidence, hit.rule) == ("refund", 0.8, "money_back")


def test_higher_priority_rule_wins(tmp_path: Path) -> None:
    """When two rules fire, the higher priority decides, whatever the file order."""
    rules = load(tmp_path, REFUND + "  - {label: human_agent, priority: 100, keywords: [转人工]}\n")
    assert label_of(rules, "退款的事，转人工") == "human_agent"


def test_unless_pattern_vetoes_the_rule(tmp_path: Path) -> None:
    """An `unless` regex anywhere in the message stops the rule."""
    rules = load(tmp_path, "  - {label: promotion, priority: 1, keywords: [差价], unless: ['退款']}\n")
    assert label_of(rules, "差价怎么算") == "promotion"
    assert label_of(rules, "差价退款") is None


@pytest.mark.parametrize(
    ("text", "fires"),
    [
        ("不用退款了", False),
        ("不要帮我退款", False),
        ("不用了，我要退款", True),  # the cue is in another clause
        ("退款算了", False),
        ("退款，算了吧不说了", True),  # "after" cue in another clause
        ("不退款了", False),
        ("不知道怎么退款", True),  # adjacent cue only when touching the keyword
        ("我要退款", True),
    ],
)
def test_negation_cues_apply_within_a_clause(tmp_path: Path, text: str, fires: bool) -> None:
    """Negation cues cancel a hit only near it and within the same clause."""
    assert (label_of(load(tmp_path, REFUND), text) == "refund") is fires


def test_keywords_are_normalised_like_the_input(tmp_path: Path) -> None:
    """A keyword written in traditional / full-width characters still matches normalised text."""
    rules = load(tmp_path, "  - {label: human_agent, priority: 1, keywords: [轉人工, ＨＵＭＡＮ]}\n")
    assert label_of(rules, "转人工") == "human_agent"
    assert label_of(rules, "human please") == "human_agent"


@pytest.mark.parametrize(
    "rule",
    [
        "  - {label: not_a_label, keywords: [x]}\n",
        "  - {label: refund, keyword: [x]}\n",
        "  - {label: refund}\n",
        "  - {label: refund, regex: ['(']}\n",
        "  - {label: refund, confidence: 2, keywords: [x]}\n",
    ],
)
def test_invalid_rules_fail_loudly(tmp_path: Path, rule: str) -> None:
    """Typos in the rules file raise at load time instead of silently dropping a rule."""
    with pytest.raises(ValueError):
        load(tmp_path, rule)


def test_packaged_rules_load_and_use_known_labels() -> None:
    """The shipped rules.yaml parses and only names the 14 labels."""
    rules = IntentRules.from_yaml(RULES_PATH, normalize)
    assert rules.rules
    assert {rule.label for rule in rules.rules} <= set(LABELS)


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("你好，快递到哪了", "shipping"),
        ("好的，谢谢", "greeting"),
        ("退货以后退款什么时候到账", "refund"),
        ("建议你们增加货到付款", "suggestion"),
        ("我要投诉，转人工", "human_agent"),
    ],
)
def test_packaged_rules_resolve_common_overlaps(text: str, label: str) -> None:
    """Shipped priorities: a greeting plus a question is the question; refund arrival beats return."""
    assert label_of(IntentRules.from_yaml(RULES_PATH, normalize), text) == label


@pytest.mark.parametrize("text", ["这个需要人工安装吗", "为什么还不退款", "人工智能是什么"])
def test_packaged_rules_leave_lookalikes_to_the_model(text: str) -> None:
    """Keyword look-alikes and touching negations are not decided by the shipped rules."""
    assert IntentRules.from_yaml(RULES_PATH, normalize).match(normalize(text)) is None
