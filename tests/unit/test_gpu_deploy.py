"""Deployment files are valid for the official tools and start what they describe.

Validators are the upstream ones (docker/validation/README.md): kubernetes-validate (Kubernetes OpenAPI schemas,
strict) for core objects, the prometheus-operator CRD schemas for ServiceMonitor/PrometheusRule, promtool for the
Prometheus config, rules and alert unit tests, and the Compose Specification's JSON schema. On top of the
schemas: compose and the manifests carry every required gateway setting from secrets, Triton and Redis are
reachable only from where they must be, and the gateway process starts with the compose environment.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from engine_build.ports import free_port
from frontend.settings import GatewaySettings
from frontend.stack import RedisServer

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
K8S = DOCKER / "k8s"
VALIDATION = DOCKER / "validation"
PROMQL_WORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}
SECRET_NAME = re.compile(r"KEY|PASSWORD|SECRET|TOKEN")
# Oldest Kubernetes we support and the newest kubernetes-validate knows.
K8S_VERSIONS = ("1.29.0", kubernetes_validate.utils.latest_version())
# What an operator exports before `docker compose up` (placeholders, long enough for the gateway's rules).
COMPOSE_SECRETS = {
    "MODELS_DIR": "/srv/models",
    "GATEWAY_API_KEYS": "placeholder-rest-key-0123456789,placeholder-rest-key-abcdefghij",
    "GATEWAY_ADMIN_API_KEY": "placeholder-admin-key-0123456789",
    "GATEWAY_AGENT_KEYS": "alice:placeholder-agent-key-alice-0123,bob:placeholder-agent-key-bob-01234",
    "GRAFANA_ADMIN_PASSWORD": "placeholder-grafana-password",
}


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def require_tool(name: str, package: str) -> str:
    """The tool's path; skip (with the reason) only when it is not installed at all."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (Debian package {package!r}; `make setup` installs it)")
    return path


# ---- compose ------------------------------------------------------------------------------------------------
INTERPOLATION = re.compile(r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}")


class MissingVariable(ValueError):
    pass


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose-spec interpolation (`${VAR}`, `:-`/`-` defaults, `:?`/`?` required, `:+`, `$$`) over a document."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.group("name"), match.group("op"), match.group("arg") or ""
        current = env.get(name)
        unset_or_empty = not current
        if op in (":?", "?") and (unset_or_empty if op == ":?" else current is None):
            raise MissingVariable(f"{name}: {arg}")
        if op in (":-", "-") and (unset_or_empty if op == ":-" else current is None):
            return arg
        if op in (":+", "+"):
            return arg if (not unset_or_empty if op == ":+" else current is not None) else ""
        return current or ""

    return INTERPOLATION.sub(substitute, value)


@cache
def compose_raw() -> dict[str, Any]:
    document: dict[str, Any] = load_yaml(DOCKER / "compose.yaml")
    return document


def compose() -> dict[str, Any]:
    """compose.yaml as `docker compose config` would see it with the operator's secrets exported."""
    document: dict[str, Any] = interpolate(compose_raw(), COMPOSE_SECRETS)
    return document


@cache
def compose_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((VALIDATION / "compose-spec.json").read_text(encoding="utf-8"))
    return schema


def gateway_env_from_compose() -> dict[str, str]:
    return {k: str(v) for k, v in compose()["services"]["gateway"]["environment"].items()}


def test_compose_file_matches_the_compose_specification() -> None:
    """The interpolated file validates against the official compose-spec schema (as `docker compose config`)."""
    jsonschema.Draft7Validator.check_schema(compose_schema())
    jsonschema.validate(compose(), compose_schema())


def test_compose_schema_refuses_what_compose_refuses() -> None:
    """The vendored schema is strict: a misspelt key or a wrong type fails, so the test above can fail too."""
    broken = copy.deepcopy(compose())
    broken["services"]["gateway"]["healthchek"] = broken["services"]["gateway"].pop("healthcheck")
    with pytest.raises(jsonschema.ValidationError, match="healthchek"):
        jsonschema.validate(broken, compose_schema())
    broken = copy.deepcopy(compose())
    broken["services"]["gateway"]["ports"] = "8080:8080"  # a list in the specification
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, compose_schema())


