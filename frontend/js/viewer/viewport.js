/**
 * One viewport: a canvas drawn by WebGL2 (or the 2D fallback), the corner overlays,
 * orientation markers, a scale bar and length measurements, and the mouse gestures on it.
 */
import { Canvas2DRenderer } from "../render/canvas2d.js";
import { apply, distanceMm, imageToScreen, invertAffine, orientationLabels } from "../render/geometry.js";
import { GLRenderer } from "../render/gl.js";
import { presentation } from "../render/voi.js";
import { angleDegrees, probe, regionStats } from "../tools/measure.js";
import { spacingOf, typedFrame } from "./stack.js";

const SVG = "http://www.w3.org/2000/svg";

/** @returns {import("../render/geometry.js").View} */
export function freshView() {
  return { zoom: 1, panX: 0, panY: 0, rotate: 0, flipH: false, flipV: false };
}

export class Viewport {
  /**
   * @param {HTMLElement} element
   * @param {{cache: import("./cache.js").FrameCache, onFocus: (v: Viewport) => void,
   *   onScroll: (v: Viewport) => void, tool: () => string,
   *   failure: (series: string, index: number) => string | undefined}} context
   */
  constructor(element, context) {
    this.element = element;
    this.context = context;
    this.canvas = document.createElement("canvas");
    this.overlay = document.createElement("div");
    this.overlay.className = "overlay";
    this.corners = ["tl", "tr", "bl", "br"].map((name) => {
      const div = document.createElement("div");
      div.className = `corner ${name}`;
      return div;
    });
    this.markers = ["top", "bottom", "left", "right"].map((name) => {
      const div = document.createElement("div");
      div.className = `marker ${name}`;
      return div;
    });
    this.svg = document.createElementNS(SVG, "svg");
    this.message = document.createElement("div");
    this.message.className = "message";
    this.overlay.append(...this.corners, ...this.markers, this.svg, this.message);
    element.append(this.canvas, this.overlay);
    try {
      this.renderer = new GLRenderer(this.canvas);
      this.backend = "webgl2";
    } catch {
      this.renderer = new Canvas2DRenderer(this.canvas);
      this.backend = "2d";
    }
    this.series = null;
    this.stack = [];
    this.index = 0;
    this.view = freshView();
    /** @type {import("../render/voi.js").VoiChoice} */
    this.window = null;
    this.invert = false;
    /** @type {any[]} shared by every viewport of the page (set by main.js) */
    this.measurements = [];
    this.pendingAngle = null;
    this.frameShown = null;
    this.listen();
    new ResizeObserver(() => this.resize()).observe(element);
  }

  resize() {
    const ratio = window.devicePixelRatio || 1;
    this.canvas.width = Math.max(1, Math.round(this.element.clientWidth * ratio));
    this.canvas.height = Math.max(1, Math.round(this.element.clientHeight * ratio));
    this.frameShown = null;
    this.draw();
  }

  /**
   * @param {any} series - from the manifest
   * @param {import("./stack.js").StackEntry[]} stack
   */
  show(series, stack) {
    this.series = series;
    this.stack = stack;
    this.index = 0;
    this.reset();
  }

  reset() {
    this.view = freshView();
    this.window = null;
    this.invert = false;
    this.draw();
  }

  get entry() {
    return this.stack[this.index];
  }

  /** @param {number} index */
  scrollTo(index) {
    if (!this.stack.length) return;
    const next = Math.min(Math.max(index, 0), this.stack.length - 1);
    if (next === this.index) return;
    this.index = next;
    this.context.onScroll(this);
    this.draw();
  }

  /** The VOI transform the entry asks for unless the reader chose another. */
  currentWindow() {
    return presentation(this.entry.instance, this.series?.luts || [], this.window);
  }

  /**
   * @param {string | number[]} preset - "file" (the file's own choice), "auto",
   *   "window:<i>" or "lut:<i>" (one of the file's windows or VOI LUTs), or [center, width]
   */
  setWindow(preset) {
    if (!this.entry) return;
    const [kind, index] = typeof preset === "string" ? preset.split(":") : [];
    if (Array.isArray(preset)) this.window = { kind: "manual", center: preset[0], width: preset[1], fn: "LINEAR" };
    else if (kind === "auto") this.window = { kind: "auto" };
    else if (kind === "window" || kind === "lut") this.window = { kind, index: Number(index) };
    else this.window = null;
    this.draw();
  }

  geometry() {
    const instance = this.entry.instance;
    return { columns: instance.columns, rows: instance.rows, spacing: spacingOf(instance) };
  }

