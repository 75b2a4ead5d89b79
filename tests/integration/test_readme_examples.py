"""The README's gRPC streaming example runs as written against the real server."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

from python_backends.intent import LABELS

pytestmark = pytest.mark.integration
README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_grpc_streaming_example_prints_text_and_an_intent(triton_grpc_url: str) -> None:
    """The Python block under 'Calling the ensemble' streams a reply and prints a known intent."""
    block = re.search(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert block is not None
    code = block.group(1).replace("localhost:8001", triton_grpc_url).replace("np.int32(128)", "np.int32(8)")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {})  # noqa: S102 - the documented example itself
    intent = out.getvalue().rsplit("intent:", 1)[1].strip()
    assert intent in LABELS
