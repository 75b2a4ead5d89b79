"""Canary release against real Triton and Redis: two gateway replicas share the split, the windows and decisions.

Candidates: a Triton model name that is not loaded, `customer_service_flaky` (one delta, then an error on the same
stream) and `customer_service_candidate` (the real ensemble under a second name).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine_build.ports import free_port
from frontend.stack import GatewayServer, RedisServer
from tests.integration.canary_models import FLAKY_CANDIDATE, HEALTHY_CANDIDATE
from tests.integration.gateway.conftest import (
    ADMIN_KEY,
    REPLY_TIMEOUT,
    VARIANT,
    ask,
    auth,
    connect,
    eventually,
    gateway_env,
    metric_value,
)

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

DB = 12  # a Redis database of its own: the release state is global to a database
MIN_SAMPLE = 5
PROMPT = "你好"
PARTIAL = "候选版本的半句回复"  # what customer_service_flaky streams before it fails
ADMIN = auth(ADMIN_KEY)


def canary_env(redis_server: RedisServer, triton_grpc_url: str, **overrides: str) -> dict[str, str]:
    return gateway_env(
        f"redis://127.0.0.1:{redis_server.port}/{DB}",
        triton_grpc_url,
        rollback_min_sample=str(MIN_SAMPLE),
        rollback_error_rate="0.05",
        rollback_window_seconds="600",
        **overrides,
    )


@pytest.fixture(scope="module")
def replicas(
    redis_server: RedisServer, triton_grpc_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[GatewayServer, GatewayServer]]:
    """Two gateway replicas on one Redis database and one Triton."""
    env = canary_env(redis_server, triton_grpc_url)
    logs = tmp_path_factory.mktemp("canary")
    a = GatewayServer(free_port(), env, log_file=logs / "a.log").start()
    b = GatewayServer(free_port(), env, log_file=logs / "b.log").start()
    yield a, b
    a.stop()
    b.stop()


@pytest.fixture
async def clients(replicas: tuple[GatewayServer, GatewayServer]) -> AsyncIterator[list[httpx.AsyncClient]]:
    async with (
        httpx.AsyncClient(base_url=replicas[0].url, timeout=REPLY_TIMEOUT) as a,
        httpx.AsyncClient(base_url=replicas[1].url, timeout=REPLY_TIMEOUT) as b,
    ):
        yield [a, b]


async def set_candidate(client: httpx.AsyncClient, candidate: str, weight: int, **extra: Any) -> dict[str, Any]:
    body = {"candidate": candidate, "weight": weight, **extra}
    response = await client.post("/admin/release", json=body, headers=ADMIN)
    assert response.status_code == 200, response.text
    status: dict[str, Any] = response.json()
    return status


async def release(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/admin/release", headers=ADMIN)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def variant_named(status: dict[str, Any], name: str) -> dict[str, Any]:
    return next(v for v in status["variants"] if v["name"] == name)


async def chat(client: httpx.AsyncClient, session_id: str | None = None) -> dict[str, Any]:
    body = {"message": PROMPT, **({"session_id": session_id} if session_id else {})}
    response = await client.post("/chat", json=body, headers=auth())
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def rollback_logged(replicas: tuple[GatewayServer, GatewayServer], variant: str) -> bool:
    for server in replicas:
        assert server.log_file is not None
        for line in server.log_file.read_text(encoding="utf-8").splitlines():
            entry = json.loads(line) if line.startswith("{") else {}
            if entry.get("release", {}).get("action") == "rollback" and entry["release"]["variant"] == variant:
                return True
    return False


async def test_unloaded_candidate_is_rolled_back_within_the_sample_while_customers_get_answers(
    clients: list[httpx.AsyncClient], replicas: tuple[GatewayServer, GatewayServer]
) -> None:
    """A candidate naming no loaded model: every turn is answered by stable; after MIN_SAMPLE failures (over both
    replicas) the candidate is at 0 %, the decision names its counts, a metric and a log event fired."""
    candidate = "customer_service_absent"
    await set_candidate(clients[0], candidate, 100)
    answers = [await chat(clients[i % 2]) for i in range(MIN_SAMPLE + 2)]
    assert all(a["source"] == "llm" and a["variant"] == VARIANT for a in answers), answers
    status = await release(clients[1])
    assert status["status"] == "rolled_back"
    assert variant_named(status, candidate)["weight"] == 0
    assert variant_named(status, candidate)["window"] == {"total": MIN_SAMPLE, "errors": MIN_SAMPLE, "error_rate": 1.0}
    decision = status["last_decision"]
    assert (decision["action"], decision["variant"], decision["errors"], decision["total"]) == (
        "rollback", candidate, MIN_SAMPLE, MIN_SAMPLE
    )
    assert "100.0%" in decision["reason"] and "last error: " in decision["reason"]
    # Sessions opened before the rollback were assigned the candidate; those after it, stable.
    assigned = [(await clients[0].get(f"/sessions/{a['session_id']}")).json()["variant"] for a in answers]
    assert assigned == [candidate] * MIN_SAMPLE + [VARIANT] * 2
    rollbacks = 0.0
    for client in clients:
        text = (await client.get("/metrics")).text
        rollbacks += metric_value(text, "gateway_release_rollbacks_total", variant=candidate, reason="error_rate")
    assert rollbacks == 1
    assert rollback_logged(replicas, candidate)


async def test_candidate_failing_mid_stream_is_replaced_by_stable_in_the_same_turn(
    clients: list[httpx.AsyncClient], replicas: tuple[GatewayServer, GatewayServer]
) -> None:
    """The candidate streams half a reply and errors: the turn restarts on stable under the same message id
    (`message` starts over) and ends `done`; after MIN_SAMPLE such turns the session continues on stable alone."""
    await set_candidate(clients[0], FLAKY_CANDIDATE, 100)
    async with connect(replicas[0].url) as ws:
        for turn in range(MIN_SAMPLE):
            frames = await ask(ws, PROMPT)
            deltas = [f for f in frames if f["type"] == "delta"]
            done = frames[-1]
            assert done["type"] == "done", frames
            assert deltas[0]["message"] == PARTIAL and PARTIAL not in done["message"]
            assert {d["message_id"] for d in deltas} == {done["message_id"]}
            session_id = done["session_id"]
            reply = (await clients[turn % 2].get(f"/sessions/{session_id}/replies/{done['message_id']}")).json()
            assert (reply["status"], reply["variant"], reply["message"]) == ("done", VARIANT, done["message"])
    status = await release(clients[1])
    assert status["status"] == "rolled_back" and status["last_decision"]["total"] == MIN_SAMPLE
    # The same session, reconnected on the other replica: stable answers directly, the candidate sees nothing.
    async with connect(replicas[1].url) as ws:
        frames = await ask(ws, PROMPT, session_id=session_id)
        assert frames[-1]["type"] == "done" and all(f.get("message") != PARTIAL for f in frames)
    assert variant_named(await release(clients[0]), FLAKY_CANDIDATE)["window"]["total"] == MIN_SAMPLE
    assert (await clients[0].get(f"/sessions/{session_id}")).json()["variant"] == FLAKY_CANDIDATE
    assert rollback_logged(replicas, FLAKY_CANDIDATE)


async def test_split_is_sticky_across_replicas_and_reconnects(
    clients: list[httpx.AsyncClient], replicas: tuple[GatewayServer, GatewayServer]
) -> None:
    """At 50 % new sessions land on both variants; each session stays on its variant on either replica and
    after reconnecting its socket, and every reply says which variant produced it."""
    await set_candidate(clients[0], HEALTHY_CANDIDATE, 50)
    first: list[dict[str, Any]] = []
    while len(first) < 4 or {a["variant"] for a in first} != {VARIANT, HEALTHY_CANDIDATE}:
        assert len(first) < 30, "30 new sessions at 50 % all landed on one variant"
        first.append(await chat(clients[len(first) % 2]))
    for i, answer in enumerate(first):
        again = await chat(clients[(i + 1) % 2], answer["session_id"])
        assert again["variant"] == answer["variant"]
        assert (await clients[i % 2].get(f"/sessions/{answer['session_id']}")).json()["variant"] == answer["variant"]
    on_candidate = next(a for a in first if a["variant"] == HEALTHY_CANDIDATE)
    for replica in replicas:
        async with connect(replica.url) as ws:
            done = (await ask(ws, PROMPT, session_id=on_candidate["session_id"]))[-1]
        reply = (await clients[0].get(f"/sessions/{done['session_id']}/replies/{done['message_id']}")).json()
        assert reply["variant"] == HEALTHY_CANDIDATE
    status = await release(clients[1])
    assert status["status"] == "active" and variant_named(status, HEALTHY_CANDIDATE)["window"]["errors"] == 0


async def test_release_survives_a_gateway_restart(
    redis_server: RedisServer, triton_grpc_url: str, tmp_path: Path
) -> None:
    """Candidate, weight, decisions and each session's variant are Redis state: a restarted gateway keeps them."""
    env = canary_env(redis_server, triton_grpc_url)
    port = free_port()
    server = GatewayServer(port, env, log_file=tmp_path / "gw.log").start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=REPLY_TIMEOUT) as client:
            before = await set_candidate(client, HEALTHY_CANDIDATE, 100)
            answer = await chat(client)
            await set_candidate(client, HEALTHY_CANDIDATE, 25)
            before = await release(client)
        server.stop()
        server = GatewayServer(port, env, log_file=tmp_path / "gw.log").start()
        async with httpx.AsyncClient(base_url=server.url, timeout=REPLY_TIMEOUT) as client:
            after = await release(client)
            again = await chat(client, answer["session_id"])
    finally:
        server.stop()
    assert variant_named(after, HEALTHY_CANDIDATE)["weight"] == 25 and after["status"] == "active"
    assert after["decisions"] == before["decisions"]
    assert answer["variant"] == again["variant"] == HEALTHY_CANDIDATE


