// The mmsam serve page: prompts -> masks with SAM's decoder in the browser (onnxruntime-web),
// or on the server when the browser cannot run it; accepted masks are saved per image.
//
// Coordinates: every canvas has the image's own size (W x H pixels), so a canvas pixel is an
// image pixel; CSS scales the canvases to the window. Masks are Uint8Array(H * W), row-major.
// Masks sent to the server are uncompressed RLEs (column-major run lengths, starting with 0s),
// masks read back are COCO RLE strings (pycocotools' compressed counts).
'use strict';

const $ = (id) => document.getElementById(id);
const PREVIEW_RGB = [30, 144, 255];
const DRAG_PIXELS = 5; // a press that moves farther (screen px) draws a box

const app = {
  config: null,
  images: [],
  index: -1,
  name: null,
  image: null, // HTMLImageElement
  size: null, // [H, W]
  inputSize: null, // [h, w] in the model's input frame
  embedding: null, // ort.Tensor or null
  embeddingShape: null,
  session: null, // ort.InferenceSession when the decoder runs in the browser
  backend: 'server',
  prompt: { points: [], box: null },
  candidates: [], // [{bits, score, stability}] (the 3 multimask outputs)
  candidate: 0,
  annotations: [], // the server's document's annotations (unsaved ones during a conflict)
  revision: 0, // the revision of the server's document that the page shows and changes
  conflict: null, // {revision}: a save was refused, another tab saved revision `revision`
  selected: -1,
  history: [], // undo snapshots: {prompt, annotations, candidate}
  decoding: null,
  again: false,
  drag: null,
  timings: [], // per decode: {backend, ms (prompt to mask drawn), decodeMs}
  ready: false,
  error: null,
};
window.mmsam = app;

// ------------------------------------------------------------------ small helpers
function status(text) { $('status').textContent = text; }

function fail(err) {
  if (err && err.status === 409 && app.conflict) { // a refused save: the banner says it
    status('not saved: changed in another tab/window');
    return;
  }
  app.error = String(err && err.message ? err.message : err);
  status('error: ' + app.error);
  console.error(err);
}

async function api(url, options = {}) {
  const reply = await fetch(url, options);
  if (!reply.ok) {
    let message = reply.status + ' ' + reply.statusText;
    let body = null;
    try { body = await reply.json(); message = body.error || message; } catch (e) { /* not JSON */ }
    const error = new Error(message);
    error.status = reply.status;
    error.body = body;
    throw error;
  }
  return reply;
}

async function putJson(url, body, method = 'PUT') {
  const reply = await api(url, {
    method, headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body),
  });
  return reply.json();
}

function labelColor(label) {
  let hash = 0;
  for (const ch of label) hash = (hash * 31 + ch.charCodeAt(0)) >>> 0;
  const hue = hash % 360;
  // HSL (s 70%, l 50%) to RGB
  const f = (n) => {
    const k = (n + hue / 30) % 12;
    return Math.round(255 * (0.5 - 0.35 * Math.max(-1, Math.min(k - 3, 9 - k, 1))));
  };
  return [f(0), f(8), f(4)];
}

function encodeName(name) { return name.split('/').map(encodeURIComponent).join('/'); }

// ------------------------------------------------------------------ RLE
// pycocotools' rleFrString: a COCO RLE string to run lengths
function cocoCounts(text) {
  const counts = [];
  let p = 0;
  while (p < text.length) {
    let x = 0; let k = 0; let more = 1;
    while (more) {
      const c = text.charCodeAt(p) - 48;
      x |= (c & 0x1f) << (5 * k);
      more = c & 0x20;
      p += 1; k += 1;
      if (!more && (c & 0x10)) x |= -1 << (5 * k);
    }
    if (counts.length > 2) x += counts[counts.length - 2];
    counts.push(x);
  }
  return counts;
}

