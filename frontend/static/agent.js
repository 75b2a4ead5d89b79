// Agent console: sign in with the agent's own key (sent in the socket's first frame, kept in sessionStorage
// only), watch the queue, take sessions into tabs, reply, draft replies with the bot, insert FAQ answers,
// release or transfer. Plain JS, no build step. Frames are documented in frontend/README.md.
(() => {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const KEY_STORE = "cs.agent.key";
  const TITLE = "客服工作台";
  const INTENTS = {
    human_agent: "转人工", order_query: "订单查询", logistics: "物流", refund: "退款", after_sales: "售后",
    complaint: "投诉", invoice: "发票", account: "账户", product_consult: "商品咨询", greeting: "问候", other: "其他",
  };
  const CHANNELS = { websocket: "网页", rest: "API", wechat: "微信", wecom: "企业微信" };
  const state = {
    ws: null,
    signedIn: false,
    signInError: "",
    agent: "",
    agents: [],
    online: [],
    longWait: 120,
    offset: 0,            // server clock minus this clock, in seconds
    queue: [],
    seenQueue: null,      // session ids already announced (null until the first snapshot)
    tabs: new Map(),      // session_id -> {tab, panel, seen:Set, unread}
    active: null,
    retries: 0,
    audio: null,
    notices: [],          // what was announced: {kind, session_id}, for a person's ears and for tests
  };

  function setStatus(kind, text) {
    const el = $("status");
    el.dataset.state = kind;
    el.textContent = text;
  }

  // --- notices: title and one short sound per new queue entry / customer message ---
  function beep() {
    try {
      if (!state.audio) state.audio = new (window.AudioContext || window.webkitAudioContext)();
      const osc = state.audio.createOscillator();
      const gain = state.audio.createGain();
      osc.frequency.value = 880;
      gain.gain.value = 0.1;
      osc.connect(gain).connect(state.audio.destination);
      osc.start();
      osc.stop(state.audio.currentTime + 0.15);
    } catch (e) { /* no audio device: the title still says it */ }
  }

  function notify(kind, sessionId) {
    state.notices.push({ kind, session_id: sessionId });
    document.title = (kind === "queue" ? "【新排队】" : "【新消息】") + TITLE;
    beep();
  }

  function seen() { document.title = TITLE; }
  ["focus", "click", "keydown"].forEach((ev) => window.addEventListener(ev, seen));

  // --- sign-in ---
  function showSignIn(error) {
    $("console").hidden = true;
    $("sign-in").hidden = false;
    const el = $("sign-in-error");
    el.hidden = !error;
    el.textContent = error || "";
  }

  $("sign-in-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const key = $("credential").value.trim();
    if (!key) { showSignIn("请输入客服凭证。"); return; }
    sessionStorage.setItem(KEY_STORE, key);
    $("credential").value = "";
    beep();  // a user gesture unlocks audio for later notices
    connect();
  });

  $("sign-out").addEventListener("click", () => {
    sessionStorage.removeItem(KEY_STORE);
    state.signedIn = false;
    if (state.ws) { const ws = state.ws; state.ws = null; ws.close(); }
    closeAllTabs();
    showSignIn("");
  });

  function connect() {
    const key = sessionStorage.getItem(KEY_STORE);
    if (!key) { showSignIn(""); return; }
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(proto + "//" + location.host + "/ws/agent");
    state.ws = ws;
    ws.onopen = () => ws.send(JSON.stringify({ type: "auth", api_key: key }));
    ws.onmessage = (event) => onFrame(event);
    ws.onclose = () => {
      if (state.ws !== ws) return;
      if (!state.signedIn) {
        sessionStorage.removeItem(KEY_STORE);
        showSignIn(state.signInError || "凭证无效或连接失败，请重新登录。");
        state.signInError = "";
        return;
      }
      setStatus("closed", "连接已断开，正在重连…");
      closeAllTabs("连接断开，会话已退回队列。");
      state.signedIn = false;
      setTimeout(connect, Math.min(10000, 500 * 2 ** state.retries++));
    };
  }

  function send(payload) {
    if (state.ws && state.ws.readyState === WebSocket.OPEN) { state.ws.send(JSON.stringify(payload)); return true; }
    return false;
  }

  // --- frames from the server ---
  function onFrame(event) {
    let frame;
    try { frame = JSON.parse(event.data); } catch (e) { return; }
    const tab = frame.session_id ? state.tabs.get(frame.session_id) : null;
    switch (frame.type) {
      case "welcome":
        state.signedIn = true;
        state.retries = 0;
        state.agent = frame.agent;
        state.agents = frame.agents || [];
        state.longWait = frame.long_wait_seconds || state.longWait;
        $("agent-name").textContent = frame.agent;
        $("sign-in").hidden = true;
        $("console").hidden = false;
        setStatus("open", "已连接");
        break;
      case "queue":
        state.offset = frame.now - Date.now() / 1000;
        onQueue(frame.entries || []);
        break;
      case "agents":
        state.online = frame.online || [];
        $("online").textContent = state.online.join("、");
        state.tabs.forEach((t) => fillTransfer(t));
        break;
      case "assigned":
        openTab(frame);
        break;
      case "user":
        if (tab && addMessage(tab, "user", frame.message, frame.message_id)) {
          if (state.active !== frame.session_id) markUnread(tab);
          notify("message", frame.session_id);
        }
        break;
      case "agent":
        if (tab) addMessage(tab, "agent", frame.message, frame.message_id, "客服 " + (frame.agent || ""));
        break;
      case "done":
        if (tab && frame.message) addMessage(tab, "bot", frame.message, frame.message_id, "机器人");
        break;
      case "handoff":
        if (tab && frame.state === "assigned" && frame.message) addSystem(tab, frame.message);
        break;
      case "sent":
        if (tab) hint(tab, "已发送");
        break;
      case "released":
        closeTab(frame.session_id);
        break;
      case "transferred":
        closeTab(frame.session_id);
        break;
      case "suggestion":
      case "suggestion_done":
        if (tab && tab.suggestionId === "pending") tab.suggestionId = frame.suggestion_id;
        if (tab && tab.suggestionId === frame.suggestion_id) {
          tab.editor.value = frame.message;
          if (frame.type === "suggestion_done") {
            tab.editor.dataset.drafting = "false";
            tab.suggestionId = null;
            hint(tab, frame.message ? "建议已生成，可修改后发送" : "暂无建议");
          }
        }
        break;
      case "error":
        onError(frame, tab);
        break;
      default:
        break;
    }
  }

  function onError(frame, tab) {
    if (!state.signedIn) {
      state.signInError = frame.code === "unauthorized" ? "凭证无效，请重新登录。" : frame.message;
      showSignIn(state.signInError);
      return;
    }
    if (tab && frame.suggestion_id) {
      tab.editor.dataset.drafting = "false";
      tab.suggestionId = null;
    }
    if (tab) { hint(tab, frame.message); return; }
    setStatus("open", frame.message);
  }

  // --- the queue ---
  function onQueue(entries) {
    const announce = state.seenQueue !== null;
    if (state.seenQueue === null) state.seenQueue = new Set();
    for (const entry of entries) {
      if (!state.seenQueue.has(entry.session_id)) {
        state.seenQueue.add(entry.session_id);
        if (announce) notify("queue", entry.session_id);
      }
    }
    state.queue = entries;
    renderQueue();
  }

  function waited(entry) {
    return Math.max(0, Date.now() / 1000 + state.offset - entry.queued_at);
  }

  function clock(seconds) {
    const s = Math.floor(seconds);
    return Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0");
  }

  function renderQueue() {
    const list = $("queue");
    list.textContent = "";
    for (const entry of state.queue) {
      const li = document.createElement("li");
      li.dataset.sessionId = entry.session_id;
      const meta = document.createElement("div");
      meta.className = "meta";
      const wait = document.createElement("span");
      wait.className = "wait";
      const intent = document.createElement("span");
      intent.className = "intent";
      intent.textContent = INTENTS[entry.intent] || entry.intent;
      const channel = document.createElement("span");
      channel.className = "channel";
      channel.textContent = CHANNELS[entry.channel] || entry.channel;
      meta.append(wait, intent, channel);
      const first = document.createElement("div");
      first.className = "first";
      first.textContent = entry.first_message || "（无消息）";
      first.title = entry.first_message || "";
      const take = document.createElement("button");
      take.type = "button";
      take.className = "take";
      take.textContent = "接待";
      take.addEventListener("click", () => send({ type: "take", session_id: entry.session_id }));
      li.append(meta, first, take);
      list.appendChild(li);
    }
    $("queue-count").textContent = String(state.queue.length);
    $("queue-empty").hidden = state.queue.length > 0;
    tickQueue();
  }

  function tickQueue() {
    for (const li of $("queue").children) {
      const entry = state.queue.find((q) => q.session_id === li.dataset.sessionId);
      if (!entry) continue;
      const seconds = waited(entry);
      li.querySelector(".wait").textContent = "等待 " + clock(seconds);
      li.classList.toggle("long-wait", seconds >= state.longWait);
    }
  }
  setInterval(tickQueue, 1000);

  // --- sessions in tabs ---
  function openTab(frame) {
    let t = state.tabs.get(frame.session_id);
    if (!t) {
      const panel = $("panel-template").content.firstElementChild.cloneNode(true);
      panel.dataset.sessionId = frame.session_id;
      const tab = document.createElement("button");
      tab.type = "button";
      tab.setAttribute("role", "tab");
      tab.dataset.sessionId = frame.session_id;
      const label = document.createElement("span");
      label.textContent = "客户 " + frame.session_id.slice(0, 6);
      const unread = document.createElement("span");
      unread.className = "unread";
      unread.hidden = true;
      tab.append(label, unread);
      tab.addEventListener("click", () => activate(frame.session_id));
      t = {
        sessionId: frame.session_id, tab, panel, unreadEl: unread, unread: 0, seen: new Set(),
        messages: panel.querySelector(".messages"), editor: panel.querySelector(".editor"), suggestionId: null,
      };
      panel.querySelector(".who").textContent = "会话 " + frame.session_id.slice(0, 8);
      panel.querySelector(".channel").textContent = CHANNELS[frame.channel] || frame.channel || "";
      wirePanel(t);
      state.tabs.set(frame.session_id, t);
      $("tabs").appendChild(tab);
      $("panels").appendChild(panel);
      fillTransfer(t);
    }
    if (frame.from) addSystem(t, "由客服 " + frame.from + " 转接");
    for (const turn of frame.history || []) {
      const kind = turn.role === "user" ? "user" : turn.source === "agent" ? "agent" : "bot";
      const label = kind === "agent" ? "客服" : kind === "bot" ? "机器人" : "";
      addMessage(t, kind, turn.content, turn.message_id, label);
    }
    activate(frame.session_id);
  }

  function wirePanel(t) {
    const panel = t.panel;
    panel.querySelector(".composer").addEventListener("submit", (e) => {
      e.preventDefault();
      const text = t.editor.value.trim();
      if (!text) return;
      if (send({ type: "reply", session_id: t.sessionId, message: text })) {
        t.editor.value = "";
        t.editor.dataset.drafting = "false";
      } else {
        hint(t, "未连接，消息未发送");
      }
    });
    t.editor.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        panel.querySelector(".composer").requestSubmit();
      }
    });
    panel.querySelector(".suggest").addEventListener("click", () => {
      t.suggestionId = "pending";
      t.editor.dataset.drafting = "true";
      hint(t, "正在生成建议回复…");
      send({ type: "suggest", session_id: t.sessionId });
    });
    panel.querySelector(".release").addEventListener("click", () => send({ type: "release", session_id: t.sessionId }));
    panel.querySelector(".transfer").addEventListener("click", () => {
      const to = panel.querySelector(".transfer-to").value;
      if (!to) { hint(t, "没有其他在线客服"); return; }
      send({ type: "transfer", session_id: t.sessionId, to });
    });
    let timer = null;
    panel.querySelector(".faq-query").addEventListener("input", (e) => {
      clearTimeout(timer);
      timer = setTimeout(() => searchFaq(t, e.target.value.trim()), 250);  // debounce typing
    });
  }

  async function searchFaq(t, query) {
    const list = t.panel.querySelector(".faq-results");
    list.textContent = "";
    if (!query) return;
    const res = await fetch("/agent/faq?q=" + encodeURIComponent(query), {
      headers: { "X-API-Key": sessionStorage.getItem(KEY_STORE) || "" },
    });
    if (!res.ok) { hint(t, "FAQ 搜索失败"); return; }
    const body = await res.json();
    if (!body.entries.length) {
      const li = document.createElement("li");
      li.className = "muted";
      li.textContent = "没有匹配的 FAQ";
      list.appendChild(li);
    }
    for (const entry of body.entries) {
      const li = document.createElement("li");
      const text = document.createElement("span");
      text.textContent = entry.question + " — " + entry.answer;
      text.title = entry.answer;
      const insert = document.createElement("button");
      insert.type = "button";
      insert.className = "insert";
      insert.textContent = "插入";
      insert.addEventListener("click", () => insertAtCaret(t.editor, entry.answer));
      li.append(text, insert);
      list.appendChild(li);
    }
  }

  function insertAtCaret(editor, text) {
    const start = editor.selectionStart ?? editor.value.length;
    const end = editor.selectionEnd ?? editor.value.length;
    editor.value = editor.value.slice(0, start) + text + editor.value.slice(end);
    editor.focus();
    editor.selectionStart = editor.selectionEnd = start + text.length;
  }

  function fillTransfer(t) {
    const select = t.panel.querySelector(".transfer-to");
    const others = state.online.filter((name) => name !== state.agent);
    select.textContent = "";
    for (const name of others) {
      const option = document.createElement("option");
      option.value = name;
      option.textContent = name;
      select.appendChild(option);
    }
    t.panel.querySelector(".transfer").disabled = others.length === 0;
  }

  function activate(sessionId) {
    state.active = sessionId;
    state.tabs.forEach((t, id) => {
      const on = id === sessionId;
      t.tab.setAttribute("aria-selected", String(on));
      t.panel.hidden = !on;
      if (on) { t.unread = 0; t.unreadEl.hidden = true; }
    });
    $("no-session").hidden = state.tabs.size > 0;
  }

  function markUnread(t) {
    t.unread += 1;
    t.unreadEl.textContent = String(t.unread);
    t.unreadEl.hidden = false;
  }

  function addMessage(t, kind, text, messageId, label) {
    if (messageId && t.seen.has(messageId)) return false;
    if (messageId) t.seen.add(messageId);
    const li = document.createElement("li");
    li.className = kind;
    if (messageId) li.dataset.messageId = messageId;
    if (label) {
      const small = document.createElement("span");
      small.className = "label";
      small.textContent = label;
      li.appendChild(small);
    }
    const bubble = document.createElement("div");
    bubble.className = "bubble";
    bubble.textContent = text;
    li.appendChild(bubble);
    t.messages.appendChild(li);
    t.messages.scrollTop = t.messages.scrollHeight;
    return true;
  }

  function addSystem(t, text) {
    const li = document.createElement("li");
    li.className = "system";
    li.textContent = text;
    t.messages.appendChild(li);
  }

  function hint(t, text) { t.panel.querySelector(".hint").textContent = text; }

  function closeTab(sessionId) {
    const t = state.tabs.get(sessionId);
    if (!t) return;
    t.tab.remove();
    t.panel.remove();
    state.tabs.delete(sessionId);
    if (state.active === sessionId) {
      const next = state.tabs.keys().next();
      state.active = null;
      if (!next.done) activate(next.value);
    }
    $("no-session").hidden = state.tabs.size > 0;
  }

  function closeAllTabs(reason) {
    for (const id of [...state.tabs.keys()]) closeTab(id);
    if (reason) setStatus("closed", reason);
  }

  window.csAgent = state;
  if (sessionStorage.getItem(KEY_STORE)) connect(); else showSignIn("");
})();
