// The lab's browser client: plain JavaScript, no build step.
//
// Chat over SSE uses a *stream resource*: POST /api/chat/streams creates the reply, then the
// browser's own EventSource reads GET /api/chat/stream/{id}. EventSource can only GET (passing it
// a POST body, as the source tutorial does, is silently ignored), and it reconnects by itself,
// sending Last-Event-ID, so a dropped connection resumes without losing or repeating a token.
// Chat over WebSocket reconnects by hand (with backoff) and sends {"type": "resume"}.
// Rooms reconnect with ?after=<last event id>.
//
// Everything the page knows is in window.lab, so tests (and curious learners) can inspect it.
"use strict";

const params = new URLSearchParams(location.search);
const lab = window.lab = { token: params.get("token"), user: null, replies: [], room: null };
const $ = (id) => document.getElementById(id);

function authHeaders() { return lab.token ? { Authorization: `Bearer ${lab.token}` } : {}; }
function tokenQuery() { return lab.token ? `token=${encodeURIComponent(lab.token)}` : ""; }
function wsUrl(path) { return `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}${path}`; }
function backoff(attempt) { const cap = Math.min(2000, 100 * 2 ** attempt); return cap / 2 + Math.random() * cap / 2; }

// Keep a log scrolled to its end while text streams in, unless the reader has scrolled up to read.
function atEnd(log) { return log.scrollHeight - log.scrollTop - log.clientHeight < 24; }
function follow(logId, update) {
  const log = $(logId), wasAtEnd = atEnd(log);
  update();
  if (wasAtEnd) log.scrollTop = log.scrollHeight;
}

function addLine(logId, who, text, cls = "") {
  const div = document.createElement("div");
  div.className = `msg ${cls}`;
  if (who) { const w = document.createElement("span"); w.className = "who"; w.textContent = who; div.append(w); }
  const body = document.createElement("span"); body.className = "text"; body.textContent = text; div.append(body);
  follow(logId, () => $(logId).append(div));
  return div;
}

// ---- who am I ----------------------------------------------------------------------------
// A reload keeps this tab's own token: each name is handed out once, so logging in again would be refused.
const keptKey = `lab-token:${params.get("token") || ""}`;

async function start() {
  const kept = sessionStorage.getItem(keptKey);
  if (kept) {
    const again = await fetch("/api/me", { headers: { Authorization: `Bearer ${kept}` } });
    if (again.ok) { lab.token = kept; return ready((await again.json()).user); }
    sessionStorage.removeItem(keptKey);
  }
  const me = await fetch("/api/me", { headers: authHeaders() });
  if (me.status === 401) { $("login").hidden = false; $("login-error").textContent = (await me.json()).error.message; return; }
  const info = await me.json();
  if (params.get("name") && (info.user === "shared" || info.user === "local")) return login(params.get("name"));
  if (info.user === "shared" || info.user === "local") { $("login").hidden = false; return; }
  ready(info.user);
}

async function login(name) {
  const r = await fetch("/api/login", { method: "POST", headers: { ...authHeaders(), "Content-Type": "application/json" },
                                        body: JSON.stringify({ name }) });
  const body = await r.json();
  if (!r.ok) { $("login").hidden = false; $("login-error").textContent = body.error.message; return; }
  lab.token = body.token;
  sessionStorage.setItem(keptKey, body.token);
  ready(body.user);
}

function ready(user) {
  lab.user = user;
  $("who").textContent = `signed in as ${user}`;
  $("login").hidden = true;
  $("app").hidden = false;
  lab.ready = true;
}

$("login-form").addEventListener("submit", (e) => { e.preventDefault(); login($("login-name").value); });

// ---- chat --------------------------------------------------------------------------------
function newReply(transport, prompt) {
  addLine("chat-log", "you", prompt);
  const line = addLine("chat-log", "AI", "", "ai");
  const meta = document.createElement("span"); meta.className = "meta"; line.append(meta);
  const reply = { transport, prompt, streamId: null, text: "", lastSeq: -1, done: false, error: null,
                  ttftMs: null, reconnects: 0, sentAt: performance.now(), line, meta };
  lab.replies.push(reply);
  $("chat-send").disabled = true; $("chat-stop").disabled = false;
  setStage("queued", 0); setTyping(true);
  return reply;
}