function rleToBits(rle) {
  const [H, W] = rle.size;
  const counts = typeof rle.counts === 'string' ? cocoCounts(rle.counts) : rle.counts;
  const bits = new Uint8Array(H * W);
  let at = 0; let value = 0;
  for (const run of counts) {
    if (value) {
      for (let i = at; i < at + run; i++) bits[(i % H) * W + Math.floor(i / H)] = 1;
    }
    at += run; value = 1 - value;
  }
  return bits;
}

function bitsToRle(bits, H, W) {
  const counts = [];
  let current = 0; let run = 0;
  for (let x = 0; x < W; x++) {
    for (let y = 0; y < H; y++) {
      if (bits[y * W + x] !== current) { counts.push(run); run = 0; current = 1 - current; }
      run += 1;
    }
  }
  counts.push(run);
  return { size: [H, W], counts };
}

const bitsCache = new Map();
function annotationBits(ann) {
  const key = ann.segmentation.counts;
  if (!bitsCache.has(key)) bitsCache.set(key, rleToBits(ann.segmentation));
  return bitsCache.get(key);
}

// ------------------------------------------------------------------ drawing
function paintMask(image, bits, rgb, alpha) {
  const data = image.data;
  for (let i = 0; i < bits.length; i++) {
    if (!bits[i]) continue;
    const o = 4 * i;
    const a = data[o + 3] / 255;
    const mixed = alpha + a * (1 - alpha);
    for (let c = 0; c < 3; c++) {
      data[o + c] = Math.round((rgb[c] * alpha + data[o + c] * a * (1 - alpha)) / mixed);
    }
    data[o + 3] = Math.round(mixed * 255);
  }
}

function drawMasks() {
  const [H, W] = app.size;
  const ctx = $('mask-layer').getContext('2d');
  const image = ctx.createImageData(W, H);
  app.annotations.forEach((ann, i) => {
    const alpha = i === app.selected ? 0.65 : 0.4;
    paintMask(image, annotationBits(ann), labelColor(ann.label), alpha);
  });
  const current = app.candidates[app.candidate];
  if (current) paintMask(image, current.bits, PREVIEW_RGB, 0.5);
  ctx.putImageData(image, 0, 0);
}

function drawPrompts() {
  // drawn at the screen's resolution (the image may be much smaller or larger)
  const canvas = $('prompt-layer');
  const rect = canvas.getBoundingClientRect();
  const ratio = window.devicePixelRatio || 1;
  canvas.width = Math.max(1, Math.round(rect.width * ratio));
  canvas.height = Math.max(1, Math.round(rect.height * ratio));
  const ctx = canvas.getContext('2d');
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  if (!app.size) return;
  const k = canvas.width / app.size[1];
  ctx.setTransform(k, 0, 0, canvas.height / app.size[0], 0, 0);
  const scale = 1 / (k / ratio); // one screen pixel, in image pixels
  const r = 5 * scale;
  const box = app.drag && app.drag.box ? app.drag.box : app.prompt.box;
  if (box) {
    ctx.lineWidth = 2 * scale;
    ctx.strokeStyle = '#facc15';
    ctx.strokeRect(box[0], box[1], box[2] - box[0], box[3] - box[1]);
  }
  for (const p of app.prompt.points) {
    ctx.beginPath();
    ctx.arc(p[0], p[1], r, 0, 2 * Math.PI);
    ctx.fillStyle = p[2] === 1 ? '#22c55e' : '#ef4444';
    ctx.fill();
    ctx.lineWidth = 1.5 * scale;
    ctx.strokeStyle = '#fff';
    ctx.stroke();
  }
}