  /** @returns {boolean} whether an image was drawn */
  draw() {
    const entry = this.entry;
    if (!entry) {
      this.say(this.series ? "Nothing in this series can be shown." : "Drop a series here");
      return false;
    }
    const buffer = this.context.cache.get(this.series.series_instance_uid, this.index);
    const failure = buffer ? undefined : this.context.failure(this.series.series_instance_uid, this.index);
    if (failure !== undefined) return this.showFailure(failure);
    if (!buffer) {
      this.say("Loading…");
      this.annotate();
      return false;
    }
    const instance = entry.instance;
    const frame = {
      data: buffer,
      rows: instance.rows,
      columns: instance.columns,
      samples: instance.samples,
      dtype: instance.dtype,
    };
    const ratio = window.devicePixelRatio || 1;
    const toScreen = imageToScreen(this.view, this.geometry(), this.canvas.width / ratio, this.canvas.height / ratio);
    this.toScreen = toScreen;
    const scaled = invertAffine(toScreen.map((v, i) => (i < 6 ? v * ratio : v)));
    const w = this.currentWindow();
    const invert = (instance.photometric === "MONOCHROME1") !== this.invert;
    this.renderer.draw(frame, {
      screenToImage: scaled,
      slope: instance.rescale_slope,
      intercept: instance.rescale_intercept,
      center: w.center,
      width: w.width,
      fn: w.fn,
      invert,
      modalityLut: w.modalityLut,
      voiLut: w.voiLut,
    });
    this.frameShown = buffer;
    delete this.element.dataset.failed;
    // What is shown, for tests and tools that read the page.
    this.element.dataset.sop = instance.sop_instance_uid;
    this.element.dataset.frame = String(entry.frame);
    this.element.dataset.index = String(this.index);
    this.say("");
    this.annotate();
    return true;
  }

  /**
   * The server could not send this image: say so in plain words over a black viewport
   * (never the previous image, which would pass for this one).
   * @param {string} reason
   * @returns {boolean}
   */
  showFailure(reason) {
    this.renderer.clear();
    this.frameShown = null;
    this.element.dataset.sop = this.entry.instance.sop_instance_uid;
    this.element.dataset.frame = String(this.entry.frame);
    this.element.dataset.index = String(this.index);
    this.element.dataset.failed = "true";
    this.say(`Image ${this.index + 1} of ${this.stack.length} could not be decoded: ${reason}`);
    this.annotate();
    return false;
  }

  /** @param {string} text */
  say(text) {
    this.message.textContent = text;
    this.message.hidden = !text;
  }

  /** Corner overlays, orientation markers, scale bar and measurements. */
  annotate() {
    const entry = this.entry;
    if (!entry || !this.study) return;
    const instance = entry.instance;
    const w = this.currentWindow();
    const s = this.study;
    const lines = (...rows) => rows.filter((r) => r !== "" && r != null).join("\n");
    this.corners[0].textContent = lines(
      (s.patient_name || "").replaceAll("^", " "),
      s.patient_id,
      [s.patient_birth_date, s.patient_sex].filter(Boolean).join(" "),
    );
    this.corners[1].textContent = lines(
      s.study_description,
      [s.study_date, s.study_time].filter(Boolean).join(" "),
      `${this.series.modality || ""} #${this.series.series_number ?? ""} ${this.series.series_description || ""}`.trim(),
    );
    this.corners[2].textContent = lines(
      `Image ${this.index + 1} / ${this.stack.length}`,
      instance.slice_location != null ? `Location ${instance.slice_location.toFixed(1)} mm` : "",
      instance.slice_thickness != null ? `Thickness ${instance.slice_thickness} mm` : "",
    );
    this.corners[3].textContent = lines(
      w.label,
      `Zoom ${(this.zoomFactor() * 100).toFixed(0)}%`,
      this.backend === "2d" ? "2D canvas" : "",
    );
    const labels = orientationLabels(instance.image_orientation_patient, this.view);
    for (const [div, name] of this.markers.map((d, i) => [d, ["top", "bottom", "left", "right"][i]])) {
      div.textContent = labels ? labels[name] : "";
    }
    this.drawSvg();
  }

  /** Displayed size of one image pixel column relative to 1 screen px per pixel. */
  zoomFactor() {
    if (!this.toScreen) return 1;
    return Math.hypot(this.toScreen[0], this.toScreen[3]);
  }

