"""PII recognizers, context words, masking and the labelled corpus (no leaks, no altered hard negatives)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from python_backends.pii import PiiType, RedactionConfig, Redactor, find_pii, redact
from python_backends.pii.address import ADDRESS_CHARS
from python_backends.pii.config import PiiRules
from python_backends.pii.evaluate import REALISTIC_PATH, CorpusEntry, evaluate, load_corpus
from python_backends.pii.names import is_cjk
from python_backends.pii.normalize import normalize
from python_backends.pii.recognizers import MAX_EXAMINED, PII_ALPHABET, RECOGNIZERS

CORPUS = load_corpus()


def types_found(text: str) -> list[tuple[str, str]]:
    return [(span.type.value, span.value) for span in find_pii(text)]


# ---------------------------------------------------------------- corpus


def test_corpus_is_big_enough_and_mostly_hard_negatives() -> None:
    negatives = sum(entry.is_negative for entry in CORPUS)
    assert len(CORPUS) >= 150
    assert negatives * 2 >= len(CORPUS)
    assert {span.type for entry in CORPUS for span in entry.spans} == set(PiiType)


@pytest.mark.parametrize("entry", CORPUS, ids=[entry.id for entry in CORPUS])
def test_corpus_message_redacts_exactly_as_labelled(entry: CorpusEntry) -> None:
    assert redact(entry.text) == entry.expected_redaction(Redactor())


def test_corpus_has_zero_leaks_and_zero_altered_negatives() -> None:
    result = evaluate(CORPUS, Redactor())
    assert result.leaked == []
    assert result.altered_negatives == []
    assert result.total.false_positives == 0


# ---------------------------------------------------------------- resident ID


@pytest.mark.parametrize(
    "value",
    [
        "11010519491231002X",
        "11010519491231002x",
        "110105 19491231 002X",
        "110105 1949 1231 002X",
        "110105-19491231-002X",
        "110 105 1949 1231 002X",
        "440305199003071236",
        "110105491231002",  # legacy 15-digit, born 1949-12-31
        "110105 19491231-002X",  # mixed separators
        "110105.19491231.002x",
    ],
)
def test_resident_id_formats(value: str) -> None:
    assert types_found(f"身份证{value}。") == [("id_card", value)]


@pytest.mark.parametrize(
    "value",
    [
        "110105194912310021",  # wrong check digit
        "110101199013321234",  # month 13
        "990101199001011234",  # no such region
        "110105203001010024",  # born in the future (check digit valid)
        "110101901332123",  # 15-digit with an impossible date
    ],
)
def test_resident_id_failing_checks_passes_unchanged(value: str) -> None:
    assert redact(f"身份证 {value}") == f"身份证 {value}"


# ---------------------------------------------------------------- mobile and landline


@pytest.mark.parametrize(
    "value",
    [
        "13812345678",
        "+86 138 1234 5678",
        "+86-138-1234-5678",
        "+8613812345678",
        "0086 13812345678",
        "8613812345678",
        "138-1234-5678",
        "138—1234—5678",
        "138 12345678",
        "１３８１２３４５６７８",
    ],
)
def test_mobile_formats(value: str) -> None:
    assert types_found(f"联系我：{value}，谢谢") == [("mobile", value)]


@pytest.mark.parametrize(
    "text",
    [
        "12345678901",
        "10012345678",
        "138123456789",
        "1381234567",
        "A13812345678",
        "13812345678B",
        "JD-13812345678",
        "13812345678.5",
        "订单号13812345678",
        "¥13812345678",
        "138 1234 5678 1234",
    ],
)
def test_not_a_mobile(text: str) -> None:
    assert redact(text) == text


@pytest.mark.parametrize(
    "value", ["138.1234.5678", "138-1234-5678", "138 1234 5678", "+86 13812345678", "(86)13812345678"]
)
def test_a_phone_written_as_a_phone_is_masked_even_after_an_order_word(value: str) -> None:
    """No order or waybill number is written in a phone's 3-4-4 groups or with a country code."""
    assert types_found(f"订单号{value}") == [("mobile", value)]
    assert types_found(f"运单号：{value}") == [("mobile", value)]


@pytest.mark.parametrize("value", ["13812345678", "8613812345678", "1381234-5678", "一三八一二三四五六七八"])
def test_an_order_word_still_keeps_number_shaped_order_numbers(value: str) -> None:
    assert redact(f"订单号{value}") == f"订单号{value}"


@pytest.mark.parametrize(
    "value",
    [
        "010-12345678",
        "(021)12345678",
        "（０２１）１２３４５６７８",
        "0755 1234 5678",
        "0571-87654321",
        "02012345678",
        "010-12345678-801",
    ],
)
def test_landline_formats(value: str) -> None:
    assert types_found(f"座机 {value} 工作日") == [("landline", value)]


