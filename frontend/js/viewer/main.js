/**
 * The viewer page (/viewer/<StudyInstanceUID>): series strip, layouts, tools, keyboard, and
 * the frame stream that fills the cache. Timing marks (DESIGN.md):
 * performance.mark("lightbox:first-image") when the first image is drawn and
 * performance.mark("lightbox:series-complete") when the first viewport's series is in memory.
 */
import { viewerRequest } from "../net/early.js";
import { FrameStream } from "../net/frames.js";
import { CT_PRESETS } from "../render/voi.js";
import { FrameCache, capFromQuery } from "./cache.js";
import { buildStack, frameBytes, typedFrame } from "./stack.js";
import { hideTags, showTags, tagsShown } from "./tags.js";
import { Viewport } from "./viewport.js";

const { studyUid, deflate } = viewerRequest();
const grid = /** @type {HTMLElement} */ (document.querySelector("#viewports"));
const strip = /** @type {HTMLElement} */ (document.querySelector("#series"));
const status = /** @type {HTMLElement} */ (document.querySelector("#status"));
const cache = new FrameCache(capFromQuery(location.search));
/** Frames the server could not send, per series: stack index → reason. */
const failures = new Map();
/** @type {Map<string, {series: any, stack: any[], progress: HTMLProgressElement}>} */
const seriesByUid = new Map();
/** @type {Viewport[]} */
let viewports = [];
let active = 0;
let tool = "wl";
let study = null;
let firstImageMarked = false;
let seriesCompleteMarked = false;
let cine = null;
/** Measurements of this study by this reader, shared by every viewport. */
const measurements = [];

const stream = new FrameStream(studyUid, {
  onStudy,
  onFrame,
  onFrameError,
  onError: (error) => fail(error.message),
  onState: (state) => { status.textContent = state === "open" ? "" : "reconnecting…"; },
  have: () => Object.fromEntries([...seriesByUid.keys()].map((uid) => [uid, cache.ranges(uid)])),
}, { deflate });

/** @param {string} message */
function fail(message) {
  const box = /** @type {HTMLElement} */ (document.querySelector("#error"));
  box.textContent = message;
  box.hidden = false;
  grid.hidden = true;
}

/** @param {any} manifest */
function onStudy(manifest) {
  const first = study === null;
  study = manifest;
  document.title = `${(manifest.patient_name || "").replaceAll("^", " ")} — Lightbox`;
  if (!first) return;
  for (const series of manifest.series) {
    const stack = buildStack(series);
    seriesByUid.set(series.series_instance_uid, { series, stack, progress: seriesCard(series, stack) });
  }
  loadMeasurements();
  showCacheState();
  const firstSeries = manifest.series.find((s) => buildStack(s).length) || manifest.series[0];
  if (firstSeries) assign(viewports[0], firstSeries.series_instance_uid);
  else fail("This study has no images that can be shown.");
}

/** @param {any} series @param {any[]} stack */
function seriesCard(series, stack) {
  const card = document.createElement("button");
  card.className = "series-card";
  card.draggable = true;
  card.dataset.series = series.series_instance_uid;
  const img = document.createElement("img");
  img.alt = "";
  if (series.thumbnail) img.src = series.thumbnail;
  const label = document.createElement("span");
  label.textContent = `${series.modality || ""} ${series.series_number ?? ""} ${series.series_description || ""}`.trim();
  const count = document.createElement("small");
  count.textContent = `${stack.length} image${stack.length === 1 ? "" : "s"}`;
  const progress = document.createElement("progress");
  progress.max = Math.max(stack.length, 1);
  progress.value = 0;
  card.append(img, label, count, progress);
  card.addEventListener("click", () => assign(viewports[active], series.series_instance_uid));
  card.addEventListener("dragstart", (event) => event.dataTransfer?.setData("text/plain", series.series_instance_uid));
  strip.append(card);
  return progress;
}

