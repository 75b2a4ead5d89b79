// Web chat page: streams replies over /ws/chat, resumes the session after a reconnect, shows the handoff
// notice and sends ratings. Plain JS, no build step. Every server frame is JSON with `message` (whole text).
(() => {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const store = window.localStorage;
  const state = {
    ws: null,
    siteKey: null,
    maxChars: 4000,
    sessionId: store.getItem("cs.session_id"),
    lastEventId: store.getItem("cs.last_event_id"),
    retries: 0,
    bubbles: new Map(),
    pending: [],
    lastMessage: null,  // the customer's last message, sent once more after a `busy` answer
    busyRetried: false,
  };

  function setStatus(kind, text) {
    const el = $("status");
    el.dataset.state = kind;
    el.textContent = text;
  }

  function setNotice(text) {
    const el = $("notice");
    el.hidden = !text;
    el.textContent = text || "";
  }

  function remember(frame) {
    if (frame.session_id && frame.session_id !== state.sessionId) {
      state.sessionId = frame.session_id;
      store.setItem("cs.session_id", frame.session_id);
    }
    if (frame.event_id) {
      state.lastEventId = frame.event_id;
      store.setItem("cs.last_event_id", frame.event_id);
    }
  }

  function addLine(kind, text, id) {
    const li = document.createElement("li");
    li.className = kind;
    if (id) li.dataset.messageId = id;
    const bubble = document.createElement("div");
    bubble.className = "bubble";
    bubble.textContent = text;
    li.appendChild(bubble);
    $("messages").appendChild(li);
    $("messages").scrollTop = $("messages").scrollHeight;
    return li;
  }

  function botBubble(id, kind) {
    let li = state.bubbles.get(id);
    if (!li) {
      li = addLine(kind || "bot", "", id);
      li.dataset.state = "streaming";
      state.bubbles.set(id, li);
    }
    return li;
  }

  // Streamed text arrives in bursts (the CPU engine sends a delta every 40-200 ms): a streaming bubble types it
  // out instead, fast enough to catch up within about CATCH_UP_FRAMES frames (~0.2 s), so the reply reads as it
  // is written rather than jumping. `done`, `error` and `agent` frames show their text at once.
  const CATCH_UP_FRAMES = 12;
  const typing = new Map();  // bubble element -> { target: code points, shown: how many are on screen }
  const instant = window.matchMedia && window.matchMedia("(prefers-reduced-motion: reduce)").matches;

  function typeInto(bubble, text) {
    if (instant) {
      bubble.textContent = text;
      return;
    }
    const target = Array.from(text);  // code points: an emoji is never cut in half
    let t = typing.get(bubble);
    if (!t) {
      const onScreen = Array.from(bubble.textContent);
      t = { target: onScreen, shown: onScreen.length };
      typing.set(bubble, t);
      requestAnimationFrame(() => typeStep(bubble));
    }
    let same = 0;  // a text that does not extend what is shown types on from where the two agree
    while (same < t.shown && same < target.length && target[same] === t.target[same]) same++;
    t.target = target;
    t.shown = same;
  }

  function typeStep(bubble) {
    const t = typing.get(bubble);
    if (!t) return;
    const left = t.target.length - t.shown;
    if (left > 0) {
      t.shown += Math.max(1, Math.ceil(left / CATCH_UP_FRAMES));
      bubble.textContent = t.target.slice(0, t.shown).join("");
    }
    if (t.shown < t.target.length) {
      requestAnimationFrame(() => typeStep(bubble));
    } else {
      typing.delete(bubble);
    }
  }

  function showNow(bubble, text) {
    typing.delete(bubble);
    bubble.textContent = text;
  }

  function addRating(li, messageId) {
    if (li.querySelector(".rating")) return;
    const bar = document.createElement("div");
    bar.className = "rating";
    bar.appendChild(document.createTextNode("这个回答有帮助吗？"));
    const buttons = [];
    const add = (label, title, payload) => {
      const b = document.createElement("button");
      b.type = "button";
      b.textContent = label;
      b.title = title;
      b.dataset.rating = payload.thumbs || String(payload.rating);
      b.setAttribute("aria-pressed", "false");
      b.addEventListener("click", () => sendFeedback(messageId, payload, b, buttons));
      buttons.push(b);
      bar.appendChild(b);
    };
    add("👍", "有帮助", { thumbs: "up" });
    add("👎", "没帮助", { thumbs: "down" });
    for (let n = 1; n <= 5; n++) add(n + "★", n + " 星", { rating: n });
    li.appendChild(bar);
  }

  async function sendFeedback(messageId, payload, button, buttons) {
    const headers = { "Content-Type": "application/json" };
    if (state.siteKey) headers["X-Site-Key"] = state.siteKey;
    const body = Object.assign({ session_id: state.sessionId, message_id: messageId }, payload);
    const res = await fetch("/feedback", { method: "POST", headers, body: JSON.stringify(body) });
    if (res.ok) {
      buttons.forEach((b) => b.setAttribute("aria-pressed", String(b === button)));
      button.closest("li").dataset.rated = button.dataset.rating;
    } else {
      addLine("system error", "评价提交失败，请稍后再试。");
    }
  }

  function onFrame(event) {
    let frame;
    try { frame = JSON.parse(event.data); } catch (e) { return; }
    remember(frame);
    switch (frame.type) {
      case "delta": {
        const li = botBubble(frame.message_id);
        typeInto(li.querySelector(".bubble"), frame.message);
        break;
      }
      case "done": {
        const li = botBubble(frame.message_id);
        showNow(li.querySelector(".bubble"), frame.message || (frame.finish_reason === "cancelled" ? "（回复已中断）" : ""));
        li.dataset.state = "done";
        li.dataset.finishReason = frame.finish_reason;
        addRating(li, frame.message_id);
        break;
      }
      case "agent": {
        const li = botBubble(frame.message_id, "agent");
        showNow(li.querySelector(".bubble"), frame.message);
        if (frame.agent && !li.querySelector(".name")) {  // the customer sees who answers
          const name = document.createElement("span");
          name.className = "name";
          name.textContent = "客服 " + frame.agent;
          li.insertBefore(name, li.firstChild);
        }
        li.dataset.state = "done";
        break;
      }
      case "user":
        addLine("user", frame.message, frame.message_id);
        break;
      case "handoff":
        setNotice(frame.state === "released" ? "" : frame.message);
        addLine("system handoff", frame.message).dataset.state = frame.state;
        break;
      case "resumed":
        setNotice(frame.state === "bot" ? "" : "人工客服服务中");
        break;
      case "error": {
        const failed = frame.message_id && state.bubbles.get(frame.message_id);
        if (failed) {  // the reply this error ended: stop showing it as streaming
          failed.dataset.state = "error";
          failed.dataset.code = frame.code;
          const bubble = failed.querySelector(".bubble");
          const shown = typing.get(bubble);
          showNow(bubble, shown ? shown.target.join("") : bubble.textContent);  // all the text it had, at once
          if (!bubble.textContent) bubble.textContent = "（回复失败）";
        }
        if (frame.code === "busy" && state.lastMessage && !state.busyRetried) {
          retryWhenFree(frame);
        } else if (frame.code === "unknown_session") {
          forgetSession();
          addLine("system", "会话已过期，已为您开始新的会话。");
        } else {
          addLine("system error", frame.message).dataset.code = frame.code;
        }
        break;
      }
      default:
        break;
    }
  }

  // The gateway is at its generation bound: say so, and send the same message once more after `retry_after`.
  function retryWhenFree(frame) {
    state.busyRetried = true;
    const wait = Math.max(1, Number(frame.retry_after) || 3);
    const payload = state.lastMessage;
    setNotice(frame.message + "（" + wait + " 秒后自动重试）");
    setTimeout(() => {
      setNotice("");
      if (state.sessionId) payload.session_id = state.sessionId;
      send(payload);
    }, wait * 1000);
  }

  function forgetSession() {
    state.sessionId = null;
    state.lastEventId = null;
    store.removeItem("cs.session_id");
    store.removeItem("cs.last_event_id");
  }

  function connect() {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const query = state.siteKey ? "?site_key=" + encodeURIComponent(state.siteKey) : "";
    const ws = new WebSocket(proto + "//" + location.host + "/ws/chat" + query);
    state.ws = ws;
    setStatus("connecting", state.retries ? "正在重新连接…" : "连接中…");
    ws.onopen = () => {
      state.retries = 0;
      setStatus("open", "已连接");
      if (state.sessionId) {
        ws.send(JSON.stringify({ type: "resume", session_id: state.sessionId, last_event_id: state.lastEventId }));
      }
      while (state.pending.length) ws.send(state.pending.shift());
    };
    ws.onmessage = onFrame;
    ws.onclose = () => {
      if (state.ws !== ws) return;
      setStatus("closed", "连接已断开，正在重连…");
      const delay = Math.min(10000, 500 * 2 ** state.retries++);
      setTimeout(connect, delay);
    };
  }

  function send(payload) {
    const text = JSON.stringify(payload);
    if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(text);
    else state.pending.push(text);
  }

  $("composer").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = $("input").value.trim();
    if (!text) return;
    if (text.length > state.maxChars) {
      addLine("system error", "消息过长：最多 " + state.maxChars + " 个字符。");
      return;
    }
    addLine("user", text);
    $("input").value = "";
    const payload = { message: text };
    if (state.sessionId) payload.session_id = state.sessionId;
    state.lastMessage = payload;
    state.busyRetried = false;
    send(payload);
  });
  $("input").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      $("composer").requestSubmit();
    }
  });
  $("handoff").addEventListener("click", () => {
    if (!state.sessionId) { addLine("system", "请先发送一条消息，再转接人工客服。"); return; }
    send({ type: "handoff", session_id: state.sessionId });
  });
  $("new-session").addEventListener("click", () => {
    forgetSession();
    $("messages").innerHTML = "";
    state.bubbles.clear();
    setNotice("");
    if (state.ws) state.ws.close();
  });

  async function restoreHistory() {
    if (!state.sessionId) return;
    const headers = state.siteKey ? { "X-Site-Key": state.siteKey } : {};
    const res = await fetch("/sessions/" + state.sessionId, { headers });
    if (!res.ok) { forgetSession(); return; }
    const session = await res.json();
    for (const turn of session.turns) {
      const kind = turn.role === "user" ? "user" : turn.source === "agent" ? "agent" : "bot";
      const li = addLine(kind, turn.content, turn.message_id);
      if (kind !== "user") { li.dataset.state = "done"; state.bubbles.set(turn.message_id, li); }
    }
    if (session.state !== "bot") setNotice("人工客服服务中");
  }

  async function start() {
    try {
      const config = await (await fetch("/page-config")).json();
      state.siteKey = config.site_key;
      state.maxChars = config.max_message_chars || state.maxChars;
    } catch (e) { /* defaults */ }
    try { await restoreHistory(); } catch (e) { /* offline: the socket will report */ }
    connect();
  }

  window.csChat = state;
  start();
})();