async def test_manual_promotion_steps_and_rollback(clients: list[httpx.AsyncClient]) -> None:
    """`promote` walks 10 -> 25 -> 50 -> 100 and then refuses; `rollback` drops the weight to 0 and is recorded."""
    await set_candidate(clients[0], HEALTHY_CANDIDATE, 10, steps=[10, 25, 50, 100])
    weights = []
    for i in range(3):
        response = await clients[i % 2].post("/admin/release/promote", headers=ADMIN)
        assert response.status_code == 200, response.text
        weights.append(variant_named(response.json(), HEALTHY_CANDIDATE)["weight"])
    assert weights == [25, 50, 100]
    refused = await clients[0].post("/admin/release/promote", headers=ADMIN)
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "fully_promoted"
    rolled = await clients[1].post("/admin/release/rollback", json={"reason": "CSAT dropped"}, headers=ADMIN)
    assert rolled.status_code == 200
    body = rolled.json()
    assert body["status"] == "rolled_back" and variant_named(body, HEALTHY_CANDIDATE)["weight"] == 0
    assert [(d["action"], d["weight_after"]) for d in body["decisions"][:5]] == [
        ("rollback", 0), ("promote", 100), ("promote", 50), ("promote", 25), ("start", 10)
    ]
    assert body["last_decision"]["reason"] == "CSAT dropped"
    again = await clients[0].post("/admin/release/rollback", headers=ADMIN)
    assert again.status_code == 409 and again.json()["error"]["code"] == "no_candidate"


