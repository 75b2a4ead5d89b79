"""The web chat page in headless Chromium: streams a reply, rates it, hands off, resumes after a drop."""

from __future__ import annotations

import httpx
import pytest
from playwright.async_api import async_playwright, expect

from tests.integration.gateway.conftest import ADMIN_KEY, auth

pytestmark = [pytest.mark.integration, pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


async def test_chat_page_streams_rates_resumes_and_hands_off(gateway: str, http: httpx.AsyncClient) -> None:
    """Type a question, see the reply done, rate it, reconnect into the same session, ask for a human."""
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = await browser.new_page()
        await page.goto(gateway + "/")
        await expect(page.locator("#status")).to_have_text("已连接", timeout=15_000)

        await page.fill("#input", "怎么开发票？")
        await page.press("#input", "Enter")
        faq = page.locator("li.bot[data-state='done']").first
        await expect(faq).to_contain_text("发票", timeout=30_000)
        await faq.locator("button[data-rating='up']").click()
        await expect(faq).to_have_attribute("data-rated", "up", timeout=10_000)
        session_id = await page.evaluate("window.csChat.sessionId")
        assert len(session_id) == 32

        await page.evaluate("window.csChat.ws.close()")  # the network drops; the page reconnects and resumes
        await expect(page.locator("#status")).to_have_text("已连接", timeout=15_000)
        await page.fill("#input", "你好")
        await page.click("#send")
        await expect(page.locator("li.bot[data-state='done']")).to_have_count(2, timeout=30_000)
        assert await page.evaluate("window.csChat.sessionId") == session_id

        await page.click("#handoff")
        await expect(page.locator("#notice")).to_contain_text("人工客服", timeout=10_000)
        await browser.close()

    turns = (await http.get(f"/sessions/{session_id}")).json()
    assert [t["content"] for t in turns["turns"] if t["role"] == "user"] == ["怎么开发票？", "你好"]
    assert turns["state"] == "queued"
    summary = (await http.get("/admin/feedback/summary", headers=auth(ADMIN_KEY))).json()
    assert sum(v["thumbs_up"] for v in summary["variants"]) >= 1


async def test_chat_page_ends_a_reply_bubble_on_its_error_frame(gateway: str) -> None:
    """An `error` frame naming a streaming reply ends that bubble (no bubble left 'streaming' forever)."""
    frames = [
        {"type": "delta", "message": "您好", "delta": "您好", "session_id": "", "intent": "", "message_id": "msg_t1"},
        {"type": "error", "code": "timeout", "message": "回复超时，请稍后再试。", "delta": "", "session_id": "",
         "intent": "", "message_id": "msg_t1"},
    ]
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = await browser.new_page()
        await page.goto(gateway + "/")
        await expect(page.locator("#status")).to_have_text("已连接", timeout=15_000)
        for frame in frames:  # as if they came from the server, through the socket's own handler
            await page.evaluate(
                "(f) => window.csChat.ws.onmessage(new MessageEvent('message', {data: JSON.stringify(f)}))", frame
            )
        bubble = page.locator("li[data-message-id='msg_t1']")
        await expect(bubble).to_have_attribute("data-state", "error", timeout=5_000)
        await expect(bubble).to_contain_text("您好")
        await expect(page.locator("li.error[data-code='timeout']")).to_contain_text("回复超时")
        await browser.close()


async def test_chat_page_types_streamed_text_out_and_shows_a_finished_reply_at_once(gateway: str) -> None:
    """A burst of streamed text is typed out over a few frames, not dropped in whole; `done` shows the final text
    at once."""
    text = "您好，您的订单已经发货，预计明天下午送达，请注意查收。😀" * 2
    final = text + "祝您生活愉快！"
    frame = {"type": "delta", "message": text, "delta": text, "session_id": "", "intent": "", "message_id": "msg_t2"}
    done = {**frame, "type": "done", "message": final, "delta": "祝您生活愉快！", "finish_reason": "stop"}
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = await browser.new_page()
        await page.goto(gateway + "/")
        await expect(page.locator("#status")).to_have_text("已连接", timeout=15_000)
        seen = await page.evaluate(
            """async (f) => {
                window.csChat.ws.onmessage(new MessageEvent("message", {data: JSON.stringify(f)}));
                const bubble = document.querySelector("li[data-message-id='msg_t2'] .bubble");
                const seen = [bubble.textContent];
                for (let i = 0; i < 60; i++) {
                    await new Promise((next) => requestAnimationFrame(next));
                    seen.push(bubble.textContent);
                }
                return seen;
            }""",
            frame,
        )
        assert seen[0] == "" and seen[-1] == text
        assert all(text.startswith(shown) for shown in seen)  # only ever a prefix, never a broken emoji
        assert len(set(seen)) >= 10  # typed out over many frames
        final_shown = await page.evaluate(
            """(f) => {
                window.csChat.ws.onmessage(new MessageEvent("message", {data: JSON.stringify(f)}));
                return document.querySelector("li[data-message-id='msg_t2'] .bubble").textContent;
            }""",
            done,
        )
        assert final_shown == final
        await browser.close()
