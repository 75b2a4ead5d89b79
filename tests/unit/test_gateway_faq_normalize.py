"""FAQ matching key: full-/half-width, case, punctuation and spaces do not matter; the words do."""

from __future__ import annotations

from pathlib import Path

from hypothesis import example, given
from hypothesis import strategies as st

from frontend.services.faq import faq_id, load_seed, normalize_question
from frontend.settings import DATA_DIR


def test_width_case_punctuation_and_spaces_are_ignored() -> None:
    """Full-width letters and digits, case, Chinese and ASCII punctuation and spaces all normalise away."""
    assert normalize_question("  怎么 开发票？！ ") == normalize_question("怎么开发票")
    assert normalize_question("能用ＡＰＰＬＥ　Ｐａｙ吗？") == "能用applepay吗"
    assert normalize_question("７天无理由退货。") == normalize_question("7天无理由退货")
    assert normalize_question("【客服】工作时间——几点？") == "客服工作时间几点"


def test_different_words_stay_different() -> None:
    """Normalisation never merges different questions."""
    assert normalize_question("怎么退款") != normalize_question("怎么退货")
    assert normalize_question("？！。") == ""


@given(st.text(max_size=60))
@example("R\u00b8")  # NFKC gives R + combining cedilla, which only composes on a second pass
def test_normalisation_is_idempotent(text: str) -> None:
    """Normalising twice changes nothing (the stored key equals the lookup key)."""
    once = normalize_question(text)
    assert normalize_question(once) == once


def test_id_is_stable_across_spellings() -> None:
    """An entry's id derives from its normalised question."""
    assert faq_id("怎么开发票？") == faq_id("怎么 开发票")


def test_seed_file_is_valid_and_keys_are_unique() -> None:
    """The shipped seed file loads and no two questions or aliases collide after normalisation."""
    entries = load_seed(Path(DATA_DIR) / "faq_seed.yaml")
    keys = [normalize_question(q) for e in entries for q in [e.question, *e.aliases]]
    assert len(entries) >= 5 and len(keys) == len(set(keys)) and all(keys)
