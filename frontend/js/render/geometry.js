/**
 * Geometry of a displayed image, pure functions: the screen ↔ image transform (zoom, pan,
 * rotation, flips, pixel aspect from PixelSpacing), orientation labels from
 * ImageOrientationPatient (PS3.3 C.7.6.2.1.1) and distances in millimetres.
 */

/**
 * @typedef {{zoom: number, panX: number, panY: number, rotate: number, flipH: boolean,
 *   flipV: boolean}} View
 */

/**
 * The 3×3 affine matrix (row-major) mapping image pixel coordinates (column, row) to
 * screen pixels (x right, y down) for a viewport of width×height.
 * @param {View} view
 * @param {{columns: number, rows: number, spacing: [number, number]}} image - spacing is
 *   PixelSpacing: [between rows, between columns] in mm
 * @param {number} width
 * @param {number} height
 * @returns {number[]}
 */
export function imageToScreen(view, image, width, height) {
  const [rowSpacing, columnSpacing] = image.spacing;
  const quarter = ((view.rotate % 360) + 360) % 360;
  const turned = quarter === 90 || quarter === 270;
  const shownWidth = (turned ? image.rows * rowSpacing : image.columns * columnSpacing);
  const shownHeight = (turned ? image.columns * columnSpacing : image.rows * rowSpacing);
  const fit = Math.min(width / shownWidth, height / shownHeight) * view.zoom;
  const angle = (quarter * Math.PI) / 180;
  const cos = Math.round(Math.cos(angle));
  const sin = Math.round(Math.sin(angle));
  const sx = fit * columnSpacing * (view.flipH ? -1 : 1);
  const sy = fit * rowSpacing * (view.flipV ? -1 : 1);
  const cx = width / 2 + view.panX;
  const cy = height / 2 + view.panY;
  const ox = -image.columns / 2;
  const oy = -image.rows / 2;
  // screen = T(c) · R · S · T(o) · p
  const a = cos * sx;
  const b = -sin * sy;
  const c = sin * sx;
  const d = cos * sy;
  return [a, b, cx + a * ox + b * oy, c, d, cy + c * ox + d * oy, 0, 0, 1];
}

/**
 * Inverse of a 3×3 affine matrix (row-major).
 * @param {number[]} m
 * @returns {number[]}
 */
export function invertAffine(m) {
  const [a, b, tx, c, d, ty] = m;
  const det = a * d - b * c;
  const ia = d / det;
  const ib = -b / det;
  const ic = -c / det;
  const id = a / det;
  return [ia, ib, -(ia * tx + ib * ty), ic, id, -(ic * tx + id * ty), 0, 0, 1];
}

/**
 * @param {number[]} m
 * @param {number} x
 * @param {number} y
 * @returns {[number, number]}
 */
export function apply(m, x, y) {
  return [m[0] * x + m[1] * y + m[2], m[3] * x + m[4] * y + m[5]];
}

/**
 * The patient direction a vector points to: L/R, A/P, H/F letters (PS3.3 C.7.6.1.1.1), the
 * strongest first.
 * @param {number[]} v - direction cosines in the patient coordinate system (LPS)
 * @returns {string}
 */
export function direction(v) {
  const names = [["L", "R"], ["P", "A"], ["H", "F"]];
  return [0, 1, 2]
    .filter((i) => Math.abs(v[i]) > 0.25)
    .sort((i, j) => Math.abs(v[j]) - Math.abs(v[i]))
    .map((i) => (v[i] > 0 ? names[i][0] : names[i][1]))
    .join("");
}

/**
 * Labels for the four edges of the displayed image (left, right, top, bottom).
 * @param {number[] | null} orientation - ImageOrientationPatient (row cosines, then column)
 * @param {View} view
 * @returns {{left: string, right: string, top: string, bottom: string} | null}
 */
export function orientationLabels(orientation, view) {
  if (!orientation || orientation.length !== 6) return null;
  let right = orientation.slice(0, 3);
  let down = orientation.slice(3, 6);
  if (view.flipH) right = right.map((x) => -x);
  if (view.flipV) down = down.map((x) => -x);
  const quarter = ((((view.rotate % 360) + 360) % 360) / 90) | 0;
  for (let i = 0; i < quarter; i += 1) [right, down] = [down.map((x) => -x), right];
  const neg = (v) => v.map((x) => -x);
  return {
    right: direction(right),
    left: direction(neg(right)),
    bottom: direction(down),
    top: direction(neg(down)),
  };
}

/**
 * Distance in mm between two image points (column, row), using PixelSpacing.
 * @param {[number, number]} p
 * @param {[number, number]} q
 * @param {[number, number]} spacing - [between rows, between columns]
 * @returns {number}
 */
export function distanceMm(p, q, spacing) {
  const dx = (q[0] - p[0]) * spacing[1];
  const dy = (q[1] - p[1]) * spacing[0];
  return Math.hypot(dx, dy);
}
