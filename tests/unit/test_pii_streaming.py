"""StreamingRedactor contract: for every split, output == redact(text) and no released prefix shows a value."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from python_backends.pii import PiiType, RedactionConfig, Redactor, StreamingRedactor
from python_backends.pii.evaluate import CORPUS_PATH, REALISTIC_PATH, load_corpus
from python_backends.pii.recognizers import MAX_EXAMINED

CORPUS_TEXTS = [entry.text for path in (CORPUS_PATH, REALISTIC_PATH) for entry in load_corpus(path)]
PLACEHOLDER = Redactor()
MASK = Redactor(RedactionConfig(mode="mask"))

# Pieces to glue into texts: values, near-miss values, context words, prose and the characters where
# boundaries are decided (joiners, digits, letters, province characters).
FRAGMENTS = [
    "13812345678",
    "+86 138 1234 5678",
    "0086-150-1234-5678",
    "8613812345678",
    "１３８１２３４５６７８",
    "11010519491231002X",
    "110105 19491231 002x",
    "110105491231002",
    "010-12345678",
    "(021)12345678",
    "0755 1234 5678",
    "6222021234567890128",
    "6222 0212 3456 7890 128",
    "3034123456789126",
    "zhang.san@example.com",
    "123@qq.com",
    "E12345678",
    "EA1234567",
    "京A12345",
    "粤B·D12345",
    "沪AD12345",
    "订单号",
    "运单号：",
    "卡号",
    "手机",
    "身份证",
    "¥",
    "SF1234567890123",
    "400-820-8820",
    "2024-03-15",
    "iPhone 15",
    "RTX4090",
    "1380.00",
    "12345678901",
    "你好，",
    "请问",
    "谢谢。",
    "的",
    "京东",
    "新款",
    " ",
    " ",
    "-",
    ".",
    "@",
    "/",
    "+",
    "(",
    ")",
    "0",
    "1",
    "8",
    "86",
    "x",
    "A",
    "D",
    "E",
    "京",
    "粤",
    "·",
    # issue 17: separators, spoken digits, lower-case plates, addresses, names
    "177.8880.0625",
    "1 3 9 5 6 9 2 6 0 3 5",
    "一五零二二九三八七二四",
    "幺三八幺二三四五六七八",
    "1三9两5六7八0零1",
    "（+86）13912345678",
    "622848-457905-8670836",
    "6214.8301.2345.6789.012",
    "粤b12345",
    "张杨路500号5号楼3单元602",
    "阳光花园3栋2单元501",
    "上海市浦东新区",
    "路",
    "号",
    "单元",
    "小区",
    "3栋",
    "我叫",
    "我是",
    "收件人：",
    "户名",
    "李建国",
    "欧阳娜娜",
    "先生",
    "学生",
    "王",
    "四",
    "，",
    "第一三八期",
    "南京西路1266弄3号1802室",
    "12345-12345-12345-12345室",
    "这是一段很长的没有标点的中文文字用来测试缓冲",
]
PIECE = st.one_of(
    st.sampled_from(FRAGMENTS), st.text(alphabet="0123456789 -.@+()/_xXAE京·a一五零幺两路号栋李王叫，", max_size=6)
)
GENERATED = st.lists(PIECE, max_size=14).map("".join)


def stream(text: str, cuts: list[int], redactor: Redactor) -> list[str]:
    """Feed `text` cut at `cuts`; return the output released so far after each feed and after flush."""
    streaming = StreamingRedactor(redactor=redactor)
    released: list[str] = []
    out = ""
    bounds = [0, *sorted(set(cuts)), len(text)]
    for start, end in zip(bounds, bounds[1:], strict=False):
        out += streaming.feed(text[start:end])
        released.append(out)
    out += streaming.flush()
    released.append(out)
    return released


def assert_contract(text: str, cuts: list[int], redactor: Redactor) -> None:
    expected = redactor.redact(text)
    hidden = [span.value for span in redactor.find_pii(text) if span.value not in expected]
    released = stream(text, cuts, redactor)
    assert released[-1] == expected
    for prefix in released:
        assert expected.startswith(prefix), (text, cuts, prefix)
        assert not any(value in prefix for value in hidden), (text, cuts, prefix)


@st.composite
def text_and_cuts(draw: st.DrawFn, texts: st.SearchStrategy[str]) -> tuple[str, list[int]]:
    text = draw(texts)
    cuts = draw(st.lists(st.integers(0, len(text)), max_size=len(text)))
    return text, cuts


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text_and_cuts(st.sampled_from(CORPUS_TEXTS)))
def test_corpus_texts_any_split(case: tuple[str, list[int]]) -> None:
    assert_contract(*case, PLACEHOLDER)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text_and_cuts(GENERATED))
def test_generated_texts_any_split(case: tuple[str, list[int]]) -> None:
    assert_contract(*case, PLACEHOLDER)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text_and_cuts(st.lists(st.sampled_from(CORPUS_TEXTS), min_size=4, max_size=12).map("".join)))
def test_long_texts_any_split(case: tuple[str, list[int]]) -> None:
    """Longer than the kept context: values after released text still see the words before them."""
    assert_contract(*case, PLACEHOLDER)


@settings(max_examples=150, deadline=None)
@given(text_and_cuts(GENERATED))
def test_mask_mode_any_split(case: tuple[str, list[int]]) -> None:
    assert_contract(*case, MASK)


def test_every_corpus_text_char_by_char() -> None:
    for text in CORPUS_TEXTS:
        assert_contract(text, list(range(len(text))), PLACEHOLDER)


def test_mobile_is_held_until_it_is_complete() -> None:
    streaming = StreamingRedactor()
    assert streaming.feed("我的手机号是：138") == "我的手机号是："
    assert streaming.feed("1234") == ""
    assert streaming.held == 7
    assert streaming.feed("5678") == ""
    assert streaming.feed("，谢谢") == "[手机号]，"
    assert streaming.held == 2  # "谢谢" could still start a name or an address
    assert streaming.flush() == "谢谢"


def test_spoken_digits_are_held_until_the_number_is_complete() -> None:
    streaming = StreamingRedactor()
    out = streaming.feed("电话：一五零二二")
    assert "二" not in out
    assert out + streaming.feed("九三八七二四") + streaming.feed("。") == "电话：[手机号]。"


def test_address_is_held_until_its_last_part() -> None:
    streaming = StreamingRedactor()
    assert streaming.feed("地址：张杨") == "地址："
    assert streaming.feed("路500号5号楼") == ""
    assert streaming.feed("3单元602，到了打电话。") == "[地址]，到了打电话。"


def test_chinese_prose_is_released_at_punctuation_and_never_holds_more_than_11_chars() -> None:
    streaming = StreamingRedactor()
    released = ""
    text = "您好，订单已经发货了，请注意查收。我们会尽快为您安排配送并通知您具体的送达时间"
    for char in text:
        released += streaming.feed(char)
        assert streaming.held <= 11
        if char in "，。":
            assert streaming.held == 0
    assert released + streaming.flush() == text


def test_order_number_decided_by_preceding_context() -> None:
    streaming = StreamingRedactor()
    out = streaming.feed("订单号：622202123") + streaming.feed("4567890128 已发货") + streaming.flush()
    assert out == "订单号：6222021234567890128 已发货"


def test_name_after_a_context_word_is_held_until_it_ends() -> None:
    """A name can only start at a surname ("李"), a road name only after a stop character ("我"): "叫" may still
    begin "叫李建国路5号", so it waits too."""
    streaming = StreamingRedactor()
    assert streaming.feed("您好，我叫李") == "您好，我"
    assert streaming.feed("建") == ""
    assert streaming.feed("国，") + streaming.flush() == "叫[姓名]，"


def test_prose_without_surnames_or_road_names_to_come_flows_at_once() -> None:
    """Chinese text is held only from where a name (a surname) or a road name (after the last stop character)
    could still start, not a fixed 11 characters."""
    streaming = StreamingRedactor()
    assert streaming.feed("请您耐心等") == "请您耐心等"  # no surname; "等" is a stop: no road name before it
    assert streaming.feed("待") == ""  # "待…路5号" could still come
    assert streaming.feed("，我们") == "待，我"  # "们…路5号" could still come
    assert streaming.flush() == "们"


def test_holdback_and_buffer_stay_bounded_on_endless_digits() -> None:
    streaming = StreamingRedactor()
    released = 0
    for _ in range(20_000):
        released += len(streaming.feed("1234"))
        assert streaming.held <= MAX_EXAMINED + 4
    held = streaming.held
    assert released + held == 80_000
    assert len(streaming.flush()) == held


def test_flush_resets_for_the_next_stream() -> None:
    streaming = StreamingRedactor(RedactionConfig(enabled_types=frozenset({PiiType.MOBILE})))
    assert streaming.feed("") == ""
    assert streaming.feed("13812345678") + streaming.flush() == "[手机号]"
    assert streaming.feed("你好") + streaming.flush() == "你好"


def test_a_phone_after_an_order_word_never_leaks_at_any_single_cut() -> None:
    """An order word does not exempt a number written as a phone, in a stream cut anywhere either."""
    text = "好的，订单号138.1234.5678已发货，运单号 +86 13812345678 请查收"
    assert PLACEHOLDER.redact(text) == "好的，订单号[手机号]已发货，运单号 [手机号] 请查收"
    for cut in range(len(text) + 1):
        assert_contract(text, [cut], PLACEHOLDER)
