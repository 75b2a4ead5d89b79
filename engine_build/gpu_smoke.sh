#!/usr/bin/env bash
# End-to-end GPU smoke test, run inside nvcr.io/nvidia/tritonserver:25.12-trtllm-python-py3 with this
# repository mounted (see docker/DEPLOY_GPU.md):
#   quantize Qwen3 (or use a given checkpoint) -> render the GPU model repository -> start tritonserver ->
#   stream one gRPC request through customer_service -> require a redacted reply and an intent.
#
#   SOURCE=/models/Qwen3-14B bash engine_build/gpu_smoke.sh            # quantize int4_awq first
#   CHECKPOINT=/models/qwen3-14b-int4_awq bash engine_build/gpu_smoke.sh # reuse a quantized checkpoint
#   SOURCE=/models/Qwen3-14B RUNTIME=engine QFORMAT=int8_wo bash engine_build/gpu_smoke.sh  # legacy engine
# Optional: WORK (default /tmp/cs-gpu-smoke), QFORMAT (int4_awq), RUNTIME (pytorch|engine),
# MODELOPT_EXAMPLES (Model-Optimizer examples at the tag of the installed nvidia-modelopt), TRTLLM_EXAMPLES
# (default /app/examples: the image's own TensorRT-LLM examples), READY_TIMEOUT (900).
set -euo pipefail

cd "$(dirname "$0")/.."
WORK=${WORK:-/tmp/cs-gpu-smoke}
RUNTIME=${RUNTIME:-pytorch}
QFORMAT=${QFORMAT:-$([[ "$RUNTIME" == engine ]] && echo int8_wo || echo int4_awq)}
READY_TIMEOUT=${READY_TIMEOUT:-900}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" TOKENIZERS_PARALLELISM=false
mkdir -p "$WORK"

step() { echo "[$(date +%H:%M:%S)] $*"; }
fetch() { python3 -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' "$1"; }
fail() { echo "SMOKE FAILED: $*" >&2; exit 1; }

step "1/6 python packages of the backends (torch, TensorRT-LLM, ModelOpt, numpy, transformers left as shipped)"
python3 -c "import sklearn, stdnum, tiktoken, yaml, tritonclient.grpc" 2>/dev/null || {
  bash docker/triton/image_constraints.sh > "$WORK/image-constraints.txt"
  pip install -q -r docker/triton/requirements.txt "tritonclient[grpc]>=2.51" -c "$WORK/image-constraints.txt"
}
[[ -f python_backends/intent/artefacts/model.joblib ]] || python3 -m python_backends.intent.train

step "2/6 checkpoint"
ENGINE_DIR=""
if [[ -n "${CHECKPOINT:-}" ]]; then
  python3 -m engine_build check --checkpoint "$CHECKPOINT" || fail "checkpoint $CHECKPOINT does not fit or is incomplete"
else
  [[ -n "${SOURCE:-}" ]] || fail "set SOURCE (BF16 Qwen3 checkpoint) or CHECKPOINT (quantized)"
  python3 -m engine_build check --checkpoint "$SOURCE" --precision "$QFORMAT" --runtime "$RUNTIME" \
    || fail "$SOURCE cannot be quantized to $QFORMAT for the $RUNTIME runtime here"
  OUT="$WORK/qwen3-$QFORMAT-$RUNTIME"
  python3 -m engine_build quantize --source "$SOURCE" --out "$OUT" --runtime "$RUNTIME" --qformat "$QFORMAT" --force
  if [[ "$RUNTIME" == engine ]]; then CHECKPOINT="$SOURCE"; ENGINE_DIR="$OUT/engine"; else CHECKPOINT="$OUT"; fi
fi

step "3/6 render the GPU model repository"
render=(render --profile gpu --checkpoint "$CHECKPOINT" --out "$WORK/model_repository")
[[ -n "$ENGINE_DIR" ]] && render+=(--set "engine_dir=$ENGINE_DIR")
python3 -m engine_build "${render[@]}"

step "4/6 start tritonserver (log: $WORK/tritonserver.log)"
tritonserver --model-repository="$WORK/model_repository" --http-port=8000 --grpc-port=8001 --metrics-port=8002 \
  --allow-metrics=true --allow-gpu-metrics=true --metrics-config=histogram_latencies=true \
  --exit-timeout-secs=30 >"$WORK/tritonserver.log" 2>&1 &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null; wait "$SERVER" 2>/dev/null || true' EXIT
deadline=$((SECONDS + READY_TIMEOUT))
until fetch http://127.0.0.1:8000/v2/health/ready >/dev/null 2>&1; do
  kill -0 "$SERVER" 2>/dev/null || { tail -n 50 "$WORK/tritonserver.log"; fail "tritonserver exited while loading"; }
  (( SECONDS < deadline )) || { tail -n 50 "$WORK/tritonserver.log"; fail "not ready after ${READY_TIMEOUT}s"; }
  sleep 5
done
step "ready after $((SECONDS - deadline + READY_TIMEOUT))s"

step "5/6 stream one request through customer_service over gRPC"
python3 - <<'EOF'
import queue
import sys
import time

import numpy as np
import tritonclient.grpc as grpcclient

EMAIL = "jane.doe@example.com"
message = f"Hi, my order has not arrived. Please confirm you have my email address: {EMAIL}"
client = grpcclient.InferenceServerClient("127.0.0.1:8001")
results: queue.Queue = queue.Queue()
client.start_stream(callback=lambda result, error: results.put((result, error)))
inputs = [
    grpcclient.InferInput("text_input", [1], "BYTES"),
    grpcclient.InferInput("streaming", [1], "BOOL"),
    grpcclient.InferInput("max_tokens", [1], "INT32"),
]
inputs[0].set_data_from_numpy(np.array([message.encode()], dtype=object))
inputs[1].set_data_from_numpy(np.array([True]))
inputs[2].set_data_from_numpy(np.array([128], dtype=np.int32))
started = time.monotonic()
client.async_stream_infer("customer_service", inputs, request_id="gpu-smoke")
chunks, intent, finish, first = [], "", "", None
while not finish:
    result, error = results.get(timeout=300)
    if error is not None:
        sys.exit(f"SMOKE FAILED: Triton error: {error}")
    text = result.as_numpy("text_output")[0].decode()
    if text and first is None:
        first = time.monotonic() - started
    chunks.append(text)
    intent = result.as_numpy("intent")[0].decode() or intent
    finish = result.as_numpy("finish_reason")[0].decode()
client.stop_stream()
reply = "".join(chunks)
print(f"intent={intent!r} finish_reason={finish!r} chunks={len(chunks)} first_text_after={first}s")
print(f"reply={reply!r}")
if not intent:
    sys.exit("SMOKE FAILED: no intent in the response")
if not reply.strip():
    sys.exit("SMOKE FAILED: empty reply")
if EMAIL in reply:
    sys.exit("SMOKE FAILED: the reply leaks the raw email address; pii_filter did not redact it")
print("redacted reply and intent received")
EOF

step "6/6 metrics endpoint"
fetch http://127.0.0.1:8002/metrics | grep -E '^nv_(gpu_utilization|inference_request_success\{model="customer_service")' \
  || fail "Triton metrics missing"
step "GPU SMOKE PASSED"