function renderSidebar() {
  const list = $('accepted');
  list.innerHTML = '';
  app.annotations.forEach((ann, i) => {
    const item = document.createElement('li');
    if (i === app.selected) item.className = 'selected';
    const [r, g, b] = labelColor(ann.label);
    const text = document.createElement('span');
    const swatch = document.createElement('span');
    swatch.className = 'swatch';
    swatch.style.background = `rgb(${r},${g},${b})`;
    text.append(swatch, `${ann.label} (${Math.round(ann.area)} px, ${ann.source})`);
    const remove = document.createElement('button');
    remove.textContent = '×';
    remove.title = 'delete';
    remove.onclick = (e) => { e.stopPropagation(); deleteAnnotation(i); };
    item.append(text, remove);
    item.onclick = () => { app.selected = app.selected === i ? -1 : i; redraw(); };
    list.append(item);
  });
  $('count').textContent = `(${app.annotations.length})`;
  const labels = new Set(app.annotations.map((a) => a.label));
  $('labels').innerHTML = '';
  for (const label of labels) {
    const option = document.createElement('option');
    option.value = label;
    $('labels').append(option);
  }
  const c = app.candidates[app.candidate];
  $('candidate').textContent = c
    ? `candidate ${app.candidate + 1}/3: predicted IoU ${c.score.toFixed(3)}, ` +
      `stability ${c.stability.toFixed(3)}`
    : 'click the image to segment';
}

function redraw() {
  if (!app.size) return;
  drawMasks();
  drawPrompts();
  renderSidebar();
}

function fitLayers() {
  if (!app.size) return;
  const [H, W] = app.size;
  const stage = $('stage').getBoundingClientRect();
  const scale = Math.min((stage.width - 16) / W, (stage.height - 16) / H);
  for (const id of ['layers', 'image-layer']) {
    $(id).style.width = `${Math.max(1, Math.floor(W * scale))}px`;
    $(id).style.height = `${Math.max(1, Math.floor(H * scale))}px`;
  }
  drawPrompts();
}

// ------------------------------------------------------------------ decoding
function savePrompt() {
  if (!app.name) return;
  const value = JSON.stringify({ prompt: app.prompt, candidate: app.candidate });
  localStorage.setItem('mmsam:prompt:' + app.name, value);
}

async function decodeInBrowser() {
  const [H, W] = app.size;
  const [h, w] = app.inputSize;
  const sx = w / W; const sy = h / H;
  const coords = []; const labels = [];
  for (const p of app.prompt.points) { coords.push(p[0] * sx, p[1] * sy); labels.push(p[2]); }
  if (app.prompt.box) {
    const b = app.prompt.box;
    coords.push(b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy);
    labels.push(2, 3);
  } else {
    coords.push(0, 0); labels.push(-1); // the padding point of SAM's ONNX decoder
  }
  const side = 4 * app.embeddingShape[2];
  const n = labels.length;
  const feeds = {
    image_embeddings: app.embedding,
    point_coords: new ort.Tensor('float32', Float32Array.from(coords), [1, n, 2]),
    point_labels: new ort.Tensor('float32', Float32Array.from(labels), [1, n]),
    mask_input: new ort.Tensor('float32', new Float32Array(side * side), [1, 1, side, side]),
    has_mask_input: new ort.Tensor('float32', new Float32Array([0]), [1]),
    orig_im_size: new ort.Tensor('float32', Float32Array.from([H, W]), [2]),
  };
  const out = await app.session.run(feeds);
  const logits = out.masks.data;
  const threshold = app.config.mask_threshold;
  const offset = app.config.stability_offset;
  const candidates = [];
  for (let k = 1; k <= 3; k++) { // tokens 1..3: the multimask outputs (SAMPredictor's)
    const bits = new Uint8Array(H * W);
    const start = k * H * W;
    let high = 0; let low = 0; // the stability score: IoU of the masks at thr +- offset
    for (let i = 0; i < H * W; i++) {
      const v = logits[start + i];
      if (v > threshold) bits[i] = 1;
      if (v > threshold + offset) high += 1;
      if (v > threshold - offset) low += 1;
    }
    candidates.push({ bits, score: out.iou_predictions.data[k], stability: low ? high / low : 0 });
  }
  return candidates;
}

