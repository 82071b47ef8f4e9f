// AudioWorklet processors for the lab's voice mode (loaded with audioWorklet.addModule).
//
// They run on the browser's audio rendering thread, one 128-frame quantum at a time, at the
// AudioContext's own rate (usually 48 kHz; a phone may use 44.1 kHz). The Realtime API speaks
// 24 kHz PCM16 both ways, so each processor resamples:
//
// * "lab-capture": microphone -> low-pass -> 24 kHz -> Int16 chunks posted to the page, with each
//   chunk's level (RMS, for the meter) and its position on the input stream's clock (samples sent).
// * "lab-playback": 24 kHz Int16 chunks of an assistant item -> the speakers, counting exactly how
//   many of the item's samples have been rendered (the *played position*, which is what a barge-in
//   truncates at) and how many of them were not silent. "stop" empties the queue at the next quantum.
//
// Shared with the notebook microphone widget (labkit/widgets/browsermic.py), which reads this file.
"use strict";

// A windowed-sinc low-pass (Blackman), cutoff as a fraction of the input rate.
function lowpassTaps(cutoff, count) {
  const taps = new Float32Array(count), mid = (count - 1) / 2;
  let sum = 0;
  for (let i = 0; i < count; i++) {
    const x = i - mid;
    const sinc = x === 0 ? 2 * cutoff : Math.sin(2 * Math.PI * cutoff * x) / (Math.PI * x);
    const w = 0.42 - 0.5 * Math.cos(2 * Math.PI * i / (count - 1)) + 0.08 * Math.cos(4 * Math.PI * i / (count - 1));
    taps[i] = sinc * w; sum += taps[i];
  }
  for (let i = 0; i < count; i++) taps[i] /= sum;
  return taps;
}

class LabCapture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const o = options.processorOptions || {};
    this.rateOut = o.targetRate || 24000;
    this.chunk = Math.round(this.rateOut * (o.chunkMs || 40) / 1000);
    this.step = sampleRate / this.rateOut;                 // input samples per output sample
    this.taps = this.step > 1 ? lowpassTaps(0.45 / this.step, 63) : null;
    this.hist = new Float32Array(this.taps ? this.taps.length : 1);   // ring of recent inputs
    this.h = 0;
    this.filtered = [];                                    // filtered input not yet consumed
    this.pos = 0;                                          // fractional read position in `filtered`
    this.out = new Int16Array(this.chunk); this.n = 0;
    this.sumSq = 0;
    this.sent = 0;                                         // output samples posted (the stream clock)
    this.running = true;
    this.port.onmessage = (e) => { if (e.data && e.data.type === "stop") this.running = false; };
  }

  filter(x) {
    if (!this.taps) return x;
    const taps = this.taps, hist = this.hist, n = taps.length;
    hist[this.h] = x; this.h = (this.h + 1) % n;
    let acc = 0;
    for (let i = 0, j = this.h; i < n; i++, j = (j + 1) % n) acc += taps[i] * hist[j];
    return acc;
  }

  process(inputs) {
    if (!this.running) return false;
    const channel = inputs[0] && inputs[0][0];
    if (!channel) return true;                             // not connected yet
    for (let i = 0; i < channel.length; i++) this.filtered.push(this.filter(channel[i]));
    const f = this.filtered;
    while (this.pos + 1 < f.length) {                      // linear interpolation between filtered samples
      const k = Math.floor(this.pos), frac = this.pos - k;
      const y = f[k] + (f[k + 1] - f[k]) * frac;
      const s = Math.max(-1, Math.min(1, y));
      this.out[this.n++] = s < 0 ? s * 0x8000 : s * 0x7fff;
      this.sumSq += s * s;
      if (this.n === this.chunk) {
        this.sent += this.chunk;
        const pcm = this.out;
        this.port.postMessage({ type: "chunk", pcm, rms: Math.sqrt(this.sumSq / this.chunk), end: this.sent,
                                time: currentTime }, [pcm.buffer]);
        this.out = new Int16Array(this.chunk); this.n = 0; this.sumSq = 0;
      }
      this.pos += this.step;
    }
    const used = Math.floor(this.pos);
    if (used > 0) { this.filtered = f.slice(used); this.pos -= used; }
    return true;
  }
}

