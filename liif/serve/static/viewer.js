"use strict";
// The LIIF viewer page. Every pane shows the same view: the scale `scale` and the offset (top, left)
// of the viewport's top-left pixel in the full upscale of the image to grid(scale) =
// (round(h * scale), round(w * scale)), in device pixels (a canvas pixel is a device pixel).
// The server renders exactly those pixels (liif/serve/geometry.py); a render's frames are drawn
// wherever the view is now, so an older render stands in, stretched, until the new one arrives.

const V = {
  info: null, picture: null, scale: 1, top: 0, left: 0, height: 0, width: 0,
  view: 0, session: Math.random().toString(36).slice(2, 12), panes: [], timer: null, settled: false,
};
window.viewer = V;  // for the browser test (and the curious, in the console)
const $ = (selector) => document.querySelector(selector);
// Every API request carries the token the server wrote into this page: requests from other sites,
// which cannot read the page, are refused (liif/serve/origin.py).
const API_HEADERS = { "X-LIIF-Token": $('meta[name="liif-token"]').content };
const clamp = (x, lo, hi) => Math.min(hi, Math.max(lo, x));

// Python's round(): halves to even, so that page and server agree on the grid
function roundEven(x) {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}
function grid(scale) {
  return [Math.max(1, roundEven(V.picture.height * scale)), Math.max(1, roundEven(V.picture.width * scale))];
}

// ---- drawing ------------------------------------------------------------------------------------
function draw(pane) {
  const ctx = pane.ctx;
  ctx.clearRect(0, 0, V.width, V.height);
  const [H, W] = grid(V.scale);
  for (const f of pane.frames) {
    const sy = H / f.grid[0], sx = W / f.grid[1];
    ctx.imageSmoothingEnabled = !(sx === 1 && sy === 1);  // 1:1 frames are drawn pixel for pixel
    ctx.drawImage(f.img, f.left * sx - V.left, f.top * sy - V.top, f.width * sx, f.height * sy);
  }
}

function status() {
  const times = V.panes.map((p) => p.done && p.done.ms).filter((t) => t);
  $("#status").textContent = `x${V.scale.toFixed(2)} · viewport ${V.width}×${V.height}` +
    (times.length ? ` · render ${Math.max(...times).toFixed(0)} ms` : "");
  $("#scale").value = +V.scale.toFixed(3);
  const lim = V.info.limits;
  $("#slider").value = Math.round(1000 * Math.log(V.scale / lim.min_scale) / Math.log(lim.max_scale / lim.min_scale));
}

// ---- the view -----------------------------------------------------------------------------------
function changed(now) {
  V.settled = false;
  for (const p of V.panes) draw(p);
  status();
  clearTimeout(V.timer);
  V.timer = setTimeout(renderAll, now ? 0 : 90);  // while zooming or panning, only the last view renders
}

function clampPan() {
  const [H, W] = grid(V.scale), m = 32;
  V.left = clamp(V.left, Math.min(0, m - V.width), Math.max(0, W - m));
  V.top = clamp(V.top, Math.min(0, m - V.height), Math.max(0, H - m));
}

// zoom to `scale`, keeping the image point under canvas pixel (px, py) where it is
function zoomTo(scale, px = V.width / 2, py = V.height / 2) {
  const lim = V.info.limits;
  scale = clamp(scale, lim.min_scale, lim.max_scale);
  if (!isFinite(scale)) return;
  const [H0, W0] = grid(V.scale), [H1, W1] = grid(scale);
  const u = (V.left + px) / W0, v = (V.top + py) / H0;
  V.scale = scale;
  V.left = Math.round(u * W1 - px) || 0;  // never -0
  V.top = Math.round(v * H1 - py) || 0;
  clampPan();
  changed();
}

function panBy(dx, dy) {  // whole device pixels
  V.left -= dx;
  V.top -= dy;
  clampPan();
  changed();
}

function fit() {
  const lim = V.info.limits, pic = V.picture;
  V.scale = clamp(Math.min(V.width / pic.width, V.height / pic.height), lim.min_scale, lim.max_scale);
  const [H, W] = grid(V.scale);
  V.left = Math.round((W - V.width) / 2) || 0;
  V.top = Math.round((H - V.height) / 2) || 0;
  changed(true);
}

// ---- rendering ----------------------------------------------------------------------------------
function renderAll() {
  const view = ++V.view;
  for (const p of V.panes) renderPane(p, view);
}