async function decodeOnServer() {
  const body = {
    points: app.prompt.points.map((p) => [p[0], p[1]]),
    labels: app.prompt.points.map((p) => p[2]),
    box: app.prompt.box,
  };
  const reply = await putJson('/api/decode/' + encodeName(app.name), body, 'POST');
  return reply.masks.map((rle, k) => ({
    bits: rleToBits(rle), score: reply.scores[k], stability: reply.stability_scores[k],
  }));
}

function bestCandidate(candidates) {
  let best = 0;
  candidates.forEach((c, k) => { if (c.score > candidates[best].score) best = k; });
  return best;
}

async function decode(keepCandidate = false) {
  savePrompt();
  if (!app.prompt.points.length && !app.prompt.box) {
    app.candidates = []; redraw(); return;
  }
  if (app.decoding) { app.again = true; return app.decoding; }
  const name = app.name;
  const started = performance.now();
  app.decoding = (async () => {
    let candidates;
    const backend = app.backend;
    const t0 = performance.now();
    candidates = backend === 'browser' ? await decodeInBrowser() : await decodeOnServer();
    const decodeMs = performance.now() - t0;
    if (name !== app.name) return;
    app.candidates = candidates;
    if (!keepCandidate || app.candidate > 2) app.candidate = bestCandidate(candidates);
    redraw();
    app.timings.push({ backend, ms: performance.now() - started, decodeMs });
  })();
  try {
    await app.decoding;
  } catch (err) {
    fail(err);
  } finally {
    app.decoding = null;
  }
  if (app.again) { app.again = false; await decode(); }
}

// ------------------------------------------------------------------ editing
function snapshot() {
  app.history.push({
    prompt: JSON.parse(JSON.stringify(app.prompt)),
    annotations: app.annotations,
    candidate: app.candidate,
  });
  if (app.history.length > 200) app.history.shift();
}

// Saves name the revision they change; the server refuses (409) a save based on a revision
// that another tab or window has replaced. The page then keeps the user's masks, unsaved,
// and says so: "reload" shows the other version, "keep mine" saves these over it.
async function saveAnnotations(list) {
  const url = '/api/annotations/' + encodeName(app.name);
  let doc;
  try {
    doc = await putJson(url, { annotations: list, revision: app.revision });
  } catch (err) {
    if (err.status === 409 && err.body) showConflict(list, err.body.revision);
    throw err;
  }
  app.annotations = doc.annotations;
  app.revision = doc.revision;
  hideConflict();
  const item = app.images[app.index];
  if (item) item.saved = true;
}

function showConflict(list, revision) {
  app.conflict = { revision };
  app.annotations = list; // the user's work stays on the page
  $('conflict-text').textContent = 'this image was changed in another tab/window; reload to ' +
    `see it (the ${list.length} masks shown here are not saved: "keep mine" saves them over it)`;
  $('conflict').hidden = false;
  redraw();
}

function hideConflict() {
  app.conflict = null;
  $('conflict').hidden = true;
}

async function keepMine() {
  if (!app.conflict) return;
  app.revision = app.conflict.revision;
  try {
    await saveAnnotations(app.annotations);
    redraw();
    status(`saved ${app.annotations.length} masks`);
  } catch (err) { fail(err); }
}

async function reloadSaved() {
  hideConflict();
  await openImage(app.index);
}

function addPoint(x, y, label) {
  snapshot();
  app.prompt.points.push([Math.round(x * 10) / 10, Math.round(y * 10) / 10, label]);
  decode();
}

function setBox(box) {
  snapshot();
  app.prompt.box = box.map((v) => Math.round(v * 10) / 10);
  decode();
}

function clearPrompt(record = true) {
  if (record) snapshot();
  app.prompt = { points: [], box: null };
  app.candidates = [];
  savePrompt();
  redraw();
}

