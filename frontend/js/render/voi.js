/**
 * Grey-scale display pipeline, pure functions (PS3.3 C.11): the Modality LUT (rescale
 * slope and intercept, or a Modality LUT Sequence table, C.11.1), then either a window
 * through a VOI LUT function (C.11.2.1.2 LINEAR, C.11.2.1.3.1 SIGMOID,
 * C.11.2.1.3.2 LINEAR_EXACT) or a VOI LUT Sequence table (C.11.2.1.1). The WebGL shader
 * does the same maths; these serve the 2D-canvas fallback and the tests.
 */

/**
 * A lookup table from the file, as the manifest carries it: input values below `first`
 * map to data[0], values at or past first + data.length - 1 to the last entry.
 * @typedef {{first: number, bits: number, data: number[], explanation?: string}} LookupTable
 */

/** Window presets for CT, in Hounsfield units: [center, width]. */
export const CT_PRESETS = {
  brain: [40, 80],
  lung: [-600, 1500],
  abdomen: [40, 400],
  bone: [400, 1800],
  liver: [60, 160],
};

/**
 * @param {number} stored - a stored pixel value
 * @param {number} slope
 * @param {number} intercept
 * @returns {number} the value in output units (e.g. HU)
 */
export function modality(stored, slope, intercept) {
  return stored * slope + intercept;
}

/**
 * The entry of `table` for an input value: rounded to the nearest entry, clamped at both
 * ends (C.11.1.1.1, C.11.2.1.1).
 * @param {LookupTable} table
 * @param {number} value
 * @returns {number}
 */
export function lookup(table, value) {
  const index = Math.min(Math.max(Math.round(value - table.first), 0), table.data.length - 1);
  return table.data[index];
}

/**
 * The largest output a VOI LUT can give, which display maps to white: 2^bits - 1 from the
 * LUT Descriptor, or the largest entry if a writer stored more bits than it declared.
 * @param {LookupTable} table
 * @returns {number}
 */
export function lutMaximum(table) {
  let max = 2 ** table.bits - 1;
  for (const v of table.data) if (v > max) max = v;
  return Math.max(max, 1);
}

/**
 * Display value 0..1 of a modality value through a VOI LUT function.
 * @param {number} value
 * @param {number} center
 * @param {number} width
 * @param {string} [fn] - LINEAR (default), LINEAR_EXACT or SIGMOID
 * @returns {number}
 */
export function voi(value, center, width, fn = "LINEAR") {
  let y;
  if (fn === "SIGMOID") {
    y = 1 / (1 + Math.exp((-4 * (value - center)) / Math.max(width, 1e-9)));
  } else if (fn === "LINEAR_EXACT") {
    y = (value - center) / Math.max(width, 1e-9) + 0.5;
  } else {
    const w = Math.max(width, 1);
    y = (value - (center - 0.5)) / Math.max(w - 1, 1e-9) + 0.5;
  }
  return Math.min(1, Math.max(0, y));
}

/**
 * The window an image asks for: its own first VOI window, else one spanning its values.
 * @param {{window_center?: number[]|null, window_width?: number[]|null, pixel_min?: number|null,
 *   pixel_max?: number|null, rescale_slope: number, rescale_intercept: number}} image
 * @returns {{center: number, width: number}}
 */
export function defaultWindow(image) {
  const center = image.window_center?.[0];
  const width = image.window_width?.[0];
  if (Number.isFinite(center) && Number.isFinite(width) && width > 0) return { center, width };
  return autoWindow(image);
}

/**
 * A window from the pixel range of the image, in modality units.
 * @param {{pixel_min?: number|null, pixel_max?: number|null, rescale_slope: number,
 *   rescale_intercept: number, modalityLut?: LookupTable|null}} image
 * @returns {{center: number, width: number}}
 */
export function autoWindow(image) {
  const p = { slope: image.rescale_slope, intercept: image.rescale_intercept, modalityLut: image.modalityLut };
  const low = modalityValue(image.pixel_min ?? 0, p);
  const high = modalityValue(image.pixel_max ?? 255, p);
  const [a, b] = low <= high ? [low, high] : [high, low];
  return { center: (a + b) / 2, width: Math.max(b - a, 1) };
}

