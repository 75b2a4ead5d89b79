"""GPU production path of engine_build: size a card, quantize Qwen3 for TensorRT-LLM, and check inputs.

Every step is planned as data first (commands, files) so `--dry-run` prints exactly what a real run does.
"""