/** @param {number} rows @param {number} columns */
function setLayout(rows, columns) {
  const shown = viewports.map((v) => v.series?.series_instance_uid).filter(Boolean);
  grid.replaceChildren();
  grid.style.gridTemplateRows = `repeat(${rows}, 1fr)`;
  grid.style.gridTemplateColumns = `repeat(${columns}, 1fr)`;
  viewports = [];
  for (let i = 0; i < rows * columns; i += 1) {
    const element = document.createElement("div");
    element.className = "viewport";
    element.addEventListener("dragover", (event) => event.preventDefault());
    element.addEventListener("drop", (event) => {
      event.preventDefault();
      const uid = event.dataTransfer?.getData("text/plain");
      if (uid && seriesByUid.has(uid)) assign(viewport, uid);
    });
    grid.append(element);
    const viewport = new Viewport(element, {
      cache,
      tool: () => tool,
      onFocus: (v) => setActive(viewports.indexOf(v)),
      onScroll: (v) => focus(v),
      onMeasured: save,
      failure: (series, index) => failures.get(series)?.get(index),
    });
    viewport.study = study;
    viewport.measurements = measurements;
    viewports.push(viewport);
  }
  const uids = [...seriesByUid.keys()];
  viewports.forEach((v, i) => {
    const uid = shown[i] ?? uids[i];
    if (uid) assign(v, uid);
  });
  setActive(Math.min(active, viewports.length - 1));
}

/** @param {number} index */
function setActive(index) {
  active = Math.max(index, 0);
  viewports.forEach((v, i) => v.element.classList.toggle("active", i === active));
  fillFilePresets();
}

/**
 * The W/L menu's choices from the file of the active viewport's image: each of its windows
 * and each of its VOI LUTs (PS3.3 C.11.2). Their explanations are DICOM text: option text.
 */
function fillFilePresets() {
  const group = /** @type {HTMLOptGroupElement} */ (document.querySelector("#file-presets"));
  const instance = current()?.entry?.instance;
  const luts = current()?.series?.luts || [];
  const options = [];
  const centers = instance?.window_center || [];
  (instance?.window_width || []).forEach((width, i) => {
    if (Number.isFinite(centers[i]) && width > 0) {
      options.push(new Option(`Window ${i + 1} (${width}/${centers[i]})`, `window:${i}`));
    }
  });
  (instance?.voi_luts || []).forEach((table, i) => {
    const explanation = luts[table]?.explanation;
    options.push(new Option(`VOI LUT ${i + 1}${explanation ? `: ${explanation}` : ""}`, `lut:${i}`));
  });
  const select = /** @type {HTMLSelectElement} */ (group.parentElement);
  const chosen = select.value;
  group.replaceChildren(...options);
  group.hidden = options.length === 0;
  if ([...select.options].some((o) => o.value === chosen)) select.value = chosen;
}

/** @param {Viewport} viewport @param {string} uid */
function assign(viewport, uid) {
  const entry = seriesByUid.get(uid);
  if (!entry) return;
  viewport.study = study;
  viewport.show(entry.series, entry.stack);
  viewport.scrollTo(Math.floor(entry.stack.length / 2));
  focus(viewport);
  markIfShown(viewport);
  if (viewport === current()) fillFilePresets();
}

/** Tell the server where the reader is, so it sends those frames first. */
function focus(viewport) {
  if (!viewport.series) return;
  const uid = viewport.series.series_instance_uid;
  cache.setFocus(uid, viewport.index);
  const visible = viewports.map((v) => v.series?.series_instance_uid).filter(Boolean);
  stream.focus(uid, viewport.index, visible, { [uid]: cache.ranges(uid) }, frameBudget(viewport.stack));
}

/**
 * How many frames of a stack the cache can hold: the server sends no more than that, so
 * that a series larger than the cap is not streamed only to be dropped.
 * @param {any[]} stack
 */
function frameBudget(stack) {
  const size = Math.max(0, ...stack.filter((e) => e.instance.viewable).map((e) => frameBytes(e.instance)));
  return size ? Math.max(1, Math.floor(cache.cap / size)) : 0;
}

/**
 * @param {import("../net/frames.js").FrameHeader} header
 * @param {Uint8Array} data
 */