async function* lines(body) {  // NDJSON, line by line as it arrives
  const reader = body.getReader(), decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let i;
    while ((i = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, i);
      buffer = buffer.slice(i + 1);
      if (line) yield JSON.parse(line);
    }
  }
}

async function renderPane(pane, view) {
  if (pane.abort) pane.abort.abort();
  const abort = new AbortController();
  pane.abort = abort;
  pane.done = null;
  pane.stats.textContent = "rendering…";
  pane.stats.classList.remove("error");
  const query = new URLSearchParams({
    session: V.session, view, pane: pane.id, image: V.picture.id, scale: String(V.scale),
    top: V.top, left: V.left, height: V.height, width: V.width,
  });
  let fresh = true, bands = 0;
  try {
    const res = await fetch("api/render?" + query, { signal: abort.signal, headers: API_HEADERS });
    if (!res.ok) throw new Error((await res.json().catch(() => ({}))).error || res.statusText);
    for await (const msg of lines(res.body)) {
      if (view !== V.view || msg.type === "superseded") return;
      if (msg.type === "error") throw new Error(msg.error);  // the server's one line (e.g. a budget too small)
      if (msg.type === "tile") {
        const img = new Image();
        img.src = "data:image/png;base64," + msg.png;
        await img.decode();
        if (view !== V.view) return;
        if (fresh) { pane.frames = []; fresh = false; }  // the first frame of a view replaces the old ones
        pane.frames.push({ img, grid: msg.grid, top: msg.top, left: msg.left, height: msg.height, width: msg.width, coarse: msg.coarse });
        pane.stats.textContent = msg.coarse ? "preview…" : `band ${++bands}…`;
      } else if (msg.type === "done") {
        pane.frames = fresh ? [] : pane.frames.filter((f) => !f.coarse);
        pane.done = msg;
        pane.stats.textContent = `${msg.ms.toFixed(0)} ms` + (msg.psnr != null ? ` · ${msg.psnr.toFixed(2)} dB` : "") +
          (msg.encoded ? ` · encoder ${msg.encode_ms.toFixed(0)} ms` : "");
      }
      draw(pane);
    }
  } catch (e) {
    if (e.name === "AbortError") return;
    pane.stats.textContent = String(e.message || e);
    pane.stats.classList.add("error");
    pane.done = { error: String(e.message || e) };
  }
  V.settled = view === V.view && V.panes.every((p) => p.done);
  status();
}

// ---- panes, layout, input -----------------------------------------------------------------------
function makePanes() {
  const main = $("#panes");
  for (const spec of V.info.panes) {
    const node = $("#pane").content.firstElementChild.cloneNode(true);
    const canvas = node.querySelector("canvas");
    const pane = { id: spec.id, spec, node, canvas, ctx: canvas.getContext("2d"), frames: [], done: null, abort: null,
                   stats: node.querySelector(".stats") };
    node.dataset.pane = spec.id;
    node.querySelector(".name").textContent = spec.title;
    if (spec.label) {
      const l = spec.label;
      node.querySelector(".sub").textContent = `${l.framework} · ${l.run} · epoch ${l.epoch}`;
      node.title = `${l.model}, ${l.framework}, run ${l.run}, epoch ${l.epoch}`;
    }
    node.querySelector(".download").onclick = () => download(pane);
    bindPointer(canvas);
    main.appendChild(node);
    V.panes.push(pane);
  }
}

function layout() {
  const dpr = window.devicePixelRatio || 1, n = V.panes.length, max = V.info.limits.max_viewport;
  const asked = new URLSearchParams(location.search);  // ?width=&height=: a fixed viewport (device pixels)
  const cssW = Math.floor((window.innerWidth - 16 - 8 * (n - 1)) / n);
  const cssH = Math.floor(window.innerHeight - $("header").offsetHeight - 90);
  V.width = clamp(+asked.get("width") || Math.floor(cssW * dpr), 16, max);
  V.height = clamp(+asked.get("height") || Math.floor(cssH * dpr), 16, max);
  for (const p of V.panes) {
    p.node.style.width = V.width / dpr + "px";  // a long title is cut, never widens the pane
    p.canvas.width = V.width;
    p.canvas.height = V.height;
    p.canvas.style.width = V.width / dpr + "px";
    p.canvas.style.height = V.height / dpr + "px";
  }
}

function canvasPoint(canvas, e) {
  const r = canvas.getBoundingClientRect(), dpr = window.devicePixelRatio || 1;
  return [(e.clientX - r.left) * dpr, (e.clientY - r.top) * dpr];
}