function cycleCandidate() {
  if (!app.candidates.length) return;
  app.candidate = (app.candidate + 1) % app.candidates.length;
  savePrompt();
  redraw();
}

async function settled() {
  while (app.decoding) await app.decoding.catch(() => {});
}

async function accept() {
  await settled();
  const c = app.candidates[app.candidate];
  if (!c) { status('nothing to accept: click the image first'); return; }
  const label = $('label').value.trim() || 'object';
  const [H, W] = app.size;
  const annotation = {
    label,
    segmentation: bitsToRle(c.bits, H, W),
    predicted_iou: c.score,
    stability_score: c.stability,
    prompt: {
      points: app.prompt.points.map((p) => [p[0], p[1]]),
      labels: app.prompt.points.map((p) => p[2]),
      box: app.prompt.box,
    },
    candidate: app.candidate,
    source: 'click',
  };
  snapshot();
  try {
    await saveAnnotations([...app.annotations, annotation]);
    clearPrompt(false);
    status(`saved ${app.annotations.length} masks`);
  } catch (err) { app.history.pop(); fail(err); }
}

async function deleteAnnotation(i) {
  if (i < 0 || i >= app.annotations.length) return;
  snapshot();
  try {
    await saveAnnotations(app.annotations.filter((_, k) => k !== i));
    app.selected = -1;
    redraw();
  } catch (err) { app.history.pop(); fail(err); }
}

async function undo() {
  const last = app.history.pop();
  if (!last) return;
  const changed = last.annotations !== app.annotations;
  app.prompt = last.prompt;
  app.candidate = last.candidate;
  try {
    if (changed) await saveAnnotations(last.annotations);
  } catch (err) { fail(err); }
  app.selected = -1;
  await decode(true);
  redraw();
}

async function automatic() {
  status('automatic masks: running on the server…');
  try {
    const reply = await putJson('/api/amg/' + encodeName(app.name), {}, 'POST');
    const label = $('label').value.trim() || 'object';
    const added = reply.masks.map((m) => ({ ...m, label, source: 'amg' }));
    snapshot();
    await saveAnnotations([...app.annotations, ...added]);
    redraw();
    status(`automatic: ${added.length} masks added`);
  } catch (err) { fail(err); }
}

async function exportAs(format, maskFormat) {
  status('exporting…');
  try {
    const reply = await putJson('/api/export', { format, mask_format: maskFormat }, 'POST');
    const box = $('exports');
    box.innerHTML = '';
    for (const file of reply.files.slice(0, 20)) {
      const link = document.createElement('a');
      link.href = '/api/exports/' + encodeName(file);
      link.textContent = file;
      link.download = file.split('/').pop();
      box.append(link, document.createElement('br'));
    }
    if (reply.files.length > 20) box.append(`… ${reply.files.length} files in .mmsam/exports`);
    app.lastExport = reply;
    status(`exported ${format}`);
  } catch (err) { fail(err); }
}

// ------------------------------------------------------------------ images
function loadImageElement(url) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error('cannot load ' + url));
    img.src = url;
  });
}

async function fetchEmbedding(name) {
  const reply = await api('/api/embedding/' + encodeName(name));
  const shape = reply.headers.get('X-Embedding-Shape').split(',').map(Number);
  const inputSize = reply.headers.get('X-Input-Size').split(',').map(Number);
  const data = new Float32Array(await reply.arrayBuffer());
  return { shape, inputSize, data };
}

