"""The thin model.py adapters, run on CPU with `triton_python_backend_utils` stubbed through sys.modules."""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2

from engine_build.profiles import CPU_PROFILE
from engine_build.render import render_repository
from python_backends.llm.handle import RequestHandle
from python_backends.llm.types import EngineBusyError, FinishReason, GenerationOutput, GenerationRequest
from tests.unit import fake_pb_utils as pb

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    values = CPU_PROFILE.with_overrides({"checkpoint_dir": "/nonexistent"}).template_values()
    return render_repository(tmp_path_factory.mktemp("repo") / "repo", values)


@pytest.fixture(autouse=True)
def stub_pb_utils(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", pb)
    monkeypatch.delitem(sys.modules, "python_backends.triton_io", raising=False)
    yield


def model_args(repo: Path, name: str) -> dict[str, str]:
    """The JSON model_config Triton hands to initialize(), derived from the rendered config.pbtxt."""
    config = text_format.Parse((repo / name / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    as_json = json_format.MessageToDict(config, preserving_proto_field_name=True)
    for out in as_json.get("output", []):
        out.setdefault("data_type", "TYPE_FP32")
    return {"model_config": json.dumps(as_json)}


def load_model(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        f"adapter_{name}", REPO / "model_repository" / name / "1" / "model.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class ScriptedEngine:
    """Replaces only the engine: answers every request with fixed outputs through the adapter's sink."""

    def __init__(self, outputs: list[GenerationOutput]) -> None:
        self.outputs = outputs
        self.requests: list[GenerationRequest] = []

    def submit(self, request: GenerationRequest, sink: Any = None, cancel_check: Any = None) -> RequestHandle:
        self.requests.append(request)
        handle = RequestHandle(sink, cancel_check)
        for output in self.outputs:
            handle.emit(output)
        return handle

    def shutdown(self, timeout: float = 10.0) -> None:
        pass


def llm_model(rendered: Path, monkeypatch: pytest.MonkeyPatch, outputs: list[GenerationOutput]) -> Any:
    module = load_model("llm")
    engine = ScriptedEngine(outputs)
    monkeypatch.setattr(module, "build_engine", lambda params: engine)
    model = module.TritonPythonModel()
    model.initialize(model_args(rendered, "llm"))
    execute = model.execute

    def execute_and_send(requests: list[Any]) -> None:
        """The llm sends from its own thread: wait until what the engine put out has gone."""
        execute(requests)
        assert model.responses.drain()

    model.execute = execute_and_send
    return model, engine


def test_llm_streams_each_output_and_flags_only_the_last_final(rendered: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Deltas go out in order with chunk indexes and echoed metadata; only the last carries the FINAL flag."""
    outputs = [GenerationOutput("你"), GenerationOutput("好", FinishReason.STOP, 5)]
    model, engine = llm_model(rendered, monkeypatch, outputs)
    request = pb.InferenceRequest(
        text_input="prompt", streaming=True, sampling_param_max_tokens=7, request_metadata="refund"
    )
    model.execute([request])
    sent = request.sender.sent
    assert [r.text("text_output") for r, _ in sent] == ["你", "好"]
    assert [flags for _, flags in sent] == [0, pb.TRITONSERVER_RESPONSE_COMPLETE_FINAL]
    assert [int(r.outputs["chunk_index"][0]) for r, _ in sent] == [0, 1]
    assert {r.text("request_metadata") for r, _ in sent} == {"refund"}
    assert sent[-1][0].text("finish_reason") == "stop"
    assert engine.requests[0].sampling.max_tokens == 7 and engine.requests[0].streaming


def test_llm_sends_token_counts_and_feeds_the_token_counters(rendered: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every response carries prompt/completion token counts; the final one's totals go to Triton's counters."""
    pb.MetricFamily.FAMILIES.clear()
    outputs = [
        GenerationOutput("你", prompt_tokens=9, completion_tokens=1),
        GenerationOutput("好", FinishReason.STOP, 5, None, 9, 2),
    ]
    model, engine = llm_model(rendered, monkeypatch, outputs)
    request = pb.InferenceRequest(
        text_input="prompt", sampling_param_presence_penalty=np.array([0.5], dtype=np.float32)
    )
    model.execute([request, pb.InferenceRequest(text_input="again")])
    sent = request.sender.sent
    assert [int(r.outputs["prompt_tokens"][0]) for r, _ in sent] == [9, 9]
    assert [int(r.outputs["completion_tokens"][0]) for r, _ in sent] == [1, 2]
    assert engine.requests[0].sampling.presence_penalty == 0.5
    assert engine.requests[0].sampling.repetition_penalty == pytest.approx(1.1)  # the CPU profile's default
    families, engine = pb.MetricFamily.FAMILIES, (("engine", "hf"),)
    assert families["llm_prompt_tokens_total"].values[engine] == 18  # two requests, each counted once
    assert families["llm_completion_tokens_total"].values[engine] == 4


def test_llm_refuses_a_bad_request_with_a_final_error(rendered: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty prompt gets one error response flagged FINAL; the next request in the batch is still served."""
    model, engine = llm_model(rendered, monkeypatch, [GenerationOutput("ok", FinishReason.STOP)])
    bad, good = pb.InferenceRequest(text_input=""), pb.InferenceRequest(text_input="hi")
    model.execute([bad, good])
    ((response, flags),) = bad.sender.sent
    assert response.error.message() == "[invalid_request] text_input is empty"
    assert response.error.code == pb.TritonError.INVALID_ARG and flags == pb.TRITONSERVER_RESPONSE_COMPLETE_FINAL
    assert good.sender.sent[-1][0].text("text_output") == "ok"
    assert len(engine.requests) == 1


def test_llm_engine_errors_end_the_request_with_an_error(rendered: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An engine failure mid-generation becomes an error response with the FINAL flag."""
    model, _ = llm_model(
        rendered, monkeypatch, [GenerationOutput("", FinishReason.ERROR, error="generation failed: boom")]
    )
    request = pb.InferenceRequest(text_input="hi")
    model.execute([request])
    ((response, flags),) = request.sender.sent
    assert "boom" in response.error.message() and flags == pb.TRITONSERVER_RESPONSE_COMPLETE_FINAL


def test_llm_past_its_queue_budget_answers_busy_with_the_retry_hint(
    rendered: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine's load refusal becomes a FINAL error carrying the `[busy:N]` code the gateway maps to `busy`."""
    pb.MetricFamily.FAMILIES.clear()
    model, engine = llm_model(rendered, monkeypatch, [])

    def refuse(request: GenerationRequest, sink: Any = None, cancel_check: Any = None) -> RequestHandle:
        raise EngineBusyError("busy: 900 prompt tokens queued ahead", retry_after=3)

    monkeypatch.setattr(engine, "submit", refuse)
    request = pb.InferenceRequest(text_input="hi")
    model.execute([request])
    ((response, flags),) = request.sender.sent
    assert response.error.message().startswith("[busy:3] ") and flags == pb.TRITONSERVER_RESPONSE_COMPLETE_FINAL
    assert response.error.code == pb.TritonError.UNAVAILABLE
    assert pb.MetricFamily.FAMILIES["llm_generations_finished"].values[(("finish_reason", "busy"),)] == 1


def test_llm_reports_its_engines_prompt_queue_on_tritons_metrics(
    rendered: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pb.MetricFamily.FAMILIES.clear()
    model, engine = llm_model(rendered, monkeypatch, [GenerationOutput("好", FinishReason.STOP)])
    engine.queued_prompt_tokens = lambda: 640  # type: ignore[attr-defined]
    model.execute([pb.InferenceRequest(text_input="hi")])
    assert pb.MetricFamily.FAMILIES["llm_queued_prompt_tokens"].values[()] == 640


def test_llm_times_its_first_token_once_per_request_on_tritons_metrics(
    rendered: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`llm_first_token_seconds` (arrival -> first token, before any PII holdback) is a histogram in counters."""
    pb.MetricFamily.FAMILIES.clear()
    soon = time.time_ns() + 300_000_000  # the first token comes ~0.3 s after the request arrives
    outputs = [GenerationOutput("你", None, soon), GenerationOutput("好", FinishReason.STOP, soon)]
    model, _ = llm_model(rendered, monkeypatch, outputs)
    model.execute([pb.InferenceRequest(text_input="hi", streaming=True)])
    buckets = pb.MetricFamily.FAMILIES["llm_first_token_seconds_bucket"].values
    assert buckets.get((("le", "0.25"),), 0) == 0 and buckets[(("le", "0.5"),)] == 1 and buckets[(("le", "+Inf"),)] == 1
    assert pb.MetricFamily.FAMILIES["llm_first_token_seconds_count"].values[()] == 1
    assert 0.25 < pb.MetricFamily.FAMILIES["llm_first_token_seconds_sum"].values[()] < 0.5


def test_llm_cancels_a_generation_whose_response_cannot_be_sent(
    rendered: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Responses leave from the llm's sender thread; when one fails (client gone) the generation is cancelled."""
    model, _ = llm_model(rendered, monkeypatch, [GenerationOutput("你")])  # still running after its first delta
    request = pb.InferenceRequest(text_input="hi", streaming=True)
    request.sender.failing = True
    model.execute([request])
    (handle,) = model.running.values()
    assert handle.cancelled


def test_llm_refuses_to_load_without_the_decoupled_policy(rendered: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A config without decoupled: true is rejected at load, not at the first request."""
    module = load_model("llm")
    args = json.loads(model_args(rendered, "llm")["model_config"])
    args.pop("model_transaction_policy")
    with pytest.raises(ValueError, match="decoupled"):
        module.TritonPythonModel().initialize({"model_config": json.dumps(args)})


def test_llm_final_response_that_cannot_be_sent_still_ends_the_request(
    rendered: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the last response fails to send (client gone), the bare FINAL flag still goes out: nothing hangs."""
    model, _ = llm_model(rendered, monkeypatch, [GenerationOutput("好", FinishReason.STOP)])
    request = pb.InferenceRequest(text_input="hi")
    request.sender.failing = True
    model.execute([request])
    assert request.sender.sent == [(None, pb.TRITONSERVER_RESPONSE_COMPLETE_FINAL)]


def test_llm_cancel_control_request_stops_the_named_stream(rendered: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`cancel_stream_id` cancels that running generation and ends the control request at once."""
    model, _ = llm_model(rendered, monkeypatch, [GenerationOutput("你")])  # still running after its first delta
    running = pb.InferenceRequest(text_input="hi")
    model.execute([running])
    ((first, _),) = running.sender.sent
    stream_id = first.text("stream_id")
    handle = model.running[stream_id]
    control = pb.InferenceRequest(text_input="", cancel_stream_id=stream_id)
    model.execute([control])
    assert handle.cancelled
    assert control.sender.sent == [(None, pb.TRITONSERVER_RESPONSE_COMPLETE_FINAL)]


def test_llm_counts_finished_generations_on_tritons_metrics(rendered: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model, _ = llm_model(rendered, monkeypatch, [GenerationOutput("", FinishReason.CANCELLED)])
    family = pb.MetricFamily.FAMILIES["llm_generations_finished"]
    before = family.values.get((("finish_reason", "cancelled"),), 0)
    model.execute([pb.InferenceRequest(text_input="hi")])
    assert family.values[(("finish_reason", "cancelled"),)] == before + 1
    assert model.running == {}


def test_pii_filter_stops_the_llm_stream_of_a_cancelled_ensemble_request(rendered: Path) -> None:
    """The first cancelled chunk of a stream sends one cancel to `llm`; later ones are just refused."""
    model = load_model("pii_filter").TritonPythonModel()
    model.initialize(model_args(rendered, "pii_filter"))
    pb.BLS_CALLS.clear()
    chunks = []
    for index in range(2):
        chunk = pb.InferenceRequest(text_input="138", stream_id="s9", chunk_index=index, finish_reason="")
        chunk.cancelled = True
        chunks.append(chunk)
    responses = model.execute(chunks)
    assert all(r.error is not None for r in responses)
    assert len(pb.BLS_CALLS) == 1
    name, inputs = pb.BLS_CALLS[0]
    assert name == "llm" and inputs["cancel_stream_id"][0] == b"s9" and inputs["text_input"][0] == b""


def test_pii_filter_redacts_one_shot_and_per_stream(rendered: Path) -> None:
    """Without a stream id a chunk is redacted alone; with one, a split number is held until complete."""
    model = load_model("pii_filter").TritonPythonModel()
    model.initialize(model_args(rendered, "pii_filter"))
    (one_shot,) = model.execute([pb.InferenceRequest(text_input="电话13812345678")])
    assert one_shot.text("text_output") == "电话[手机号]"
    first, second = model.execute(
        [
            pb.InferenceRequest(text_input="电话138", stream_id="s", chunk_index=0, finish_reason="", intent="x"),
            pb.InferenceRequest(text_input="12345678", stream_id="s", chunk_index=1, finish_reason="stop", intent="x"),
        ]
    )
    assert first.text("text_output") == "电话"
    assert second.text("text_output") == "[手机号]" and second.text("intent") == "x"
    (counted,) = model.execute(
        [
            pb.InferenceRequest(
                text_input="好", stream_id="t", chunk_index=0, prompt_tokens=np.int32(7), completion_tokens=np.int32(3)
            )
        ]
    )
    assert (int(counted.outputs["prompt_tokens"][0]), int(counted.outputs["completion_tokens"][0])) == (7, 3)


def test_intent_adapter_isolates_a_bad_request(rendered: Path) -> None:
    """Invalid UTF-8 in one request errors that request only; its neighbour is classified."""
    model = load_model("intent_classifier").TritonPythonModel()
    model.initialize(model_args(rendered, "intent_classifier"))
    bad, good = model.execute(
        [pb.InferenceRequest(text_input=b"\xff\xfe"), pb.InferenceRequest(text_input="我要开发票")]
    )
    assert "not valid UTF-8" in bad.error.message()
    assert good.text("intent") == "invoice" and good.error is None


def test_an_unexpected_failure_errors_only_its_own_request(rendered: Path) -> None:
    """A bug hit by one request becomes that request's error; the rest of the batch is answered."""
    model = load_model("pii_filter").TritonPythonModel()
    model.initialize(model_args(rendered, "pii_filter"))

    def explode(*args: object, **kwargs: object) -> str:
        raise KeyError("corrupt stream state")

    model.streams.process = explode
    broken, fine = model.execute(
        [pb.InferenceRequest(text_input="x", stream_id="s", chunk_index=0), pb.InferenceRequest(text_input="你好")]
    )
    assert "PII redaction failed" in broken.error.message()
    assert fine.text("text_output") == "你好"
