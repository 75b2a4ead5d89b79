#!/usr/bin/env bash
# Render the GPU model repository for the mounted checkpoint (or engine), then become tritonserver.
set -euo pipefail

REPO=/opt/cs/build/model_repository
args=(render --profile gpu --checkpoint "${LLM_CHECKPOINT}" --out "${REPO}"
      --set "kv_cache_free_gpu_memory_fraction=${KV_CACHE_FRACTION}"
      --set "llm_max_batch_size=${LLM_MAX_BATCH_SIZE}")
if [[ -n "${LLM_ENGINE_DIR:-}" ]]; then
  args+=(--set "engine_dir=${LLM_ENGINE_DIR}")
fi
python3 -m engine_build "${args[@]}"

exec tritonserver \
  --model-repository="${REPO}" \
  --http-port=8000 --grpc-port=8001 --metrics-port=8002 \
  --allow-metrics=true --allow-gpu-metrics=true \
  --metrics-config=histogram_latencies=true \
  --exit-timeout-secs=30 \
  --log-verbose=0 \
  "$@"
