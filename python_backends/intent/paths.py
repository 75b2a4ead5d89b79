"""Default locations of the intent data files and the trained artefact."""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
DATA_DIR = PACKAGE_DIR / "data"
RULES_PATH = DATA_DIR / "rules.yaml"
CHARACTER_MAP_PATH = DATA_DIR / "traditional_to_simplified.yaml"
CONTEXT_PATH = DATA_DIR / "context.yaml"
TRAIN_PATH = DATA_DIR / "train.jsonl"
TEST_PATH = DATA_DIR / "test.jsonl"
FOLLOWUPS_PATH = DATA_DIR / "followups.jsonl"
BLIND_PATH = DATA_DIR / "blind.jsonl"
BLIND_FOLLOWUPS_PATH = DATA_DIR / "blind_followups.jsonl"
ARTEFACT_PATH = PACKAGE_DIR / "artefacts" / "model.npz"
