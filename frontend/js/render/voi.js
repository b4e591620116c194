/**
 * Grey-scale display pipeline, pure functions (PS3.3 C.11): the Modality LUT (rescale
 * slope and intercept, C.11.1) and the VOI LUT functions (C.11.2.1.2 LINEAR,
 * C.11.2.1.3.1 SIGMOID, C.11.2.1.3.2 LINEAR_EXACT). The WebGL shader does the same maths;
 * these serve the 2D-canvas fallback and the tests.
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
 *   rescale_intercept: number}} image
 * @returns {{center: number, width: number}}
 */
export function autoWindow(image) {
  const low = modality(image.pixel_min ?? 0, image.rescale_slope, image.rescale_intercept);
  const high = modality(image.pixel_max ?? 255, image.rescale_slope, image.rescale_intercept);
  const [a, b] = low <= high ? [low, high] : [high, low];
  return { center: (a + b) / 2, width: Math.max(b - a, 1) };
}

/**
 * A 256-entry-per-unit lookup is not practical for 16-bit data; the fallback renderer maps
 * each value. Returns the 8-bit grey of one stored value.
 * @param {number} stored
 * @param {{slope: number, intercept: number, center: number, width: number, fn: string,
 *   invert: boolean}} p
 * @returns {number}
 */
export function grey(stored, p) {
  const y = voi(modality(stored, p.slope, p.intercept), p.center, p.width, p.fn);
  return Math.round((p.invert ? 1 - y : y) * 255);
}
