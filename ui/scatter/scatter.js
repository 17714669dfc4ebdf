// Latent map scatter: tens of thousands of points drawn by writing pixels (canvas 2-D ImageData, no GPU needed),
// pan/zoom, hover thumbnails from an atlas held in the tab, click to pick, box and lasso selection.
//
// Python sends each big payload once per tab: a "layer" (positions + colours of one map) and an "atlas" (every point's
// thumbnail in one PNG). This module keeps them in CACHE and reports the ids it holds as the state value "held";
// Python sends only what is missing. Picks and selections go back as triggers "pick" and "select".

const CACHE = new Map(); // id -> prepared layer or atlas, least recently used first
const MAX_CACHED = 6;
const CONTROLLERS = new WeakMap();
const PICK_PX = 7; // a click or hover within this many CSS pixels of a point is on that point
const CLICK_SLOP_PX = 4; // a press that moves less than this is a click, not a drag

// Instrumentation read by bench/map_latency.py and the browser tests.
const G = (window.__mapScatter = window.__mapScatter || { instances: {}, loads: {} });
G.resetStats = () => { G.stats = { paints: [], hovers: [], frames: [] }; };
if (!G.stats) G.resetStats();
const CAP = 20000;
const mark = (list, v) => { if (list.length < CAP) list.push(v); };

