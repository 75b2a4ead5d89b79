"""Extra models the canary tests route to, added to the test model repository after it is rendered.

- `customer_service_candidate`: the real ensemble under a second name (a healthy candidate).
- `customer_service_flaky`: a decoupled model that streams one delta and then errors (a candidate failing
  mid-stream). A model name that is not loaded at all needs nothing here.
"""

from __future__ import annotations

import shutil
from pathlib import Path

HEALTHY_CANDIDATE = "customer_service_candidate"
FLAKY_CANDIDATE = "customer_service_flaky"
MODELS = Path(__file__).resolve().parent / "models"


def install_canary_models(repo: Path) -> None:
    config = (repo / "customer_service" / "config.pbtxt").read_text(encoding="utf-8")
    renamed = config.replace('name: "customer_service"', f'name: "{HEALTHY_CANDIDATE}"', 1)
    assert renamed != config, "the ensemble's name line moved"
    (repo / HEALTHY_CANDIDATE / "1").mkdir(parents=True, exist_ok=True)
    (repo / HEALTHY_CANDIDATE / "config.pbtxt").write_text(renamed, encoding="utf-8")
    shutil.copytree(MODELS / FLAKY_CANDIDATE, repo / FLAKY_CANDIDATE, dirs_exist_ok=True)
