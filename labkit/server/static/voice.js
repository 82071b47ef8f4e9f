// Voice mode: talk to the assistant from this page over the Realtime API (plain JavaScript, no build).
//
// 1. The page asks its own server for a short-lived key (POST /lab/voice/session). It never sees a
//    long-lived secret: with OPENAI_API_KEY set on the server, that key comes from OpenAI.
// 2. It opens /v1/realtime the way a browser must (a browser cannot set Authorization): with the
//    WebSocket subprotocols "realtime" and "openai-insecure-api-key.<ephemeral key>".
// 3. The microphone (getUserMedia, echo cancellation and noise suppression on) goes through an
//    AudioWorklet that resamples to 24 kHz PCM16; 40 ms chunks go out as input_audio_buffer.append.
// 4. The answer's audio deltas play through a second AudioWorklet that counts the samples it has
//    really rendered. When the server reports speech_started while the answer is playing
//    (barge-in), or the Interrupt button is pressed, playback stops at the next audio quantum and
//    the page sends conversation.item.truncate at the played position: the server's conversation
//    then holds only what the user heard.
// 5. Per turn, the voice-to-voice latency (end of speech -> first sound played) and its parts.
//
// Everything is in window.voice, for tests and curious learners: events (type, arrival time, audio ms),
// turns (latency and its parts), bargeIns (stop delay, played samples, truncation point), items
// (samples received / played / not silent per assistant item), transcripts, the captured level.
"use strict";

