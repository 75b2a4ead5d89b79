"""The GPU manifests run a stable and a candidate Triton, and the gateway's canary settings point at the candidate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from frontend.settings import GatewaySettings

K8S = Path(__file__).resolve().parents[2] / "docker" / "k8s"


def objects(name: str) -> dict[tuple[str, str], dict[str, Any]]:
    docs = yaml.safe_load_all((K8S / name).read_text(encoding="utf-8"))
    return {(d["kind"], d["metadata"]["name"]): d for d in docs if d}


def test_candidate_is_its_own_deployment_that_the_stable_service_never_selects() -> None:
    stable, candidate = objects("triton.yaml"), objects("triton-candidate.yaml")
    stable_selector = stable[("Service", "triton")]["spec"]["selector"]
    pods = candidate[("Deployment", "triton-candidate")]["spec"]["template"]["metadata"]["labels"]
    assert not stable_selector.items() <= pods.items()
    assert candidate[("Service", "triton-candidate")]["spec"]["selector"].items() <= pods.items()
    (container,) = candidate[("Deployment", "triton-candidate")]["spec"]["template"]["spec"]["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["envFrom"] == [{"configMapRef": {"name": "cs-triton-candidate"}}]
    checkpoints = {
        stable[("ConfigMap", "cs-triton")]["data"]["LLM_CHECKPOINT"],
        candidate[("ConfigMap", "cs-triton-candidate")]["data"]["LLM_CHECKPOINT"],
    }
    assert len(checkpoints) == 2


def test_gateway_reads_canary_settings_that_validate_and_name_the_candidate_service() -> None:
    candidate = objects("triton-candidate.yaml")
    canary = candidate[("ConfigMap", "cs-gateway-canary")]["data"]
    gateway = objects("gateway.yaml")[("Deployment", "gateway")]["spec"]["template"]["spec"]["containers"][0]
    assert {"configMapRef": {"name": "cs-gateway-canary", "optional": True}} in gateway["envFrom"]
    values = {key.removeprefix("GATEWAY_").lower(): value for key, value in canary.items()}
    assert set(values) <= set(GatewaySettings.model_fields), "a key the gateway would silently ignore"
    settings = GatewaySettings(
        api_keys="k" * 20, admin_api_key="a" * 20, agent_keys=["agent:" + "g" * 20], **values  # type: ignore[arg-type]
    )
    host, port = settings.canary_triton_grpc_url.split(":")
    service = candidate[("Service", host)]
    assert int(port) in {p["port"] for p in service["spec"]["ports"] if p["name"] == "grpc"}
    assert settings.rollback_error_rate == 0.05 and settings.promotion_steps == [10, 25, 50, 100]