@pytest.mark.parametrize("text", ["400-820-8820", "400 888 6666", "800-810-1234", "95588", "10086", "4001234567"])
def test_company_hotlines_pass(text: str) -> None:
    assert redact(f"客服热线 {text}") == f"客服热线 {text}"


# ---------------------------------------------------------------- bank card

LUHN_UNIONPAY_19 = "6222021234567890128"
LUHN_NO_ISSUER_16 = "3034123456789126"


@pytest.mark.parametrize(
    "value",
    [LUHN_UNIONPAY_19, "6222 0212 3456 7890 128", "4111 1111 1111 1111", "4111-1111-1111-1111", "5500000000000004"],
)
def test_bank_card_formats(value: str) -> None:
    assert types_found(f"退款到 {value} 谢谢") == [("bank_card", value)]


def test_bank_card_context_words_decide() -> None:
    assert redact(f"卡号{LUHN_NO_ISSUER_16}") == "卡号[银行卡号]"
    assert redact(f"请核对 {LUHN_NO_ISSUER_16}") == f"请核对 {LUHN_NO_ISSUER_16}"
    assert redact(f"订单号 {LUHN_UNIONPAY_19}") == f"订单号 {LUHN_UNIONPAY_19}"
    assert redact(f"运单号：{LUHN_UNIONPAY_19}") == f"运单号：{LUHN_UNIONPAY_19}"


def test_bank_card_failing_luhn_passes() -> None:
    assert redact("卡号 6222021234567890127") == "卡号 6222021234567890127"


def test_grouped_number_is_not_partially_matched() -> None:
    text = "6214 8301 2345 6781 1234"  # first 16 digits pass Luhn
    assert redact(text) == text


def test_card_context_wins_over_id_shape() -> None:
    # 18 digits that are a valid ID: a card when the words say so (if it also passes Luhn), else an ID.
    assert types_found("身份证 11010519491231002X")[0][0] == "id_card"


# ---------------------------------------------------------------- email, passport, plate


@pytest.mark.parametrize(
    "value", ["zhang.san@example.com", "li_si+tag@mail.company.cn", "123456789@qq.com", "Ａ＠ｑｑ．ｃｏｍ"]
)
def test_email(value: str) -> None:
    assert types_found(f"邮箱{value}，谢谢") == [("email", value)]


def test_email_after_sentence_dot() -> None:
    assert redact("mail me at a.b@c.com.") == "mail me at [邮箱]."


@pytest.mark.parametrize(
    "value", ["E12345678", "EA1234567", "G12345678", "DE1234567", "SE1234567", "PE1234567", "e12345678", "ea1234567"]
)
def test_passport(value: str) -> None:
    assert types_found(f"护照{value}") == [("passport", value)]


@pytest.mark.parametrize("text", ["E1234567", "E123456789", "EA123456789CN", "型号 G12345678", "SKU E12345678"])
def test_not_a_passport(text: str) -> None:
    assert redact(text) == text


@pytest.mark.parametrize("value", ["京A12345", "粤B·D12345", "沪AD12345", "浙A12345D", "苏E 12345", "川A·88888"])
def test_license_plate(value: str) -> None:
    assert types_found(f"车是{value}，") == [("license_plate", value)]


@pytest.mark.parametrize("text", ["京东", "京A1234", "新款A12 手机壳", "京ABCDE"])
def test_not_a_plate(text: str) -> None:
    assert redact(text) == text


# ---------------------------------------------------------------- placeholders, masking, config


def test_placeholders() -> None:
    text = "身份证11010519491231002X 手机13812345678 座机010-12345678 卡6222021234567890128 a@b.cn E12345678 京A12345"
    assert redact(text) == "身份证[身份证号] 手机[手机号] 座机[座机号] 卡[银行卡号] [邮箱] [护照号] [车牌号]"


def test_find_pii_offsets_point_into_the_original_text() -> None:
    text = "号码：１３８１２３４５６７８。"
    (span,) = find_pii(text)
    assert text[span.start : span.end] == span.value == "１３８１２３４５６７８"
    assert span.type is PiiType.MOBILE


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("13812345678", "138****5678"),
        ("+86 138 1234 5678", "+86 138 **** 5678"),
        ("11010519491231002X", "110105********002X"),
        ("6222 0212 3456 7890 128", "6222 **** **** ***0 128"),
        ("zhang.san@example.com", "z****.***@example.com"),
        ("010-12345678", "010-****5678"),
        ("E12345678", "E*****678"),
        ("粤B·D12345", "粤B·*****5"),
    ],
)
def test_mask_mode(text: str, masked: str) -> None:
    assert Redactor(RedactionConfig(mode="mask")).redact(text) == masked


