// Voice mode over WebRTC: the same conversation as voice.js, on the transport OpenAI recommends for browsers.
//
// Adds a "transport" choice to the voice panel. With WebRTC chosen, "Start talking" does this instead
// of opening a WebSocket:
// 1. a short-lived key from the page's server (POST /lab/voice/session, as voice.js);
// 2. an RTCPeerConnection: the microphone as an audio track (the browser encodes it with Opus, and
//    its jitter buffer conceals lost packets of the answer), plus a data channel named "oai-events";
// 3. the SDP offer POSTed to /v1/realtime/calls (Content-Type: application/sdp, Authorization: Bearer
//    <ephemeral key>); the 201 answer is applied; ICE connects the two peers directly over UDP;
// 4. the data channel carries the same JSON events as the WebSocket, minus the audio: the answer
//    plays on the remote track, and the server says what it played (output_audio_buffer.started /
//    stopped / cleared) and truncates the answer itself on a barge-in.
// Everything is in window.voiceRtc (events, transcripts, the answer track's getStats()).
"use strict";

(() => {
  const SILENCE_MS = 500, PREFIX_MS = 300;
  const panel = document.getElementById("voice");
  if (!panel) return;
  const rtc = window.voiceRtc = { state: "off", error: null, events: [], transcripts: [], stats: null,
                                  levels: [], callId: null };
  let pc = null, channel = null, stream = null, ctx = null, meter = null, audioEl = null;

  // ---- the hook into voice.js's panel: a transport choice next to its buttons
  const choice = document.createElement("label");
  choice.innerHTML = `transport <select id="voice-transport"><option value="websocket">WebSocket</option>` +
                     `<option value="webrtc">WebRTC</option></select>`;
  panel.querySelector(".row").prepend(choice);
  const $ = (id) => document.getElementById(id);
  const chosen = () => $("voice-transport").value;
  const params = new URLSearchParams(location.search);
  if (params.get("transport") === "webrtc") $("voice-transport").value = "webrtc";

  function log(who, text, cls) {
    const div = document.createElement("div");
    div.className = `msg ${cls || ""}`;
    const w = document.createElement("span"); w.className = "who"; w.textContent = who;
    const t = document.createElement("span"); t.className = "text"; t.textContent = text;
    div.append(w, t); $("voice-log").append(div);
    return t;
  }
  function setState(s) { rtc.state = s; $("voice-state").textContent = `${s} (WebRTC)`; }
  function fail(message) { rtc.error = message; $("voice-error").textContent = message; setState("error"); stop(); }

  function callsUrl(realtimeUrl) {            // where /v1/realtime is, /v1/realtime/calls is (http, not ws)
    const u = new URL(realtimeUrl, location.href);
    u.protocol = u.protocol === "wss:" ? "https:" : u.protocol === "ws:" ? "http:" : u.protocol;
    u.pathname = u.pathname.replace(/\/$/, "") + "/calls";
    return u.toString();
  }

  async function start() {
    if (pc) return;
    rtc.error = null; $("voice-error").textContent = "";
    setState("connecting");
    $("voice-start").disabled = true; $("voice-stop").disabled = false; $("voice-interrupt").disabled = false;
    try {
      const headers = { "Content-Type": "application/json" };
      if (window.lab && window.lab.token) headers.Authorization = `Bearer ${window.lab.token}`;
      const r = await fetch("/lab/voice/session", { method: "POST", headers, body: "{}" });
      const key = await r.json();
      if (!r.ok) return fail(`No voice key: ${key.error ? key.error.message : r.status}`);
      stream = await navigator.mediaDevices.getUserMedia({ audio: {
        echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1 } });
      pc = new RTCPeerConnection();
      pc.addTrack(stream.getAudioTracks()[0], stream);
      pc.ontrack = (e) => play(e.streams[0] || new MediaStream([e.track]));
      pc.onconnectionstatechange = () => { rtc.connection = pc && pc.connectionState;
        if (pc && pc.connectionState === "failed") fail("The WebRTC connection failed (ICE found no path)."); };
      channel = pc.createDataChannel("oai-events");
      channel.onmessage = (e) => onServer(JSON.parse(e.data));
      await pc.setLocalDescription(await pc.createOffer());
      const answer = await fetch(callsUrl(key.realtime_url), { method: "POST", body: pc.localDescription.sdp,
        headers: { "Content-Type": "application/sdp", Authorization: `Bearer ${key.value}` } });
      if (answer.status !== 201) {
        let message = `HTTP ${answer.status}`;
        try { message = (await answer.json()).error.message; } catch (e) { /* not JSON */ }
        return fail(`The call was refused: ${message}`);
      }
      rtc.callId = (answer.headers.get("Location") || "").split("/").pop();
      rtc.hangupUrl = callsUrl(key.realtime_url).split("?")[0] + `/${rtc.callId}/hangup`;
      rtc.key = key.value;
      await pc.setRemoteDescription({ type: "answer", sdp: await answer.text() });
    } catch (e) {
      fail(`${e.name || "Error"}: ${e.message}`);
    }
  }

  // The answer track: an <audio> element plays it; an analyser samples its level (the page's own
  // measurement of what sounded).
  function play(remote) {
    audioEl = document.createElement("audio");
    audioEl.autoplay = true; audioEl.srcObject = remote; audioEl.id = "voice-rtc-audio";
    panel.append(audioEl);
    ctx = new AudioContext();
    const analyser = ctx.createAnalyser(); analyser.fftSize = 1024;
    ctx.createMediaStreamSource(remote).connect(analyser);
    const buf = new Float32Array(analyser.fftSize);
    meter = setInterval(() => {
      analyser.getFloatTimeDomainData(buf);
      let sum = 0; for (const v of buf) sum += v * v;
      rtc.levels.push([performance.now(), Math.sqrt(sum / buf.length)]);
    }, 50);
    ctx.resume();
  }

  function send(event) { if (channel && channel.readyState === "open") channel.send(JSON.stringify(event)); }

  function onServer(ev) {
    rtc.events.push({ type: ev.type, at: performance.now(), audio_start_ms: ev.audio_start_ms,
                      audio_end_ms: ev.audio_end_ms, item_id: ev.item_id, response_id: ev.response_id });
    switch (ev.type) {
      case "session.created":
        send({ type: "session.update", session: { type: "realtime", audio: {
          input: { transcription: { model: "gpt-4o-mini-transcribe" },
                   turn_detection: { type: "server_vad", prefix_padding_ms: PREFIX_MS, silence_duration_ms: SILENCE_MS,
                                     create_response: true, interrupt_response: true } } } } });
        break;
      case "session.updated": setState("listening"); break;
      case "input_audio_buffer.speech_started": $("voice-vad").textContent = "VAD speech"; break;
      case "input_audio_buffer.speech_stopped": $("voice-vad").textContent = "VAD silence"; setState("thinking"); break;
      case "conversation.item.input_audio_transcription.completed":
        rtc.transcripts.push({ role: "user", item: ev.item_id, text: ev.transcript });
        log("you", ev.transcript || "(nothing recognised)", "");
        break;
      case "response.output_audio_transcript.done":
        rtc.transcripts.push({ role: "assistant", item: ev.item_id, text: ev.transcript });
        log("AI", ev.transcript, "ai");
        break;
      case "output_audio_buffer.started": setState("speaking"); break;
      case "output_audio_buffer.stopped": setState("listening"); collectStats(); break;
      case "output_audio_buffer.cleared": log("", "(interrupted: the server stopped the answer)", "note"); break;
      case "error": log("", `error: ${ev.error.message}`, "note"); break;
    }
  }

  async function collectStats() {
    if (!pc) return;
    (await pc.getStats()).forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "audio") {
        rtc.stats = { packetsReceived: s.packetsReceived, packetsLost: s.packetsLost, jitter: s.jitter,
                      totalSamplesReceived: s.totalSamplesReceived, concealedSamples: s.concealedSamples,
                      totalAudioEnergy: s.totalAudioEnergy, codec: null, codecId: s.codecId };
      }
    });
  }

  function stop() {
    if (meter) { clearInterval(meter); meter = null; }
    if (rtc.callId && rtc.hangupUrl) {
      fetch(rtc.hangupUrl, { method: "POST", headers: { Authorization: `Bearer ${rtc.key}` } }).catch(() => {});
      rtc.callId = null;
    }
    if (channel) { channel.close(); channel = null; }
    if (pc) { pc.close(); pc = null; }
    if (stream) { stream.getTracks().forEach((t) => t.stop()); stream = null; }
    if (ctx) { ctx.close(); ctx = null; }
    if (audioEl) { audioEl.remove(); audioEl = null; }
    $("voice-start").disabled = false; $("voice-stop").disabled = true; $("voice-interrupt").disabled = true;
    if (rtc.state !== "error") setState("stopped");
  }

  // With WebRTC chosen, the panel's buttons drive this transport (captured before voice.js sees them).
  const takeOver = (fn) => (e) => { if (chosen() !== "webrtc") return; e.stopImmediatePropagation(); fn(); };
  $("voice-start").addEventListener("click", takeOver(start), true);
  $("voice-stop").addEventListener("click", takeOver(stop), true);
  $("voice-interrupt").addEventListener("click", takeOver(() => send({ type: "output_audio_buffer.clear" })), true);
  rtc.start = start; rtc.stop = stop; rtc.send = send; rtc.collectStats = collectStats;
})();
