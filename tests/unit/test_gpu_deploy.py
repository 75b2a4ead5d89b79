"""Deployment files: compose, Kubernetes, Prometheus rules and the Grafana dashboard are well formed and consistent.

Schemas are the minimal ones in docker/schemas/ (written for this project, no network); the PromQL checks make
sure every expression only queries metrics that Triton or the gateway actually export (docker/prometheus/
metric_names.yaml).
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

DOCKER = Path(__file__).resolve().parents[2] / "docker"
K8S = DOCKER / "k8s"
PROMQL_WORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def schema(name: str) -> dict[str, Any]:
    return json.loads((DOCKER / "schemas" / name).read_text(encoding="utf-8"))


@cache
def k8s_objects() -> list[dict[str, Any]]:
    objects = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        objects += [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]
    return objects


def by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in k8s_objects() if o["kind"] == kind}


def known_metrics() -> set[str]:
    names = load_yaml(DOCKER / "prometheus" / "metric_names.yaml")
    return {name for group in names.values() for name in group}


def promql_metrics(expr: str) -> set[str]:
    """Metric names in a PromQL expression: strip strings, matchers, ranges, groupings, numbers and calls."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"(?<![A-Za-z_:])\d+(?:\.\d+)?(?:[eE][+-]?\d+)?", " ", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        if text[match.end() :].lstrip().startswith("(") or match.group(0).lower() in PROMQL_WORDS:
            continue
        names.add(match.group(0))
    return names


def assert_known(expr: str) -> None:
    known = known_metrics()
    for name in promql_metrics(expr):
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in known or base in known, f"{name!r} in {expr!r} is not a Triton or gateway metric"


def test_promql_metric_extraction() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le) (rate(foo_seconds_bucket{route="/x"}[5m])))'
        " / clamp_min(bar_total, 1e-9) > 2"
    )
    assert promql_metrics(expr) == {"foo_seconds_bucket", "bar_total"}


# ---- compose ------------------------------------------------------------------------------------------------
def test_compose_file_matches_schema_and_wiring() -> None:
    compose = load_yaml(DOCKER / "compose.yaml")
    jsonschema.validate(compose, schema("compose.schema.json"))
    services = compose["services"]
    assert set(services) == {"triton", "gateway", "redis", "prometheus", "grafana"}
    devices = services["triton"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]
    assert "/v2/health/ready" in " ".join(services["triton"]["healthcheck"]["test"])
    assert services["gateway"]["depends_on"]["triton"]["condition"] == "service_healthy"
    assert services["gateway"]["environment"]["GATEWAY_TRITON_GRPC_URL"] == "triton:8001"
    assert "--appendonly" in services["redis"]["command"] and "yes" in services["redis"]["command"]
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (DOCKER / source).exists(), f"{name} mounts missing {source}"
            elif not source.startswith("$"):
                assert source in compose["volumes"], f"{name} uses undeclared volume {source}"
        if "build" in service:
            assert (DOCKER / service["build"]["context"] / service["build"]["dockerfile"]).is_file()
        for key, value in service.get("environment", {}).items():
            if re.search(r"KEY|PASSWORD|SECRET|TOKEN", key):
                assert value.startswith("${") and ":?" in value, f"{key} must come from the environment"


def test_dockerfiles_pin_their_bases() -> None:
    triton = (DOCKER / "triton" / "Dockerfile").read_text(encoding="utf-8")
    assert "ARG TRITON_IMAGE=nvcr.io/nvidia/tritonserver:25.12-trtllm-python-py3" in triton
    gateway = (DOCKER / "gateway" / "Dockerfile").read_text(encoding="utf-8")
    assert gateway.splitlines()[2] == "FROM python:3.11-slim"
    assert '"uvicorn", "frontend.app:create_app", "--factory"' in gateway
    entrypoint = (DOCKER / "triton" / "entrypoint.sh").read_text(encoding="utf-8")
    assert "render --profile gpu" in entrypoint and "histogram_latencies=true" in entrypoint


# ---- Prometheus ---------------------------------------------------------------------------------------------
def test_prometheus_scrapes_triton_and_gateway() -> None:
    config = load_yaml(DOCKER / "prometheus" / "prometheus.yml")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["triton"]["static_configs"][0]["targets"] == ["triton:8002"]
    assert jobs["gateway"]["metrics_path"] == "/metrics"
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]


def test_alert_rules_match_schema_and_thresholds() -> None:
    rules = load_yaml(DOCKER / "prometheus" / "alerts.yml")
    jsonschema.validate(rules, schema("prometheus_rules.schema.json"))
    alerts = {r["alert"]: r for g in rules["groups"] for r in g["rules"]}
    error_rules = [r for name, r in alerts.items() if "ErrorRate" in name]
    assert error_rules and all(r["expr"].strip().endswith("> 0.05") and r["for"] == "5m" for r in error_rules)
    p95 = [r for r in alerts.values() if "histogram_quantile(0.95" in r["expr"]]
    assert p95 and all(r["expr"].strip().endswith("> 2") and r["for"] == "5m" for r in p95)
    for rule in alerts.values():
        assert_known(rule["expr"])