def test_mask_char_and_enabled_types() -> None:
    redactor = Redactor(RedactionConfig(mode="mask", mask_char="#", enabled_types=frozenset({PiiType.MOBILE})))
    assert redactor.redact("13812345678 a@b.cn") == "138####5678 a@b.cn"
    by_name = Redactor(RedactionConfig(enabled_types=frozenset({"email"})))  # type: ignore[arg-type]
    assert by_name.redact("13812345678 a@b.cn") == "13812345678 [邮箱]"


@pytest.mark.parametrize("kwargs", [{"mode": "hide"}, {"mask_char": "**"}, {"enabled_types": frozenset({"phone"})}])
def test_config_rejects_bad_values(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        RedactionConfig(**kwargs)  # type: ignore[arg-type]


def test_rules_file_is_editable_data(tmp_path: Path) -> None:
    source = Path(RedactionConfig().rules_path).read_text(encoding="utf-8")
    custom = tmp_path / "rules.yaml"
    custom.write_text(source.replace('"[手机号]"', '"<PHONE>"'), encoding="utf-8")
    assert Redactor(RedactionConfig(rules_path=custom)).redact("手机13812345678") == "手机<PHONE>"
    broken = tmp_path / "broken.yaml"
    broken.write_text("types: {mobile: {placeholder: x}}\n", encoding="utf-8")
    with pytest.raises(ValueError, match="missing"):
        PiiRules.from_yaml(broken)


def test_surnames_and_address_suffixes_are_editable_data(tmp_path: Path) -> None:
    source = Path(RedactionConfig().rules_path).read_text(encoding="utf-8")
    custom = tmp_path / "rules.yaml"
    custom.write_text(source.replace("王李张", "王张").replace(" 胡同,", ""), encoding="utf-8")
    redactor = Redactor(RedactionConfig(rules_path=custom))
    assert redactor.redact("我叫李建国，住东四十条胡同12号") == "我叫李建国，住东四十条胡同12号"
    assert redact("我叫李建国，住东四十条胡同12号") == "我叫[姓名]，住[地址]"
    no_names = tmp_path / "no_names.yaml"
    no_names.write_text(source.replace("\nnames:", "\nnames_off:"), encoding="utf-8")
    with pytest.raises(ValueError, match="names must be a mapping"):
        PiiRules.from_yaml(no_names)


def test_every_pattern_reads_a_bounded_width() -> None:
    """The streaming redactor's holdback bound relies on this."""
    parser = re._parser  # type: ignore[attr-defined]
    for recognizer in RECOGNIZERS:
        _, widest = parser.parse(recognizer.pattern.pattern).getwidth()
        assert widest + 4 <= MAX_EXAMINED, recognizer.type


def test_address_width_bound_covers_its_patterns() -> None:
    """The streaming holdback after an address anchor relies on `max_chars`."""
    parser = re._parser  # type: ignore[attr-defined]
    finder = Redactor().scanner.addresses
    assert finder is not None
    _, tail = parser.parse(finder._tail.pattern).getwidth()
    assert finder.max_name_chars + finder.suffix_max + tail <= finder.max_chars


def test_no_enabled_types_leaves_text_alone() -> None:
    text = "手机13812345678 (021)12345678 a@b.cn 京A12345"
    assert Redactor(RedactionConfig(enabled_types=frozenset())).redact(text) == text


def test_values_only_use_the_alphabet_the_streaming_holdback_relies_on() -> None:
    for entry in [*CORPUS, *REALISTIC]:
        for span in entry.spans:
            if span.type is PiiType.ADDRESS:
                assert all(ADDRESS_CHARS.fullmatch(char) for char in normalize(span.value)), span
            elif span.type is PiiType.NAME:
                assert all(is_cjk(char) for char in span.value), span
            else:
                assert set(normalize(span.value)) <= PII_ALPHABET, span


# ---------------------------------------------------------------- issue 17: numbers as customers type them

REALISTIC = load_corpus(REALISTIC_PATH)
# Known misses on the tuning split, each a deliberate precision choice (see README, PII section).
KNOWN_LEAKS = {("real-067", "赵丽")}  # two-character name before 女士 after 转告: lead-in not in the list


def test_realistic_corpus_leaks_only_the_known_misses_and_alters_no_negative() -> None:
    result = evaluate(REALISTIC, Redactor())
    assert {(entry_id, span.value) for entry_id, span in result.leaked} == KNOWN_LEAKS
    assert result.altered_negatives == []


@pytest.mark.parametrize(
    "value",
    [
        "177.8880.0625",
        "1 3 9 5 6 9 2 6 0 3 5",
        "139/5692/6035",
        "186_1234_5678",
        "138-1234 5678",
        "一五零二二九三八七二四",
        "幺三八幺二三四五六七八",
        "1三9两5六7八0零1",
        "一八六 1234 五六七八",
        "（+86）13912345678",
        "(+86)139 1234 5678",
        "0086 158.1234.5678",
        "１５８　１２３４　５６７８",
    ],
)
def test_mobile_in_customer_formats(value: str) -> None:
    assert types_found(f"电话：{value}，谢谢") == [("mobile", value)]


@pytest.mark.parametrize(
    "text",
    [
        "IP 192.168.10.100",
        "双色球第一三八期",
        "第二〇二四一三八期",
        "订单号是一五零二二九三八七二四",
        "版本 v13.8.1234.5678",
        "ISBN 978-7-111-54742-6",
        "客服热线 400.820.8820",
        "已付1 3 8 8元",
        "1381234567.8",
    ],
)
def test_number_shaped_text_that_is_not_pii_stays(text: str) -> None:
    assert redact(text) == text


@pytest.mark.parametrize(
    "value", ["622848-457905-8670836", "6225 8812 3456 7898", "6214.8301.2345.6789.012", "6226_0902_1234_5678"]
)
def test_bank_card_groupings_with_any_separator(value: str) -> None:
    assert types_found(f"卡号 {value} 谢谢") == [("bank_card", value)]


def test_grouped_card_failing_luhn_stays() -> None:
    assert redact("卡号 6225 8812 3456 7899") == "卡号 6225 8812 3456 7899"


@pytest.mark.parametrize("value", ["粤b12345", "沪ad12345", "京a·12345"])
def test_lower_case_plate(value: str) -> None:
    assert types_found(f"车牌{value}，") == [("license_plate", value)]


def test_mixed_case_plate_is_not_a_plate() -> None:
    assert redact("粤b1234A") == "粤b1234A"


# ---------------------------------------------------------------- issue 17: addresses


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        ("地址上海市浦东新区张杨路500号5号楼3单元602", "地址上海市浦东新区[地址]"),
        ("北京市朝阳区建国路88号SOHO现代城2号楼1单元1203室", "北京市朝阳区[地址]"),
        ("我住在阳光花园3栋2单元501，", "我住在[地址]，"),
        ("上海市静安区南京西路1266弄3号1802室", "上海市静安区[地址]"),
        ("我家在幸福村3组15号", "我家在[地址]"),
        ("长沙市岳麓区麓山南路2号湖南大学", "长沙市岳麓区[地址]湖南大学"),
        ("住的是万科城市花园5期8栋1单元202", "住的是[地址]"),
    ],
)
def test_address_detail_is_redacted_and_region_stays(text: str, redacted: str) -> None:
    assert redact(text) == redacted