(() => {
  const RATE = 24000;
  const SILENCE_MS = 500, PREFIX_MS = 300;
  const vparams = new URLSearchParams(location.search);
  const voice = window.voice = {
    state: "off", vad: "idle", error: null, events: [], turns: [], bargeIns: [], transcripts: [],
    level: -100, levels: 0, sentSamples: 0, keep: vparams.get("voicekeep") === "1", kept: [],
    played: { samples: 0, nonSilent: 0 }, items: {}, response: null, session: null, retrieved: {},
  };
  let ws = null, ctx = null, stream = null, capture = null, playback = null, source = null;
  let captureLog = [];                     // [stream sample at chunk end, performance.now() when the page had it]
  let pendingTurn = null;                  // the turn whose answer has not sounded yet
  const interrupted = new Set();           // assistant items cut off: their late deltas are dropped
  const $v = (id) => document.getElementById(id);

  // ---- the panel -------------------------------------------------------------------------
  const panel = document.createElement("section");
  panel.className = "panel"; panel.id = "voice";
  panel.innerHTML = `
    <h2>Voice</h2>
    <div class="row">
      <button type="button" id="voice-start">Start talking</button>
      <button type="button" id="voice-stop" disabled>Stop</button>
      <button type="button" id="voice-interrupt" disabled>Interrupt</button>
      <span id="voice-state" class="badge">off</span>
      <span id="voice-vad" class="badge">VAD idle</span>
    </div>
    <div class="meter" title="microphone level (dBFS)"><div id="voice-meter"></div><span id="voice-level"></span></div>
    <p class="error" id="voice-error"></p>
    <div class="log" id="voice-log"></div>
    <table class="latency"><thead><tr><th>turn</th><th title="end of speech to first sound">voice-to-voice</th>
      <th title="the turn detector waiting for silence">silence wait</th><th title="uplink and server VAD">VAD event</th>
      <th title="model and speech synthesis until the first audio arrives">answer</th>
      <th title="playback queue and output device">playout</th></tr></thead><tbody id="voice-latency"></tbody></table>`;
  (document.getElementById("app") || document.body).append(panel);

  function log(who, text, cls) {
    const div = document.createElement("div");
    div.className = `msg ${cls || ""}`;
    const w = document.createElement("span"); w.className = "who"; w.textContent = who;
    const t = document.createElement("span"); t.className = "text"; t.textContent = text;
    div.append(w, t); $v("voice-log").append(div); $v("voice-log").scrollTop = $v("voice-log").scrollHeight;
    return t;
  }
  const userLines = {};
  function userLine(itemId) { return userLines[itemId] || (userLines[itemId] = log("you", "…", "")); }
  function setState(s) { voice.state = s; $v("voice-state").textContent = s; }
  function setVad(s) { voice.vad = s; $v("voice-vad").textContent = `VAD ${s}`; $v("voice-vad").dataset.state = s; }
  function fail(message) {
    voice.error = message; $v("voice-error").textContent = message; setState("error"); stop();
  }

  // ---- clocks --------------------------------------------------------------------------------
  // When did the page have stream sample s? (chunk arrival times, minus the chunk's remaining audio)
  function timeOfSample(s) {
    for (const [end, t] of captureLog) if (end >= s) return t - (end - s) * 1000 / RATE;
    return null;
  }
  // An AudioContext time -> performance.now() time at which the device outputs it.
  function heardAt(contextTime) {
    const ts = ctx.getOutputTimestamp ? ctx.getOutputTimestamp() : null;
    if (ts && ts.contextTime > 0 && ts.performanceTime > 0) return ts.performanceTime + (contextTime - ts.contextTime) * 1000;
    return performance.now() + (contextTime - ctx.currentTime) * 1000;
  }

  // ---- start / stop ----------------------------------------------------------------------------
  async function start() {
    if (voice.state !== "off" && voice.state !== "error" && voice.state !== "stopped") return;
    voice.error = null; $v("voice-error").textContent = "";
    if (!window.isSecureContext || !navigator.mediaDevices) {
      return fail("The microphone needs a secure page: open the lab over https:// (labkit classroom --https) " +
                  "or on localhost.");
    }
    setState("connecting");
    $v("voice-start").disabled = true; $v("voice-stop").disabled = false;
    try {
      const headers = { "Content-Type": "application/json" };
      if (window.lab && window.lab.token) headers.Authorization = `Bearer ${window.lab.token}`;
      const r = await fetch("/lab/voice/session", { method: "POST", headers, body: "{}" });
      const body = await r.json();
      if (!r.ok) return fail(`No voice key: ${body.error ? body.error.message : r.status}`);
      voice.session = { model: body.model, expiresAt: body.expires_at, url: body.realtime_url, upstream: body.upstream };
      ctx = new AudioContext({ latencyHint: "interactive" });
      await ctx.audioWorklet.addModule("voice-worklets.js");
      playback = new AudioWorkletNode(ctx, "lab-playback", { numberOfInputs: 0, outputChannelCount: [1],
                                                            processorOptions: { sourceRate: RATE } });
      playback.port.onmessage = (e) => onPlayback(e.data);
      playback.connect(ctx.destination);
      stream = await navigator.mediaDevices.getUserMedia({ audio: {
        echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1 } });
      voice.track = stream.getAudioTracks()[0].getSettings();
      const url = body.realtime_url.startsWith("ws") ? body.realtime_url
        : `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}${body.realtime_url}`;
      ws = new WebSocket(url, ["realtime", `openai-insecure-api-key.${body.value}`]);
      ws.onmessage = (e) => onServer(JSON.parse(e.data));
      ws.onerror = () => { if (voice.state === "connecting") fail("The Realtime connection was refused."); };
      ws.onclose = (e) => { voice.closed = { code: e.code, reason: e.reason }; if (voice.state !== "error") setState("stopped"); stop(); };
      $v("voice-interrupt").disabled = false;
      await ctx.resume();
    } catch (e) {
      fail(`${e.name || "Error"}: ${e.message}`);
    }
  }

  function startCapture() {
    source = ctx.createMediaStreamSource(stream);
    capture = new AudioWorkletNode(ctx, "lab-capture", { numberOfOutputs: 0,
                                                         processorOptions: { targetRate: RATE, chunkMs: 40 } });
    capture.port.onmessage = (e) => onChunk(e.data);
    source.connect(capture);
  }

  function stop() {
    if (capture) { capture.port.postMessage({ type: "stop" }); capture.disconnect(); capture = null; }
    if (source) { source.disconnect(); source = null; }
    if (stream) { stream.getTracks().forEach((t) => t.stop()); stream = null; }
    if (ws && ws.readyState <= 1) ws.close(1000);
    ws = null;
    if (ctx) { ctx.close(); ctx = null; playback = null; }
    $v("voice-start").disabled = false; $v("voice-stop").disabled = true; $v("voice-interrupt").disabled = true;
    if (voice.state !== "error") setState("stopped");
    setVad("idle");
  }

  function send(event) { if (ws && ws.readyState === 1) ws.send(JSON.stringify(event)); }

  // ---- microphone ------------------------------------------------------------------------------
  function onChunk(m) {
    const now = performance.now();
    captureLog.push([m.end, now]);
    if (captureLog.length > 20000) captureLog = captureLog.slice(-10000);
    voice.sentSamples = m.end;
    const db = 20 * Math.log10(Math.max(m.rms, 1e-5));
    voice.level = db; voice.levels += 1;
    $v("voice-meter").style.width = `${Math.max(0, Math.min(100, (db + 80) / 80 * 100))}%`;
    $v("voice-level").textContent = `${db.toFixed(0)} dBFS`;
    if (voice.keep && m.end <= 60 * RATE) voice.kept.push(Array.from(m.pcm));
    let bin = "";
    const bytes = new Uint8Array(m.pcm.buffer);
    for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    send({ type: "input_audio_buffer.append", audio: btoa(bin) });
  }

  // ---- playback --------------------------------------------------------------------------------
  function item(id) { return voice.items[id] || (voice.items[id] = { received: 0, played: 0, nonSilent: 0, text: "" }); }
  function playing() {
    return Object.entries(voice.items).some(([id, it]) => !interrupted.has(id) && it.received > it.played);
  }

  function onPlayback(m) {
    if (m.type === "position") {
      let samples = 0, nonSilent = 0;
      for (const [id, s] of Object.entries(m.items)) {
        const it = item(id); it.played = s.played; it.nonSilent = s.nonSilent;
        samples += s.played; nonSilent += s.nonSilent;
      }
      voice.played = { samples, nonSilent };
      if (voice.state === "speaking" && !playing()) setState("listening");
    } else if (m.type === "sound") {
      const turn = voice.turns.find((t) => t.item === m.item);
      if (turn && turn.firstSoundAt == null) finishTurn(turn, heardAt(m.time));
    } else if (m.type === "stopped") {
      const b = voice.bargeIns[voice.bargeIns.length - 1];
      if (!b || b.stoppedAt != null) return;
      b.stoppedAt = heardAt(m.time);
      b.stopDelayMs = (m.time - b.contextTime) * 1000;        // audio clock: to the first silent quantum
      b.stopAckMs = performance.now() - b.at;                 // wall clock: until the page heard back
      b.item = m.item || b.item;
      b.played = m.played; b.nonSilent = m.nonSilent; b.dropped = m.dropped;
      if (b.item) {
        const it = item(b.item); it.played = m.played; it.nonSilent = m.nonSilent;
        interrupted.add(b.item);
        b.audioEndMs = Math.floor(m.played * 1000 / RATE);
        send({ type: "conversation.item.truncate", item_id: b.item, content_index: 0, audio_end_ms: b.audioEndMs });
      }
      if (voice.state === "speaking") setState("listening");
    }
  }

  // Barge-in (speech_started during the answer) or the Interrupt button.
  function interrupt(reason) {
    if (!playback || !playing()) return false;
    const current = Object.keys(voice.items).find((id) => !interrupted.has(id) && voice.items[id].received > voice.items[id].played);
    voice.bargeIns.push({ reason, at: performance.now(), contextTime: ctx.currentTime, item: current,
                          stoppedAt: null, stopDelayMs: null, stopAckMs: null, audioEndMs: null, serverAudioEndMs: null });
    playback.port.postMessage({ type: "stop", reason });
    // With server VAD's interrupt_response the server cancels the answer itself; the button must ask.
    if (reason === "button" && voice.response) send({ type: "response.cancel" });
    return true;
  }

  function finishTurn(turn, soundAt) {
    turn.firstSoundAt = soundAt;
    const speechEnd = timeOfSample((turn.audioEndMs - turn.silenceMs) * RATE / 1000);
    const detected = timeOfSample(turn.audioEndMs * RATE / 1000);
    turn.parts = {
      silence_wait_ms: detected - speechEnd,
      vad_event_ms: turn.stoppedAt - detected,
      answer_ms: turn.firstDeltaAt - turn.stoppedAt,
      playout_ms: soundAt - turn.firstDeltaAt,
    };
    turn.voiceToVoiceMs = soundAt - speechEnd;
    const row = document.createElement("tr");
    const cells = [voice.turns.indexOf(turn) + 1, turn.voiceToVoiceMs, ...Object.values(turn.parts)];
    row.innerHTML = cells.map((v, i) => `<td>${i === 0 ? v : `${Math.round(v)} ms`}</td>`).join("");
    $v("voice-latency").append(row);
    if (pendingTurn === turn) pendingTurn = null;
  }

  // ---- server events ---------------------------------------------------------------------------
  function onServer(ev) {
    const now = performance.now();
    voice.events.push({ type: ev.type, at: now, audio_start_ms: ev.audio_start_ms, audio_end_ms: ev.audio_end_ms,
                        item_id: ev.item_id });
    switch (ev.type) {
      case "session.created":
        send({ type: "session.update", session: { type: "realtime", audio: {
          input: { transcription: { model: "gpt-4o-mini-transcribe" },
                   turn_detection: { type: "server_vad", prefix_padding_ms: PREFIX_MS, silence_duration_ms: SILENCE_MS,
                                     create_response: true, interrupt_response: true } } } } });
        break;
      case "session.updated":
        if (!capture) { startCapture(); setState("listening"); setVad("silence"); }
        voice.silenceMs = ev.session.audio.input.turn_detection.silence_duration_ms;
        break;
      case "input_audio_buffer.speech_started":
        setVad("speech");
        if (interrupt("barge-in")) log("", "(interrupted: you started speaking)", "note");
        break;
      case "input_audio_buffer.speech_stopped":
        setVad("silence");
        userLine(ev.item_id);                    // in its place now; the transcript fills it in later
        pendingTurn = { userItem: ev.item_id, audioEndMs: ev.audio_end_ms, silenceMs: voice.silenceMs || SILENCE_MS,
                        stoppedAt: now, item: null, firstDeltaAt: null, firstSoundAt: null, parts: null };
        voice.turns.push(pendingTurn);
        setState("thinking");
        break;
      case "conversation.item.input_audio_transcription.completed": {
        voice.transcripts.push({ role: "user", item: ev.item_id, text: ev.transcript });
        userLine(ev.item_id).textContent = ev.transcript || "(nothing recognised)";
        break;
      }
      case "conversation.item.input_audio_transcription.failed":
        userLine(ev.item_id).textContent = `(not transcribed: ${ev.error.message})`;
        break;
      case "response.created":
        voice.response = ev.response.id;
        break;
      case "response.output_audio_transcript.delta": {
        const it = item(ev.item_id);
        if (interrupted.has(ev.item_id)) break;
        if (!it.line) it.line = log("AI", "", "ai");
        it.text += ev.delta; it.line.textContent = it.text;
        break;
      }
      case "response.output_audio.delta": {
        if (interrupted.has(ev.item_id) || !playback) break;
        const bin = atob(ev.delta), pcm = new Int16Array(bin.length >> 1);
        for (let i = 0; i < pcm.length; i++) pcm[i] = bin.charCodeAt(2 * i) | (bin.charCodeAt(2 * i + 1) << 8);
        const it = item(ev.item_id);
        it.received += pcm.length;
        if (pendingTurn && pendingTurn.item == null) { pendingTurn.item = ev.item_id; pendingTurn.firstDeltaAt = now; }
        playback.port.postMessage({ type: "audio", item: ev.item_id, pcm }, [pcm.buffer]);
        setState("speaking");
        break;
      }
      case "response.output_audio_transcript.done":
        // what the server generated (for a cut-off answer: up to the cut; what was *heard* comes after the truncate)
        voice.transcripts.push({ role: "assistant", item: ev.item_id, text: ev.transcript, interrupted: interrupted.has(ev.item_id) });
        break;
      case "response.done":
        voice.response = null;
        if (voice.state === "thinking") setState("listening");
        break;
      case "conversation.item.truncated": {
        const b = voice.bargeIns.find((x) => x.item === ev.item_id && x.serverAudioEndMs == null);
        if (b) b.serverAudioEndMs = ev.audio_end_ms;
        send({ type: "conversation.item.retrieve", item_id: ev.item_id });
        break;
      }
      case "conversation.item.retrieved": {
        voice.retrieved[ev.item.id] = ev.item;
        const it = voice.items[ev.item.id], part = ev.item.content && ev.item.content[0];
        if (it && it.line && part && part.transcript != null) {
          it.line.textContent = part.transcript ? part.transcript + " …" : "(cut off before its first word)";
          it.line.title = `heard ${Math.round(it.played * 1000 / RATE)} ms; the rest was cut off`;
        }
        break;
      }
      case "error":
        voice.lastError = ev.error;
        log("", `error: ${ev.error.message}`, "note");
        break;
    }
  }

  $v("voice-start").addEventListener("click", start);
  $v("voice-stop").addEventListener("click", () => { setState("stopped"); stop(); });
  $v("voice-interrupt").addEventListener("click", () => { if (interrupt("button")) log("", "(interrupted by the button)", "note"); });
  voice.start = start; voice.stop = stop; voice.interrupt = interrupt; voice.timeOfSample = timeOfSample;
})();