function onToken(reply, seq, content) {
  if (seq !== reply.lastSeq + 1) { reply.error = `token ${seq} after ${reply.lastSeq}`; return; }
  reply.lastSeq = seq;
  if (reply.ttftMs === null) {
    reply.ttftMs = performance.now() - reply.sentAt;
    setTyping(false); setStage("streaming", 0.2);
    $("chat-ttft").textContent = `TTFT ${Math.round(reply.ttftMs)} ms`;
  }
  reply.text += content;
  follow("chat-log", () => { reply.line.querySelector(".text").textContent = reply.text; });
}

// outcome: "complete", "error" (then `error` says what), or "stopped" (the user pressed Stop)
function finish(reply, error, outcome = error ? "error" : "complete") {
  reply.done = outcome === "complete"; reply.error = error || reply.error; reply.outcome = outcome;
  setTyping(false); setStage(outcome, outcome === "complete" ? 1 : $("chat-progress").value);
  follow("chat-log", () => {
    reply.meta.textContent = outcome === "complete" ? ` ${reply.lastSeq + 1} tokens · TTFT ${Math.round(reply.ttftMs)} ms`
                           : outcome === "stopped" ? ` stopped after ${reply.lastSeq + 1} tokens` : ` ${error}`;
  });
  $("chat-send").disabled = false; $("chat-stop").disabled = true;
  lab.current = null;
}

function setTyping(on) { $("chat-typing").hidden = !on; }
function setStage(stage, fraction) { $("chat-stage").textContent = stage; $("chat-progress").value = fraction; }
function showReconnects(reply) { $("chat-reconnects").textContent = reply.reconnects ? `reconnected ${reply.reconnects}×` : ""; }

async function askSSE(prompt) {
  const reply = lab.current = newReply("sse", prompt);
  const created = await fetch("/api/chat/streams", { method: "POST", body: JSON.stringify({ message: prompt }),
                                                     headers: { ...authHeaders(), "Content-Type": "application/json" } });
  const body = await created.json();
  if (!created.ok) return finish(reply, body.error.message);
  reply.streamId = body.id;
  setStage("waiting_for_first_token", 0.1);
  const es = reply.source = new EventSource(`/api/chat/stream/${body.id}?${tokenQuery()}`);
  let opens = 0;
  es.onopen = () => { opens += 1; reply.reconnects = opens - 1; showReconnects(reply); };
  es.addEventListener("token", (e) => { const d = JSON.parse(e.data); onToken(reply, d.seq, d.content); });
  es.addEventListener("done", () => { es.close(); finish(reply); });
  es.addEventListener("error", (e) => {
    if (e.data) { es.close(); finish(reply, JSON.parse(e.data).message); }   // the server's own "error" event
    // else: the connection dropped; EventSource reconnects with Last-Event-ID by itself
  });
}

let chatSocket = null;
function openChatSocket() {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(wsUrl(`/ws/chat/progressive?${tokenQuery()}`));
    ws.onopen = () => { chatSocket = ws; resolve(ws); };
    ws.onerror = () => reject(new Error("WebSocket failed"));
    ws.onmessage = (e) => onChatMessage(JSON.parse(e.data));
    ws.onclose = (e) => { if (chatSocket === ws) chatSocket = null; if (lab.current && lab.current.transport === "ws" && e.code !== 1000) resumeWS(lab.current, 0); };
  });
}

async function resumeWS(reply, attempt) {
  await new Promise((r) => setTimeout(r, backoff(attempt)));
  try {
    const ws = await openChatSocket();
    reply.reconnects += 1; showReconnects(reply);
    ws.send(JSON.stringify(reply.streamId ? { type: "resume", stream_id: reply.streamId, last_seq: reply.lastSeq }
                                          : { type: "message", content: reply.prompt }));
  } catch { if (attempt < 10) resumeWS(reply, attempt + 1); else finish(reply, "could not reconnect"); }
}

function onChatMessage(m) {
  const reply = lab.current;
  if (!reply) return;
  if (m.type === "ack") reply.streamId = m.stream_id;
  else if (m.type === "typing") setTyping(m.active);
  else if (m.type === "progress") setStage(m.stage, m.fraction);
  else if (m.type === "token" && m.stream_id === reply.streamId) onToken(reply, m.seq, m.content);
  else if (m.type === "complete" && m.stream_id === reply.streamId) finish(reply);
  else if (m.type === "error" && m.code === "cancelled") finish(reply, null, "stopped");   // our own Stop
  else if (m.type === "error") finish(reply, m.message);
}

