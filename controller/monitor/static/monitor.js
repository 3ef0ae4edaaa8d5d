/* NeuroLoop monitor page: one column per session (live run or recording), uPlot charts fed by
 * a WebSocket (snapshot, then deltas). The browser keeps at most CAP points per column: past
 * that it asks the server for a fresh min/max-decimated snapshot. Read-only except e-stop. */
"use strict";

const STATE_COLORS = {
  "idle": "#7a8594", "armed": "#2f6fd1", "stimulating": "#178a43",
  "held": "#d99a00", "safe stop": "#d4432f", "e-stop": "#9b0020",
};
const EVENT_COLORS = {
  clamp: "#d99a00", reject: "#e8710a", hold: "#8e3bb3", recovery: "#2f6fd1",
  fault: "#d4432f", "e-stop": "#9b0020", stop: "#3a4250",
};
const STATE_NAMES = ["idle", "armed", "stimulating", "held", "safe stop", "e-stop"];
const CAP = 6000;
const CHART_H = 120;

window.__monitor = { sessions: [], plots: [] };

function fmt(v, digits) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  const a = Math.abs(v);
  if (digits !== undefined) return v.toFixed(digits);
  if (a !== 0 && (a >= 1e5 || a < 1e-3)) return v.toExponential(3);
  return (+v.toPrecision(4)).toString();
}

