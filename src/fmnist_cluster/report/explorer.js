// fmnist-cluster report explorer: plain JavaScript on <canvas>, no network, no libraries.
// Reads the JSON in <script id="explorer-data"> (see report/explorer.py) and fills <div id="explorer">.
// Every string from the data is shown with textContent, never parsed as HTML. Images are drawn
// dark on white, like the report's other montages.
(function () {
  "use strict";
  const root = document.getElementById("explorer");
  const source = document.getElementById("explorer-data");
  if (!root || !source) return;
  const data = JSON.parse(source.textContent);
  const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#393b79", "#ad494a", "#637939", "#8c6d31", "#7b4173", "#3182bd", "#e6550d",
    "#31a354", "#756bb1", "#636363"];
  const NOISE = "#c4c4c4";
  const W = 640, H = 560, PAD = 18, MONTAGE_MAX = 400;

  function bytes(b64) {
    const s = atob(b64);
    const out = new Uint8Array(s.length);
    for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
    return out;
  }
  const f32 = (b64) => new Float32Array(bytes(b64).buffer);
  const i32 = (b64) => new Int32Array(bytes(b64).buffer);
  async function inflate(b64) {
    const stream = new Blob([bytes(b64)]).stream().pipeThrough(new DecompressionStream("deflate"));
    return new Uint8Array(await new Response(stream).arrayBuffer());
  }
  function el(tag, parent, props) {
    const node = document.createElement(tag);
    if (props) {
      for (const [k, v] of Object.entries(props)) {
        if (k === "text") node.textContent = v;
        else if (k === "class") node.className = v;
        else node.setAttribute(k, v);
      }
    }
    if (parent) parent.appendChild(node);
    return node;
  }
  const colour = (v) => (v < 0 ? NOISE : PALETTE[v % PALETTE.length]);
  function hiDpi(canvas, w, h) {
    const r = window.devicePixelRatio || 1;
    canvas.width = Math.round(w * r);
    canvas.height = Math.round(h * r);
    canvas.style.width = w + "px";
    canvas.style.height = h + "px";
    const ctx = canvas.getContext("2d");
    ctx.setTransform(r, 0, 0, r, 0, 0);
    return ctx;
  }

  // ---- images: one pool of 28x28 tiles -------------------------------------------------
  let tiles = null;
  const SIDE = data.images ? data.images.side : 28;
  function tileCanvas(index, scale) {
    const src = tiles;
    const c = document.createElement("canvas");
    c.width = SIDE * scale;
    c.height = SIDE * scale;
    const ctx = c.getContext("2d");
    const img = ctx.createImageData(c.width, c.height);
    const base = index * SIDE * SIDE;
    for (let y = 0; y < c.height; y++) {
      for (let x = 0; x < c.width; x++) {
        const v = 255 - src[base + Math.floor(y / scale) * SIDE + Math.floor(x / scale)];
        const o = (y * c.width + x) * 4;
        img.data[o] = img.data[o + 1] = img.data[o + 2] = v;
        img.data[o + 3] = 255;
      }
    }
    ctx.putImageData(img, 0, 0);
    return c;
  }
  function montage(canvas, indices, perRow, scale) {
    const n = Math.min(indices.length, MONTAGE_MAX);
    const cols = Math.max(1, Math.min(perRow, n));
    const rows = Math.ceil(n / cols);
    const step = SIDE * scale + 1;
    canvas.width = cols * step;
    canvas.height = Math.max(rows, 1) * step;
    const ctx = canvas.getContext("2d");
    ctx.fillStyle = "#cccccc";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    for (let k = 0; k < n; k++) {
      ctx.drawImage(tileCanvas(indices[k], scale), (k % cols) * step, Math.floor(k / cols) * step);
    }
    canvas.hidden = n === 0;
  }

  // ---- the scatter of an embedding -----------------------------------------------------
  function scatter() {
    const n = data.n;
    const rowIds = i32(data.rows);
    const maps = data.maps.map((m) => ({ name: m.name, xy: f32(m.xy) }));
    const colourings = data.colourings.map((c) => ({ name: c.name, values: i32(c.values), names: c.names }));
    const pointImages = data.point_images ? i32(data.point_images) : null;
    const state = { map: 0, colour: 0, mode: "box", selected: null, drag: null, bounds: null };
    const sx = new Float32Array(n), sy = new Float32Array(n);

    const box = el("div", root, { class: "ex-block" });
    el("h3", box, { text: "Embeddings: hover a point to see its image; drag to select" });
    const controls = el("div", box, { class: "ex-controls" });
    el("label", controls, { text: "map " });
    const mapSel = el("select", controls, { id: "ex-map" });
    maps.forEach((m, i) => el("option", mapSel, { value: String(i), text: m.name }));
    el("label", controls, { text: " colour by " });
    const colSel = el("select", controls, { id: "ex-colour" });
    colourings.forEach((c, i) => el("option", colSel, { value: String(i), text: c.name }));
    el("label", controls, { text: " selection " });
    const modeSel = el("select", controls, { id: "ex-mode" });
    el("option", modeSel, { value: "box", text: "box" });
    el("option", modeSel, { value: "lasso", text: "lasso" });
    const clear = el("button", controls, { id: "ex-clear", type: "button", text: "clear selection" });
    const body = el("div", box, { class: "ex-body" });
    const canvas = el("canvas", body, { id: "ex-canvas" });
    const ctx = hiDpi(canvas, W, H);
    const legend = el("div", body, { id: "ex-legend", class: "ex-legend" });
    const tip = el("div", root, { id: "ex-tip", class: "ex-tip" });
    tip.hidden = true;
    const tipImg = el("div", tip);
    const tipText = el("div", tip, { class: "ex-tip-text" });
    const sel = el("div", box, { id: "ex-selection", class: "ex-selection" });
    const selText = el("p", sel, { id: "ex-sel-count", text: "No selection: drag on the map." });
    const csv = el("a", sel, { id: "ex-csv", download: "selection.csv", text: "download the row ids (CSV)" });
    csv.hidden = true;
    const mont = el("canvas", sel, { id: "ex-montage" });
    mont.hidden = true;

    function bounds() {
      const xy = maps[state.map].xy;
      let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
      for (let i = 0; i < n; i++) {
        const x = xy[2 * i], y = xy[2 * i + 1];
        if (!Number.isFinite(x) || !Number.isFinite(y)) continue;
        if (x < x0) x0 = x;
        if (x > x1) x1 = x;
        if (y < y0) y0 = y;
        if (y > y1) y1 = y;
      }
      if (!(x1 > x0)) { x0 -= 1; x1 += 1; }
      if (!(y1 > y0)) { y0 -= 1; y1 += 1; }
      return { x0, x1, y0, y1 };
    }
    function toScreen(x, y) {
      const b = state.bounds;
      return [PAD + ((x - b.x0) / (b.x1 - b.x0)) * (W - 2 * PAD), H - PAD - ((y - b.y0) / (b.y1 - b.y0)) * (H - 2 * PAD)];
    }
    function toData(px, py) {
      const b = state.bounds;
      return [b.x0 + ((px - PAD) / (W - 2 * PAD)) * (b.x1 - b.x0), b.y0 + ((H - PAD - py) / (H - 2 * PAD)) * (b.y1 - b.y0)];
    }
    function draw() {
      state.bounds = bounds();
      const xy = maps[state.map].xy;
      const values = colourings.length ? colourings[state.colour].values : null;
      ctx.clearRect(0, 0, W, H);
      ctx.fillStyle = "#ffffff";
      ctx.fillRect(0, 0, W, H);
      ctx.strokeStyle = "#dddddd";
      ctx.strokeRect(0.5, 0.5, W - 1, H - 1);
      const chosen = state.selected ? new Uint8Array(n) : null;
      if (chosen) for (const i of state.selected) chosen[i] = 1;
      let drawn = 0;
      for (let i = 0; i < n; i++) {
        const x = xy[2 * i], y = xy[2 * i + 1];
        if (!Number.isFinite(x) || !Number.isFinite(y)) { sx[i] = sy[i] = NaN; continue; }
        const p = toScreen(x, y);
        sx[i] = p[0];
        sy[i] = p[1];
        ctx.globalAlpha = chosen && !chosen[i] ? 0.15 : 0.85;
        ctx.fillStyle = values ? colour(values[i]) : PALETTE[0];
        ctx.fillRect(p[0] - 2, p[1] - 2, 4, 4);
        drawn++;
      }
      ctx.globalAlpha = 1;
      drawOutline();
      root.setAttribute("data-rendered-points", String(drawn));
      drawLegend(values);
    }
    function drawOutline() {
      const d = state.drag;
      if (!d) return;
      ctx.strokeStyle = "#23395d";
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      if (state.mode === "box") ctx.rect(d.x0, d.y0, d.x1 - d.x0, d.y1 - d.y0);
      else d.path.forEach((p, k) => (k ? ctx.lineTo(p[0], p[1]) : ctx.moveTo(p[0], p[1])));
      if (state.mode === "lasso") ctx.closePath();
      ctx.stroke();
    }
    function drawLegend(values) {
      legend.textContent = "";
      if (!values) return;
      const c = colourings[state.colour];
      const counts = new Map();
      for (let i = 0; i < n; i++) counts.set(values[i], (counts.get(values[i]) || 0) + 1);
      el("div", legend, { class: "ex-legend-title", text: c.name });
      [...counts.keys()].sort((a, b) => a - b).forEach((v) => {
        const item = el("div", legend, { class: "ex-legend-item" });
        const sw = el("span", item, { class: "ex-swatch" });
        sw.style.background = colour(v);
        el("span", item, { text: (c.names[String(v)] || String(v)) + " (" + counts.get(v) + ")" });
      });
    }
    function nearest(px, py) {
      let best = -1, bd = 49; // within 7 px
      for (let i = 0; i < n; i++) {
        const dx = sx[i] - px, dy = sy[i] - py, d = dx * dx + dy * dy;
        if (d < bd) { bd = d; best = i; }
      }
      return best;
    }
    function describe(i) {
      const lines = [data.split === "all" ? "row " + rowIds[i] + " (train rows, then test rows)" : data.split + " row " + rowIds[i]];
      colourings.forEach((c) => lines.push(c.name + ": " + (c.names[String(c.values[i])] || c.values[i])));
      return lines;
    }
    function showTip(i, clientX, clientY) {
      tipImg.textContent = "";
      if (pointImages && tiles) tipImg.appendChild(tileCanvas(pointImages[i], 4));
      tipText.textContent = "";
      describe(i).forEach((line) => el("div", tipText, { text: line }));
      tip.setAttribute("data-row", String(rowIds[i]));
      tip.hidden = false;
      const r = root.getBoundingClientRect();
      tip.style.left = clientX - r.left + 14 + "px";
      tip.style.top = clientY - r.top + 14 + "px";
    }
    function inPolygon(x, y, poly) {
      let inside = false;
      for (let a = 0, b = poly.length - 1; a < poly.length; b = a++) {
        const [xa, ya] = poly[a], [xb, yb] = poly[b];
        if (ya > y !== yb > y && x < ((xb - xa) * (y - ya)) / (yb - ya) + xa) inside = !inside;
      }
      return inside;
    }
    function finishSelection() {
      const d = state.drag;
      const picked = [];
      if (state.mode === "box") {
        const xa = Math.min(d.x0, d.x1), xb = Math.max(d.x0, d.x1), ya = Math.min(d.y0, d.y1), yb = Math.max(d.y0, d.y1);
        const lo = toData(xa, yb), hi = toData(xb, ya);
        const xy = maps[state.map].xy;
        for (let i = 0; i < n; i++) {
          const x = xy[2 * i], y = xy[2 * i + 1];
          if (x >= lo[0] && x <= hi[0] && y >= lo[1] && y <= hi[1]) picked.push(i);
        }
        root.setAttribute("data-selection-box", JSON.stringify([lo[0], lo[1], hi[0], hi[1]]));
      } else {
        for (let i = 0; i < n; i++) if (Number.isFinite(sx[i]) && inPolygon(sx[i], sy[i], d.path)) picked.push(i);
        root.removeAttribute("data-selection-box");
        root.setAttribute("data-selection-path", JSON.stringify(d.path));
      }
      setSelection(picked);
    }
    function quote(text) {
      return /[",\n]/.test(text) ? '"' + text.replace(/"/g, '""') + '"' : text;
    }
    function setSelection(picked) {
      state.selected = picked.length ? picked : null;
      if (!picked.length) {
        selText.textContent = "No point in the selection.";
        csv.hidden = true;
        mont.hidden = true;
        return;
      }
      const header = ["row"].concat(colourings.map((c) => quote(c.name)));
      const lines = [header.join(",")];
      picked.forEach((i) => lines.push([rowIds[i]].concat(colourings.map((c) => c.values[i])).join(",")));
      csv.href = "data:text/csv;charset=utf-8," + encodeURIComponent(lines.join("\n") + "\n");
      csv.hidden = false;
      selText.textContent = picked.length + " rows selected on " + maps[state.map].name +
        (picked.length > MONTAGE_MAX ? " (the first " + MONTAGE_MAX + " shown)" : "") + ".";
      root.setAttribute("data-selected", String(picked.length));
      if (pointImages && tiles) montage(mont, picked.map((i) => pointImages[i]), 20, picked.length > 60 ? 1 : 2);
    }
    function pos(ev) {
      const r = canvas.getBoundingClientRect();
      return [ev.clientX - r.left, ev.clientY - r.top];
    }
    canvas.addEventListener("mousedown", (ev) => {
      const [x, y] = pos(ev);
      state.drag = { x0: x, y0: y, x1: x, y1: y, path: [[x, y]] };
      tip.hidden = true;
    });
    canvas.addEventListener("mousemove", (ev) => {
      const [x, y] = pos(ev);
      if (state.drag) {
        state.drag.x1 = x;
        state.drag.y1 = y;
        state.drag.path.push([x, y]);
        draw();
        return;
      }
      const i = nearest(x, y);
      if (i < 0) tip.hidden = true;
      else showTip(i, ev.clientX, ev.clientY);
    });
    canvas.addEventListener("mouseleave", () => (tip.hidden = true));
    window.addEventListener("mouseup", () => {
      const d = state.drag;
      if (!d) return;
      // a drag, not a click: the pointer went at least 3 px away from where it was pressed
      if (d.path.some(([x, y]) => Math.abs(x - d.x0) + Math.abs(y - d.y0) >= 3)) finishSelection();
      state.drag = null;
      draw();
    });
    mapSel.addEventListener("change", () => {
      state.map = Number(mapSel.value);
      state.selected = null;
      draw();
    });
    colSel.addEventListener("change", () => {
      state.colour = Number(colSel.value);
      draw();
    });
    modeSel.addEventListener("change", () => (state.mode = modeSel.value));
    clear.addEventListener("click", () => {
      setSelection([]);
      selText.textContent = "No selection: drag on the map.";
      root.removeAttribute("data-selected");
      draw();
    });
    draw();
    return {
      toScreen: (x, y) => toScreen(x, y),
      screenOf: (i) => [sx[i], sy[i]],
      refresh: () => {
        if (state.selected) setSelection(state.selected);
      },
    };
  }

  // ---- self-organising maps ------------------------------------------------------------
  function soms() {
    const box = el("div", root, { class: "ex-block" });
    el("h3", box, { text: "Self-organising maps: click a neuron to see its prototype and test images" });
    const controls = el("div", box, { class: "ex-controls" });
    const pick = el("select", controls, { id: "ex-som" });
    data.soms.forEach((s, i) => el("option", pick, { value: String(i), text: s.name }));
    const body = el("div", box, { class: "ex-body" });
    const canvas = el("canvas", body, { id: "ex-som-canvas" });
    const panel = el("div", body, { id: "ex-neuron", class: "ex-neuron" });
    const info = el("p", panel, { id: "ex-neuron-info", text: "No neuron chosen." });
    const proto = el("div", panel);
    const samples = el("canvas", panel, { id: "ex-neuron-samples" });
    samples.hidden = true;
    const SIZE = 440;
    let ctx = hiDpi(canvas, SIZE, SIZE);
    let som = null, layout = null;

    function load(k) {
      const s = data.soms[k];
      const coords = f32(s.coords);
      const count = s.rows * s.cols;
      let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
      for (let i = 0; i < count; i++) {
        x0 = Math.min(x0, coords[2 * i]);
        x1 = Math.max(x1, coords[2 * i]);
        y0 = Math.min(y0, coords[2 * i + 1]);
        y1 = Math.max(y1, coords[2 * i + 1]);
      }
      const cell = Math.min((SIZE - 4) / (x1 - x0 + 1), (SIZE - 4) / (y1 - y0 + 1));
      ctx = hiDpi(canvas, Math.ceil((x1 - x0 + 1) * cell + 4), Math.ceil((y1 - y0 + 1) * cell + 4));
      som = {
        s, coords, count, cell, x0, y0,
        bmu: s.bmu ? i32(s.bmu) : null,
        images: s.images ? i32(s.images) : null,
        labels: s.labels ? i32(s.labels) : null,
        dominant: s.dominant ? i32(s.dominant) : null,
        atlas: null,
      };
      layout = som;
      info.textContent = "No neuron chosen.";
      proto.textContent = "";
      samples.hidden = true;
      panel.removeAttribute("data-neuron");
      let ready = Promise.resolve(null);
      if (s.prototypes) {
        const img = new Image();
        img.src = "data:image/png;base64," + s.prototypes;
        ready = img.decode().then(() => img);
      }
      return ready.then((img) => {
        som.atlas = img;
        drawSom();
      });
    }
    function centre(i) {
      return [2 + (som.coords[2 * i] - som.x0 + 0.5) * som.cell, 2 + (som.coords[2 * i + 1] - som.y0 + 0.5) * som.cell];
    }
    function drawSom() {
      ctx.fillStyle = "#ffffff";
      ctx.fillRect(0, 0, canvas.width, canvas.height);
      const c = som.cell;
      for (let i = 0; i < som.count; i++) {
        const [x, y] = centre(i);
        if (som.atlas) {
          const cols = som.s.cols;
          ctx.drawImage(som.atlas, (i % cols) * SIDE, Math.floor(i / cols) * SIDE, SIDE, SIDE, x - c / 2, y - c / 2, c, c);
        } else {
          ctx.fillStyle = som.dominant ? colour(som.dominant[i]) : "#888888";
          ctx.fillRect(x - c / 2, y - c / 2, c - 1, c - 1);
        }
      }
      if (som.chosen !== undefined) {
        const [x, y] = centre(som.chosen);
        ctx.strokeStyle = "#ff3b30";
        ctx.lineWidth = 2;
        ctx.strokeRect(x - c / 2, y - c / 2, c, c);
      }
      canvas.setAttribute("data-neurons", String(som.count));
    }
    function choose(k) {
      som.chosen = k;
      drawSom();
      const s = som.s;
      const members = [];
      if (som.bmu) for (let i = 0; i < som.bmu.length; i++) if (som.bmu[i] === k) members.push(i);
      const row = Math.floor(k / s.cols), col = k % s.cols;
      let text = "neuron " + k + " (row " + row + ", column " + col + "): " + members.length + " test images";
      if (som.dominant && som.dominant[k] >= 0 && s.dominant_names) {
        text += "; dominant class of its training rows: " + (s.dominant_names[String(som.dominant[k])] || som.dominant[k]);
      }
      if (som.labels && members.length) {
        const counts = new Map();
        members.forEach((i) => counts.set(som.labels[i], (counts.get(som.labels[i]) || 0) + 1));
        const top = [...counts.entries()].sort((a, b) => b[1] - a[1]).slice(0, 3);
        text += "; test labels: " + top.map(([v, c]) => (s.label_names[String(v)] || v) + " " + c).join(", ");
      }
      info.textContent = text + ".";
      panel.setAttribute("data-neuron", String(k));
      panel.setAttribute("data-samples", String(members.length));
      proto.textContent = "";
      if (som.atlas) {
        el("div", proto, { class: "note", text: "prototype" });
        const big = el("canvas", proto, { id: "ex-prototype", width: String(SIDE * 4), height: String(SIDE * 4) });
        const bctx = big.getContext("2d");
        bctx.imageSmoothingEnabled = false;
        bctx.drawImage(som.atlas, col * SIDE, row * SIDE, SIDE, SIDE, 0, 0, SIDE * 4, SIDE * 4);
      }
      if (som.images && tiles) montage(samples, members.map((i) => som.images[i]), 12, 2);
      else samples.hidden = true;
    }
    canvas.addEventListener("click", (ev) => {
      const r = canvas.getBoundingClientRect();
      const px = ev.clientX - r.left, py = ev.clientY - r.top;
      let best = -1, bd = Infinity;
      for (let i = 0; i < som.count; i++) {
        const [x, y] = centre(i);
        const d = (x - px) ** 2 + (y - py) ** 2;
        if (d < bd) { bd = d; best = i; }
      }
      if (best >= 0 && bd <= som.cell * som.cell) choose(best);
    });
    pick.addEventListener("change", () => load(Number(pick.value)));
    return {
      load,
      choose: (k) => choose(k),
      centreOf: (k) => centre(k),
      get current() { return layout; },
    };
  }

  const api = {};
  window.fmnistExplorer = api;
  const pool = data.images && data.images.count ? inflate(data.images.zlib) : Promise.resolve(null);
  pool
    .then((pixels) => {
      tiles = pixels;
      if (data.maps.length) api.scatter = scatter();
      if (data.soms.length) {
        api.som = soms();
        return api.som.load(0);
      }
      return null;
    })
    .then(() => {
      if (!data.maps.length) root.setAttribute("data-rendered-points", "0");
      root.setAttribute("data-ready-ms", String(Math.round(performance.now())));
      root.setAttribute("data-ready", "1");
    })
    .catch((err) => {
      el("p", root, { class: "ex-error", text: "The explorer could not start: " + err });
      throw err;
    });
})();
