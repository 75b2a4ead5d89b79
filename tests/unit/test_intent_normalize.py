"""Text normalisation shared by rules, training and inference."""

from __future__ import annotations

from pathlib import Path

import pytest

from python_backends.intent.normalize import TextNormalizer, load_character_map, normalize


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("ＡＢＣ１２３！？", "abc123!?"),
        ("轉人工 退貨 發票 帳號", "转人工 退货 发票 账号"),
        ("  你好 \n\t  在吗  ", "你好 在吗"),
        ("REFUND Please", "refund please"),
        ("", ""),
    ],
)
def test_normalize(raw: str, expected: str) -> None:
    """NFKC folds full-width forms, text is lowercased, traditional -> simplified, whitespace collapsed."""
    assert normalize(raw) == expected


def test_character_map_is_data(tmp_path: Path) -> None:
    """The traditional -> simplified table is read from a YAML file."""
    path = tmp_path / "map.yaml"
    path.write_text("甲: 乙\n", encoding="utf-8")
    assert TextNormalizer.from_file(path)("甲") == "乙"


@pytest.mark.parametrize("content", ["- 甲\n", "甲乙: 丙\n", "甲: 1\n"])
def test_bad_character_map_is_rejected(tmp_path: Path, content: str) -> None:
    """A malformed table fails at load time."""
    path = tmp_path / "map.yaml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError):
        load_character_map(path)
