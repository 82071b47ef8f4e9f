// The browser's microphone for a notebook kernel (anywidget front end of labkit.widgets.BrowserMicrophone).
//
// The kernel may run on a machine with no sound card (JupyterHub, Binder, Colab, CI): the microphone
// is the one of the browser JupyterLab runs in. getUserMedia (echo cancellation, noise suppression)
// -> the lab's capture AudioWorklet (the same file as the web page's voice mode, sent by the kernel
// as the `_worklet` trait) resampling to `sample_rate` -> PCM16 chunks of `send_ms`, each sent to the
// kernel as a binary buffer of a custom comm message: no base64, no JSON arrays.
const captures = new WeakMap();          // one capture per widget model, however many views show it

function capture(model) {
  if (!captures.has(model)) captures.set(model, { ctx: null, stream: null, node: null, seq: 0, views: new Set() });
  return captures.get(model);
}

function setStatus(model, text) { model.set("status", text); model.save_changes(); }

async function start(model) {
  const c = capture(model);
  if (c.node) return;
  if (!window.isSecureContext || !navigator.mediaDevices) {
    return setStatus(model, "error: the microphone needs JupyterLab on https:// or localhost");
  }
  try {
    setStatus(model, "asking for the microphone…");
    c.stream = await navigator.mediaDevices.getUserMedia({ audio: {
      echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1 } });
    c.ctx = new AudioContext();
    const url = URL.createObjectURL(new Blob([model.get("_worklet")], { type: "application/javascript" }));
    await c.ctx.audioWorklet.addModule(url);
    URL.revokeObjectURL(url);
    const source = c.ctx.createMediaStreamSource(c.stream);
    c.node = new AudioWorkletNode(c.ctx, "lab-capture", { numberOfOutputs: 0, processorOptions: {
      targetRate: model.get("sample_rate"), chunkMs: model.get("send_ms") } });
    c.node.port.onmessage = (e) => {
      const m = e.data;
      model.send({ type: "pcm", seq: c.seq++, rms: m.rms, end: m.end }, undefined, [m.pcm.buffer]);
      const db = 20 * Math.log10(Math.max(m.rms, 1e-5));
      for (const v of c.views) v.meter.style.width = `${Math.max(0, Math.min(100, (db + 80) / 80 * 100))}%`;
    };
    source.connect(c.node);
    await c.ctx.resume();
    setStatus(model, `listening (${c.ctx.sampleRate} Hz -> ${model.get("sample_rate")} Hz)`);
  } catch (e) {
    stop(model);
    setStatus(model, `error: ${e.name}: ${e.message}`);
  }
}

function stop(model) {
  const c = capture(model);
  if (c.node) { c.node.port.postMessage({ type: "stop" }); c.node.disconnect(); c.node = null; }
  if (c.stream) { c.stream.getTracks().forEach((t) => t.stop()); c.stream = null; }
  if (c.ctx) { c.ctx.close(); c.ctx = null; }
  model.send({ type: "end" });
  if (!model.get("status").startsWith("error")) setStatus(model, "stopped");
}

function render({ model, el }) {
  const c = capture(model);
  el.classList.add("labkit-browsermic");
  el.innerHTML = `<div style="display:flex;gap:.5rem;align-items:center;font:13px system-ui,sans-serif">
      <button class="lm-start">🎙 Start microphone</button><button class="lm-stop">Stop</button>
      <div style="width:10rem;height:.7rem;background:#e8eaf0;border-radius:4px;overflow:hidden">
        <div class="lm-meter" style="height:100%;width:0;background:#4caf50"></div></div>
      <span class="lm-status"></span></div>`;
  const view = { meter: el.querySelector(".lm-meter") };
  c.views.add(view);
  const status = el.querySelector(".lm-status");
  const show = () => { status.textContent = model.get("status"); };
  show();
  model.on("change:status", show);
  el.querySelector(".lm-start").addEventListener("click", () => start(model));
  el.querySelector(".lm-stop").addEventListener("click", () => stop(model));
  model.on("msg:custom", (m) => { if (m && m.type === "start") start(model); else if (m && m.type === "stop") stop(model); });
  return () => { c.views.delete(view); model.off("change:status", show); };
}

export default { render };