  drawSvg() {
    this.svg.replaceChildren();
    if (!this.toScreen) return;
    const spacing = spacingOf(this.entry.instance);
    const pxPerMm = this.zoomFactor() / spacing[1];
    const barMm = [10, 20, 50, 100].find((mm) => mm * pxPerMm > 60) || 100;
    const bar = document.createElementNS(SVG, "line");
    const y = this.element.clientHeight - 30;
    const x = this.element.clientWidth / 2;
    for (const [k, v] of Object.entries({ x1: x - (barMm * pxPerMm) / 2, x2: x + (barMm * pxPerMm) / 2, y1: y, y2: y, class: "scale" })) {
      bar.setAttribute(k, String(v));
    }
    const label = document.createElementNS(SVG, "text");
    label.setAttribute("x", String(x));
    label.setAttribute("y", String(y - 6));
    label.setAttribute("class", "scale");
    label.textContent = `${barMm} mm`;
    this.svg.append(bar, label);
    const here = this.entry.instance.sop_instance_uid;
    const mine = this.measurements.filter((m) => m.sop_instance_uid === here && m.frame === this.entry.frame);
    if (this.pendingAngle) mine.push(this.pendingAngle);
    for (const m of mine) this.drawMeasurement(m, spacing);
  }

  /** @param {any} m @param {[number, number]} spacing */
  drawMeasurement(m, spacing) {
    const screen = m.points.map((p) => apply(this.toScreen, p[0], p[1]));
    const add = (name, attributes, text) => {
      const node = document.createElementNS(SVG, name);
      for (const [k, v] of Object.entries(attributes)) node.setAttribute(k, String(v));
      node.setAttribute("class", "measure");
      if (text !== undefined) node.textContent = text;
      this.svg.append(node);
    };
    const [a, b] = screen;
    const labelAt = screen[screen.length - 1];
    const label = (text) => add("text", { x: labelAt[0] + 6, y: labelAt[1] }, text);
    if (m.kind === "length" || m.kind === "angle") {
      add("polyline", { points: screen.map((p) => p.join(",")).join(" "), fill: "none" });
    }
    if (m.kind === "length") label(`${distanceMm(m.points[0], m.points[1], spacing).toFixed(1)} mm`);
    if (m.kind === "angle" && m.points.length === 3) {
      label(`${angleDegrees(m.points[0], m.points[1], m.points[2], spacing).toFixed(1)}°`);
    }
    if (m.kind === "rectangle") {
      add("rect", { x: Math.min(a[0], b[0]), y: Math.min(a[1], b[1]), width: Math.abs(b[0] - a[0]), height: Math.abs(b[1] - a[1]), fill: "none" });
    }
    if (m.kind === "ellipse") {
      add("ellipse", { cx: (a[0] + b[0]) / 2, cy: (a[1] + b[1]) / 2, rx: Math.abs(b[0] - a[0]) / 2, ry: Math.abs(b[1] - a[1]) / 2, fill: "none" });
    }
    const image = this.imageValues();
    if ((m.kind === "rectangle" || m.kind === "ellipse") && image) {
      const s = regionStats(image, m.kind, m.points[0], m.points[1]);
      const lines = [`${s.area.toFixed(1)} mm²`, `mean ${s.mean.toFixed(1)} SD ${s.sd.toFixed(1)}`,
        `min ${s.min.toFixed(0)} max ${s.max.toFixed(0)}`];
      lines.forEach((text, i) => add("text", { x: labelAt[0] + 6, y: labelAt[1] + i * 14 }, text));
    }
    if (m.kind === "point" && image) {
      add("circle", { cx: a[0], cy: a[1], r: 3 });
      const value = probe(image, m.points[0]);
      label(value === null ? "outside" : `${value.toFixed(1)}`);
    }
  }

  /** The shown frame with what statistics need, when it is greyscale and in memory. */
  imageValues() {
    const entry = this.entry;
    const data = entry && this.context.cache.get(this.series.series_instance_uid, this.index);
    if (!data || entry.instance.samples !== 1) return null;
    const i = entry.instance;
    const modalityLut = i.modality_lut != null ? this.series.luts?.[i.modality_lut] ?? null : null;
    return { data: /** @type {any} */ (data), columns: i.columns, rows: i.rows,
      slope: i.rescale_slope, intercept: i.rescale_intercept, modalityLut, spacing: spacingOf(i) };
  }

  /** @param {number} x @param {number} y - in CSS px within the viewport */
  imagePoint(x, y) {
    return apply(invertAffine(this.toScreen), x, y);
  }

  listen() {
    const el = this.element;
    el.addEventListener("wheel", (event) => {
      event.preventDefault();
      this.context.onFocus(this);
      if (event.ctrlKey) {
        this.view.zoom *= Math.exp(-event.deltaY * 0.002);
        this.draw();
      } else {
        this.scrollTo(this.index + Math.sign(event.deltaY));
      }
    }, { passive: false });
    el.addEventListener("contextmenu", (event) => event.preventDefault());
    el.addEventListener("pointerdown", (event) => {
      if (event.pointerType === "touch") this.touch(event);
      else this.drag(event);
    });
  }

