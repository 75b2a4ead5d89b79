"""PII filter throughput on one core: one-shot `redact` in MB/s and `StreamingRedactor` fed token-sized chunks.

The streaming rows compare the cost per chunk on a 1 KB and a 100 KB text: a feed must cost the same whatever
came before it. The cost of the issue-17 recognizers is shown by running the same text with addresses and names
switched off, and with folding alone. Run: `.venv/bin/python perf/bench_pii.py [--mb 4]`; writes
perf/reports/pii_throughput.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from python_backends.pii import ALL_TYPES, PiiType, RedactionConfig, Redactor, StreamingRedactor  # noqa: E402
from python_backends.pii.normalize import normalize  # noqa: E402

REPORT_PATH = Path(__file__).resolve().parent / "reports" / "pii_throughput.md"

PROSE = [
    "您好，请问有什么可以帮您？",
    "我上周买的空气炸锅到现在还没收到，能帮我查一下吗？",
    "非常抱歉给您带来不便，我这边马上为您核实物流信息。",
    "好的，麻烦快一点，我明天要出差。",
    "已经为您催促仓库，预计今天下午发出，请您耐心等待。",
    "这个型号支持七天无理由退货吗？包装已经拆了。",
    "支持的，商品不影响二次销售即可，运费由我们承担。",
    "我想开一张增值税专用发票，需要提供哪些资料？",
    "请提供公司名称、税号、开户行和账号，我们会在三个工作日内开具。",
    "收到的耳机左边没有声音，是不是质量问题？",
    "建议您先重置一下蓝牙连接，如果还是不行我们给您换新。",
    "谢谢，问题已经解决了。",
    "The order page keeps loading, can you help?",
]
PII = [
    "我的手机号是13812345678，有事打我电话。",
    "收件人张三，电话 +86 139 1234 5678，地址上海市浦东新区世纪大道100号。",
    "身份证号11010519491231002X，帮我做一下实名认证。",
    "退款请退到银行卡6222 0212 3456 7890 128。",
    "发票发到邮箱 zhang.san@example.com 就行。",
    "公司座机010-12345678，工作日都有人。",
    "我的车牌是粤B·D12345，停在B2层。",
    "护照号E12345678，出国旅行险要用。",
    "我电话177.8880.0625，到了打我。",
    "手机号一五零二二九三八七二四，记一下。",
    "退到这张卡 622848-457905-8670836 就行。",
    "我叫李建国，地址北京市朝阳区建国路88号SOHO现代城2号楼1单元1203室。",
    "户名欧阳娜娜，车牌粤b12345。",
]
HARD_NEGATIVES = [
    "订单号 6222021234567890128 显示已签收，可是我没收到。",
    "快递单号SF1234567890123，三天没有更新了。",
    "实付¥1380.00，优惠券减了50元，合计￥1330.00。",
    "客服热线400-820-8820一直占线。",
    "iPhone 15 Pro Max 256GB 和 RTX4090 什么时候到货？",
    "2024-03-15 14:30 下的单，运单号 JDVA12345678901。",
    "SKU: 100023456789，数量2，单价 6999 元。",
]


def chat_text(size_bytes: int, seed: int = 7) -> str:
    """About `size_bytes` of UTF-8: mostly prose, ~12% of lines with PII and ~13% with a hard negative."""
    rng = random.Random(seed)
    lines: list[str] = []
    size = 0
    while size < size_bytes:
        roll = rng.random()
        pool = PII if roll < 0.12 else HARD_NEGATIVES if roll < 0.25 else PROSE
        line = rng.choice(pool)
        lines.append(line)
        size += len(line.encode("utf-8")) + 1
    return "\n".join(lines)


def token_chunks(text: str, seed: int = 11) -> list[str]:
    """Cut like an LLM stream: 1 to 4 characters per chunk."""
    rng = random.Random(seed)
    chunks: list[str] = []
    pos = 0
    while pos < len(text):
        step = rng.randint(1, 4)
        chunks.append(text[pos : pos + step])
        pos += step
    return chunks


def best_of(runs: int, func: Callable[[], object]) -> float:
    """Best CPU time of this process: on a shared machine wall time mostly measures the other tenants."""
    best = float("inf")
    for _ in range(runs):
        start = time.process_time()
        func()
        best = min(best, time.process_time() - start)
    return best


def bench_redact(text: str, redactor: Redactor) -> tuple[float, float]:
    seconds = best_of(5, lambda: redactor.redact(text))
    return len(text.encode("utf-8")) / seconds / 1e6, len(text) / seconds / 1e6


def bench_normalize(text: str) -> float:
    seconds = best_of(5, lambda: normalize(text))
    return len(text.encode("utf-8")) / seconds / 1e6


def bench_stream(text: str, redactor: Redactor) -> tuple[int, float, float]:
    chunks = token_chunks(text)

    def run() -> None:
        streaming = StreamingRedactor(redactor=redactor)
        for chunk in chunks:
            streaming.feed(chunk)
        streaming.flush()

    seconds = best_of(5, run)
    return len(chunks), seconds / len(chunks) * 1e6, len(text.encode("utf-8")) / seconds / 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mb", type=float, default=4.0, help="size of the one-shot text in MB of UTF-8")
    parser.add_argument("--report", type=Path, default=REPORT_PATH)
    args = parser.parse_args()
    redactor = Redactor()
    redactor.redact(chat_text(2000))  # warm up: compiles the context regex and loads stdnum

    text = chat_text(int(args.mb * 1e6))
    variants = [
        ("all types", redactor),
        (
            "without addresses and names",
            Redactor(RedactionConfig(enabled_types=ALL_TYPES - {PiiType.ADDRESS, PiiType.NAME})),
        ),
        ("numbers only (no email, passport, plate, address, name)", _numbers_only()),
    ]
    one_shot_rows = []
    for label, variant in variants:
        variant.redact(chat_text(2000))
        mb_s, mchars_s = bench_redact(text, variant)
        one_shot_rows.append((label, len(variant.find_pii(text)), mb_s, mchars_s))
    fold_mb_s = bench_normalize(text)
    stream_rows = []
    for label, size in (("1 KB", 1_000), ("100 KB", 100_000)):
        sample = chat_text(size, seed=size)
        chunks, us_per_chunk, stream_mb_s = bench_stream(sample, redactor)
        stream_rows.append((label, len(sample.encode("utf-8")), chunks, us_per_chunk, stream_mb_s))
    digits = "1" * 100_000  # worst case: one endless run that is held back as long as allowed
    chunks, us_digits, mb_digits = bench_stream(digits, redactor)
    stream_rows.append(("100 KB of digits (worst case)", len(digits), chunks, us_digits, mb_digits))

    lines = [
        "# PII filter throughput",
        "",
        f"One core, {platform.python_implementation()} {platform.python_version()}, {platform.machine()}; "
        f"best of 5 runs in CPU time of the process (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} "
        "CPUs while it ran: wall time would measure the other tenants; cache contention still slows every row, "
        "so compare rows of one run). Text: synthetic customer-service chat (mostly "
        "Chinese prose, ~12% of lines with PII in plain and customer formats, ~13% with hard negatives such as "
        "order numbers, prices, hotlines).",
        "",
        f"## One-shot `redact`, {len(text.encode('utf-8')) / 1e6:.1f} MB",
        "",
        "| enabled types | values found | MB/s (UTF-8) | M chars/s |",
        "|---|---:|---:|---:|",
        *(f"| {label} | {hits} | {mb_s:.1f} | {mchars_s:.2f} |" for label, hits, mb_s, mchars_s in one_shot_rows),
        f"| `normalize` alone (full-width and spoken-digit folding) | - | {fold_mb_s:.1f} | - |",
        "",
        "## `StreamingRedactor`, 1-4 characters per feed",
        "",
        "| text | bytes | feeds | µs per feed | MB/s |",
        "|---|---:|---:|---:|---:|",
        *(f"| {label} | {size} | {n} | {us:.2f} | {rate:.2f} |" for label, size, n, us, rate in stream_rows),
        "",
        "Equal µs per feed at 1 KB and 100 KB: a feed costs O(chunk + held text), not O(text so far).",
        "",
    ]
    report = "\n".join(lines)
    print(report)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(report, encoding="utf-8")
    print(f"wrote {args.report}")
    return 0


def _numbers_only() -> Redactor:
    numbers = {PiiType.ID_CARD, PiiType.MOBILE, PiiType.LANDLINE, PiiType.BANK_CARD}
    return Redactor(RedactionConfig(enabled_types=frozenset(numbers)))


if __name__ == "__main__":
    raise SystemExit(main())
