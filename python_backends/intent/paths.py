"""Default locations of the intent data files and the trained artefact."""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
DATA_DIR = PACKAGE_DIR / "data"
RULES_PATH = DATA_DIR / "rules.yaml"
CHARACTER_MAP_PATH = DATA_DIR / "traditional_to_simplified.yaml"
TRAIN_PATH = DATA_DIR / "train.jsonl"
TEST_PATH = DATA_DIR / "test.jsonl"
ARTEFACT_PATH = PACKAGE_DIR / "artefacts" / "model.joblib"