function compact(v) {
  if (v === null) return "";
  const a = Math.abs(v);
  if (a >= 1e6) return `${+(v / 1e6).toPrecision(3)}M`;
  if (a >= 1e4) return `${+(v / 1e3).toPrecision(3)}k`;
  return `${+v.toPrecision(4)}`;
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

const stepped = uPlot.paths.stepped({ align: 1 });

/* Draws every envelope event as a vertical line (one per pixel column at most) and, on the
 * first chart, the session state as a coloured band along the bottom of the plot. */
function overlayPlugin(session, withState) {
  return {
    hooks: {
      draw: [(u) => {
        const ctx = u.ctx, top = u.bbox.top, h = u.bbox.height;
        const x0 = u.scales.x.min, x1 = u.scales.x.max;
        ctx.save();
        if (withState && session.cols) {
          const xs = session.cols.t_s, st = session.cols.state, band = 7 * devicePixelRatio;
          for (let i = 0; i < xs.length; i++) {
            const a = u.valToPos(xs[i], "x", true);
            const b = i + 1 < xs.length ? u.valToPos(xs[i + 1], "x", true) : a + 2;
            ctx.fillStyle = STATE_COLORS[STATE_NAMES[st[i]]] || "#999";
            ctx.fillRect(a, top + h - band, Math.max(1, b - a), band);
          }
          if (xs.length && session.status) {  // the state now (an e-stop comes after the last tick)
            const a = u.valToPos(xs[xs.length - 1], "x", true);
            ctx.fillStyle = STATE_COLORS[session.status.state] || "#999";
            ctx.fillRect(a, top + h - band, Math.max(3 * devicePixelRatio, u.bbox.left + u.bbox.width - a), band);
          }
        }
        let lastPx = -1;
        ctx.lineWidth = Math.max(1, devicePixelRatio);
        for (const ev of session.events) {
          const period = ((session.status && session.status.meta.period_ms) || 20) / 1000;
          if (ev.t_s < x0 || ev.t_s > x1 + 2 * period) continue;  // a stop lands after the last tick
          const px = Math.round(u.valToPos(Math.min(ev.t_s, x1), "x", true));
          if (px === lastPx) continue;
          lastPx = px;
          ctx.strokeStyle = EVENT_COLORS[ev.kind] || "#555";
          ctx.globalAlpha = 0.55;
          ctx.beginPath(); ctx.moveTo(px, top); ctx.lineTo(px, top + h); ctx.stroke();
          if (withState) {
            ctx.globalAlpha = 1; ctx.fillStyle = ctx.strokeStyle;
            ctx.beginPath(); ctx.moveTo(px - 5, top); ctx.lineTo(px + 5, top); ctx.lineTo(px, top + 8); ctx.fill();
          }
        }
        ctx.restore();
      }],
    },
  };
}

/* A horizontal limit line on scale `scale` at the value `value()` returns. */
function limitPlugin(scale, value, color, label) {
  return {
    hooks: {
      draw: [(u) => {
        const v = value();
        if (v === null || v === undefined || !Number.isFinite(v)) return;
        const y = u.valToPos(v, scale, true);
        if (y < u.bbox.top || y > u.bbox.top + u.bbox.height) return;
        const ctx = u.ctx;
        ctx.save();
        ctx.strokeStyle = color; ctx.setLineDash([6, 4]); ctx.lineWidth = devicePixelRatio;
        ctx.beginPath(); ctx.moveTo(u.bbox.left, y); ctx.lineTo(u.bbox.left + u.bbox.width, y); ctx.stroke();
        ctx.fillStyle = color; ctx.font = `${10 * devicePixelRatio}px system-ui`;
        ctx.fillText(label, u.bbox.left + 4 * devicePixelRatio, y - 3 * devicePixelRatio);
        ctx.restore();
      }],
    },
  };
}

function zoomPlugin() {
  return {
    hooks: {
      setSelect: [(u) => {
        if (u.select.width < 3) return;
        const t0 = u.posToVal(u.select.left, "x"), t1 = u.posToVal(u.select.left + u.select.width, "x");
        u.setSelect({ left: 0, width: 0, top: 0, height: 0 }, false);
        for (const s of window.__monitor.sessions) s.zoom(t0, t1);
      }],
    },
  };
}

class Session {
  constructor(index, live, root) {
    this.index = index;
    this.live = live;
    this.cols = null;
    this.events = [];
    this.status = null;
    this.rows = 0;
    this.messages = 0;
    this.snapshots = 0;
    this.latencies = [];
    this.renderMs = [];
    this.oldestLatencies = [];
    this.pendingWall = [];
    this.pendingFirst = [];
    this.frameQueued = false;
    this.shownEvents = -1;
    this.range = [null, null];
    this.closedByServer = false;
    this.feature = null;
    this.plots = [];
    this.build(root);
    this.connect();
    window.__monitor.sessions.push(this);
  }

  build(root) {
    const box = el("section", "session");
    box.id = `session-${this.index}`;
    const head = el("div", "head");
    this.titleEl = el("span", "title", this.live ? "live session" : "recording");
    this.stateEl = el("span", "state", "connecting");
    this.stateEl.dataset.state = "";
    this.metaEl = el("span", "meta");
    this.connEl = el("span", "conn");
    head.append(this.titleEl, this.stateEl, this.metaEl, this.connEl);
    if (this.live) {
      this.estopBtn = el("button", "estop", "E-STOP: stop stimulation");
      this.estopBtn.type = "button";
      this.estopBtn.title = "Stops stimulation through the controller's e-stop path; the run ends and the stop is recorded.";
      this.estopBtn.addEventListener("click", () => this.estop());
      head.append(this.estopBtn);
    }
    this.nowEl = el("div", "now");
    this.countsEl = el("div", "counts");
    this.chartsEl = el("div", "charts");
    const legend = el("div", "legend-states");
    legend.append("state band: ");
    for (const s of STATE_NAMES) {
      const span = el("span"); const i = el("i"); i.style.background = STATE_COLORS[s];
      span.append(i, s); legend.append(span);
    }
    this.eventsEl = el("div", "events");
    box.append(head, this.nowEl, this.countsEl, legend, this.chartsEl, this.eventsEl);
    root.append(box);
    this.box = box;
  }

  connect() {
    const proto = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${proto}://${location.host}/ws/${this.index}`);
    this.ws = ws;
    ws.onopen = () => { this.connEl.textContent = this.live ? "connected" : ""; };
    ws.onmessage = (msg) => this.onMessage(JSON.parse(msg.data));
    ws.onclose = () => {
      const done = this.status && this.status.finished;
      this.connEl.textContent = done ? "run finished" : "disconnected, retrying…";
      if (!done) setTimeout(() => this.connect(), 1000);
    };
  }

  send(obj) { if (this.ws && this.ws.readyState === 1) this.ws.send(JSON.stringify(obj)); }

  onMessage(m) {
    this.messages++;
    this.status = m.status;
    if (m.type === "snapshot") {
      this.snapshots++;
      this.cols = m.cols;
      this.events = m.events;
      this.range = m.range;
      this.decimated = m.decimated;
      if (!this.plots.length) this.makeCharts();
    } else if (m.type === "delta") {
      this.events = this.events.concat(m.events);
      if (this.events.length > 2000) this.events = this.events.slice(-1000);
      if (this.range[0] === null && this.range[1] === null && this.cols) {
        const before = this.cols.t_s.length;
        for (const k of Object.keys(m.cols)) {
          if (!(k in this.cols)) this.cols[k] = new Array(before).fill(null);
          this.cols[k] = this.cols[k].concat(m.cols[k]);
        }
        if (this.cols.t_s.length > CAP) this.send({ type: "resync" });
      }
    }
    this.rows = m.rows;
    if (this.live && m.type === "delta" && m.wall_ms !== null && m.wall_ms !== undefined) {
      this.pendingWall.push(m.wall_ms);
      // the oldest new tick of this message: every tick appears no later than this
      if (m.wall_ms_first !== null && m.wall_ms_first !== undefined) this.pendingFirst.push(m.wall_ms_first);
    }
    // Draw at most once per animation frame, however many messages arrived since the last.
    if (!this.frameQueued) {
      this.frameQueued = true;
      requestAnimationFrame(() => {
        this.frameQueued = false;
        const started = performance.now();
        this.render();
        this.renderMs.push(performance.now() - started);
        if (this.renderMs.length > 5000) this.renderMs.splice(0, this.renderMs.length - 5000);
        const now = Date.now();
        for (const wall of this.pendingWall) this.latencies.push(now - wall);
        for (const wall of this.pendingFirst) this.oldestLatencies.push(now - wall);
        this.pendingWall = [];
        this.pendingFirst = [];
        if (this.oldestLatencies.length > 5000) this.oldestLatencies.splice(0, this.oldestLatencies.length - 5000);
        if (this.latencies.length > 5000) this.latencies.splice(0, this.latencies.length - 5000);
      });
    }
  }

  unit(k) { return (this.status && this.status.meta[k]) || ""; }

  pickFeature() {
    const feats = (this.status && this.status.features) || [];
    if (this.feature && feats.includes(this.feature)) return this.feature;
    for (const f of ["weight_mv", "mean_v_e_mv", "rate_e_hz", "lfp_band_uv2"]) {
      if (feats.includes(f)) return f;
    }
    return feats.find((f) => f !== this.rField()) || null;
  }

  // The R to plot: all E cells from a simulator, the recorded units from a device
  // (protocol/observables.py: a device senses no other).
  rField() {
    const feats = (this.status && this.status.features) || [];
    return !feats.includes("synchrony") && feats.includes("units_synchrony")
      ? "units_synchrony" : "synchrony";
  }

  chartSpecs() {
    const amp = this.unit("amplitude_unit"), q = this.unit("charge_unit");
    const meta = () => (this.status ? this.status.meta : {});
    this.feature = this.pickFeature();
    return [
      {
        title: `Synchrony R (left) and ${this.feature || "feature"} (right); state band below`,
        cols: [`f:${this.rField()}`, `f:${this.feature}`],
        series: [
          { label: "R", stroke: "#2f6fd1", width: 1.5, scale: "y" },
          { label: this.feature || "–", stroke: "#8a96a8", width: 1, scale: "r" },
        ],
        axes: [{ scale: "y" }, { scale: "r", side: 1, grid: { show: false } }],
        scales: { y: { range: [-0.14, 1] } },
        state: true,
      },
      {
        title: `Amplitude (${amp}): commanded vs delivered`,
        cols: ["cmd_amplitude", "del_amplitude"],
        series: [
          { label: "commanded", stroke: "#d4432f", width: 1, dash: [5, 3], paths: stepped },
          { label: "delivered", stroke: "#178a43", width: 1.5, paths: stepped },
        ],
        axes: [{ scale: "y" }],
        limit: ["y", () => meta().amplitude_max, "#d4432f", "envelope max"],
      },
      {
        title: "Frequency (Hz): commanded vs delivered",
        cols: ["cmd_frequency_hz", "del_frequency_hz"],
        series: [
          { label: "commanded", stroke: "#d4432f", width: 1, dash: [5, 3], paths: stepped },
          { label: "delivered", stroke: "#178a43", width: 1.5, paths: stepped },
        ],
        axes: [{ scale: "y" }],
      },
      {
        title: "Pulse width (µs per phase): commanded vs delivered",
        cols: ["cmd_pulse_width_us", "del_pulse_width_us"],
        series: [
          { label: "commanded", stroke: "#d4432f", width: 1, dash: [5, 3], paths: stepped },
          { label: "delivered", stroke: "#178a43", width: 1.5, paths: stepped },
        ],
        axes: [{ scale: "y" }],
      },
      {
        title: `Charge: cumulative delivered (${q}, left); commanded per phase vs its limit (right)`,
        cols: ["charge_cum", "charge_per_phase"],
        series: [
          { label: `cumulative ${q}`, stroke: "#5b3cc4", width: 1.5, scale: "y" },
          { label: `per phase ${q}`, stroke: "#e8710a", width: 1, scale: "r", paths: stepped },
        ],
        axes: [{ scale: "y" }, { scale: "r", side: 1, grid: { show: false } }],
        scales: { r: { range: (u, lo, hi) => [0, Math.max(hi, meta().charge_per_phase_max || 0) * 1.1 || 1] } },
        limit: ["r", () => meta().charge_per_phase_max, "#e8710a", "per-phase limit"],
      },
      {
        title: "Timing (ms): tick latency, backend step, period error; dashed: period T",
        cols: ["latency_ms", "step_ms", "period_error_ms"],
        series: [
          { label: "latency", stroke: "#2f6fd1", width: 1 },
          { label: "step", stroke: "#8a96a8", width: 1 },
          { label: "period error", stroke: "#e8710a", width: 1 },
        ],
        axes: [{ scale: "y" }],
        limit: ["y", () => meta().period_ms, "#d4432f", "T"],
      },
    ];
  }

  makeCharts() {
    this.chartsEl.textContent = "";
    const all = window.__monitor.plots;
    for (const u of this.plots) { all.splice(all.indexOf(u), 1); u.destroy(); }
    this.plots = [];
    this.specs = this.chartSpecs();
    const width = Math.max(320, this.box.clientWidth - 24);
    for (const spec of this.specs) {
      const wrap = el("div", "chart");
      wrap.append(el("h3", null, spec.title));
      this.chartsEl.append(wrap);
      const plugins = [overlayPlugin(this, !!spec.state), zoomPlugin()];
      if (spec.limit) plugins.push(limitPlugin(...spec.limit));
      const axes = [{ size: 28 }];
      for (const a of spec.axes) axes.push({ size: 56, values: (u, vals) => vals.map(compact), ...a });
      if (spec.axes.length === 1) {  // an empty right axis, so every chart's time axis lines up
        axes.push({ scale: "y", side: 1, size: 56, values: (u, vals) => vals.map(() => ""),
          grid: { show: false }, ticks: { show: false } });
      }
      const opts = {
        width, height: CHART_H,
        cursor: { sync: { key: "neuroloop" }, drag: { x: true, y: false } },
        scales: { x: { time: false }, ...(spec.scales || {}) },
        legend: { live: true },
        axes,
        series: [{ label: "t (s)", value: (u, v) => fmt(v, 3) },
          ...spec.series.map((s) => ({ scale: "y", value: (u, v) => fmt(v), ...s }))],
        plugins,
      };
      const u = new uPlot(opts, this.dataFor(spec), wrap);
      u._spec = spec;
      this.plots.push(u);
      window.__monitor.plots.push(u);
    }
  }

  dataFor(spec) {
    const c = this.cols || { t_s: [] };
    const empty = () => new Array(c.t_s.length).fill(null);
    return [c.t_s, ...spec.cols.map((k) => c[k] || empty())];
  }

  render() {
    const st = this.status;
    if (!st) return;
    const meta = st.meta || {};
    this.titleEl.textContent = this.live ? "live session" : (meta.label || "recording");
    this.stateEl.textContent = st.state;
    this.stateEl.dataset.state = st.state;
    this.stateEl.style.background = STATE_COLORS[st.state] || "#999";
    const hash = (meta.envelope_hash || "").slice(0, 12);
    this.metaEl.textContent = `policy ${meta.policy || "?"} · backend ${meta.backend_kind || meta.backend || "?"}` +
      `${meta.backend_name ? ` (${meta.backend_name})` : ""} · envelope ${meta.envelope_name || "?"} ${hash}… · T ${fmt(meta.period_ms)} ms` +
      (meta.pace ? ` · pace ${meta.pace}` : "");
    this.metaEl.title = `envelope sha256 ${meta.envelope_hash || "?"}`;
    if (st.end_reason) this.connEl.textContent = `run ended: ${st.end_reason}`;
    if (this.estopBtn) {
      const over = st.finished || st.state === "e-stop" || st.state === "safe stop" || st.end_reason !== null;
      this.estopBtn.disabled = over;
      if (over) this.estopBtn.textContent = st.state === "e-stop" ? "stimulation stopped (e-stop)" : "run over";
    }
    if (this.plots.length && this.pickFeature() !== this.feature) this.makeCharts();
    for (const u of this.plots) u.setData(this.dataFor(u._spec), true);
    if (this.range[0] !== null) for (const u of this.plots) u.setScale("x", { min: this.range[0], max: this.range[1] });
    this.renderNow(st, meta);
    this.renderCounts(st);
    this.renderEvents(meta);
    if (cursorT !== null) applyCursor();
  }

  valueAt(k) { const last = this.status && this.status.last; return last && k in last ? last[k] : null; }

  renderNow(st, meta) {
    const amp = meta.amplitude_unit || "", q = meta.charge_unit || "";
    const items = [
      ["tick", "tick", this.valueAt("tick"), 0],
      ["t", "control time (s)", this.valueAt("t_s"), 2],
      ["R", this.rField() === "synchrony" ? "synchrony R" : "units' R",
        this.valueAt(`f:${this.rField()}`)],
      ["cmd_amplitude", `amplitude cmd (${amp})`, this.valueAt("cmd_amplitude")],
      ["del_amplitude", `amplitude delivered (${amp})`, this.valueAt("del_amplitude")],
      ["cmd_frequency_hz", "frequency cmd (Hz)", this.valueAt("cmd_frequency_hz")],
      ["cmd_pulse_width_us", "pulse width cmd (µs)", this.valueAt("cmd_pulse_width_us")],
      ["charge_cum", `charge delivered (${q})`, this.valueAt("charge_cum")],
      ["latency_ms", "tick latency (ms)", this.valueAt("latency_ms")],
    ];
    this.nowEl.textContent = "";
    for (const [key, label, v, digits] of items) {
      const d = el("div"); const b = el("b", null, fmt(v, digits)); b.dataset.k = key;
      d.append(b, el("span", null, label));
      this.nowEl.append(d);
    }
  }

  renderCounts(st) {
    this.countsEl.textContent = "";
    const counts = st.counts || {};
    const chip = (label, n, color, key) => {
      const c = el("span", "chip" + (n ? "" : " zero"), `${label} ${n}`);
      c.style.background = color; c.dataset.k = key;
      this.countsEl.append(c);
    };
    for (const k of ["clamp", "reject", "hold", "recovery", "fault", "e-stop"]) chip(k, counts[k] || 0, EVENT_COLORS[k], k);
    chip("deadline misses", st.deadline_misses || 0, "#3a4250", "deadline_misses");
    if (this.live) chip("telemetry dropped", st.dropped || 0, "#7a8594", "dropped");
    const c = el("span", "meta", `${st.rows} ticks${this.decimated ? " (min/max decimated for display)" : ""}`);
    this.countsEl.append(c);
  }

  renderEvents() {
    const last = this.events.length ? this.events[this.events.length - 1] : null;
    const key = `${this.events.length}:${last ? last.tick + last.reason : ""}`;
    if (key === this.shownEvents) return;  // rebuild the table only when events changed
    this.shownEvents = key;
    const rows = this.events.slice(-200).reverse();
    const table = el("table");
    const head = el("tr");
    for (const h of ["t (s)", "tick", "event", "reason", "param", "detail"]) head.append(el("th", null, h));
    table.append(head);
    for (const ev of rows) {
      const tr = el("tr");
      tr.dataset.kind = ev.kind;
      const kind = el("span", "chip", ev.kind); kind.style.background = EVENT_COLORS[ev.kind] || "#555";
      const tdKind = el("td"); tdKind.append(kind);
      tr.append(el("td", null, fmt(ev.t_s, 2)), el("td", null, String(ev.tick)), tdKind,
        el("td", null, ev.reason), el("td", null, ev.param || ""), el("td", null, ev.detail || ""));
      tr.addEventListener("click", () => setCursorTime(ev.t_s));
      table.append(tr);
    }
    this.eventsEl.textContent = "";
    this.eventsEl.append(table);
  }

  zoom(t0, t1) {
    this.range = [t0, t1];
    this.send({ type: "view", t0, t1, buckets: 1000 });
  }

  unzoom() {
    this.range = [null, null];
    this.send({ type: "view", t0: null, t1: null, buckets: 1000 });
  }

  async estop() {
    this.estopBtn.disabled = true;
    this.estopBtn.textContent = "e-stop requested…";
    const r = await fetch(`/api/estop/${this.index}`, { method: "POST", headers: { "X-NeuroLoop-EStop": "1" } });
    const body = await r.json();
    this.estopResult = body;
    if (!r.ok) { this.estopBtn.disabled = false; this.estopBtn.textContent = `E-STOP failed: ${body.error}`; }
  }
}

/* The time cursor: null follows the end of the data; otherwise a control time in s. */
let cursorT = null;

function setCursorTime(t) { cursorT = t; applyCursor(); }

function applyCursor() {
  const out = document.getElementById("cursor-t");
  out.textContent = cursorT === null ? "end" : `${fmt(cursorT, 2)} s`;
  if (cursorT === null) return;
  for (const u of window.__monitor.plots) {
    if (!u.data[0].length) continue;
    const left = u.valToPos(cursorT, "x");
    u.setCursor({ left, top: CHART_H / 4 }, false);
  }
}

function extent() {
  let lo = Infinity, hi = -Infinity;
  for (const s of window.__monitor.sessions) {
    const t = s.cols && s.cols.t_s;
    if (t && t.length) { lo = Math.min(lo, t[0]); hi = Math.max(hi, t[t.length - 1]); }
  }
  return Number.isFinite(lo) ? [lo, hi] : [0, 1];
}

async function main() {
  const r = await fetch("/api/sessions");
  const { sessions } = await r.json();
  const root = document.getElementById("sessions");
  root.style.gridTemplateColumns = `repeat(${sessions.length}, minmax(0, 1fr))`;
  for (const s of sessions) new Session(s.index, s.live, root);
  const slider = document.getElementById("cursor");
  slider.addEventListener("input", () => {
    const v = +slider.value;
    if (v >= 1000) { cursorT = null; applyCursor(); return; }
    const [lo, hi] = extent();
    setCursorTime(lo + (hi - lo) * v / 1000);
  });
  document.getElementById("unzoom").addEventListener("click", () => {
    for (const s of window.__monitor.sessions) s.unzoom();
  });
  window.addEventListener("resize", () => {
    for (const s of window.__monitor.sessions) {
      const w = Math.max(320, s.box.clientWidth - 24);
      for (const u of s.plots) u.setSize({ width: w, height: CHART_H });
    }
  });
}

main();
