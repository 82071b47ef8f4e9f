// The chat box's front end (anywidget view of labkit.widgets.chat.ChatView).
//
// The browser owns the text box: Enter (or Send) takes the question, empties the box at once and sends
// the question to the kernel as a message with an id. Nothing the kernel does can overwrite what the
// learner types next (the old ipywidgets box was emptied by the kernel, and a question typed before
// that landed was lost). Questions typed while an answer streams wait in the box's queue, shown as
// "queued", and the kernel answers them in the order they were asked; a question leaves the queue when
// the kernel says it has started on it ({type: "started", id}).
const STYLE = `
.labkit-chatbox { font: 13px system-ui, sans-serif; max-width: 60rem; }
.labkit-chatbox .lc-history { height: 220px; overflow: auto; border: 1px solid #ccc; padding: 4px; }
.labkit-chatbox .lc-row { white-space: pre-wrap; margin: 2px 0; }
.labkit-chatbox .labkit-chat-error { color: #b00; }
.labkit-chatbox .labkit-chat-queued { color: #777; font-style: italic; }
.labkit-chatbox .lc-form { display: flex; gap: .4rem; margin-top: 4px; }
.labkit-chatbox .lc-input { flex: 1; padding: 3px 6px; font: inherit; }
.labkit-chatbox .lc-status { margin-top: 2px; color: #555; }
.labkit-chatbox .lc-status.error { color: #b00; }
.labkit-chatbox .lc-status.busy { font-style: italic; }`;

function render({ model, el }) {
  el.classList.add("labkit-chatbox");
  el.innerHTML = `<style>${STYLE}</style><b class="lc-title"></b>
    <div class="lc-history"></div>
    <form class="lc-form"><input class="lc-input" type="text" autocomplete="off">
      <button class="lc-send" type="submit">Send</button></form>
    <div class="lc-status"></div>`;
  const history = el.querySelector(".lc-history");
  const input = el.querySelector(".lc-input");
  const status = el.querySelector(".lc-status");
  el.querySelector(".lc-title").textContent = model.get("title");
  input.placeholder = model.get("placeholder");
  const queued = [];                  // [{id, text}] sent, not yet started by the kernel
  let nextId = 0;

  const row = (who, text) => {
    const div = document.createElement("div");
    div.className = `labkit-chat-${who} lc-row`;
    div.dataset.who = who;
    const name = document.createElement("b");
    name.textContent = `${who}:`;
    div.append(name, ` ${text}`);
    return div;
  };
  const showRows = () => {
    const follow = history.scrollTop + history.clientHeight >= history.scrollHeight - 8;
    history.replaceChildren(...model.get("rows").map(([who, text]) => row(who, text)),
                            ...queued.map((q) => row("queued", q.text)));
    if (follow) history.scrollTop = history.scrollHeight;   // follow the streaming text, unless scrolled up
  };
  const showStatus = () => {
    const kind = model.get("status_kind");
    status.className = `lc-status ${kind}`;
    const waiting = queued.length ? ` (${queued.length} queued)` : "";
    status.textContent = model.get("status") + waiting;
  };

  // JupyterLab's keyboard shortcuts (Enter, Shift+Enter, "a", "b"…) must not act on what is typed here
  el.dataset.lmSuppressShortcuts = "true";
  const ask = () => {
    const text = input.value.trim();
    input.value = "";
    if (!text) return;
    const id = `${Date.now().toString(36)}-${nextId++}`;
    queued.push({ id, text });
    model.send({ type: "ask", id, text });
    showRows();
    showStatus();
  };
  el.querySelector(".lc-form").addEventListener("submit", (event) => { event.preventDefault(); ask(); });
  input.addEventListener("keydown", (event) => {
    event.stopPropagation();                 // typing goes to the box, not to the notebook
    if (event.key === "Enter" && !event.isComposing) { event.preventDefault(); ask(); }
  });
  const onMessage = (msg) => {
    if (msg && msg.type === "started") {
      const i = queued.findIndex((q) => q.id === msg.id);
      if (i >= 0) queued.splice(i, 1);
      showRows();
      showStatus();
    }
  };
  model.on("change:rows", showRows);
  model.on("change:status", showStatus);
  model.on("change:status_kind", showStatus);
  model.on("msg:custom", onMessage);
  showRows();
  showStatus();
  return () => {
    model.off("change:rows", showRows);
    model.off("change:status", showStatus);
    model.off("change:status_kind", showStatus);
    model.off("msg:custom", onMessage);
  };
}

export default { render };