/**
 * The modality value of a stored value: through the Modality LUT Sequence's table when the
 * file has one, else rescale slope and intercept (C.11.1).
 * @param {number} stored
 * @param {{slope: number, intercept: number, modalityLut?: LookupTable|null}} p
 * @returns {number}
 */
export function modalityValue(stored, p) {
  return p.modalityLut ? lookup(p.modalityLut, stored) : modality(stored, p.slope, p.intercept);
}

/**
 * A 256-entry-per-unit lookup is not practical for 16-bit data; the fallback renderer maps
 * each value. Returns the 8-bit grey of one stored value.
 * @param {number} stored
 * @param {{slope: number, intercept: number, center: number, width: number, fn: string,
 *   invert: boolean, modalityLut?: LookupTable|null, voiLut?: LookupTable|null}} p
 * @returns {number}
 */
export function grey(stored, p) {
  const value = modalityValue(stored, p);
  const y = p.voiLut
    ? Math.min(1, Math.max(0, lookup(p.voiLut, value) / lutMaximum(p.voiLut)))
    : voi(value, p.center, p.width, p.fn);
  return Math.round((p.invert ? 1 - y : y) * 255);
}

/**
 * How the reader asked to see an image. null: as the file says (its first window, else
 * its first VOI LUT, else a window over its values); {kind: "window", index} or
 * {kind: "lut", index}: one of the file's alternatives (C.11.2: a file may offer several);
 * {kind: "auto"}; {kind: "manual", center, width, fn}.
 * @typedef {null | {kind: "window"|"lut", index: number} | {kind: "auto"}
 *   | {kind: "manual", center: number, width: number, fn?: string}} VoiChoice
 */

/**
 * The VOI transform to draw an image with, and a label for it.
 * @param {any} image - an instance of the manifest
 * @param {LookupTable[]} tables - its series' tables ("luts" of the manifest)
 * @param {VoiChoice} choice
 * @returns {{center: number, width: number, fn: string, voiLut: LookupTable|null,
 *   modalityLut: LookupTable|null, label: string}}
 */
export function presentation(image, tables, choice) {
  const modalityLut = image.modality_lut != null ? tables[image.modality_lut] ?? null : null;
  const withTable = { ...image, modalityLut };
  const luts = (image.voi_luts || []).map((i) => tables[i]).filter(Boolean);
  const windows = fileWindows(image);
  const fn = image.voi_lut_function || "LINEAR";
  const windowed = (w, f = fn) => ({ ...w, fn: f, voiLut: null, modalityLut, label: `W ${Math.round(w.width)} L ${Math.round(w.center)}` });
  const tabled = (lut, i) => {
    const span = { center: lut.first + lut.data.length / 2, width: lut.data.length };
    return { ...span, fn: "LINEAR", voiLut: lut, modalityLut, label: `VOI LUT ${i + 1}${lut.explanation ? `: ${lut.explanation}` : ""}` };
  };
  if (choice?.kind === "manual") return windowed(choice, choice.fn || "LINEAR");
  if (choice?.kind === "auto") return windowed(autoWindow(withTable), "LINEAR");
  if (choice?.kind === "lut" && luts[choice.index]) return tabled(luts[choice.index], choice.index);
  if (choice?.kind === "window" && windows[choice.index]) return windowed(windows[choice.index]);
  if (windows.length) return windowed(windows[0]);
  if (luts.length) return tabled(luts[0], 0);
  return windowed(autoWindow(withTable));
}

/**
 * The windows a file gives (Window Center and Width are multi-valued in pairs, C.11.2.1.2).
 * @param {{window_center?: number[]|null, window_width?: number[]|null}} image
 * @returns {{center: number, width: number}[]}
 */
export function fileWindows(image) {
  const centers = image.window_center || [];
  const widths = image.window_width || [];
  const out = [];
  for (let i = 0; i < Math.min(centers.length, widths.length); i += 1) {
    if (Number.isFinite(centers[i]) && Number.isFinite(widths[i]) && widths[i] > 0) {
      out.push({ center: centers[i], width: widths[i] });
    }
  }
  return out;
}