class LabPlayback extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const o = options.processorOptions || {};
    this.rateIn = o.sourceRate || 24000;
    this.step = this.rateIn / sampleRate;                 // source samples per output sample
    this.silence = o.silenceLevel || 1e-3;                // |x| below this counts as silent
    this.queue = [];                                      // [{item, pcm: Float32Array}]
    this.cur = null; this.pos = 0;
    this.items = {};                                      // item -> {played, nonSilent}
    this.lastReport = 0;
    this.stopped = null;
    this.port.onmessage = (e) => this.onMessage(e.data);
  }

  stats(item) { return this.items[item] || (this.items[item] = { played: 0, nonSilent: 0, started: null }); }

  onMessage(m) {
    if (m.type === "audio") {
      const f = new Float32Array(m.pcm.length);
      for (let i = 0; i < f.length; i++) f[i] = m.pcm[i] / 0x8000;
      this.queue.push({ item: m.item, pcm: f });
      this.stats(m.item);
    } else if (m.type === "stop") {                       // barge-in or the interrupt button
      const item = this.cur ? this.cur.item : (this.queue[0] && this.queue[0].item);
      const dropped = (this.cur ? this.cur.pcm.length - Math.floor(this.pos) : 0) +
                      this.queue.reduce((a, c) => a + c.pcm.length, 0);
      this.cur = null; this.queue = []; this.pos = 0;
      const s = item ? this.stats(item) : { played: 0, nonSilent: 0 };
      // reported from the next quantum, the first one that is silent: its start is when the sound stopped
      this.stopped = { type: "stopped", reason: m.reason, item: item || null, played: s.played,
                       nonSilent: s.nonSilent, dropped };
    }
  }

  process(inputs, outputs) {
    const out = outputs[0][0];
    let wrote = false;
    if (this.stopped) { this.port.postMessage({ ...this.stopped, time: currentTime }); this.stopped = null; }
    for (let i = 0; i < out.length; i++) {
      if (!this.cur || Math.floor(this.pos) >= this.cur.pcm.length) {
        if (this.cur) this.pos -= this.cur.pcm.length;
        this.cur = this.queue.shift() || null;
        if (!this.cur) { this.pos = 0; out[i] = 0; continue; }
        const s = this.stats(this.cur.item);
        if (s.started === null) {
          s.started = currentTime + i / sampleRate;
          this.port.postMessage({ type: "started", item: this.cur.item, time: s.started });
        }
      }
      const p = this.cur.pcm, k = Math.floor(this.pos), frac = this.pos - k;
      const y = k + 1 < p.length ? p[k] + (p[k + 1] - p[k]) * frac : p[k];
      out[i] = y;
      wrote = true;
      const before = Math.floor(this.pos);
      this.pos += this.step;
      const consumed = Math.min(Math.floor(this.pos), p.length) - before;   // source samples rendered
      if (consumed > 0) {
        const s = this.stats(this.cur.item);
        s.played += consumed;
        if (Math.abs(y) > this.silence) {
          if (s.nonSilent === 0) this.port.postMessage({ type: "sound", item: this.cur.item, time: currentTime + i / sampleRate });
          s.nonSilent += consumed;
        }
      }
    }
    for (let c = 1; c < outputs[0].length; c++) outputs[0][c].set(out);
    if (wrote || currentTime - this.lastReport > 0.1) {
      if (currentTime - this.lastReport >= 0.05) {
        this.lastReport = currentTime;
        const item = this.cur ? this.cur.item : null;
        this.port.postMessage({ type: "position", item, playing: !!this.cur || this.queue.length > 0,
                                items: this.items, time: currentTime });
      }
    }
    return true;
  }
}

registerProcessor("lab-capture", LabCapture);
registerProcessor("lab-playback", LabPlayback);