async function askWS(prompt) {
  const reply = lab.current = newReply("ws", prompt);
  try { if (!chatSocket) await openChatSocket(); } catch { return resumeWS(reply, 0); }
  chatSocket.send(JSON.stringify({ type: "message", content: prompt }));
}

$("chat-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const prompt = $("chat-input").value.trim();
  if (!prompt || lab.current || !lab.ready) return;           // nothing is sent before signing in
  $("chat-input").value = "";
  const transport = document.querySelector("input[name=transport]:checked").value;
  (transport === "sse" ? askSSE : askWS)(prompt);
});

$("chat-stop").addEventListener("click", async () => {
  const reply = lab.current;
  if (!reply) return;
  if (reply.transport === "ws" && chatSocket) chatSocket.send(JSON.stringify({ type: "cancel" }));
  else if (reply.streamId) {
    if (reply.source) reply.source.close();
    await fetch(`/api/chat/streams/${reply.streamId}`, { method: "DELETE", headers: authHeaders() });
    finish(reply, null, "stopped");
  }
});

// ---- rooms -------------------------------------------------------------------------------
function joinRoom(roomId, after = null, attempt = 0) {
  const room = lab.room = lab.room && lab.room.id === roomId ? lab.room : { id: roomId, events: [], lastId: null, members: 0 };
  const query = new URLSearchParams({ name: lab.user });
  if (lab.token) query.set("token", lab.token);
  if (after) query.set("after", after);
  const ws = room.socket = new WebSocket(wsUrl(`/ws/room/${roomId}?${query}`));
  ws.onopen = () => { $("room-input").disabled = false; $("room-send").disabled = false; attempt = 0; };
  ws.onmessage = (e) => onRoomEvent(room, JSON.parse(e.data));
  ws.onclose = (e) => {
    $("room-input").disabled = true; $("room-send").disabled = true;
    if (room.socket === ws && e.code !== 1000 && e.code !== 1008 && attempt < 10)
      setTimeout(() => joinRoom(roomId, room.lastId, attempt + 1), backoff(attempt));
    else if (e.code >= 4000) addLine("room-log", "", `disconnected: ${e.reason}`, "note");
  };
}

function onRoomEvent(room, ev) {
  room.events.push(ev);
  if (ev.id) room.lastId = ev.id;
  if (ev.type === "room_state") {
    room.lastId = ev.last_id; room.members = ev.members;
    for (const h of ev.history) h.type === "user_message" ? addLine("room-log", h.user, h.content) : addLine("room-log", "AI", h.content, "ai");
  } else if (ev.type === "joined" || ev.type === "left") {
    room.members = ev.members;
    addLine("room-log", "", `${ev.user} ${ev.type} (${ev.members} here)`, "note");
  } else if (ev.type === "user_message") addLine("room-log", ev.user, ev.content);
  else if (ev.type === "ai_typing") $("room-typing").hidden = !ev.active;
  else if (ev.type === "ai_token") {
    if (!room.aiLine || room.aiLine.dataset.replyTo !== ev.reply_to) {
      room.aiLine = addLine("room-log", "AI", "", "ai"); room.aiLine.dataset.replyTo = ev.reply_to;
    }
    follow("room-log", () => { room.aiLine.querySelector(".text").textContent += ev.content; });
  } else if (ev.type === "ai_complete") {
    if (room.aiLine && room.aiLine.dataset.replyTo === ev.reply_to) room.aiLine.querySelector(".text").textContent = ev.content;
    else addLine("room-log", "AI", ev.content, "ai");
    room.aiLine = null;
  } else if (ev.type === "error") addLine("room-log", "", ev.message, "note error");
  $("room-members").textContent = `${room.members} in the room`;
}

$("room-join").addEventListener("submit", (e) => {
  e.preventDefault();
  if (!lab.ready) return;
  if (lab.room && lab.room.socket) { lab.room.socket.onclose = null; lab.room.socket.close(1000); }
  lab.room = null; $("room-log").textContent = "";
  joinRoom($("room-id").value);
});
$("room-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = $("room-input").value.trim();
  if (!text || !lab.room) return;
  $("room-input").value = "";
  lab.room.socket.send(JSON.stringify({ type: "message", content: text }));
});

start();
