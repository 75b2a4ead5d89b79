"""Gateway fixtures: a real redis-server and the gateway under uvicorn, pointed at the session's real Triton."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from redis.asyncio import Redis

from engine_build.ports import free_port
from frontend.stack import GatewayServer, RedisServer

API_KEY = "test-rest-key-0123456789"
ADMIN_KEY = "test-admin-key-0123456789"
AGENT_KEYS = {
    "alice": "test-agent-key-0123456789",
    "bob": "test-agent-key-bob-98765",
    "carol": "test-agent-key-carol-555",
}
AGENT_KEY = AGENT_KEYS["alice"]
ALLOWED_ORIGIN = "http://shop.example"
VARIANT = "test-variant-a"
REPLY_TIMEOUT = 60.0
FRAME_FIELDS = ("type", "message", "delta", "session_id", "intent")  # in every server frame, as strings

pytestmark = pytest.mark.integration


def gateway_env(redis_url: str, triton_grpc_url: str, **overrides: str) -> dict[str, str]:
    env = {
        "GATEWAY_REDIS_URL": redis_url,
        "GATEWAY_TRITON_GRPC_URL": triton_grpc_url,
        "GATEWAY_API_KEYS": API_KEY,
        "GATEWAY_ADMIN_API_KEY": ADMIN_KEY,
        "GATEWAY_AGENT_KEYS": ",".join(f"{name}:{key}" for name, key in AGENT_KEYS.items()),
        "GATEWAY_ALLOWED_ORIGINS": ALLOWED_ORIGIN,
        "GATEWAY_MODEL_VARIANT": VARIANT,
        "GATEWAY_DEFAULT_MAX_TOKENS": "8",
        "GATEWAY_MAX_TOKENS_LIMIT": "2048",
        "GATEWAY_RATE_LIMIT_PER_IP": "10000",
        "GATEWAY_RATE_LIMIT_PER_USER": "10000",
        # Every test customer comes from 127.0.0.1: at the default 30 new sessions a minute, a fast run of the
        # session-scoped gateway's tests tripped the limit (`rate_limited`); test_scale tests the limit itself.
        "GATEWAY_NEW_SESSIONS_PER_IP_PER_MINUTE": "10000",
        "GATEWAY_LOG_JSON": "true",
        "GATEWAY_TRUSTED_PROXIES": "127.0.0.1",  # the tests stand in for a proxy with X-Forwarded-For
    }
    env.update({f"GATEWAY_{k.upper()}": v for k, v in overrides.items()})
    return env


@contextmanager
def running_gateway(
    redis_server: RedisServer, db: int, triton_grpc_url: str, log_dir: Path, **overrides: str
) -> Iterator[GatewayServer]:
    """A gateway with the test settings (`gateway_env`) and `overrides` on Redis database `db`, logging to
    `log_dir/gateway.log`; stopped when the block ends."""
    env = gateway_env(f"redis://127.0.0.1:{redis_server.port}/{db}", triton_grpc_url, **overrides)
    log_dir.mkdir(parents=True, exist_ok=True)
    server = GatewayServer(free_port(), env, log_file=log_dir / "gateway.log").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(free_port(), tmp_path_factory.mktemp("redis"), appendfsync="always").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def gateway_server(
    redis_server: RedisServer, triton_grpc_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayServer]:
    """The main gateway: generous limits, 8-token replies by default; its log goes to `log_file`."""
    with running_gateway(redis_server, 0, triton_grpc_url, tmp_path_factory.mktemp("gw")) as server:
        yield server


@pytest.fixture(scope="session")
def gateway(gateway_server: GatewayServer) -> str:
    """The main gateway's base URL."""
    return gateway_server.url


@pytest.fixture(scope="session")
def strict_gateway(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A second gateway: Triton on a dead port, low rate limits, short retries (its own Redis database)."""
    with running_gateway(
        redis_server,
        1,
        f"127.0.0.1:{free_port()}",
        tmp_path_factory.mktemp("gw-strict"),
        triton_retry_seconds="1",
        rate_limit_per_ip="6",
        rate_limit_per_user="3",
        agent_sign_in_per_ip="3",
    ) as server:
        yield server.url


@asynccontextmanager
async def emptied_db(redis_server: RedisServer, db: int) -> AsyncIterator[Redis]:
    """A client on Redis database `db`, emptied before and after: a test's own keys only."""
    client = Redis(port=redis_server.port, db=db, decode_responses=True)
    await client.flushdb()
    try:
        yield client
    finally:
        await client.flushdb()
        await client.aclose()


@pytest.fixture
async def redis_db(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = Redis(port=redis_server.port, db=0, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
async def http(gateway: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway, timeout=REPLY_TIMEOUT) as client:
        yield client


def ws_url(base: str, path: str = "/ws/chat") -> str:
    return base.replace("http://", "ws://") + path


def connect(base: str, path: str = "/ws/chat", **kwargs: Any) -> Any:
    return websockets.connect(ws_url(base, path), open_timeout=10, **kwargs)


async def next_frame(ws: Any, timeout: float = REPLY_TIMEOUT) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        frame: dict[str, Any] = json.loads(await ws.recv())
    return frame


async def frames_until(ws: Any, *types: str, timeout: float = REPLY_TIMEOUT) -> list[dict[str, Any]]:
    """Every frame up to and including the first whose type is in `types` (deadline `timeout`)."""
    frames = []
    async with asyncio.timeout(timeout):
        while True:
            frame = json.loads(await ws.recv())
            frames.append(frame)
            if frame["type"] in types:
                return frames


async def ask(ws: Any, message: str, **extra: Any) -> list[dict[str, Any]]:
    await ws.send(json.dumps({"message": message, **extra}, ensure_ascii=False))
    return await frames_until(ws, "done", "error", "handoff")


def has_frame_fields(frame: dict[str, Any]) -> bool:
    return all(isinstance(frame.get(field), str) for field in FRAME_FIELDS)


def metric_value(text: str, name: str, **labels: str) -> float:
    """The value of one Prometheus sample in an exposition text (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        sample, value = line.rsplit(" ", 1)
        metric, _, label_text = sample.partition("{")
        have = ",".join(sorted(label_text.rstrip("}").split(","))) if label_text else ""
        if metric == name and have == want:
            return float(value)
    return 0.0


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0, what: str = "condition") -> None:
    """Poll `check` until it holds; fail after `timeout` seconds (for effects recorded just after a frame)."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not hold within {timeout:.0f}s")
        await asyncio.sleep(0.05)


def auth(key: str = API_KEY) -> dict[str, str]:
    return {"X-API-Key": key}


def seed_path() -> Path:
    return Path(__file__).resolve().parents[3] / "frontend" / "data" / "faq_seed.yaml"
