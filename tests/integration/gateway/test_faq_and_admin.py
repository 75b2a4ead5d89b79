"""The FAQ cache: answered from Redis without the LLM, normalised matching, admin API behind its key."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from engine_build.launcher import TritonServer
from frontend.services.faq import SEEDED_KEY, FaqStore
from frontend.stack import RedisServer
from tests.integration.gateway.conftest import ADMIN_KEY, API_KEY, ask, auth, connect, metric_value, seed_path

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


def triton_requests(server: TritonServer) -> float:
    url = f"http://127.0.0.1:{server.ports.metrics}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return metric_value(text, "nv_inference_request_success", model="customer_service", version="1")


async def test_faq_hit_is_answered_without_the_llm_and_counted(
    gateway: str, http: httpx.AsyncClient, triton_server: TritonServer
) -> None:
    """A seeded question in full-width, spaced, punctuated form is a cache hit: no Triton request, metric +1."""
    before_hits = metric_value((await http.get("/metrics")).text, "gateway_faq_lookups_total", result="hit")
    before_triton = triton_requests(triton_server)
    async with connect(gateway) as ws:
        frames = await ask(ws, "  怎么 开发票 ？！ ")
    done = frames[-1]
    assert done["type"] == "done" and done["source"] == "faq" and done["intent"] == "invoice"
    assert "发票" in done["message"] and done["finish_reason"] == "stop"
    after_hits = metric_value((await http.get("/metrics")).text, "gateway_faq_lookups_total", result="hit")
    assert after_hits == before_hits + 1
    assert triton_requests(triton_server) == before_triton


async def test_admin_api_needs_the_admin_key(http: httpx.AsyncClient) -> None:
    """The FAQ admin API refuses no key and the REST key with 401 ErrorResponse."""
    for headers in ({}, auth(API_KEY)):
        response = await http.get("/admin/faq", headers=headers)
        assert response.status_code == 401 and response.json()["error"]["code"] == "unauthorized"


async def test_admin_adds_lists_and_deletes_faq_entries(http: httpx.AsyncClient) -> None:
    """An added entry matches its aliases (full-width, case), is listed, and is gone after delete."""
    entry = {"question": "你们支持 Apple Pay 吗？", "aliases": ["能用ApplePay吗"], "answer": "暂不支持 Apple Pay。"}
    created = await http.post("/admin/faq", json=entry, headers=auth(ADMIN_KEY))
    assert created.status_code == 201
    entry_id = created.json()["id"]
    listed = (await http.get("/admin/faq", headers=auth(ADMIN_KEY))).json()["entries"]
    assert entry_id in {e["id"] for e in listed} and len(listed) > 5
    hit = (await http.post("/chat", json={"message": "能用ＡＰＰＬＥＰＡＹ吗"}, headers=auth())).json()
    assert hit["source"] == "faq" and hit["message"] == "暂不支持 Apple Pay。"
    assert (await http.delete(f"/admin/faq/{entry_id}", headers=auth(ADMIN_KEY))).status_code == 204
    assert (await http.delete(f"/admin/faq/{entry_id}", headers=auth(ADMIN_KEY))).status_code == 404
    miss = (await http.post("/chat", json={"message": "能用ApplePay吗"}, headers=auth())).json()
    assert miss["source"] == "llm"


async def test_a_seed_that_failed_is_loaded_on_the_next_try(redis_server: RedisServer, tmp_path: Path) -> None:
    """A broken seed file leaves no "seeded" mark, so the fixed file is loaded by the next attempt."""
    redis = Redis(port=redis_server.port, db=7, decode_responses=True)
    await redis.flushdb()
    store = FaqStore(redis)
    broken = tmp_path / "broken.yaml"
    broken.write_text("faqs: {not: a list}\n", encoding="utf-8")
    with pytest.raises(ValueError, match="expected a list"):
        await store.seed_once(broken)
    assert not await redis.exists(SEEDED_KEY)
    assert await store.seed_once(seed_path()) > 0
    assert await store.seed_once(seed_path()) == 0  # once seeded, admin edits are kept
    await redis.flushdb()
    await redis.aclose()