function onFrame(header, data) {
  const entry = seriesByUid.get(header.series);
  const item = entry?.stack[header.index];
  if (!entry || !item) return;
  cache.put(header.series, header.index, typedFrame(data, item.instance.dtype));
  showCacheState();
  settled(header.series, header.index, entry);
}

/**
 * The server could not send a frame (its pixels could not be decoded): remember why, and
 * say it where that image would be.
 * @param {{series: string, index: number, reason: string}} message
 */
function onFrameError(message) {
  const entry = seriesByUid.get(message.series);
  if (!entry || !entry.stack[message.index]) return;
  if (!failures.has(message.series)) failures.set(message.series, new Map());
  failures.get(message.series).set(message.index, String(message.reason));
  settled(message.series, message.index, entry);
}

/** A frame arrived or was reported as failed: progress, viewports, timing mark. */
function settled(uid, index, entry) {
  const done = cache.count(uid) + (failures.get(uid)?.size ?? 0);
  entry.progress.value = done;
  for (const viewport of viewports) {
    if (viewport.series?.series_instance_uid === uid && viewport.index === index) {
      viewport.draw();
      markIfShown(viewport);
    }
  }
  const first = viewports[0]?.series;
  if (!seriesCompleteMarked && first && first.series_instance_uid === uid && done >= entry.stack.length) {
    seriesCompleteMarked = true;
    performance.mark("lightbox:series-complete");
  }
}

/**
 * The cache's state on the page, for tests and anyone curious: bytes held, the most ever
 * held, the cap, and the frames held of the active viewport's series ("0-40,45").
 */
function showCacheState() {
  const uid = current()?.series?.series_instance_uid;
  Object.assign(grid.dataset, {
    cacheBytes: String(cache.bytes),
    cachePeak: String(cache.peak),
    cacheCap: String(cache.cap),
    cacheHeld: uid ? cache.ranges(uid) : "",
  });
}

/** @param {Viewport} viewport */
function markIfShown(viewport) {
  if (!firstImageMarked && viewport.frameShown) {
    firstImageMarked = true;
    performance.mark("lightbox:first-image");
  }
}

function csrfToken() {
  return document.cookie.split("; ").find((c) => c.startsWith("csrftoken="))?.split("=")[1] ?? "";
}

const annotationsUrl = `/api/studies/${encodeURIComponent(studyUid)}/annotations`;

async function loadMeasurements() {
  const response = await fetch(annotationsUrl, { credentials: "same-origin" });
  if (!response.ok) return;
  const { annotations } = await response.json();
  measurements.push(...annotations);
  viewports.forEach((v) => v.draw());
}

/** Keep a finished measurement on the server (per reader and study). */
async function save(measurement) {
  const response = await fetch(annotationsUrl, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
    body: JSON.stringify(measurement),
  });
  if (response.ok) measurement.id = (await response.json()).id;
  else status.textContent = "The measurement could not be saved.";
}

/** Delete the newest measurement on the active viewport's image. */
async function deleteLast() {
  const v = current();
  if (!v?.entry) return;
  const here = measurements.filter((m) => m.sop_instance_uid === v.entry.instance.sop_instance_uid && m.frame === v.entry.frame);
  const last = here[here.length - 1];
  if (!last) return;
  measurements.splice(measurements.indexOf(last), 1);
  v.draw();
  if (last.id) {
    await fetch(`/api/annotations/${last.id}`, {
      method: "DELETE", credentials: "same-origin", headers: { "X-CSRFToken": csrfToken() },
    });
  }
}

function current() {
  return viewports[active];
}

/** @param {string} name */
function selectTool(name) {
  tool = name;
  for (const button of document.querySelectorAll("[data-tool]")) {
    button.classList.toggle("selected", /** @type {HTMLElement} */ (button).dataset.tool === name);
  }
}

function toggleCine() {
  const button = /** @type {HTMLElement} */ (document.querySelector("#cine"));
  if (cine) {
    clearInterval(cine);
    cine = null;
    button.textContent = "▶ Cine";
    return;
  }
  const fps = Number(/** @type {HTMLInputElement} */ (document.querySelector("#fps")).value) || 10;
  cine = setInterval(() => {
    const v = current();
    if (v?.stack.length) v.scrollTo((v.index + 1) % v.stack.length);
  }, 1000 / fps);
  button.textContent = "❚❚ Cine";
}

