// Live latent control: sliders + a 2-D pad; the decoded image follows the pointer, painted every animation frame.
//
// The MLP decoder runs here (vae/export.py's ops over one float32 buffer). Its payload arrives once per model:
// this module keeps it in CACHE (shared by every instance in the tab, across reruns and pages) and reports the ids
// it holds as the state value "models"; Python sends a payload only for ids missing from that report.
// Decoders the browser cannot run are decoded by Python: the "preview" trigger asks for one image at a time.
// The released z goes back as the state value "z".

const CACHE = new Map(); // payload id -> prepared model, least recently used first
const MAX_CACHED = 4;
const PADS = new Map(); // pad id -> the pad's data as Python sent it (once per tab), least recently used first
const MAX_PADS = 8;
const CONTROLLERS = new WeakMap(); // parentElement -> Controller (reruns call us again with new data)
const PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"];
const COMMIT_DELAY_MS = 350; // keyboard moves are committed once the keys rest
const PREVIEW_TIMEOUT_MS = 1500; // a lost preview answer does not stall the round trips
const PREVIEW_MIN_GAP_MS = 40;

// Instrumentation read by bench/drag_latency.py and the browser tests.
const G = (window.__latentControl = window.__latentControl || { instances: {}, payloadLoads: {} });
if (!G.padLoads) G.padLoads = {}; // pad id -> times its data came from Python (once per tab unless lost)
G.resetStats = () => { G.stats = { moves: [], paints: [], downs: [], ups: [] }; };
if (!G.stats) G.resetStats();
G.forgetModels = () => CACHE.clear(); // for tests: what a reload or an eviction does to this tab's cache
G.forgetPads = () => PADS.clear();
const STATS_CAP = 20000;
// Streamlit's theme properties that the pad is drawn with: a theme switch changes them and redraws it.
const THEME_VARS = ["--st-secondary-background-color", "--st-text-color", "--st-font", "--st-primary-color",
  "--st-background-color"];
function mark(list, item) { if (list.length < STATS_CAP) list.push(item); }

function b64ToBytes(s) {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function prepare(p) {
  const m = { id: p.id, L: p.latent_dim, shape: p.input_shape, server: !p.decoder, note: p.server_note || "" };
  if (p.decoder) {
    if (p.decoder.dtype !== "float32") throw new Error(`unsupported weight dtype ${p.decoder.dtype}`);
    const bytes = b64ToBytes(p.decoder.buffer);
    m.params = new Float32Array(bytes.buffer, 0, bytes.length / 4);
    m.ops = p.decoder.ops;
    m.bufs = m.ops.filter((op) => op.op === "linear").map((op) => new Float64Array(op.out));
  }
  return m;
}

// The pad: held-out points on a plane of the latent space (identity for 2-D latents, else PCA) and that plane.
function preparePad(p) {
  return {
    id: p.id, extent: p.extent, axisTitles: p.axis_titles, caption: p.caption, classNames: p.class_names || null,
    points: new Float32Array(b64ToBytes(p.points).buffer), // (N, 2) row-major
    labels: p.labels ? b64ToBytes(p.labels) : null,
    mean: p.projection ? Float64Array.from(p.projection.mean) : null,
    comp: p.projection ? p.projection.components.map((row) => Float64Array.from(row)) : null, // (2, L), orthonormal
    // A nonlinear map: no plane; a place p -> z is the inverse-distance-weighted mean mu of its k nearest points on
    // the map, and z -> p the same over z's k nearest latent means (vae/projections.py's NeighbourMap).
    inv: p.inverse ? {
      xy: new Float32Array(b64ToBytes(p.inverse.xy).buffer), mu: new Float32Array(b64ToBytes(p.inverse.mu).buffer),
      k: p.inverse.k, L: p.inverse.L,
    } : null,
  };
}

// The k smallest of dist (n) -> indices; k is small (8), so a sorted insertion list is enough.
function kSmallest(dist, k) {
  const idx = [], d = [];
  for (let i = 0; i < dist.length; i++) {
    const v = dist[i];
    if (idx.length < k || v < d[idx.length - 1]) {
      let j = Math.min(idx.length, k - 1);
      if (idx.length < k) { idx.push(0); d.push(0); j = idx.length - 1; }
      while (j > 0 && d[j - 1] > v) { idx[j] = idx[j - 1]; d[j] = d[j - 1]; j--; }
      idx[j] = i; d[j] = v;
    }
  }
  return [idx, d];
}

// Weighted blend of rows of `values` (row width w) at indices idx with weights 1 / dist^2.
function blend(values, w, idx, d2, out) {
  out.fill(0);
  let tot = 0;
  for (let j = 0; j < idx.length; j++) {
    const wt = 1 / (d2[j] + 1e-18); // squared distances: 1/(d^2) as in NeighbourMap
    tot += wt;
    for (let c = 0; c < w; c++) out[c] += wt * values[idx[j] * w + c];
  }
  for (let c = 0; c < w; c++) out[c] /= tot;
  return out;
}

function invAt(inv, x, y, out) {
  const n = inv.xy.length / 2;
  const dist = new Float64Array(n);
  for (let i = 0; i < n; i++) { const dx = inv.xy[2 * i] - x, dy = inv.xy[2 * i + 1] - y; dist[i] = dx * dx + dy * dy; }
  const [idx, d2] = kSmallest(dist, inv.k);
  return blend(inv.mu, inv.L, idx, d2, out);
}

function fwdAt(inv, z) {
  const n = inv.xy.length / 2, L = inv.L;
  const dist = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let c = 0; c < L; c++) { const v = inv.mu[i * L + c] - z[c]; s += v * v; }
    dist[i] = s;
  }
  const [idx, d2] = kSmallest(dist, inv.k);
  return Array.from(blend(inv.xy, 2, idx, d2, new Float64Array(2)));
}