# ---- Grafana ------------------------------------------------------------------------------------------------
def test_dashboard_panels_all_query_known_metrics() -> None:
    dashboard = json.loads((DOCKER / "grafana" / "dashboards" / "customer_service.json").read_text(encoding="utf-8"))
    datasource = load_yaml(DOCKER / "grafana" / "provisioning" / "datasources" / "prometheus.yml")
    uid = datasource["datasources"][0]["uid"]
    assert dashboard["panels"], "dashboard has no panels"
    exprs = []
    for panel in dashboard["panels"]:
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        for target in panel["targets"]:
            assert target["expr"].strip(), f"panel {panel['title']!r} has an empty query"
            assert target["datasource"]["uid"] == uid
            assert_known(target["expr"])
            exprs.append(target["expr"])
    queried = set().union(*(promql_metrics(e) for e in exprs))
    for needed in (
        "nv_gpu_utilization",
        "nv_gpu_memory_used_bytes",
        "nv_inference_queue_duration_us",
        "gateway_time_to_first_token_seconds_bucket",
        "gateway_faq_lookups_total",
        "gateway_handoffs_total",
        "gateway_replies_total",
        "gateway_reply_seconds_bucket",
    ):
        assert needed in queried, f"no panel queries {needed}"
    assert any("histogram_quantile(0.5," in e for e in exprs) and any("histogram_quantile(0.95," in e for e in exprs)
    provider = load_yaml(DOCKER / "grafana" / "provisioning" / "dashboards" / "dashboards.yml")
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


# ---- Kubernetes ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("obj", k8s_objects(), ids=lambda o: f"{o['kind']}/{o['metadata']['name']}")
def test_k8s_object_matches_schema(obj: dict[str, Any]) -> None:
    jsonschema.validate(obj, schema("k8s.schema.json"))


def test_kustomization_lists_every_manifest() -> None:
    listed = set(load_yaml(K8S / "kustomization.yaml")["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}


def test_workloads_selectors_services_and_pdbs_line_up() -> None:
    workloads = {**by_kind("Deployment"), **by_kind("StatefulSet")}
    template_labels = {}
    for name, workload in workloads.items():
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert workload["spec"]["selector"]["matchLabels"].items() <= labels.items(), name
        template_labels[name] = labels
    for name, service in by_kind("Service").items():
        matched = [w for w, labels in template_labels.items() if service["spec"]["selector"].items() <= labels.items()]
        assert matched, f"Service {name} selects no workload"
        ports = {p["name"] for c in workloads[matched[0]]["spec"]["template"]["spec"]["containers"] for p in c["ports"]}
        for port in service["spec"]["ports"]:
            assert port.get("targetPort", port["name"]) in ports | {port["port"]}
    for name, pdb in by_kind("PodDisruptionBudget").items():
        selector = pdb["spec"]["selector"]["matchLabels"]
        assert any(selector.items() <= labels.items() for labels in template_labels.values()), name
    assert set(by_kind("PodDisruptionBudget")) == set(workloads)


def test_triton_gets_a_gpu_and_readiness_on_health_ready() -> None:
    (container,) = by_kind("Deployment")["triton"]["spec"]["template"]["spec"]["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["startupProbe"]["httpGet"]["path"] == "/v2/health/ready"


def test_redis_is_a_statefulset_with_aof_on_a_volume() -> None:
    redis = by_kind("StatefulSet")["redis"]
    assert redis["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    assert "appendonly yes" in by_kind("ConfigMap")["redis"]["data"]["redis.conf"]


def test_hpas_scale_on_prometheus_metrics_at_50_qps() -> None:
    adapter = yaml.safe_load(by_kind("ConfigMap")["cs-prometheus-adapter"]["data"]["config.yaml"])
    served = {rule["name"]["as"] for rule in adapter["rules"]}
    for rule in adapter["rules"]:
        series = rule["seriesQuery"].split("{")[0]
        assert series in known_metrics()
    hpas = by_kind("HorizontalPodAutoscaler")
    assert set(hpas) == {"triton", "gateway"}
    for name, hpa in hpas.items():
        assert hpa["spec"]["scaleTargetRef"]["name"] in by_kind("Deployment")
        (metric,) = hpa["spec"]["metrics"]
        assert metric["type"] in ("Pods", "External")
        block = metric["pods"] if metric["type"] == "Pods" else metric["external"]
        assert block["metric"]["name"] in served, f"HPA {name} uses a metric no adapter rule serves"
        assert block["target"]["averageValue"] == "50"


def test_no_secret_values_in_the_manifests() -> None:
    assert not [o for o in k8s_objects() if o["kind"] == "Secret"]
    for workload in by_kind("Deployment").values():
        for container in workload["spec"]["template"]["spec"]["containers"]:
            for env in container.get("env", []):
                if re.search(r"KEY|PASSWORD|SECRET|TOKEN", env["name"]):
                    assert "secretKeyRef" in env["valueFrom"], env["name"]
    for config_map in by_kind("ConfigMap").values():
        assert not any(re.search(r"KEY|PASSWORD|SECRET|TOKEN", key) for key in config_map["data"])
