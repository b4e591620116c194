import assert from "node:assert/strict";
import { test } from "node:test";

import { apply, distanceMm, imageToScreen, invertAffine, orientationLabels } from "../../frontend/js/render/geometry.js";

const view = { zoom: 1, panX: 0, panY: 0, rotate: 0, flipH: false, flipV: false };

test("an image is fitted and centred in the viewport", () => {
  const m = imageToScreen(view, { columns: 512, rows: 512, spacing: [1, 1] }, 1024, 512);
  assert.deepEqual(apply(m, 0, 0), [256, 0]);
  assert.deepEqual(apply(m, 512, 512), [768, 512]);
});

test("PixelSpacing gives the aspect ratio: rows 2 mm apart look twice as tall", () => {
  const m = imageToScreen(view, { columns: 100, rows: 100, spacing: [2, 1] }, 400, 400);
  const [x0, y0] = apply(m, 0, 0);
  const [x1, y1] = apply(m, 100, 100);
  assert.equal((y1 - y0) / (x1 - x0), 2);
});

test("the inverse maps screen points back to image points", () => {
  const m = imageToScreen({ ...view, rotate: 90, flipH: true, zoom: 1.7, panX: 13 }, { columns: 300, rows: 200, spacing: [0.7, 0.7] }, 640, 480);
  const [x, y] = apply(invertAffine(m), ...apply(m, 42, 17));
  assert.ok(Math.abs(x - 42) < 1e-9 && Math.abs(y - 17) < 1e-9);
});

test("orientation markers of an axial slice (PS3.3 C.7.6.2.1.1)", () => {
  const axial = [1, 0, 0, 0, 1, 0];
  assert.deepEqual(orientationLabels(axial, view), { right: "L", left: "R", bottom: "P", top: "A" });
  assert.deepEqual(orientationLabels(axial, { ...view, flipH: true }).left, "L");
  assert.deepEqual(orientationLabels(axial, { ...view, rotate: 90 }).top, "R");
});

test("coronal and oblique orientations name the strongest directions first", () => {
  assert.deepEqual(orientationLabels([1, 0, 0, 0, 0, -1], view).bottom, "F");
  assert.equal(orientationLabels([0.8, 0.6, 0, 0, 0, -1], view).right, "LP");
});

test("lengths use PixelSpacing", () => {
  assert.equal(distanceMm([0, 0], [3, 4], [1, 1]), 5);
  assert.equal(distanceMm([0, 0], [10, 0], [0.5, 0.7]), 7);
});