function wire() {
  for (const button of document.querySelectorAll("[data-layout]")) {
    button.addEventListener("click", () => {
      const [rows, columns] = /** @type {HTMLElement} */ (button).dataset.layout.split("x").map(Number);
      setLayout(rows, columns);
    });
  }
  for (const button of document.querySelectorAll("[data-tool]")) {
    button.addEventListener("click", () => selectTool(/** @type {HTMLElement} */ (button).dataset.tool));
  }
  const presets = /** @type {HTMLSelectElement} */ (document.querySelector("#preset"));
  for (const [name, [c, w]] of Object.entries(CT_PRESETS)) {
    presets.append(new Option(`CT ${name} (${w}/${c})`, `${c},${w}`));
  }
  presets.addEventListener("change", () => {
    const value = presets.value;
    current()?.setWindow(value.includes(",") ? value.split(",").map(Number) : value);
  });
  presets.addEventListener("focus", fillFilePresets);
  const actions = {
    invert: (v) => { v.invert = !v.invert; },
    rotate: (v) => { v.view.rotate = (v.view.rotate + 90) % 360; },
    flipH: (v) => { v.view.flipH = !v.view.flipH; },
    flipV: (v) => { v.view.flipV = !v.view.flipV; },
    fit: (v) => { v.view.zoom = 1; v.view.panX = 0; v.view.panY = 0; },
    actual: (v) => { v.view.zoom /= v.zoomFactor(); },
    reset: (v) => { v.reset(); },
  };
  for (const [name, act] of Object.entries(actions)) {
    document.querySelector(`[data-action="${name}"]`)?.addEventListener("click", () => {
      const v = current();
      if (v?.entry) { act(v); v.draw(); }
    });
  }
  document.querySelector("#cine")?.addEventListener("click", toggleCine);
  document.querySelector("#delete-measurement")?.addEventListener("click", () => { deleteLast(); });
  document.querySelector("#help-button")?.addEventListener("click", () => toggleHelp());
  document.querySelector("#tags-button")?.addEventListener("click", toggleTags);
  document.addEventListener("keydown", onKey);
}

function toggleTags() {
  const v = current();
  if (tagsShown()) hideTags();
  else if (v?.entry) showTags(studyUid, v.entry.instance.sop_instance_uid);
}

function toggleHelp() {
  const help = /** @type {HTMLElement} */ (document.querySelector("#help"));
  help.hidden = !help.hidden;
}

/** @param {KeyboardEvent} event */
function onKey(event) {
  if (event.target instanceof HTMLInputElement || event.target instanceof HTMLSelectElement) return;
  const v = current();
  const keys = {
    ArrowDown: () => v?.scrollTo(v.index + 1),
    ArrowRight: () => v?.scrollTo(v.index + 1),
    ArrowUp: () => v?.scrollTo(v.index - 1),
    ArrowLeft: () => v?.scrollTo(v.index - 1),
    PageDown: () => v?.scrollTo(v.index + 10),
    PageUp: () => v?.scrollTo(v.index - 10),
    Home: () => v?.scrollTo(0),
    End: () => v?.scrollTo(v.stack.length - 1),
    "?": toggleHelp,
    t: toggleTags,
    i: () => { if (v) { v.invert = !v.invert; v.draw(); } },
    r: () => { if (v) { v.reset(); } },
    w: () => selectTool("wl"),
    p: () => selectTool("pan"),
    z: () => selectTool("zoom"),
    s: () => selectTool("scroll"),
    l: () => selectTool("length"),
    a: () => selectTool("angle"),
    e: () => selectTool("ellipse"),
    b: () => selectTool("rectangle"),
    v: () => selectTool("point"),
    Delete: () => { deleteLast(); },
    Backspace: () => { deleteLast(); },
    c: toggleCine,
  };
  const action = keys[event.key];
  if (action) {
    event.preventDefault();
    action();
  }
}

wire();
selectTool("wl");
// The viewport (and its WebGL context) is made while the manifest is on its way.
setLayout(1, 1);
