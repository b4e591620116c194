/**
 * Measurements, pure functions: lengths and angles in patient units, and region statistics
 * (area in mm², mean, standard deviation, minimum, maximum in modality units, e.g. HU).
 */
import { modalityValue } from "../render/voi.js";

/**
 * @param {[number, number]} a
 * @param {[number, number]} vertex
 * @param {[number, number]} c
 * @param {[number, number]} spacing - PixelSpacing [between rows, between columns]
 * @returns {number} the angle at `vertex` in degrees, in patient space
 */
export function angleDegrees(a, vertex, c, spacing) {
  const u = [(a[0] - vertex[0]) * spacing[1], (a[1] - vertex[1]) * spacing[0]];
  const v = [(c[0] - vertex[0]) * spacing[1], (c[1] - vertex[1]) * spacing[0]];
  const norm = Math.hypot(...u) * Math.hypot(...v);
  if (!norm) return 0;
  const cos = Math.min(1, Math.max(-1, (u[0] * v[0] + u[1] * v[1]) / norm));
  return (Math.acos(cos) * 180) / Math.PI;
}

/**
 * Statistics of the pixels inside a rectangle or an ellipse (its bounding box given by two
 * corners), in modality units.
 * @param {{data: ArrayLike<number>, columns: number, rows: number, slope: number,
 *   intercept: number, modalityLut?: import("../render/voi.js").LookupTable|null,
 *   spacing: [number, number]}} image
 * @param {"rectangle" | "ellipse"} shape
 * @param {[number, number]} p
 * @param {[number, number]} q
 * @returns {{area: number, mean: number, sd: number, min: number, max: number, count: number}}
 */
export function regionStats(image, shape, p, q) {
  const [x0, x1] = [Math.min(p[0], q[0]), Math.max(p[0], q[0])];
  const [y0, y1] = [Math.min(p[1], q[1]), Math.max(p[1], q[1])];
  const [cx, cy, rx, ry] = [(x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2];
  let count = 0;
  let sum = 0;
  let squares = 0;
  let min = Infinity;
  let max = -Infinity;
  const firstColumn = Math.max(0, Math.floor(x0));
  const lastColumn = Math.min(image.columns - 1, Math.ceil(x1) - 1);
  const firstRow = Math.max(0, Math.floor(y0));
  const lastRow = Math.min(image.rows - 1, Math.ceil(y1) - 1);
  for (let row = firstRow; row <= lastRow; row += 1) {
    for (let column = firstColumn; column <= lastColumn; column += 1) {
      // A pixel belongs to the region when its centre does.
      const px = column + 0.5;
      const py = row + 0.5;
      if (px < x0 || px > x1 || py < y0 || py > y1) continue;
      if (shape === "ellipse" && rx > 0 && ry > 0
          && ((px - cx) / rx) ** 2 + ((py - cy) / ry) ** 2 > 1) continue;
      const value = modalityValue(image.data[row * image.columns + column], image);
      count += 1;
      sum += value;
      squares += value * value;
      if (value < min) min = value;
      if (value > max) max = value;
    }
  }
  const pixelArea = image.spacing[0] * image.spacing[1];
  const boxArea = (x1 - x0) * (y1 - y0) * pixelArea;
  const area = shape === "ellipse" ? (Math.PI / 4) * boxArea : boxArea;
  const mean = count ? sum / count : NaN;
  const sd = count ? Math.sqrt(Math.max(0, squares / count - mean * mean)) : NaN;
  return { area, mean, sd, min: count ? min : NaN, max: count ? max : NaN, count };
}

/**
 * The modality value of the pixel under an image point.
 * @param {{data: ArrayLike<number>, columns: number, rows: number, slope: number,
 *   intercept: number, modalityLut?: import("../render/voi.js").LookupTable|null}} image
 * @param {[number, number]} point
 * @returns {number | null}
 */
export function probe(image, point) {
  const column = Math.floor(point[0]);
  const row = Math.floor(point[1]);
  if (column < 0 || row < 0 || column >= image.columns || row >= image.rows) return null;
  return modalityValue(image.data[row * image.columns + column], image);
}
