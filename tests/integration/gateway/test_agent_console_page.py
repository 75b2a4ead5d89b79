"""The agent console in headless Chromium, next to a customer on the chat page (two pages at once)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect
from redis.asyncio import Redis

from tests.integration.gateway.conftest import AGENT_KEYS, ask, connect, eventually, frames_until
from tests.integration.gateway.test_chat_page import CHROMIUM_ARGS

pytestmark = [pytest.mark.integration, pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

AGENT = "bob"


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield chromium
        await chromium.close()


async def signed_in_console(browser: Browser, gateway: str, key: str) -> Page:
    page = await (await browser.new_context(viewport={"width": 1200, "height": 760})).new_page()
    await page.goto(gateway + "/agent")
    await page.fill("#credential", key)
    await page.click("#sign-in-button")
    return page


async def notices(page: Page, kind: str, session_id: str) -> int:
    found: list[dict[str, Any]] = await page.evaluate("window.csAgent.notices")
    return sum(1 for n in found if n["kind"] == kind and n["session_id"] == session_id)


async def test_handoff_take_talk_draft_release_and_the_bot_answers_again(
    browser: Browser, gateway: str, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    """Customer asks for a human; the agent sees it queued, takes it, both talk, a draft is edited and sent."""
    agent = await signed_in_console(browser, gateway, AGENT_KEYS[AGENT])
    await expect(agent.locator("#status")).to_have_text("已连接", timeout=15_000)
    await expect(agent.locator("#agent-name")).to_have_text(AGENT)
    assert await agent.evaluate("sessionStorage.getItem('cs.agent.key')") == AGENT_KEYS[AGENT]
    assert AGENT_KEYS[AGENT] not in agent.url

    customer = await (await browser.new_context()).new_page()
    await customer.goto(gateway + "/")
    await expect(customer.locator("#status")).to_have_text("已连接", timeout=15_000)
    await customer.fill("#input", "你好，我想查一下订单")
    await customer.press("#input", "Enter")
    await expect(customer.locator("li.bot[data-state='done']")).to_have_count(1, timeout=30_000)
    session_id = await customer.evaluate("window.csChat.sessionId")
    await customer.click("#handoff")
    await expect(customer.locator("#notice")).to_contain_text("人工客服", timeout=10_000)

    row = agent.locator(f"#queue li[data-session-id='{session_id}']")
    await expect(row).to_contain_text("你好，我想查一下订单", timeout=15_000)
    await expect(row.locator(".wait")).to_contain_text("等待")
    await expect(row.locator(".channel")).to_have_text("网页")
    assert await notices(agent, "queue", session_id) == 1
    assert "新排队" in await agent.title()
    await expect(row).not_to_have_class("long-wait")
    await agent.evaluate("window.csAgent.longWait = 0")  # as if the customer had waited past the threshold
    await expect(row).to_have_class("long-wait", timeout=5_000)

    await row.locator(".take").click()
    panel = agent.locator(f".panel[data-session-id='{session_id}']")
    await expect(panel.locator("li.user").first).to_have_text("你好，我想查一下订单", timeout=10_000)
    await expect(row).to_have_count(0, timeout=10_000)
    await expect(customer.locator("#notice")).to_contain_text("人工客服已接入", timeout=10_000)

    await customer.fill("#input", "快递三天没动了")
    await customer.press("#input", "Enter")
    await expect(panel.locator("li.user").last).to_have_text("快递三天没动了", timeout=10_000)
    await eventually(lambda: _count_is(agent, "message", session_id, 1), what="one new-message notice")
    await agent.screenshot(path=str(tmp_path / "agent_console.png"))

    editor = panel.locator(".editor")
    await panel.locator(".suggest").click()
    await expect(editor).to_have_attribute("data-drafting", "false", timeout=30_000)
    draft = await editor.input_value()
    assert draft, "the draft reached the editor"
    assert await customer.locator("li.agent").count() == 0  # nothing sent without the agent's click
    await panel.locator(".faq-query").fill("发票")
    await panel.locator(".faq-results .insert").first.click()
    await editor.press("End")
    await editor.type("。我帮您催一下")
    edited = await editor.input_value()
    assert edited.startswith(draft) and "发票" in edited
    await panel.locator(".send").click()

    from_agent = customer.locator("li.agent").last
    await expect(from_agent.locator(".bubble")).to_have_text(edited, timeout=10_000)
    await expect(from_agent.locator(".name")).to_have_text(f"客服 {AGENT}")
    await expect(panel.locator("li.agent").last).to_have_text(f"客服 {AGENT}{edited}")

    await panel.locator(".release").click()
    await expect(panel).to_have_count(0, timeout=10_000)
    await expect(customer.locator("li.handoff[data-state='released']")).to_have_count(1, timeout=10_000)
    await customer.fill("#input", "谢谢")
    await customer.press("#input", "Enter")
    await expect(customer.locator("li.bot[data-state='done']")).to_have_count(2, timeout=30_000)
    assert (await http.get(f"/sessions/{session_id}")).json()["state"] == "bot"


async def _count_is(page: Page, kind: str, session_id: str, want: int) -> bool:
    return await notices(page, kind, session_id) == want


async def test_closing_the_console_puts_held_sessions_back_in_the_queue(
    browser: Browser, gateway: str, http: httpx.AsyncClient
) -> None:
    """The agent takes a session and closes the tab: the session is queued again, not left with nobody."""
    async with connect(gateway) as customer:
        session_id = (await ask(customer, "你好"))[-1]["session_id"]
        await customer.send(json.dumps({"type": "handoff"}))
        await frames_until(customer, "handoff")
        agent = await signed_in_console(browser, gateway, AGENT_KEYS[AGENT])
        await agent.locator(f"#queue li[data-session-id='{session_id}'] .take").click(timeout=15_000)
        await expect(agent.locator(f".panel[data-session-id='{session_id}']")).to_have_count(1, timeout=10_000)
        assert (await http.get(f"/sessions/{session_id}")).json()["state"] == "agent"

        await agent.close()
        requeued = (await frames_until(customer, "handoff"))[-1]
        while requeued["state"] != "queued":
            requeued = (await frames_until(customer, "handoff"))[-1]
        assert (await http.get(f"/sessions/{session_id}")).json()["state"] == "queued"


async def test_a_wrong_credential_sees_nothing(browser: Browser, gateway: str) -> None:
    """With a wrong key the console stays on the sign-in form: no queue, no names, the key is not kept."""
    async with connect(gateway) as customer:
        await ask(customer, "你好")
        await customer.send(json.dumps({"type": "handoff"}))
        await frames_until(customer, "handoff")  # a session is waiting
        page = await signed_in_console(browser, gateway, "wrong-agent-key-12345678")
        await expect(page.locator("#sign-in-error")).to_contain_text("凭证无效", timeout=15_000)
        await expect(page.locator("#console")).to_be_hidden()
        assert await page.locator("#queue li").count() == 0
        assert await page.locator("#agent-name").text_content() == ""
        assert await page.evaluate("sessionStorage.getItem('cs.agent.key')") is None


async def test_an_agent_transfers_a_session_to_a_colleague_in_the_console(
    browser: Browser, gateway: str, redis_db: Redis
) -> None:
    """alice picks bob from the online list and transfers: her tab closes, bob's opens with the history."""
    async with connect(gateway) as customer:
        session_id = (await ask(customer, "你好"))[-1]["session_id"]
        await customer.send(json.dumps({"type": "handoff"}))
        await frames_until(customer, "handoff")
        alice = await signed_in_console(browser, gateway, AGENT_KEYS["alice"])
        bob = await signed_in_console(browser, gateway, AGENT_KEYS["bob"])
        await expect(alice.locator("#online")).to_contain_text("bob", timeout=15_000)
        await alice.locator(f"#queue li[data-session-id='{session_id}'] .take").click(timeout=15_000)
        panel = alice.locator(f".panel[data-session-id='{session_id}']")
        await expect(panel.locator(".transfer-to")).to_have_value("bob", timeout=10_000)
        await panel.locator(".transfer").click()
        await expect(panel).to_have_count(0, timeout=10_000)
        moved = bob.locator(f".panel[data-session-id='{session_id}']")
        await expect(moved.locator("li.system").first).to_have_text("由客服 alice 转接", timeout=15_000)
        await expect(moved.locator("li.user").first).to_have_text("你好")
        assert await redis_db.hmget(f"sess:{session_id}", ["state", "agent"]) == ["agent", "bob"]
        await moved.locator(".release").click()
        await expect(moved).to_have_count(0, timeout=10_000)