// z (L) -> image in [0, 1] as C*H*W values (torch's order), written into RGBA pixels.
function decodeInto(m, z, rgba) {
  let h = z;
  let bi = 0;
  const W = m.params;
  for (const op of m.ops) {
    if (op.op === "linear") {
      const out = m.bufs[bi++];
      const n = op.in;
      for (let r = 0; r < op.out; r++) {
        let s = W[op.b + r];
        const base = op.w + r * n;
        for (let j = 0; j < n; j++) s += W[base + j] * h[j];
        out[r] = s;
      }
      h = out;
    } else if (op.op === "relu") {
      for (let i = 0; i < h.length; i++) if (h[i] < 0) h[i] = 0;
    } else if (op.op === "sigmoid") {
      for (let i = 0; i < h.length; i++) h[i] = 1 / (1 + Math.exp(-h[i]));
    } else if (op.op === "tanh") {
      for (let i = 0; i < h.length; i++) h[i] = Math.tanh(h[i]);
    }
  }
  writePixels(h, m.shape, rgba, 1);
}

// values (C*H*W) -> RGBA; scale 1 for [0, 1] floats, 1/255 for bytes.
function writePixels(v, shape, rgba, scale) {
  const [c, hh, ww] = shape;
  const hw = hh * ww;
  for (let i = 0; i < hw; i++) {
    const k = 4 * i;
    if (c === 1) {
      const g = Math.round(255 * scale * v[i]);
      rgba[k] = g; rgba[k + 1] = g; rgba[k + 2] = g;
    } else {
      rgba[k] = Math.round(255 * scale * v[i]);
      rgba[k + 1] = Math.round(255 * scale * v[hw + i]);
      rgba[k + 2] = Math.round(255 * scale * v[2 * hw + i]);
    }
    rgba[k + 3] = 255;
  }
}