function b64ToBytes(s) {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function hexToRgb(h) {
  const m = /rgba?\(\s*(\d+)[,\s]+(\d+)[,\s]+(\d+)/.exec(h);
  if (m) return [Number(m[1]), Number(m[2]), Number(m[3])];
  let x = h.replace("#", "");
  if (x.length === 3) x = x.split("").map((c) => c + c).join("");
  const v = parseInt(x, 16);
  return Number.isFinite(v) ? [(v >> 16) & 255, (v >> 8) & 255, v & 255] : [255, 255, 255];
}

function prepareLayer(p) {
  const xy = new Float32Array(b64ToBytes(p.points).buffer);
  const n = xy.length / 2;
  let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
  for (let i = 0; i < n; i++) {
    const x = xy[2 * i], y = xy[2 * i + 1];
    if (x < x0) x0 = x; if (x > x1) x1 = x; if (y < y0) y0 = y; if (y > y1) y1 = y;
  }
  const layer = {
    id: p.id, kind: "layer", n, xy, extent: [x0, x1, y0, y1], color: b64ToBytes(p.color), palette: p.palette.map(hexToRgb),
    paletteHex: p.palette, legend: p.legend || [], colorbar: p.colorbar || null, names: p.names || null,
    labels: p.labels ? b64ToBytes(p.labels) : null, axes: p.axes || ["", ""], geometry: p.geometry,
  };
  // Draw order: a fixed shuffle, so that no class is always painted over the others.
  const order = new Uint32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  let s = 12345;
  for (let i = n - 1; i > 0; i--) {
    s = (s * 1103515245 + 12345) >>> 0;
    const j = s % (i + 1);
    const t = order[i]; order[i] = order[j]; order[j] = t;
  }
  layer.order = order;
  // A uniform grid over the extent for hover and click look-ups.
  const G_ = 128;
  const cw = (x1 - x0) / G_ || 1, ch = (y1 - y0) / G_ || 1;
  const counts = new Uint32Array(G_ * G_ + 1);
  const cell = new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    const cx = Math.min(G_ - 1, Math.floor((xy[2 * i] - x0) / cw));
    const cy = Math.min(G_ - 1, Math.floor((xy[2 * i + 1] - y0) / ch));
    cell[i] = cy * G_ + cx;
    counts[cell[i] + 1]++;
  }
  for (let c = 0; c < G_ * G_; c++) counts[c + 1] += counts[c];
  const fill = counts.slice(0, G_ * G_);
  const items = new Uint32Array(n);
  for (let i = 0; i < n; i++) items[fill[cell[i]]++] = i;
  layer.grid = { G: G_, cw, ch, starts: counts, items };
  return layer;
}

function prepareAtlas(p) {
  const a = { id: p.id, kind: "atlas", n: p.n, w: p.w, h: p.h, cols: p.cols, image: null, ready: false };
  const img = new Image();
  img.onload = () => { a.image = img; a.ready = true; };
  img.src = `data:image/png;base64,${p.png}`;
  return a;
}

function remember(item) {
  CACHE.delete(item.id);
  CACHE.set(item.id, item);
  G.loads[item.id] = (G.loads[item.id] || 0) + 1;
  while (CACHE.size > MAX_CACHED) CACHE.delete(CACHE.keys().next().value);
}

function pointInPolygon(x, y, poly) {
  let inside = false;
  for (let i = 0, j = poly.length - 1; i < poly.length; j = i++) {
    const [xi, yi] = poly[i], [xj, yj] = poly[j];
    if ((yi > y) !== (yj > y) && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) inside = !inside;
  }
  return inside;
}

class Controller {
  constructor(root) {
    this.root = root;
    this.el = {
      box: root.querySelector(".sc"), canvas: root.querySelector(".sc-canvas"), tip: root.querySelector(".sc-tip"),
      thumb: root.querySelector(".sc-thumb"), tipText: root.querySelector(".sc-tip-text"),
      status: root.querySelector(".sc-status"), legend: root.querySelector(".sc-legend"),
      tools: [...root.querySelectorAll(".sc-tool")], reset: root.querySelector(".sc-reset"),
    };
    this.ctx = this.el.canvas.getContext("2d");
    this.thumbCtx = this.el.thumb.getContext("2d");
    this.layer = null;
    this.atlas = null;
    this.view = null; // {cx, cy, s}: data centre and pixels per data unit (CSS pixels)
    this.mode = "pan";
    this.selected = null; // Uint8Array(n) or null
    this.overlay = { marks: [], ellipse: null };
    this.drag = null;
    this.raf = 0;
    this.requested = new Set();
    this.bind();
  }

  update(data, setStateValue, setTriggerValue) {
    this.setStateValue = setStateValue;
    this.setTriggerValue = setTriggerValue;
    this.key = data.key;
    G.instances[data.key] = this;
    this.height = data.height;
    let fresh = false;
    for (const p of [data.layer, data.atlas]) {
      if (!p) continue;
      try { remember(p.kind === "atlas" ? prepareAtlas(p) : prepareLayer(p)); fresh = true; }
      catch (err) { this.el.status.textContent = `Could not read the map: ${err.message}`; }
    }
    if (fresh) this.reportHeld();
    const layer = CACHE.get(data.layer_id);
    if (!layer) {
      this.el.status.textContent = "Loading the map…";
      if (!this.requested.has(data.layer_id)) { this.requested.add(data.layer_id); this.reportHeld(); }
      return;
    }
    CACHE.delete(layer.id); CACHE.set(layer.id, layer);
    const atlas = data.atlas_id ? CACHE.get(data.atlas_id) : null;
    this.atlas = atlas || null;
    if (data.atlas_id && !atlas && !this.requested.has(data.atlas_id)) { this.requested.add(data.atlas_id); this.reportHeld(); }
    const geometryChanged = !this.layer || this.layer.geometry !== layer.geometry;
    if (!this.layer || this.layer.n !== layer.n) this.selected = null;
    if (data.selection_reset !== undefined && data.selection_reset !== this.selectionReset) {
      this.selectionReset = data.selection_reset;
      this.selected = null;
    }
    this.layer = layer;
    this.overlay = { marks: data.marks || [], ellipse: data.ellipse || null };
    this.clickable = data.clickable !== false;
    this.el.status.textContent = data.status || "";
    this.resize();
    if (geometryChanged || !this.view) this.resetView();
    this.drawLegend();
    this.firstPaintPending = layer.id;
    this.requestPaint();
  }

  reportHeld() {
    this.setStateValue("held", Array.from(CACHE.keys()));
  }

  resize() {
    const dpr = window.devicePixelRatio || 1;
    const w = Math.max(200, Math.round(this.el.canvas.clientWidth || this.root.clientWidth || 600));
    const h = this.height;
    this.el.canvas.style.height = `${h}px`;
    if (this.W !== w || this.H !== h || this.dpr !== dpr) {
      this.W = w; this.H = h; this.dpr = dpr;
      this.el.canvas.width = Math.round(w * dpr);
      this.el.canvas.height = Math.round(h * dpr);
      this.image = this.ctx.createImageData(this.el.canvas.width, this.el.canvas.height);
      this.pixels = new Uint32Array(this.image.data.buffer);
    }
  }

  resetView() {
    const [x0, x1, y0, y1] = this.layer.extent;
    const dx = Math.max(x1 - x0, 1e-6), dy = Math.max(y1 - y0, 1e-6);
    this.view = { cx: (x0 + x1) / 2, cy: (y0 + y1) / 2, s: 0.92 * Math.min(this.W / dx, this.H / dy) };
  }

  toScreen(x, y) {
    const v = this.view;
    return [(x - v.cx) * v.s + this.W / 2, this.H / 2 - (y - v.cy) * v.s];
  }

  toData(px, py) {
    const v = this.view;
    return [(px - this.W / 2) / v.s + v.cx, v.cy - (py - this.H / 2) / v.s];
  }

  themeColor(name, fallback) {
    const v = getComputedStyle(this.el.box).getPropertyValue(name).trim();
    return v || fallback;
  }

  drawLegend() {
    const L = this.layer;
    const box = this.el.legend;
    box.replaceChildren();
    if (L.colorbar) {
      const s = document.createElement("div");
      const stops = L.paletteHex.filter((_, i) => i % 32 === 0).join(",");
      s.innerHTML = "";
      const bar = document.createElement("div");
      bar.style.cssText = `width:12rem;height:0.6rem;border-radius:3px;background:linear-gradient(to right,${stops})`;
      const t = document.createElement("div");
      t.textContent = `${L.colorbar.title}: ${L.colorbar.lo} … ${L.colorbar.hi}`;
      s.style.cssText = "display:flex;gap:0.5rem;align-items:center";
      s.append(bar, t);
      box.append(s);
      return;
    }
    for (const [name, hex] of L.legend) {
      const s = document.createElement("span");
      s.style.setProperty("--c", hex);
      s.textContent = name;
      box.append(s);
    }
  }

  requestPaint() {
    if (!this.raf) this.raf = requestAnimationFrame(() => this.paint());
  }

  paint() {
    this.raf = 0;
    const L = this.layer;
    if (!L || !this.view) return;
    const t0 = performance.now();
    const dpr = this.dpr, Wp = this.el.canvas.width, Hp = this.el.canvas.height;
    const px = this.pixels;
    const [br, bg, bb] = hexToRgb(this.themeColor("--st-background-color", "#ffffff"));
    const back = (255 << 24) | (bb << 16) | (bg << 8) | br;
    px.fill(back);
    // Colours as little-endian RGBA words; faded variants for points outside a selection.
    const pal = L.palette.map(([r, g, b]) => (255 << 24) | (b << 16) | (g << 8) | r);
    const fade = L.palette.map(([r, g, b]) => {
      const m = (c, k) => Math.round(0.18 * c + 0.82 * k);
      return (255 << 24) | (m(b, bb) << 16) | (m(g, bg) << 8) | m(r, br);
    });
    const v = this.view;
    const sx = v.s * dpr, ox = (this.W / 2 - v.cx * v.s) * dpr;
    const sy = -v.s * dpr, oy = (this.H / 2 + v.cy * v.s) * dpr;
    const rad = Math.max(1, Math.min(4, Math.round((L.n > 20000 ? 1 : 1.5) * dpr * Math.sqrt(Math.max(1, v.s / this.baseScale())))));
    const sel = this.selected;
    const passes = sel ? [0, 1] : [1];
    for (const pass of passes) {
      for (let k = 0; k < L.n; k++) {
        const i = L.order[k];
        if (sel && (sel[i] ? 1 : 0) !== pass) continue;
        const x = Math.round(L.xy[2 * i] * sx + ox), y = Math.round(L.xy[2 * i + 1] * sy + oy);
        if (x < -rad || y < -rad || x >= Wp + rad || y >= Hp + rad) continue;
        const col = pass === 0 ? fade[L.color[i]] : pal[L.color[i]];
        const xa = Math.max(0, x - rad), xb = Math.min(Wp - 1, x + rad);
        const ya = Math.max(0, y - rad), yb = Math.min(Hp - 1, y + rad);
        for (let yy = ya; yy <= yb; yy++) {
          const row = yy * Wp, dy = yy - y;
          for (let xx = xa; xx <= xb; xx++) {
            const dx = xx - x;
            if (dx * dx + dy * dy <= rad * rad + rad) px[row + xx] = col;
          }
        }
      }
    }
    this.ctx.putImageData(this.image, 0, 0);
    this.paintOverlay();
    const t1 = performance.now();
    mark(G.stats.frames, { t: t1, ms: t1 - t0, n: L.n });
    if (this.firstPaintPending) {
      mark(G.stats.paints, { t: t1, layer: this.firstPaintPending, n: L.n });
      this.el.canvas.dataset.layer = this.firstPaintPending;
      this.firstPaintPending = null;
    }
  }

  baseScale() {
    const [x0, x1, y0, y1] = this.layer.extent;
    return 0.92 * Math.min(this.W / Math.max(x1 - x0, 1e-6), this.H / Math.max(y1 - y0, 1e-6));
  }

  paintOverlay() {
    const c = this.ctx, dpr = this.dpr, L = this.layer;
    c.save();
    c.scale(dpr, dpr);
    const text = this.themeColor("--st-text-color", "#31333f");
    c.fillStyle = text;
    c.globalAlpha = 0.75;
    c.font = `11px ${this.themeColor("--st-font", "sans-serif")}`;
    c.textAlign = "right"; c.textBaseline = "bottom";
    c.fillText(L.axes[0], this.W - 6, this.H - 4);
    c.textAlign = "left"; c.textBaseline = "top";
    c.fillText(L.axes[1], 6, 4);
    c.globalAlpha = 1;
    const ov = this.overlay;
    if (ov.ellipse && ov.ellipse.length) {
      c.beginPath();
      ov.ellipse.forEach(([x, y], i) => { const [a, b] = this.toScreen(x, y); i ? c.lineTo(a, b) : c.moveTo(a, b); });
      c.closePath();
      c.setLineDash([4, 3]); c.lineWidth = 1.5; c.strokeStyle = text; c.stroke(); c.setLineDash([]);
    }
    for (const m of ov.marks) {
      const [a, b] = this.toScreen(m.x, m.y);
      c.beginPath(); c.arc(a, b, 9, 0, 2 * Math.PI);
      c.lineWidth = 4; c.strokeStyle = this.themeColor("--st-background-color", "#fff"); c.stroke();
      c.lineWidth = 2.5; c.strokeStyle = m.color || "#d62728"; c.stroke();
      if (m.label) {
        c.font = `bold 12px ${this.themeColor("--st-font", "sans-serif")}`;
        c.textAlign = "left"; c.textBaseline = "middle";
        c.lineWidth = 3; c.strokeStyle = this.themeColor("--st-background-color", "#fff");
        c.strokeText(m.label, a + 12, b); c.fillStyle = m.color || "#d62728"; c.fillText(m.label, a + 12, b);
      }
    }
    const d = this.drag;
    if (d && (d.mode === "box" || d.mode === "lasso") && d.path.length > 1) {
      c.beginPath();
      if (d.mode === "box") {
        const [p, q] = [d.path[0], d.path[d.path.length - 1]];
        c.rect(Math.min(p[0], q[0]), Math.min(p[1], q[1]), Math.abs(q[0] - p[0]), Math.abs(q[1] - p[1]));
      } else {
        d.path.forEach(([a, b], i) => (i ? c.lineTo(a, b) : c.moveTo(a, b)));
        c.closePath();
      }
      c.fillStyle = "rgba(78,121,167,0.12)"; c.fill();
      c.lineWidth = 1.5; c.strokeStyle = "#4e79a7"; c.stroke();
    }
    c.restore();
  }

  // ----- look-ups -----
  nearest(px, py) {
    const L = this.layer;
    if (!L) return -1;
    const [x, y] = this.toData(px, py);
    const r = PICK_PX / this.view.s;
    const g = L.grid;
    const [x0, , y0] = L.extent;
    const ca = Math.max(0, Math.floor((x - r - x0) / g.cw)), cb = Math.min(g.G - 1, Math.floor((x + r - x0) / g.cw));
    const ra = Math.max(0, Math.floor((y - r - y0) / g.ch)), rb = Math.min(g.G - 1, Math.floor((y + r - y0) / g.ch));
    let best = -1, bd = r * r;
    for (let cy = ra; cy <= rb; cy++) {
      for (let cx = ca; cx <= cb; cx++) {
        const c = cy * g.G + cx;
        for (let k = g.starts[c]; k < g.starts[c + 1]; k++) {
          const i = g.items[k];
          const dx = L.xy[2 * i] - x, dy = L.xy[2 * i + 1] - y;
          const dd = dx * dx + dy * dy;
          if (dd <= bd) { bd = dd; best = i; }
        }
      }
    }
    return best;
  }

  showTip(i, px, py, t0) {
    const tip = this.el.tip, L = this.layer;
    if (i < 0) { tip.hidden = true; this.el.canvas.dataset.hover = ""; return; }
    const name = L.labels && L.names ? L.names[L.labels[i]] ?? String(L.labels[i]) : null;
    this.el.tipText.textContent = `#${i}${name !== null ? ` · ${name}` : ""}`;
    const a = this.atlas;
    if (a && a.ready && i < a.n) {
      if (this.el.thumb.width !== a.w || this.el.thumb.height !== a.h) { this.el.thumb.width = a.w; this.el.thumb.height = a.h; }
      const col = i % a.cols, row = Math.floor(i / a.cols);
      this.thumbCtx.drawImage(a.image, col * a.w, row * a.h, a.w, a.h, 0, 0, a.w, a.h);
      this.el.thumb.hidden = false;
    } else {
      this.el.thumb.hidden = true;
    }
    tip.hidden = false;
    const left = px + 14 + 100 > this.W ? px - 110 : px + 14;
    const top = py + 14 + 110 > this.H ? py - 120 : py + 14;
    tip.style.left = `${left}px`;
    tip.style.top = `${top}px`;
    this.el.canvas.dataset.hover = String(i);
    mark(G.stats.hovers, { i, ms: performance.now() - t0, thumb: !this.el.thumb.hidden });
  }

  select(path, mode) {
    const L = this.layer;
    const sel = new Uint8Array(L.n);
    let count = 0;
    const ids = [];
    if (mode === "box") {
      const [p, q] = [this.toData(...path[0]), this.toData(...path[path.length - 1])];
      const xa = Math.min(p[0], q[0]), xb = Math.max(p[0], q[0]), ya = Math.min(p[1], q[1]), yb = Math.max(p[1], q[1]);
      for (let i = 0; i < L.n; i++) {
        const x = L.xy[2 * i], y = L.xy[2 * i + 1];
        if (x >= xa && x <= xb && y >= ya && y <= yb) { sel[i] = 1; ids.push(i); count++; }
      }
    } else {
      const poly = path.map(([a, b]) => this.toData(a, b));
      let xa = Infinity, xb = -Infinity, ya = Infinity, yb = -Infinity;
      for (const [x, y] of poly) { xa = Math.min(xa, x); xb = Math.max(xb, x); ya = Math.min(ya, y); yb = Math.max(yb, y); }
      for (let i = 0; i < L.n; i++) {
        const x = L.xy[2 * i], y = L.xy[2 * i + 1];
        if (x >= xa && x <= xb && y >= ya && y <= yb && pointInPolygon(x, y, poly)) { sel[i] = 1; ids.push(i); count++; }
      }
    }
    this.selected = count ? sel : null;
    this.requestPaint();
    this.setTriggerValue("select", { ids, how: mode, layer: L.id });
  }

  // ----- pointer -----
  bind() {
    const cv = this.el.canvas;
    const at = (e) => { const r = cv.getBoundingClientRect(); return [e.clientX - r.left, e.clientY - r.top]; };
    for (const b of this.el.tools) {
      b.addEventListener("click", () => {
        this.mode = b.dataset.mode;
        for (const o of this.el.tools) o.setAttribute("aria-pressed", String(o === b));
        cv.style.cursor = this.mode === "pan" ? "crosshair" : "cell";
      });
    }
    this.el.reset.addEventListener("click", () => { if (this.layer) { this.resetView(); this.requestPaint(); } });
    cv.addEventListener("pointerdown", (e) => {
      if (!this.layer || e.button !== 0) return;
      cv.setPointerCapture(e.pointerId);
      const p = at(e);
      const mode = e.shiftKey && this.mode === "pan" ? "box" : this.mode;
      this.drag = { mode, start: p, last: p, path: [p], moved: false, view: { ...this.view } };
      this.el.tip.hidden = true;
    });
    cv.addEventListener("pointermove", (e) => {
      const t0 = performance.now();
      const p = at(e);
      const d = this.drag;
      if (!d) {
        if (this.layer) this.showTip(this.nearest(p[0], p[1]), p[0], p[1], t0);
        return;
      }
      if (Math.hypot(p[0] - d.start[0], p[1] - d.start[1]) > CLICK_SLOP_PX) d.moved = true;
      if (d.mode === "pan") {
        this.view.cx = d.view.cx - (p[0] - d.start[0]) / this.view.s;
        this.view.cy = d.view.cy + (p[1] - d.start[1]) / this.view.s;
      } else {
        d.path.push(p);
      }
      this.requestPaint();
    });
    const end = (e) => {
      const d = this.drag;
      if (!d) return;
      this.drag = null;
      if (cv.hasPointerCapture(e.pointerId)) cv.releasePointerCapture(e.pointerId);
      if (!d.moved) {
        this.click(at(e));
      } else if (d.mode !== "pan") {
        if (d.mode === "box") d.path.push(at(e));
        if (d.path.length > 2 || d.mode === "box") this.select(d.path, d.mode);
      }
      this.requestPaint();
    };
    cv.addEventListener("pointerup", end);
    cv.addEventListener("pointercancel", end);
    cv.addEventListener("pointerleave", () => { if (!this.drag) this.el.tip.hidden = true; });
    cv.addEventListener("wheel", (e) => {
      if (!this.layer) return;
      e.preventDefault();
      const p = at(e);
      const [x, y] = this.toData(p[0], p[1]);
      const f = Math.exp(-e.deltaY * 0.0015);
      this.view.s = Math.min(1e6, Math.max(1e-6, this.view.s * f));
      // keep the data point under the pointer where it was
      this.view.cx = x - (p[0] - this.W / 2) / this.view.s;
      this.view.cy = y + (p[1] - this.H / 2) / this.view.s;
      this.requestPaint();
    }, { passive: false });
    cv.addEventListener("dblclick", () => { if (this.layer) { this.resetView(); this.requestPaint(); } });
    new ResizeObserver(() => { if (this.layer) { this.resize(); this.requestPaint(); } }).observe(cv);
  }

  click(p) {
    const i = this.nearest(p[0], p[1]);
    if (i >= 0) {
      this.setTriggerValue("pick", { kind: "point", index: i, layer: this.layer.id });
    } else if (this.clickable) {
      const [x, y] = this.toData(p[0], p[1]);
      this.setTriggerValue("pick", { kind: "position", xy: [x, y], layer: this.layer.id });
    }
  }

  // For tests and the bench: where point i is on the page (CSS pixels, viewport coordinates).
  screenOf(i) {
    const r = this.el.canvas.getBoundingClientRect();
    const [a, b] = this.toScreen(this.layer.xy[2 * i], this.layer.xy[2 * i + 1]);
    return { x: r.left + a, y: r.top + b };
  }

  pageOf(x, y) {
    const r = this.el.canvas.getBoundingClientRect();
    const [a, b] = this.toScreen(x, y);
    return { x: r.left + a, y: r.top + b };
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
  return () => {};
}
