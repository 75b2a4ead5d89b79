"""ELK assets in docker/elk/ parse and agree with the events the gateway writes (no Elasticsearch runs here)."""

from __future__ import annotations

import json
import re
from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml

from frontend.services.release import Decision
from frontend.services.turn_log import RatingEvent, TurnEvent

ELK = Path(__file__).resolve().parents[2] / "docker" / "elk"
EVENTS = {"turn": TurnEvent, "rating": RatingEvent, "release": Decision}


def load_yaml(name: str) -> Any:
    return yaml.safe_load((ELK / name).read_text(encoding="utf-8"))


def mapped_fields(properties: dict[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for name, spec in properties.items():
        if "properties" in spec:
            out.update(mapped_fields(spec["properties"], f"{prefix}{name}."))
        else:
            out[prefix + name] = spec["type"]
    return out


def template_fields() -> dict[str, str]:
    template = json.loads((ELK / "index_template.json").read_text(encoding="utf-8"))
    return mapped_fields(template["template"]["mappings"]["properties"])


def saved_objects() -> list[dict[str, Any]]:
    lines = (ELK / "kibana_dashboard.ndjson").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def test_compose_profile_wires_filebeat_elasticsearch_and_kibana() -> None:
    """Every service is in the `elk` profile, on one pinned Elastic version, and mounts files that exist."""
    compose = load_yaml("compose.elk.yaml")
    services = compose["services"]
    assert set(services) == {"elasticsearch", "kibana", "filebeat", "elk-setup"}
    assert all(s["profiles"] == ["elk"] for s in services.values())
    versions = {s["image"].rsplit(":", 1)[1] for n, s in services.items() if "elastic.co" in s["image"]}
    assert len(versions) == 1 and re.fullmatch(r"8\.\d+\.\d+", versions.pop())
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ELK / source).is_file(), source
            elif not source.startswith("/"):
                assert source in compose["volumes"], source
    assert services["kibana"]["environment"]["ELASTICSEARCH_HOSTS"] == "http://elasticsearch:9200"
    assert services["filebeat"]["depends_on"]["elk-setup"]["condition"] == "service_completed_successfully"
    setup = " ".join(services["elk-setup"]["command"])
    assert "_index_template/cs-conversations" in setup and "saved_objects/_import" in setup


def test_filebeat_keeps_gateway_events_and_writes_the_templated_index() -> None:
    config = load_yaml("filebeat.yml")
    source = config["filebeat.inputs"][0]
    assert {"ndjson": {"target": "cs", "add_error_key": True}} in source["parsers"]
    kept = source["processors"][2]["drop_event"]["when"]["not"]["or"]
    assert sorted(k["has_fields"][0] for k in kept) == [f"cs.{name}" for name in sorted(EVENTS)]
    dropped = next(p["drop_fields"]["fields"] for p in source["processors"] if "drop_fields" in p)
    assert dropped == ["cs.session_id"]
    index = config["output.elasticsearch"]["index"]
    template = json.loads((ELK / "index_template.json").read_text(encoding="utf-8"))
    daily = index.split("%")[0] + "2026.01.01"
    assert any(re.fullmatch(p.replace("*", ".*"), daily) for p in template["index_patterns"])


def test_index_template_maps_every_field_the_gateway_emits() -> None:
    """Each field of TurnEvent, RatingEvent and Decision has a mapping under cs.<event>."""
    mapped = template_fields()
    for name, event in EVENTS.items():
        for field in fields(event):
            assert f"cs.{name}.{field.name}" in mapped, f"cs.{name}.{field.name} is not mapped"
    assert mapped["cs.turn.reply_ms"] == "float" and mapped["cs.rating.rating"] == "integer"


def test_kibana_export_references_resolve_and_query_mapped_fields() -> None:
    """Every reference points at an object in the export; every aggregation field and column is mapped."""
    objects = saved_objects()
    ids = {(o["type"], o["id"]) for o in objects}
    mapped = set(template_fields()) | {"@timestamp"}
    for obj in objects:
        for ref in obj["references"]:
            assert (ref["type"], ref["id"]) in ids, ref
        if obj["type"] == "visualization":
            state = json.loads(obj["attributes"]["visState"])
            for agg in state["aggs"]:
                field = agg["params"].get("field")
                assert field is None or field in mapped, field
            json.loads(obj["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])
        if obj["type"] == "search":
            assert set(obj["attributes"]["columns"]) <= mapped
    dashboard = next(o for o in objects if o["type"] == "dashboard")
    panels = json.loads(dashboard["attributes"]["panelsJSON"])
    names = {r["name"] for r in dashboard["references"]}
    assert {p["panelRefName"] for p in panels} == names
    assert len(panels) == sum(o["type"] in ("visualization", "search") for o in objects)