async function openImage(index) {
  if (index < 0 || index >= app.images.length) return;
  if (app.conflict && !window.confirm(`the masks shown for ${app.name} are not saved ` +
    '(another tab/window changed the image): leave them?')) return;
  hideConflict();
  app.ready = false;
  const item = app.images[index];
  app.index = index;
  app.name = item.name;
  $('images').value = item.name;
  if (decodeURIComponent(location.hash.slice(1)) !== item.name) {
    history.replaceState(null, '', '#' + encodeURIComponent(item.name));
  }
  app.candidates = []; app.history = []; app.selected = -1; app.annotations = [];
  status(`loading ${item.name}…`);
  const url = '/api/file/' + encodeName(item.name);
  const [img, emb, doc] = await Promise.all([
    loadImageElement(url),
    fetchEmbedding(item.name),
    api('/api/annotations/' + encodeName(item.name)).then((r) => r.json()),
  ]);
  if (app.name !== item.name) return;
  app.image = img;
  app.size = [img.naturalHeight, img.naturalWidth];
  app.inputSize = emb.inputSize;
  app.embeddingShape = emb.shape;
  app.embedding = typeof ort !== 'undefined' ? new ort.Tensor('float32', emb.data, emb.shape) : null;
  app.annotations = doc.annotations;
  app.revision = doc.revision;
  for (const id of ['image-layer', 'mask-layer']) {
    $(id).width = img.naturalWidth;
    $(id).height = img.naturalHeight;
  }
  $('image-layer').getContext('2d').drawImage(img, 0, 0);
  fitLayers();
  const saved = JSON.parse(localStorage.getItem('mmsam:prompt:' + item.name) || 'null');
  app.prompt = saved ? saved.prompt : { points: [], box: null };
  app.candidate = saved ? saved.candidate : 0;
  await decode(true);
  redraw();
  status(`${item.name}: ${app.size[1]}×${app.size[0]}`);
  app.ready = true;
  const next = app.images[index + 1];
  if (next && app.backend === 'browser') fetch('/api/embedding/' + encodeName(next.name));
}

async function loadImageList(select) {
  const reply = await (await api('/api/images')).json();
  app.images = reply.images;
  const list = $('images');
  list.innerHTML = '';
  for (const item of app.images) {
    const option = document.createElement('option');
    option.value = item.name;
    option.textContent = item.name;
    list.append(option);
  }
  if (!app.images.length) { status('no images in the folder: add one'); return; }
  const wanted = select || decodeURIComponent(location.hash.slice(1));
  const index = Math.max(0, app.images.findIndex((i) => i.name === wanted));
  await openImage(index);
}

async function upload(file) {
  try {
    const reply = await api('/api/upload?filename=' + encodeURIComponent(file.name), {
      method: 'POST', body: file,
    });
    await loadImageList((await reply.json()).name);
  } catch (err) { fail(err); }
}

// ------------------------------------------------------------------ the decoder
async function startDecoder() {
  const wanted = new URLSearchParams(location.search).get('backend');
  const banner = $('banner');
  if (wanted === 'server') return 'server';
  if (!app.config.ort || typeof ort === 'undefined' || window.ortScriptFailed) {
    banner.hidden = false;
    banner.textContent = app.config.ort_problem ||
      'onnxruntime-web could not be loaded: masks are decoded on the server';
    return 'server';
  }
  try {
    ort.env.wasm.wasmPaths = '/ort/';
    const threads = Number(new URLSearchParams(location.search).get('threads')) ||
      Math.min(4, navigator.hardwareConcurrency || 1);
    ort.env.wasm.numThreads = self.crossOriginIsolated ? threads : 1; // ?threads=N
    const model = await (await api('/api/decoder.onnx')).arrayBuffer();
    app.session = await ort.InferenceSession.create(model, { executionProviders: ['wasm'] });
    return 'browser';
  } catch (err) {
    banner.hidden = false;
    banner.textContent = 'the decoder cannot run in this browser (' + err.message +
      '): masks are decoded on the server';
    console.error(err);
    return 'server';
  }
}

// ------------------------------------------------------------------ events
function imagePoint(event) {
  const rect = $('prompt-layer').getBoundingClientRect();
  const [H, W] = app.size;
  const x = (event.clientX - rect.left) * W / rect.width;
  const y = (event.clientY - rect.top) * H / rect.height;
  return [Math.min(Math.max(x, 0), W), Math.min(Math.max(y, 0), H)];
}