@pytest.mark.parametrize("variable", sorted(set(COMPOSE_SECRETS) - {"MODELS_DIR"}))
def test_compose_refuses_to_start_without_each_secret(variable: str) -> None:
    """Every key and password is `${VAR:?...}`: missing from the environment, compose stops with its message."""
    env = {k: v for k, v in COMPOSE_SECRETS.items() if k != variable}
    with pytest.raises(MissingVariable, match=variable):
        interpolate(compose_raw(), env)
    for name, service in compose_raw()["services"].items():
        for key, value in service.get("environment", {}).items():
            if SECRET_NAME.search(key):
                assert str(value).startswith("${") and ":?" in str(value), f"{name}.{key} must come from a secret"


def test_compose_gateway_environment_builds_gateway_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """GatewaySettings validates from exactly the compose environment: every required setting is there."""
    env = gateway_env_from_compose()
    required = {f"GATEWAY_{name.upper()}" for name, f in GatewaySettings.model_fields.items() if f.is_required()}
    assert required <= set(env), f"compose's gateway lacks required settings {sorted(required - set(env))}"
    for key in list(os.environ):
        if key.startswith("GATEWAY_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = GatewaySettings()  # type: ignore[call-arg]
    assert settings.redis_url == "redis://redis:6379/0" and settings.triton_grpc_url == "triton:8001"
    assert len(settings.api_keys) == 2


def test_triton_and_redis_are_reachable_only_inside_the_backend_network() -> None:
    """No published port for Triton or Redis, and every network they join is internal; the gateway bridges."""
    document = compose()
    services, networks = document["services"], document["networks"]
    for name in ("triton", "redis"):
        assert "ports" not in services[name], f"{name} must not publish ports"
        assert services[name]["networks"], f"{name} must name its networks (the default one is not internal)"
        for network in services[name]["networks"]:
            assert networks[network].get("internal") is True, f"{name} joins non-internal network {network}"
    gateway_networks = services["gateway"]["networks"]
    assert "backend" in gateway_networks
    assert any(not networks[n].get("internal") for n in gateway_networks), "customers need a way to the gateway"
    assert services["gateway"]["ports"] == ["8080:8080"]
    for name in ("prometheus", "grafana"):  # operator tools: loopback unless an operator binds them elsewhere
        assert all(str(p).startswith("127.0.0.1:") for p in services[name]["ports"]), name
    assert services["prometheus"]["networks"] and "backend" in services["prometheus"]["networks"]


def test_compose_health_checks_and_wiring() -> None:
    """Readiness (/readyz) for the gateway, /v2/health/ready for Triton; no shm_size beside ipc: host."""
    document = compose()
    services = document["services"]
    assert "/readyz" in " ".join(services["gateway"]["healthcheck"]["test"])
    assert "/v2/health/ready" in " ".join(services["triton"]["healthcheck"]["test"])
    assert services["triton"]["ipc"] == "host" and "shm_size" not in services["triton"]
    devices = services["triton"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]
    assert services["gateway"]["depends_on"]["triton"]["condition"] == "service_healthy"
    assert "--appendonly" in services["redis"]["command"] and "yes" in services["redis"]["command"]
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (DOCKER / source).exists(), f"{name} mounts missing {source}"
            elif not source.startswith("/"):
                assert source in document["volumes"], f"{name} uses undeclared volume {source}"
        if "build" in service:
            assert (DOCKER / service["build"]["context"] / service["build"]["dockerfile"]).is_file()


def trusted_proxies(value: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(item.strip(), strict=False) for item in value.split(",") if item.strip()]


def test_trusted_proxies_are_explicit_and_never_everyone() -> None:
    """GATEWAY_TRUSTED_PROXIES is set in compose and Kubernetes to parseable networks, never the whole internet."""
    assert trusted_proxies(gateway_env_from_compose()["GATEWAY_TRUSTED_PROXIES"]) == []  # direct clients
    k8s_value = by_kind("ConfigMap")["cs-gateway"]["data"]["GATEWAY_TRUSTED_PROXIES"]
    networks = trusted_proxies(k8s_value)
    assert networks and all(n.is_private and n.prefixlen >= 8 for n in networks), k8s_value
    gateway_cmd = (DOCKER / "gateway" / "Dockerfile").read_text(encoding="utf-8")
    assert '"--forwarded-allow-ips", "*"' not in gateway_cmd, "uvicorn must not believe X-Forwarded-For from anyone"


def dockerfile_json(path: Path, instruction: str) -> list[str]:
    """The JSON-array form of CMD in a Dockerfile (line continuations joined)."""
    text = path.read_text(encoding="utf-8").replace("\\\n", " ")
    (line,) = [line for line in text.splitlines() if line.startswith(instruction + " ")]
    argv: list[str] = json.loads(line[len(instruction) + 1 :])
    return argv


def dockerfile_healthcheck(path: Path) -> str:
    text = path.read_text(encoding="utf-8").replace("\\\n", " ")
    (line,) = [line for line in text.splitlines() if line.startswith("HEALTHCHECK ")]
    return line.split(" CMD ", 1)[1].strip()


def commands_of(path: Path) -> str:
    """A script or Dockerfile without its comment lines."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return "\n".join(line for line in lines if not line.lstrip().startswith("#"))


IMAGE_FREEZE = """\
torch==2.9.0a0+145a3a7bda.nv25.10
torchvision==0.24.0a0
tensorrt==10.13.3.9
tensorrt_cu13_bindings==10.13.3.9
tensorrt_llm==1.1.0
nvidia-modelopt==0.37.0
nvidia-modelopt-core==0.37.0
numpy==1.26.4
numpydoc==1.8.0
transformers==4.56.0
PyYAML==6.0.1
tqdm==4.66.5
tiktoken==0.7.0
"""


def test_image_constraints_hold_only_what_tensorrt_llm_was_built_against(tmp_path: Path) -> None:
    """From the image's package list, only torch, tensorrt*, tensorrt_llm, ModelOpt, numpy and transformers are
    constrained; PyYAML, tqdm and tiktoken stay free so the floors in requirements.txt always resolve."""
    fake_pip = tmp_path / "pip"
    fake_pip.write_text(f"#!/bin/sh\n[ \"$*\" = 'list --format=freeze' ] || exit 3\ncat <<'EOF'\n{IMAGE_FREEZE}EOF\n")
    fake_pip.chmod(0o755)
    script = DOCKER / "triton" / "image_constraints.sh"
    result = subprocess.run(
        ["bash", str(script)], env={**os.environ, "PIP": str(fake_pip)}, capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == [
        "torch==2.9.0a0+145a3a7bda.nv25.10",
        "tensorrt==10.13.3.9",
        "tensorrt_cu13_bindings==10.13.3.9",
        "tensorrt_llm==1.1.0",
        "nvidia-modelopt==0.37.0",
        "nvidia-modelopt-core==0.37.0",
        "numpy==1.26.4",
        "transformers==4.56.0",
    ]
    requirements = [
        line.strip()
        for line in (DOCKER / "triton" / "requirements.txt").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert requirements and all(re.fullmatch(r"[A-Za-z0-9_.-]+>=[0-9.]+", r) for r in requirements), requirements
    for user in (DOCKER / "triton" / "Dockerfile", REPO / "engine_build" / "gpu_smoke.sh"):
        assert "image_constraints.sh" in commands_of(user) and "pip freeze" not in commands_of(user), user
    guide = (DOCKER / "DEPLOY_GPU.md").read_text(encoding="utf-8")
    assert "image_constraints.sh" in guide and "pip freeze >" not in guide


def test_dockerfiles_pin_their_bases_and_the_image_packages() -> None:
    triton = (DOCKER / "triton" / "Dockerfile").read_text(encoding="utf-8")
    assert "ARG TRITON_IMAGE=nvcr.io/nvidia/tritonserver:25.12-trtllm-python-py3" in triton
    gateway = (DOCKER / "gateway" / "Dockerfile").read_text(encoding="utf-8")
    assert gateway.splitlines()[2] == "FROM python:3.11-slim"
    command = dockerfile_json(DOCKER / "gateway" / "Dockerfile", "CMD")
    assert command[:3] == ["uvicorn", "frontend.app:create_app", "--factory"]
    assert "/healthz" in dockerfile_healthcheck(DOCKER / "gateway" / "Dockerfile")
    entrypoint = (DOCKER / "triton" / "entrypoint.sh").read_text(encoding="utf-8")
    assert "render --profile gpu" in entrypoint and "histogram_latencies=true" in entrypoint


def wait_for(condition: Any, what: str, timeout: float, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"{what}: the process exited with {process.returncode}"
        assert time.monotonic() < deadline, f"{what}: not reached within {timeout:.0f}s"
        time.sleep(0.1)


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError):
        return 0


@pytest.fixture
def local_redis(tmp_path: Path) -> Iterator[RedisServer]:
    require_tool("redis-server", "redis-server")
    server = RedisServer(free_port(), tmp_path / "redis").start()
    yield server
    server.stop()


def test_gateway_image_command_starts_with_the_compose_environment(local_redis: RedisServer, tmp_path: Path) -> None:
    """The image's CMD, with compose's gateway environment only (Redis pointed at a real local redis-server,
    Triton at a dead port), starts: /healthz answers, the image's liveness check passes and compose's readiness
    check fails for the one missing dependency, Triton."""
    port = free_port()
    env = gateway_env_from_compose()
    env["GATEWAY_REDIS_URL"] = f"redis://127.0.0.1:{local_redis.port}/0"
    env["GATEWAY_TRITON_GRPC_URL"] = f"127.0.0.1:{free_port()}"
    env.update(PATH=os.environ["PATH"], PYTHONPATH=str(REPO), HOME=str(tmp_path))
    argv = dockerfile_json(DOCKER / "gateway" / "Dockerfile", "CMD")
    argv[argv.index("--host") + 1] = "127.0.0.1"
    argv[argv.index("--port") + 1] = str(port)
    argv = [sys.executable, "-m", *argv]
    log = tmp_path / "gateway.log"
    with log.open("wb") as out:
        process = subprocess.Popen(argv, env=env, cwd=REPO, stdout=out, stderr=out)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: http_status(base + "/healthz") == 200, "gateway /healthz", 60, process)

        def run_check(command: str | list[str]) -> int:
            """A container health check, run here with the container's port replaced by ours."""
            if isinstance(command, list):
                assert command[0] == "CMD"
                command = [sys.executable if c in ("python", "python3") else c for c in command[1:]]
                command = [c.replace("127.0.0.1:8080", f"127.0.0.1:{port}") for c in command]
                return subprocess.run(command, env=env, capture_output=True, timeout=30).returncode
            assert command.startswith("python ")
            command = command.replace("127.0.0.1:8080", f"127.0.0.1:{port}").replace("python", sys.executable, 1)
            return subprocess.run(["bash", "-c", command], env=env, capture_output=True, timeout=30).returncode

        assert run_check(dockerfile_healthcheck(DOCKER / "gateway" / "Dockerfile")) == 0  # liveness
        assert run_check(compose()["services"]["gateway"]["healthcheck"]["test"]) != 0  # not ready: no Triton
        with pytest.raises(urllib.error.HTTPError) as not_ready:
            urllib.request.urlopen(base + "/readyz", timeout=10)
        assert json.loads(not_ready.value.read())["checks"] == {"triton": False, "redis": True, "limits": False}
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert b"Traceback" not in log.read_bytes(), log.read_text(errors="replace")[-2000:]


# ---- Prometheus ---------------------------------------------------------------------------------------------
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


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = require_tool("promtool", "prometheus")
    return subprocess.run(
        [tool, *args], cwd=DOCKER / "prometheus", capture_output=True, text=True, timeout=120, check=False
    )


def test_promtool_accepts_the_config_and_its_rule_file() -> None:
    """`promtool check config` follows rule_files (relative to the config, as in the container) and checks them."""
    result = promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout + result.stderr
    result = promtool("check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rejects_a_broken_rule(tmp_path: Path) -> None:
    """The tool really checks: a rule with invalid PromQL fails."""
    rules = load_yaml(DOCKER / "prometheus" / "alerts.yml")
    rules["groups"][0]["rules"][0]["expr"] = "sum(rate(gateway_errors_total[5m]) > "
    broken = tmp_path / "alerts.yml"
    broken.write_text(yaml.safe_dump(rules), encoding="utf-8")
    result = promtool("check", "rules", str(broken))
    assert result.returncode != 0


def test_alert_unit_tests_pass_and_cover_the_slo_alerts() -> None:
    """`promtool test rules`: error rate > 5 % for 5 min, p95 > 2 s and Triton down fire (and stay quiet below)."""
    tests = load_yaml(DOCKER / "prometheus" / "alerts_test.yml")
    tested = {case["alertname"] for test in tests["tests"] for case in test["alert_rule_test"]}
    quiet = {
        case["alertname"]
        for test in tests["tests"]
        for case in test["alert_rule_test"]
        if case.get("exp_alerts") == []
    }
    for alert in ("ChatErrorRateHigh", "FirstTokenLatencyP95High", "TritonDown"):
        assert alert in tested and alert in quiet, f"{alert} needs a firing and a quiet case"
    assert {"HttpErrorRateHigh", "TritonErrorRateHigh", "HttpLatencyP95High"} <= tested
    result = promtool("test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_query_known_metrics_with_the_slo_thresholds() -> None:
    rules = load_yaml(DOCKER / "prometheus" / "alerts.yml")
    alerts = {r["alert"]: r for g in rules["groups"] for r in g["rules"]}
    error_rules = [r for name, r in alerts.items() if "ErrorRate" in name]
    assert error_rules and all(r["expr"].strip().endswith("> 0.05") and r["for"] == "5m" for r in error_rules)
    p95 = [r for r in alerts.values() if "histogram_quantile(0.95" in r["expr"]]
    assert p95 and all(r["expr"].strip().endswith("> 2") and r["for"] == "5m" for r in p95)
    for rule in alerts.values():
        assert_known(rule["expr"])


def test_prometheus_scrapes_triton_and_gateway_by_the_job_names_the_alerts_use() -> None:
    config = load_yaml(DOCKER / "prometheus" / "prometheus.yml")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["triton"]["static_configs"][0]["targets"] == ["triton:8002"]
    assert jobs["gateway"]["metrics_path"] == "/metrics"
    assert 'job="triton"' in (DOCKER / "prometheus" / "alerts.yml").read_text(encoding="utf-8")


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
        "nv_inference_first_response_histogram_ms_bucket",
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


def test_first_response_latency_is_read_from_the_decoupled_llm_not_the_ensemble() -> None:
    """The Triton first-response histogram is read from the `llm` (the model's own first token), never the ensemble."""
    text = (DOCKER / "grafana" / "dashboards" / "customer_service.json").read_text(encoding="utf-8")
    dashboard = json.loads(text)
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"] if "first_response" in t["expr"]]
    assert exprs and all('model="llm"' in e and "customer_service" not in e for e in exprs)


# ---- Kubernetes ---------------------------------------------------------------------------------------------
def manifest_files() -> list[Path]:
    return sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


@cache
def k8s_objects() -> list[dict[str, Any]]:
    objects = []
    for path in manifest_files():
        objects += [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]
    return objects


def by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in k8s_objects() if o["kind"] == kind}


def strict(schema: Any) -> Any:
    """An OpenAPI v3 CRD schema that refuses unknown fields (as `kubectl apply --validate=strict`)."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items()}
    if "properties" in out and "additionalProperties" not in out:
        if not out.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    return out


@cache
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> strict openAPIV3Schema of every vendored CRD version."""
    schemas = {}
    for path in sorted((VALIDATION / "crds").glob("*.yaml")):
        crd = load_yaml(path)
        for version in crd["spec"]["versions"]:
            api_version = f"{crd['spec']['group']}/{version['name']}"
            schemas[(api_version, crd["spec"]["names"]["kind"])] = strict(version["schema"]["openAPIV3Schema"])
    return schemas


def validate_k8s(obj: dict[str, Any], version: str) -> None:
    """Core kinds with kubernetes-validate (strict); CRD kinds with their vendored schema; anything else fails."""
    key = (obj["apiVersion"], obj["kind"])
    if key in crd_schemas():
        # Not check_schema(): CRD patterns are Go regexps (e.g. `^(?i)...`), compiled only if their field is used.
        jsonschema.Draft7Validator(crd_schemas()[key]).validate(obj)
        return
    kubernetes_validate.validate(obj, version, strict=True)  # SchemaNotFoundError fails the test: no silent pass


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("obj", k8s_objects(), ids=lambda o: f"{o['kind']}/{o['metadata']['name']}")
def test_k8s_object_is_valid_for_kubernetes(obj: dict[str, Any], version: str) -> None:
    validate_k8s(obj, version)


def test_k8s_validation_refuses_unknown_fields_and_kinds() -> None:
    """The validators can fail: a misspelt probe field, a misspelt ServiceMonitor field and an unknown kind."""
    gateway = copy.deepcopy(by_kind("Deployment")["gateway"])
    gateway["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["periodSecond"] = 10
    with pytest.raises(kubernetes_validate.ValidationError, match="periodSecond"):
        validate_k8s(gateway, K8S_VERSIONS[0])
    monitor = copy.deepcopy(by_kind("ServiceMonitor")["triton"])
    monitor["spec"]["endpoints"][0]["intervall"] = "15s"
    with pytest.raises(jsonschema.ValidationError, match="intervall"):
        validate_k8s(monitor, K8S_VERSIONS[0])
    with pytest.raises(kubernetes_validate.utils.SchemaNotFoundError):
        validate_k8s({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}, K8S_VERSIONS[0])


def test_kustomization_lists_every_manifest() -> None:
    listed = set(load_yaml(K8S / "kustomization.yaml")["resources"])
    assert listed == {p.name for p in manifest_files()}


def workload_labels() -> dict[str, dict[str, str]]:
    workloads = {**by_kind("Deployment"), **by_kind("StatefulSet")}
    return {name: w["spec"]["template"]["metadata"]["labels"] for name, w in workloads.items()}


def test_workloads_selectors_services_and_pdbs_line_up() -> None:
    workloads = {**by_kind("Deployment"), **by_kind("StatefulSet")}
    for name, workload in workloads.items():
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert workload["spec"]["selector"]["matchLabels"].items() <= labels.items(), name
    for name, service in by_kind("Service").items():
        selector = {"matchLabels": service["spec"]["selector"]}
        matched = [w for w, labels in workload_labels().items() if selects(selector, labels)]
        assert matched, f"Service {name} selects no workload"
        ports = {p["name"] for c in workloads[matched[0]]["spec"]["template"]["spec"]["containers"] for p in c["ports"]}
        for port in service["spec"]["ports"]:
            assert port.get("targetPort", port["name"]) in ports | {port["port"]}
    for name, pdb in by_kind("PodDisruptionBudget").items():
        selector = pdb["spec"]["selector"]["matchLabels"]
        assert any(selector.items() <= labels.items() for labels in workload_labels().values()), name
    assert set(by_kind("PodDisruptionBudget")) == set(workloads)


def test_triton_gets_a_gpu_of_a_pinned_product_and_readiness_on_health_ready() -> None:
    spec = by_kind("Deployment")["triton"]["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["startupProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert spec["nodeSelector"]["nvidia.com/gpu.product"], "compiled engines only run on the GPU they were built on"


def test_gateway_probes_readiness_and_liveness_separately() -> None:
    (container,) = by_kind("Deployment")["gateway"]["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"


def gateway_env_from_k8s() -> dict[str, str]:
    """The gateway container's environment: ConfigMaps from envFrom, then env (secrets as placeholders)."""
    (container,) = by_kind("Deployment")["gateway"]["spec"]["template"]["spec"]["containers"]
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(by_kind("ConfigMap")[source["configMapRef"]["name"]]["data"])
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
            continue
        ref = item["valueFrom"]["secretKeyRef"]
        assert ref["name"] == "cs-gateway-secrets", item["name"]
        placeholder = f"placeholder-{ref['key']}-0123456789"
        if item["name"] == "GATEWAY_API_KEYS":
            placeholder += f",{placeholder}-second"
        elif item["name"] == "GATEWAY_AGENT_KEYS":  # name:key pairs
            placeholder = f"alice:{placeholder},bob:{placeholder}-bob"
        env[item["name"]] = placeholder
    return env


def test_k8s_gateway_environment_builds_gateway_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """GatewaySettings validates from the Deployment's environment with the documented Secret's keys."""
    env = gateway_env_from_k8s()
    required = {f"GATEWAY_{name.upper()}" for name, f in GatewaySettings.model_fields.items() if f.is_required()}
    assert required <= set(env), f"the gateway Deployment lacks required settings {sorted(required - set(env))}"
    for key in list(os.environ):
        if key.startswith("GATEWAY_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = GatewaySettings()  # type: ignore[call-arg]
    assert settings.redis_url == "redis://redis-0.redis:6379/0" and len(settings.api_keys) == 2
    documented = (K8S / "gateway.yaml").read_text(encoding="utf-8").split("apiVersion", 1)[0]
    (container,) = by_kind("Deployment")["gateway"]["spec"]["template"]["spec"]["containers"]
    for item in container["env"]:
        key = item["valueFrom"]["secretKeyRef"]["key"]
        assert f"--from-literal={key}=" in documented, f"the Secret recipe at the top of gateway.yaml lacks {key}"


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    return bool(selector.get("matchLabels", {}).items() <= labels.items())


def allowed(namespace: str, labels: dict[str, str], target: str, port: str) -> bool:
    """Whether a pod (namespace, labels) may open `port` (a container port name) on workload `target`.

    NetworkPolicy semantics: a pod no policy selects accepts everything; otherwise some ingress rule of a
    selecting policy must match the peer and the port. A peer without namespaceSelector is in the policy's own
    namespace; namespaces carry kubernetes.io/metadata.name.
    """
    target_labels = workload_labels()[target] if target in workload_labels() else {"app.kubernetes.io/name": target}
    policies = [p for p in by_kind("NetworkPolicy").values() if selects(p["spec"]["podSelector"], target_labels)]
    if not policies:
        return True
    for policy in policies:
        for rule in policy["spec"].get("ingress", []):
            if rule.get("ports") and port not in {p["port"] for p in rule["ports"]}:
                continue
            if "from" not in rule:  # no peers listed: every source
                return True
            for peer in rule["from"]:
                if "namespaceSelector" in peer:
                    in_namespace = selects(peer["namespaceSelector"], {"kubernetes.io/metadata.name": namespace})
                else:
                    in_namespace = namespace == policy["metadata"]["namespace"]
                if in_namespace and selects(peer.get("podSelector", {}), labels):
                    return True
    return False


GATEWAY_POD = ("customer-service", {"app.kubernetes.io/name": "gateway", "app.kubernetes.io/part-of": "cs"})
PROMETHEUS_POD = ("monitoring", {"app.kubernetes.io/name": "prometheus", "prometheus": "kube-prometheus-stack"})


@pytest.mark.parametrize(
    ("source", "target", "port", "expected"),
    [
        (GATEWAY_POD, "triton", "grpc", True),
        (GATEWAY_POD, "triton-candidate", "grpc", True),
        (PROMETHEUS_POD, "triton-candidate", "metrics", True),
        (("customer-service", {"app": "debug-shell"}), "triton-candidate", "grpc", False),
        (PROMETHEUS_POD, "triton", "metrics", True),
        (PROMETHEUS_POD, "triton", "grpc", False),
        (PROMETHEUS_POD, "triton", "http", False),
        (("customer-service", {"app.kubernetes.io/name": "redis"}), "triton", "grpc", False),
        (("customer-service", {"app": "debug-shell"}), "triton", "http", False),
        (("shop", {"app.kubernetes.io/name": "gateway"}), "triton", "grpc", False),
        (("monitoring", {"app.kubernetes.io/name": "grafana"}), "triton", "metrics", False),
        (GATEWAY_POD, "redis", "redis", True),
        (("customer-service", {"app.kubernetes.io/name": "triton"}), "redis", "redis", False),
        (PROMETHEUS_POD, "redis", "redis", False),
        (("ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"}), "gateway", "http", True),
        (PROMETHEUS_POD, "gateway", "http", True),
        (("shop", {"app": "anything"}), "gateway", "debug", False),
        (GATEWAY_POD, "some-new-workload", "http", False),  # default deny for anything added later
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_network_policies_let_only_the_gateway_and_prometheus_reach_triton(
    source: tuple[str, dict[str, str]], target: str, port: str, expected: bool
) -> None:
    """Only the gateway reaches Triton's gRPC and Redis; Prometheus only Triton's metrics; customers the gateway."""
    assert allowed(source[0], source[1], target, port) is expected


def test_network_policy_ports_exist_on_their_pods() -> None:
    workloads = {**by_kind("Deployment"), **by_kind("StatefulSet")}
    for name, policy in by_kind("NetworkPolicy").items():
        targets = [w for w, labels in workload_labels().items() if selects(policy["spec"]["podSelector"], labels)]
        assert targets, f"NetworkPolicy {name} selects no workload"
        if not policy["spec"]["podSelector"]:
            assert "ingress" not in policy["spec"], "the namespace-wide policy must only deny"
            continue
        for target in targets:
            containers = workloads[target]["spec"]["template"]["spec"]["containers"]
            names = {p["name"] for c in containers for p in c["ports"]}
            for rule in policy["spec"]["ingress"]:
                assert {p["port"] for p in rule["ports"]} <= names, f"{name}: a port {target} does not expose"


def test_service_monitors_are_what_kube_prometheus_stack_scrapes() -> None:
    """ServiceMonitors with the chart's release label select the Triton and gateway Services by a named port;
    the job label (the Service name) matches compose's job names, so alerts and dashboard work unchanged."""
    monitors = by_kind("ServiceMonitor")
    services = by_kind("Service")
    assert set(monitors) == {"triton", "gateway"}
    compose_jobs = {j["job_name"] for j in load_yaml(DOCKER / "prometheus" / "prometheus.yml")["scrape_configs"]}
    for name, monitor in monitors.items():
        assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        matched = [s for s, svc in services.items() if selects(monitor["spec"]["selector"], svc["metadata"]["labels"])]
        assert name in matched and not {"redis"} & set(matched), f"ServiceMonitor {name} selects {matched}"
        assert "jobLabel" not in monitor["spec"] and name in compose_jobs
        for service in matched:
            port_names = {p["name"] for p in services[service]["spec"]["ports"]}
            assert {e["port"] for e in monitor["spec"]["endpoints"]} <= port_names, service
    for workload in by_kind("Deployment").values():
        annotations = workload["spec"]["template"]["metadata"].get("annotations", {})
        assert not any(a.startswith("prometheus.io/") for a in annotations), "prometheus-operator ignores these"


def test_prometheus_rule_carries_exactly_the_alert_file() -> None:
    (rule,) = by_kind("PrometheusRule").values()
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert rule["spec"]["groups"] == load_yaml(DOCKER / "prometheus" / "alerts.yml")["groups"]


def test_hpas_scale_on_metrics_the_adapter_values_serve_at_50_qps() -> None:
    """The adapter's rules are chart values (`rules.custom`), not a ConfigMap in our namespace it cannot mount."""
    values = load_yaml(K8S / "helm" / "prometheus-adapter-values.yaml")
    assert not values["rules"].get("existing")
    assert "cs-prometheus-adapter" not in by_kind("ConfigMap")
    rules = values["rules"]["custom"]
    served = {rule["name"]["as"] for rule in rules}
    for rule in rules:
        assert rule["seriesQuery"].split("{")[0] in known_metrics()
        assert set(rule["resources"]["overrides"]) == {"namespace", "pod"}
    hpas = by_kind("HorizontalPodAutoscaler")
    assert set(hpas) == {"triton", "gateway"}
    for name, hpa in hpas.items():
        assert hpa["spec"]["scaleTargetRef"]["name"] in by_kind("Deployment")
        (metric,) = hpa["spec"]["metrics"]
        assert metric["type"] == "Pods"
        assert metric["pods"]["metric"]["name"] in served, f"HPA {name} uses a metric no adapter rule serves"
        assert metric["pods"]["target"]["averageValue"] == "50"


def test_no_secret_values_in_the_manifests() -> None:
    assert not [o for o in k8s_objects() if o["kind"] == "Secret"]
    for workload in by_kind("Deployment").values():
        for container in workload["spec"]["template"]["spec"]["containers"]:
            for env in container.get("env", []):
                if SECRET_NAME.search(env["name"]):
                    assert "secretKeyRef" in env["valueFrom"], env["name"]
    for config_map in by_kind("ConfigMap").values():
        assert not any(SECRET_NAME.search(key) for key in config_map["data"])
