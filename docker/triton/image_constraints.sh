#!/usr/bin/env bash
# Print pip constraints that pin what TensorRT-LLM was built against to the versions this image already has,
# so installing our backends' packages can never move them. Everything else (PyYAML, tqdm, tiktoken, ...) is
# left free: the project's requirements give those floors only. Pinning the whole `pip freeze` made the image
# build unsatisfiable as soon as a requirement asked for a newer PyYAML/tqdm/tiktoken than the image ships.
#   bash docker/triton/image_constraints.sh > /tmp/image-constraints.txt
#   pip install -r docker/triton/requirements.txt -c /tmp/image-constraints.txt
set -euo pipefail
# `pip list --format=freeze` always prints name==version (pip freeze may print `name @ file://...` for wheels
# the image installed from local files, which a constraints file cannot hold).
PIP=${PIP:-pip}
"$PIP" list --format=freeze 2>/dev/null \
  | grep -iE '^(torch|tensorrt([-_][a-z0-9_-]+)?|nvidia[-_]modelopt([-_][a-z0-9_-]+)?|numpy|transformers)==' \
  || { echo "image_constraints.sh: found none of torch/tensorrt*/modelopt/numpy/transformers" >&2; exit 1; }