function bindPointer(canvas) {
  const down = new Map();  // pointerId -> last [x, y] in canvas pixels (two: a pinch)
  canvas.addEventListener("wheel", (e) => {
    e.preventDefault();
    const [x, y] = canvasPoint(canvas, e);
    zoomTo(V.scale * Math.exp(-e.deltaY * (e.deltaMode === 1 ? 0.05 : 0.0015)), x, y);
  }, { passive: false });
  canvas.addEventListener("pointerdown", (e) => {
    canvas.setPointerCapture(e.pointerId);
    down.set(e.pointerId, canvasPoint(canvas, e));
    canvas.classList.add("dragging");
  });
  canvas.addEventListener("pointermove", (e) => {
    if (!down.has(e.pointerId)) return;
    const now = canvasPoint(canvas, e), before = down.get(e.pointerId);
    if (down.size === 1) {  // a drag: pan by whole pixels, keeping the remainder for the next move
      const dx = Math.round(now[0] - before[0]), dy = Math.round(now[1] - before[1]);
      if (dx || dy) panBy(dx, dy);
      down.set(e.pointerId, [before[0] + dx, before[1] + dy]);
      return;
    }
    if (down.size === 2) {
      const other = [...down.entries()].find(([id]) => id !== e.pointerId)[1];
      const d0 = Math.hypot(before[0] - other[0], before[1] - other[1]), d1 = Math.hypot(now[0] - other[0], now[1] - other[1]);
      if (d0 > 0) zoomTo(V.scale * d1 / d0, (now[0] + other[0]) / 2, (now[1] + other[1]) / 2);
    }
    down.set(e.pointerId, now);
  });
  const up = (e) => { down.delete(e.pointerId); if (!down.size) canvas.classList.remove("dragging"); };
  canvas.addEventListener("pointerup", up);
  canvas.addEventListener("pointercancel", up);
}

function download(pane) {
  pane.canvas.toBlob((blob) => {
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = `${V.picture.name.replace(/\.[^.]*$/, "")}_${pane.id}_x${V.scale.toFixed(3)}_${V.top}_${V.left}.png`;
    a.click();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  }, "image/png");
}

function addImageOption(pic) {
  const option = document.createElement("option");
  option.value = pic.id;
  option.textContent = `${pic.name} (${pic.width}×${pic.height}${pic.ground_truth ? `, ground truth x${pic.factor}` : ""})`;
  $("#image").appendChild(option);
}

function setPicture(id) {
  V.picture = V.info.images.find((p) => p.id === id);
  $("#image").value = id;
  for (const p of V.panes) p.frames = [];
  fit();
}

async function upload(file) {
  const lim = V.info.limits;
  if (file.size > lim.max_upload_bytes) {
    $("#status").textContent = `${file.name}: over the upload limit of ${lim.max_upload_bytes} bytes`;
    return;
  }
  $("#status").textContent = `uploading ${file.name}…`;
  const res = await fetch("api/upload?name=" + encodeURIComponent(file.name), { method: "POST", body: file, headers: API_HEADERS });
  const body = await res.json().catch(() => ({ error: res.statusText }));
  if (!res.ok) { $("#status").textContent = `${file.name}: ${body.error}`; return; }
  V.info.images.push(body);
  addImageOption(body);
  setPicture(body.id);
}

async function start() {
  V.info = await (await fetch("api/info", { headers: API_HEADERS })).json();
  for (const pic of V.info.images) addImageOption(pic);
  makePanes();
  layout();
  $("#image").onchange = (e) => setPicture(e.target.value);
  $("#upload").onchange = (e) => e.target.files.length && upload(e.target.files[0]);
  const lim = V.info.limits;
  $("#slider").oninput = (e) => zoomTo(lim.min_scale * Math.pow(lim.max_scale / lim.min_scale, e.target.value / 1000));
  $("#scale").onchange = (e) => zoomTo(parseFloat(e.target.value));
  $("#fit").onclick = fit;
  if (V.info.factor) {
    const native = $("#native");
    native.hidden = false;
    native.textContent = `x${V.info.factor} (ground truth's scale)`;
    native.onclick = () => zoomTo(V.info.factor);
  }
  window.addEventListener("resize", () => {
    const [H, W] = grid(V.scale), u = (V.left + V.width / 2) / W, v = (V.top + V.height / 2) / H;
    layout();
    V.left = Math.round(u * W - V.width / 2);
    V.top = Math.round(v * H - V.height / 2);
    changed();
  });
  setPicture(V.info.images[0].id);
}

start();