@pytest.mark.parametrize(
    "text",
    ["南京路店什么时候开门", "地铁2号线", "我在医院3楼等你", "周末去张杨路逛街", "1月15号到货", "快递放在5号柜了"],
)
def test_not_an_address(text: str) -> None:
    assert redact(text) == text


# ---------------------------------------------------------------- issue 17: names


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        ("我叫李建国，订单没到", "我叫[姓名]，订单没到"),
        ("户名欧阳娜娜", "户名[姓名]"),
        ("收件人：司马相如 13812345678", "收件人：[姓名] [手机号]"),
        ("本人王芳，申请退款", "本人[姓名]，申请退款"),
        ("李建国先生您好", "[姓名]先生您好"),
        ("13912345678 周杰，麻烦尽快", "[手机号] [姓名]，麻烦尽快"),
        ("我叫李四在北京", "我叫[姓名]在北京"),
    ],
)
def test_name_in_context(text: str, redacted: str) -> None:
    assert redact(text) == redacted


@pytest.mark.parametrize(
    "text",
    [
        "我是新用户",
        "我是学生",
        "我是高中生",
        "我是王者段位",
        "王先生您好",
        "谢谢刘先生",
        "王小明说明天到",  # no context: bare names are left alone
        "订单号13812345678 王五",
        "我叫了好几次",
    ],
)
def test_not_a_name(text: str) -> None:
    assert redact(text) == text


def test_name_and_address_masks() -> None:
    masker = Redactor(RedactionConfig(mode="mask"))
    assert masker.redact("我叫李建国") == "我叫李**"
    assert masker.redact("电话一五零二二九三八七二四") == "电话一五零****八七二四"