function sameZ(a, b, tol = 1e-6) {
  if (!a || !b || a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (Math.abs(a[i] - b[i]) > tol) return false;
  return true;
}

const fmt = (v) => (v >= 0 ? "\u2007" : "") + v.toFixed(2); // figure space keeps columns still
const subscript = (n) => String(n).replace(/\d/g, (d) => "₀₁₂₃₄₅₆₇₈₉"[d]);

class Controller {
  constructor(root) {
    this.root = root;
    this.el = {
      box: root.querySelector(".lc"),
      image: root.querySelector(".lc-image"),
      status: root.querySelector(".lc-status"),
      padWrap: root.querySelector(".lc-pad-wrap"),
      pad: root.querySelector(".lc-pad"),
      padCaption: root.querySelector(".lc-pad-caption"),
      note: root.querySelector(".lc-note"),
      sliders: root.querySelector(".lc-sliders"),
    };
    this.ctx = this.el.image.getContext("2d");
    this.padCtx = this.el.pad.getContext("2d");
    this.model = null;
    this.pad = null; // the pad's points and plane, or null when there is no pad
    this.z = null; // Float64Array(L): what is shown
    this.paintedZ = null; // the z of the image on the canvas
    this.dataZ = null; // the last z Python sent
    this.committed = null; // the last z we sent to Python
    this.dragging = null; // "pad" | "slider" | null
    this.raf = 0;
    this.imageDirty = false;
    this.padBg = null; // offscreen canvas with the held-out points
    this.padBgKey = "";
    this.rows = [];
    this.preview = { seq: 0, inflight: 0, sentAt: 0, want: false, timer: 0 };
    this.requested = new Set(); // payload ids asked for, per data object
    this.bindPad();
  }

  // ----- data from Python (every rerun whose data differs) -----
  update(data, setStateValue, setTriggerValue) {
    this.setStateValue = setStateValue;
    this.setTriggerValue = setTriggerValue;
    this.key = data.key;
    G.instances[data.key] = this;
    this.span = data.span;
    this.el.box.style.setProperty("--lc-image-px", `${data.image_px}px`);
    this.el.box.style.setProperty("--lc-pad-px", `${data.pad_px}px`);

    if (data.payload) {
      try {
        CACHE.delete(data.payload.id);
        CACHE.set(data.payload.id, prepare(data.payload));
        G.payloadLoads[data.payload.id] = (G.payloadLoads[data.payload.id] || 0) + 1;
        while (CACHE.size > MAX_CACHED) CACHE.delete(CACHE.keys().next().value);
      } catch (err) {
        this.el.status.textContent = `Could not read the decoder: ${err.message}`;
      }
      this.reportModels(); // Python stops sending the payload from the next run on
    }
    if (data.pad) {
      PADS.delete(data.pad.id);
      PADS.set(data.pad.id, data.pad);
      G.padLoads[data.pad.id] = (G.padLoads[data.pad.id] || 0) + 1;
      while (PADS.size > MAX_PADS) PADS.delete(PADS.keys().next().value);
      this.reportPads(); // Python stops sending this pad from the next run on
    }
    const m = CACHE.get(data.payload_id);
    if (!m) {
      // The tab lost it (reload, eviction): say which ids this tab holds, once per missing id; Python resends.
      this.el.status.textContent = "Loading the decoder…";
      if (!this.requested.has(data.payload_id)) {
        this.requested.add(data.payload_id);
        this.reportModels();
      }
      return;
    }
    CACHE.delete(m.id); CACHE.set(m.id, m); // most recently used last
    const modelChanged = this.model !== m;
    this.model = m;
    if (modelChanged) this.setupModel(data);
    const dims = Array.isArray(data.dims) ? data.dims.filter((d) => d >= 0 && d < m.L) : [...Array(m.L).keys()];
    if (modelChanged || dims.join(",") !== this.dimsKey || data.span !== this.builtSpan) this.buildSliders(dims);

    // Python's z wins unless it is the echo of our own commit or the user is mid-drag.
    const dz = data.z;
    if (modelChanged || !sameZ(dz, this.dataZ)) {
      this.dataZ = dz.slice();
      if (modelChanged || (!this.dragging && !sameZ(dz, this.committed, 1e-4))) {
        this.z = Float64Array.from(dz);
        this.committed = dz.slice();
        this.imageDirty = true;
      }
    }
    const held = data.pad_id ? PADS.get(data.pad_id) : null;
    if (data.pad_id && !held && !this.requested.has(`pad:${data.pad_id}`)) {
      this.requested.add(`pad:${data.pad_id}`); // lost (reload, eviction): say what this tab holds; Python resends
      this.reportPads();
    }
    if (held) { PADS.delete(held.id); PADS.set(held.id, held); }
    const padL = held ? (held.projection ? held.projection.mean.length : held.inverse.L) : -1;
    const pd = padL === m.L ? held : null;
    if (!pd) this.pad = null;
    else if (!this.pad || this.pad.id !== pd.id) this.pad = preparePad(pd);
    this.el.padWrap.hidden = !this.pad;
    this.el.note.hidden = !m.server;
    this.el.note.textContent = m.note;
    if (m.server && data.image) this.showServerImage(data.image);
    this.requestPaint();
  }

  reportModels() {
    this.setStateValue("models", Array.from(CACHE.keys()));
  }

  reportPads() {
    this.setStateValue("pads", Array.from(PADS.keys()));
  }

  setupModel(data) {
    const m = this.model;
    const [, hh, ww] = m.shape;
    this.el.image.width = ww;
    this.el.image.height = hh;
    this.imageData = this.ctx.createImageData(ww, hh);
    this.el.status.textContent = m.server ? "Decoded on the server" : "Decoded in your browser";
    this.padBgKey = "";
    this.paintedZ = null;
  }

  buildSliders(dims) {
    const box = this.el.sliders;
    box.replaceChildren();
    this.rows = [];
    this.dimsKey = dims.join(",");
    this.builtSpan = this.span;
    for (const d of dims) {
      const label = document.createElement("label");
      label.className = "lc-row";
      const name = document.createElement("span");
      name.className = "lc-name";
      name.textContent = `z${subscript(d + 1)}`;
      const input = document.createElement("input");
      input.type = "range";
      input.min = String(-this.span);
      input.max = String(this.span);
      input.step = "0.01";
      input.setAttribute("aria-label", `z${d + 1}`);
      input.dataset.dim = String(d);
      const out = document.createElement("output");
      out.className = "lc-val";
      label.append(name, input, out);
      box.append(label);
      const row = { d, input, out, shown: NaN };
      this.rows.push(row);
      input.addEventListener("pointerdown", () => { this.dragging = "slider"; mark(G.stats.downs, performance.now()); });
      input.addEventListener("input", () => {
        mark(G.stats.moves, performance.now());
        this.z[d] = Number(input.value);
        row.shown = this.z[d];
        this.changed();
      });
      input.addEventListener("change", () => {
        // A pointer release commits now; keyboard steps (also "change") wait until the keys rest.
        const byPointer = this.dragging === "slider";
        if (byPointer) { this.dragging = null; mark(G.stats.ups, performance.now()); }
        this.commit(byPointer);
      });
      input.addEventListener("pointerup", () => {
        if (this.dragging === "slider") { this.dragging = null; mark(G.stats.ups, performance.now()); this.commit(true); }
      });
    }
  }

  // ----- the pad -----
  padToZ(px, py) {
    const [x0, x1, y0, y1] = this.pad.extent;
    const x = Math.min(x1, Math.max(x0, x0 + px * (x1 - x0)));
    const y = Math.min(y1, Math.max(y0, y1 - py * (y1 - y0)));
    this.moveOnPlane(x, y);
  }

  // Move z within the plane through z parallel to the map's axes: its projection lands on (x, y), the rest stays.
  moveOnPlane(x, y) {
    if (this.pad.inv) { // a nonlinear map: z is the inverse of the place, not a shift within a plane
      invAt(this.pad.inv, x, y, this.z);
      this.padXY = [x, y];
      this.padZ = Array.from(this.z);
      return;
    }
    const [p0, p1] = this.project(this.z);
    const [c0, c1] = this.pad.comp;
    const dx = x - p0, dy = y - p1;
    for (let i = 0; i < this.z.length; i++) this.z[i] += dx * c0[i] + dy * c1[i];
  }

  project(z) {
    if (this.pad.inv) {
      // The place we decoded from, while z is still the one decoded there; otherwise z's place by neighbours.
      if (this.padXY && this.padZ && sameZ(Array.from(z), this.padZ, 2e-4)) return this.padXY;
      this.padXY = fwdAt(this.pad.inv, z);
      this.padZ = Array.from(z);
      return this.padXY;
    }
    const { mean, comp } = this.pad;
    let a = 0, b = 0;
    for (let i = 0; i < z.length; i++) { const v = z[i] - mean[i]; a += v * comp[0][i]; b += v * comp[1][i]; }
    return [a, b];
  }

  bindPad() {
    const pad = this.el.pad;
    const at = (e) => {
      const r = pad.getBoundingClientRect();
      this.padToZ((e.clientX - r.left) / r.width, (e.clientY - r.top) / r.height);
    };
    pad.addEventListener("pointerdown", (e) => {
      if (!this.model || !this.pad || e.button !== 0) return;
      pad.setPointerCapture(e.pointerId);
      pad.focus({ preventScroll: true });
      this.dragging = "pad";
      const t = performance.now();
      mark(G.stats.downs, t);
      mark(G.stats.moves, t);
      at(e);
      this.changed();
    });
    pad.addEventListener("pointermove", (e) => {
      if (this.dragging !== "pad") return;
      mark(G.stats.moves, performance.now());
      at(e);
      this.changed();
    });
    const end = (e) => {
      if (this.dragging !== "pad") return;
      this.dragging = null;
      mark(G.stats.ups, performance.now());
      if (pad.hasPointerCapture(e.pointerId)) pad.releasePointerCapture(e.pointerId);
      this.commit(true);
    };
    pad.addEventListener("pointerup", end);
    pad.addEventListener("pointercancel", end);
    pad.addEventListener("keydown", (e) => {
      const dirs = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, 1], ArrowDown: [0, -1] };
      if (!(e.key in dirs) || !this.model || !this.pad) return;
      e.preventDefault();
      const [x0, x1] = this.pad.extent;
      const step = ((x1 - x0) / 50) * (e.shiftKey ? 5 : 1);
      const [p0, p1] = this.project(this.z);
      mark(G.stats.moves, performance.now());
      this.moveOnPlane(p0 + dirs[e.key][0] * step, p1 + dirs[e.key][1] * step);
      this.changed();
      this.commit(false);
    });
  }

  // ----- painting -----
  changed() {
    this.imageDirty = true;
    if (this.model && this.model.server) this.pumpPreview();
    this.requestPaint();
  }

  requestPaint() {
    if (!this.raf) this.raf = requestAnimationFrame(() => this.frame());
  }

  frame() {
    this.raf = 0;
    const m = this.model;
    if (!m || !this.z) return;
    if (this.imageDirty && !m.server) {
      decodeInto(m, this.z, this.imageData.data);
      this.ctx.putImageData(this.imageData, 0, 0);
      this.paintedZ = Array.from(this.z);
      mark(G.stats.paints, { t: performance.now(), moves: G.stats.moves.length, dragging: this.dragging !== null });
    }
    this.imageDirty = false;
    this.paintSliders();
    if (!this.el.padWrap.hidden) this.paintPad();
  }

  paintSliders() {
    for (const row of this.rows) {
      const v = this.z[row.d];
      if (row.shown !== v || row.out.textContent === "") {
        row.input.value = String(v);
        row.shown = v;
      }
      const text = fmt(v);
      if (row.out.textContent !== text) {
        row.out.textContent = text;
        row.input.setAttribute("aria-valuetext", v.toFixed(2));
      }
    }
  }

  themeKey() {
    const cs = getComputedStyle(this.el.box);
    return THEME_VARS.map((n) => cs.getPropertyValue(n).trim()).join("|");
  }

  themeColor(name, fallback) {
    const v = getComputedStyle(this.el.box).getPropertyValue(name).trim();
    return v || fallback;
  }

  paintPad() {
    const m = this.pad;
    const pad = this.el.pad;
    const dpr = window.devicePixelRatio || 1;
    const size = Math.round(pad.clientWidth * dpr) || 280;
    // The theme's colours are part of the key: a theme switch redraws the background. Read here, in the frame, not in
    // update(): there the DOM that Streamlit just changed would make getComputedStyle recompute styles at once.
    const bgKey = `${m.id}:${size}:${this.themeKey()}`;
    // A rerun that sends back the z already on screen (every release) repaints nothing: in Chromium without a GPU
    // this pad's drawImage and the background were ~9 ms of the page's main thread per release.
    const paintKey = `${bgKey}:${this.z.join(",")}`;
    if (paintKey === this.padPaintKey && this.padBgKey === bgKey) return;
    this.padPaintKey = paintKey;
    if (this.padBgKey !== bgKey) {
      pad.width = size;
      pad.height = size;
      this.padBg = this.drawPadBackground(size, dpr);
      this.padBgKey = bgKey;
      this.el.padCaption.textContent = m.caption;
    }
    const c = this.padCtx;
    c.drawImage(this.padBg, 0, 0);
    const [x0, x1, y0, y1] = m.extent;
    const [p0, p1] = this.project(this.z);
    const px = ((p0 - x0) / (x1 - x0)) * size;
    const py = (1 - (p1 - y0) / (y1 - y0)) * size;
    const r = 7 * dpr;
    c.beginPath();
    c.arc(px, py, r, 0, 2 * Math.PI);
    c.lineWidth = 4 * dpr;
    c.strokeStyle = this.themeColor("--st-background-color", "#fff");
    c.stroke();
    c.lineWidth = 2.5 * dpr;
    c.strokeStyle = this.themeColor("--st-primary-color", "#ff4b4b");
    c.stroke();
    c.beginPath();
    c.arc(px, py, 1.5 * dpr, 0, 2 * Math.PI);
    c.fillStyle = this.themeColor("--st-primary-color", "#ff4b4b");
    c.fill();
    this.el.pad.setAttribute("aria-valuetext", `${m.axisTitles[0]} ${p0.toFixed(2)}, ${m.axisTitles[1]} ${p1.toFixed(2)}`);
  }

  drawPadBackground(size, dpr) {
    const m = this.pad;
    const bg = document.createElement("canvas");
    bg.width = size;
    bg.height = size;
    const c = bg.getContext("2d");
    c.fillStyle = this.themeColor("--st-secondary-background-color", "#f0f2f6");
    c.fillRect(0, 0, size, size);
    const [x0, x1, y0, y1] = m.extent;
    const sx = (x) => ((x - x0) / (x1 - x0)) * size;
    const sy = (y) => (1 - (y - y0) / (y1 - y0)) * size;
    const text = this.themeColor("--st-text-color", "#31333f");
    // Axes through 0 (the prior's mean for raw latents, the data's mean for PCA), faint.
    c.strokeStyle = text;
    c.globalAlpha = 0.25;
    c.lineWidth = dpr;
    c.beginPath();
    if (x0 < 0 && x1 > 0) { c.moveTo(sx(0), 0); c.lineTo(sx(0), size); }
    if (y0 < 0 && y1 > 0) { c.moveTo(0, sy(0)); c.lineTo(size, sy(0)); }
    c.stroke();
    c.globalAlpha = 0.7;
    const pts = m.points;
    if (pts) {
      const r = 1.6 * dpr;
      for (let i = 0; i < pts.length / 2; i++) {
        c.fillStyle = m.labels ? PALETTE[m.labels[i] % PALETTE.length] : text;
        c.beginPath();
        c.arc(sx(pts[2 * i]), sy(pts[2 * i + 1]), r, 0, 2 * Math.PI);
        c.fill();
      }
    }
    c.globalAlpha = 0.85;
    c.fillStyle = text;
    c.font = `${11 * dpr}px ${this.themeColor("--st-font", "sans-serif")}`;
    c.textBaseline = "bottom";
    c.textAlign = "right";
    c.fillText(m.axisTitles[0], size - 4 * dpr, size - 3 * dpr);
    c.textAlign = "left";
    c.textBaseline = "top";
    c.fillText(m.axisTitles[1], 4 * dpr, 3 * dpr);
    if (m.labels && m.classNames) {
      // A compact legend along the bottom-left: the class names in their colours.
      c.textBaseline = "bottom";
      let x = 4 * dpr;
      for (let k = 0; k < m.classNames.length && k < PALETTE.length; k++) {
        c.fillStyle = PALETTE[k];
        const label = m.classNames[k];
        c.fillText(label, x, size - 3 * dpr);
        x += c.measureText(label).width + 5 * dpr;
        if (x > size * 0.7) break;
      }
    }
    c.globalAlpha = 1;
    return bg;
  }

  // ----- Python round trips -----
  commit(now) {
    clearTimeout(this.commitTimer);
    if (!now) {
      this.commitTimer = setTimeout(() => this.commit(true), COMMIT_DELAY_MS);
      return;
    }
    if (!this.z || this.dragging) return;
    // Rounded so that Python's z and the painted z are the same numbers.
    const zr = Array.from(this.z, (v) => Math.round(v * 1e4) / 1e4);
    if (!sameZ(zr, Array.from(this.z), 0)) { this.z = Float64Array.from(zr); this.changed(); }
    if (sameZ(zr, this.committed, 0)) return;
    this.committed = zr;
    this.setStateValue("z", zr);
  }

  pumpPreview() {
    const p = this.preview;
    p.want = true;
    const now = performance.now();
    if (p.inflight && now - p.sentAt < PREVIEW_TIMEOUT_MS) return;
    if (now - p.sentAt < PREVIEW_MIN_GAP_MS) {
      if (!p.timer) p.timer = setTimeout(() => { p.timer = 0; this.pumpPreview(); }, PREVIEW_MIN_GAP_MS);
      return;
    }
    p.want = false;
    p.inflight = ++p.seq;
    p.sentAt = now;
    this.setTriggerValue("preview", { seq: p.seq, z: Array.from(this.z, (v) => Math.round(v * 1e4) / 1e4) });
  }

  showServerImage(img) {
    writePixels(b64ToBytes(img.pixels), this.model.shape, this.imageData.data, 1 / 255);
    this.ctx.putImageData(this.imageData, 0, 0);
    this.paintedZ = img.z.slice();
    mark(G.stats.paints, { t: performance.now(), moves: G.stats.moves.length, dragging: this.dragging !== null });
    const p = this.preview;
    if (img.seq && img.seq === p.inflight) {
      p.inflight = 0;
      if (p.want) this.pumpPreview();
    }
  }

  // For tests: what is on the canvas and which z it shows.
  snapshot() {
    const { width, height } = this.el.image;
    return {
      modelId: this.model && this.model.id, server: !!(this.model && this.model.server),
      z: this.z && Array.from(this.z), paintedZ: this.paintedZ, committed: this.committed, width, height,
      pixels: Array.from(this.ctx.getImageData(0, 0, width, height).data),
    };
  }
}

export default function (component) {
  const { parentElement, setStateValue, setTriggerValue } = component;
  const data = Array.isArray(component.data) ? component.data[0] : component.data; // Python sends [data]
  let ctl = CONTROLLERS.get(parentElement);
  if (!ctl) {
    ctl = new Controller(parentElement);
    CONTROLLERS.set(parentElement, ctl);
  }
  ctl.update(data, setStateValue, setTriggerValue);
  // Listeners live on this component's own elements, which go away with it; nothing global to undo.
  return () => {};
}