  /**
   * Touch: one finger swipes through the stack, two fingers pinch to zoom and pan.
   * @param {PointerEvent} start
   */
  touch(start) {
    this.context.onFocus(this);
    const touches = (this.touches ||= new Map());
    touches.set(start.pointerId, { x: start.clientX, y: start.clientY });
    this.element.setPointerCapture(start.pointerId);
    const snapshot = () => {
      const [a, b] = [...touches.values()];
      return {
        index: this.index,
        view: { ...this.view },
        y: a.y,
        distance: b ? Math.hypot(b.x - a.x, b.y - a.y) : 0,
        middle: b ? { x: (a.x + b.x) / 2, y: (a.y + b.y) / 2 } : a,
      };
    };
    // Every finger that lands or lifts restarts the gesture from the current state.
    this.touchInitial = snapshot();
    if (touches.size > 1) return;  // the first finger's listeners handle the rest
    const move = (event) => {
      const initial = this.touchInitial;
      if (!touches.has(event.pointerId)) return;
      touches.set(event.pointerId, { x: event.clientX, y: event.clientY });
      const now = snapshot();
      if (touches.size >= 2 && initial.distance) {
        this.view.zoom = initial.view.zoom * (now.distance / initial.distance);
        this.view.panX = initial.view.panX + now.middle.x - initial.middle.x;
        this.view.panY = initial.view.panY + now.middle.y - initial.middle.y;
        this.draw();
      } else if (touches.size === 1) {
        this.scrollTo(initial.index + Math.round((initial.y - now.y) / 12));
      }
    };
    const end = (event) => {
      touches.delete(event.pointerId);
      if (touches.size) this.touchInitial = snapshot();
      if (!touches.size) {
        this.element.removeEventListener("pointermove", move);
        this.element.removeEventListener("pointerup", end);
        this.element.removeEventListener("pointercancel", end);
      }
    };
    this.element.addEventListener("pointermove", move);
    this.element.addEventListener("pointerup", end);
    this.element.addEventListener("pointercancel", end);
  }

  /** @param {PointerEvent} start */
  drag(start) {
    this.context.onFocus(this);
    if (!this.entry) return;
    const tool = start.button === 1 ? "pan" : start.button === 2 ? "zoom" : this.context.tool();
    const rect = this.element.getBoundingClientRect();
    const origin = { x: start.clientX, y: start.clientY };
    const initial = { ...this.currentWindow(), view: { ...this.view }, index: this.index };
    const at = (event) => this.imagePoint(event.clientX - rect.left, event.clientY - rect.top);
    let measurement = null;
    if (tool === "angle" && this.pendingAngle && this.pendingAngle.sop_instance_uid === this.entry.instance.sop_instance_uid) {
      measurement = this.pendingAngle;
      measurement.points.push(at(start));
      this.pendingAngle = null;
      this.measurements.push(measurement);
      this.context.onMeasured?.(measurement);
      this.draw();
      return;
    }
    if (["length", "angle", "rectangle", "ellipse", "point"].includes(tool)) {
      const p = at(start);
      const e = this.entry;
      measurement = { kind: tool, sop_instance_uid: e.instance.sop_instance_uid, frame: e.frame,
        points: tool === "point" ? [p] : [p, p] };
      if (tool === "angle") this.pendingAngle = measurement;
      else this.measurements.push(measurement);
    }
    this.element.setPointerCapture(start.pointerId);
    const move = (event) => {
      const dx = event.clientX - origin.x;
      const dy = event.clientY - origin.y;
      if (tool === "wl") {
        this.window = {
          kind: "manual",
          center: initial.center + dy * Math.max(initial.width, 1) / 256,
          width: Math.max(1, initial.width + dx * Math.max(initial.width, 1) / 256),
          fn: initial.fn,
        };
      } else if (tool === "pan") {
        this.view.panX = initial.view.panX + dx;
        this.view.panY = initial.view.panY + dy;
      } else if (tool === "zoom") {
        this.view.zoom = initial.view.zoom * Math.exp(-dy * 0.01);
      } else if (tool === "scroll") {
        this.scrollTo(initial.index + Math.round(dy / 8));
      } else if (measurement && measurement.kind !== "point") {
        measurement.points[1] = at(event);
      }
      this.draw();
    };
    const up = () => {
      this.element.removeEventListener("pointermove", move);
      this.element.removeEventListener("pointerup", up);
      if (measurement && measurement.kind !== "angle") this.context.onMeasured?.(measurement);
    };
    this.element.addEventListener("pointermove", move);
    this.element.addEventListener("pointerup", up);
  }
}

export { typedFrame };