async def test_healthy_candidate_is_promoted_stepwise_after_its_healthy_time(clients: list[httpx.AsyncClient]) -> None:
    """With `step_seconds` set, a candidate healthy over a full sample for that long moves to the next step."""
    await set_candidate(clients[0], HEALTHY_CANDIDATE, 100)
    session_id = (await chat(clients[0]))["session_id"]  # assigned the candidate at 100 %
    await set_candidate(clients[0], HEALTHY_CANDIDATE, 25, steps=[25, 50], step_seconds=1)

    async def promoted() -> bool:
        answer = await chat(clients[1], session_id)
        assert answer["variant"] == HEALTHY_CANDIDATE
        return bool(variant_named(await release(clients[0]), HEALTHY_CANDIDATE)["weight"] == 50)

    await eventually(promoted, timeout=REPLY_TIMEOUT, what="promotion to 50 %")
    decision = (await release(clients[1]))["last_decision"]
    assert (decision["action"], decision["weight_before"], decision["weight_after"]) == ("promote", 25, 50)
    assert decision["total"] >= MIN_SAMPLE and decision["errors"] == 0 and "healthy for 1s" in decision["reason"]


async def test_admin_release_needs_the_admin_key_and_valid_input(clients: list[httpx.AsyncClient]) -> None:
    """No admin key is 401; a bad model name, URL or weight is a clear 4xx; the stable name cannot be reused."""
    assert (await clients[0].get("/admin/release", headers=auth())).status_code == 401
    for body in (
        {"candidate": "bad name!", "weight": 10},
        {"candidate": "ok", "weight": 10, "url": "not a url"},
        {"candidate": "ok", "weight": 101},
        {"candidate": "ok", "weight": 10, "name": VARIANT},
    ):
        response = await clients[0].post("/admin/release", json=body, headers=ADMIN)
        assert response.status_code in (400, 422), (body, response.text)
        assert response.json()["error"]["code"] == "invalid_request"