function bindEvents() {
  const layer = $('prompt-layer');
  layer.addEventListener('contextmenu', (e) => e.preventDefault());
  layer.addEventListener('mousedown', (e) => {
    if (!app.size) return;
    if (e.button === 2) { const [x, y] = imagePoint(e); addPoint(x, y, 0); return; }
    if (e.button !== 0) return;
    app.drag = { start: imagePoint(e), screen: [e.clientX, e.clientY], box: null };
  });
  window.addEventListener('mousemove', (e) => {
    if (!app.drag) return;
    const moved = Math.hypot(e.clientX - app.drag.screen[0], e.clientY - app.drag.screen[1]);
    if (moved < DRAG_PIXELS && !app.drag.box) return;
    const [x, y] = imagePoint(e);
    const [x0, y0] = app.drag.start;
    app.drag.box = [Math.min(x0, x), Math.min(y0, y), Math.max(x0, x), Math.max(y0, y)];
    drawPrompts();
  });
  window.addEventListener('mouseup', (e) => {
    if (!app.drag || e.button !== 0) return;
    const drag = app.drag;
    app.drag = null;
    if (drag.box) setBox(drag.box);
    else addPoint(drag.start[0], drag.start[1], 1);
  });
  window.addEventListener('resize', fitLayers);
  $('images').onchange = () => openImage(app.images.findIndex((i) => i.name === $('images').value));
  $('prev').onclick = () => openImage(app.index - 1);
  $('next').onclick = () => openImage(app.index + 1);
  $('accept').onclick = accept;
  $('cycle').onclick = cycleCandidate;
  $('clear').onclick = () => clearPrompt();
  $('undo').onclick = undo;
  $('auto').onclick = automatic;
  $('export-coco').onclick = () => exportAs('coco', 'rle');
  $('export-polygon').onclick = () => exportAs('coco', 'polygon');
  $('export-sa1b').onclick = () => exportAs('sa1b');
  $('upload').onchange = (e) => { if (e.target.files[0]) upload(e.target.files[0]); };
  $('conflict-reload').onclick = reloadSaved;
  $('conflict-keep').onclick = keepMine;
  window.addEventListener('beforeunload', (e) => {
    if (app.conflict) { e.preventDefault(); e.returnValue = ''; } // unsaved masks
  });
  window.addEventListener('hashchange', () => {
    const index = app.images.findIndex((i) => i.name === decodeURIComponent(location.hash.slice(1)));
    if (index >= 0 && index !== app.index) openImage(index);
  });
  window.addEventListener('keydown', (e) => {
    const typing = e.target.tagName === 'INPUT' || e.target.tagName === 'SELECT';
    if (e.key === 'Enter') { e.preventDefault(); accept(); return; }
    if (typing) return;
    if ((e.ctrlKey || e.metaKey) && e.key.toLowerCase() === 'z') { e.preventDefault(); undo(); }
    else if (e.key === 'ArrowRight' || e.key === 'n') openImage(app.index + 1);
    else if (e.key === 'ArrowLeft' || e.key === 'p') openImage(app.index - 1);
    else if (e.key === 'c' || e.key === 'Tab') { e.preventDefault(); cycleCandidate(); }
    else if (e.key === 'Escape') clearPrompt();
    else if (e.key === 'a') accept();
    else if (e.key === 'Delete' || e.key === 'Backspace') {
      deleteAnnotation(app.selected >= 0 ? app.selected : app.annotations.length - 1);
    }
  });
}

async function main() {
  try {
    app.config = await (await api('/api/config')).json();
    bindEvents();
    app.backend = await startDecoder();
    $('backend').textContent = app.backend === 'browser'
      ? 'decoder: in the browser' : 'decoder: on the server';
    $('backend').className = 'pill ' + app.backend;
    await loadImageList();
  } catch (err) {
    fail(err);
  }
}

main();
