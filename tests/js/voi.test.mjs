// Unit tests of the pure display pipeline (node --test; run by tests/test_javascript.py).
import assert from "node:assert/strict";
import { test } from "node:test";

import { autoWindow, defaultWindow, grey, modality, voi } from "../../frontend/js/render/voi.js";

test("modality LUT applies slope and intercept (PS3.3 C.11.1)", () => {
  assert.equal(modality(1024, 1, -1024), 0);
  assert.equal(modality(10, 2.5, 1), 26);
});

test("LINEAR window maps center-0.5-(w-1)/2 to 0 and center-0.5+(w-1)/2 to 1", () => {
  assert.equal(voi(40 - 0.5 - 399 / 2, 40, 400), 0);
  assert.equal(voi(40 - 0.5 + 399 / 2, 40, 400), 1);
  assert.ok(Math.abs(voi(40, 40, 400) - 0.50125) < 1e-3);
});

test("values outside the window clip", () => {
  assert.equal(voi(-5000, 40, 400), 0);
  assert.equal(voi(5000, 40, 400), 1);
});

test("LINEAR_EXACT has no half-pixel offset (C.11.2.1.3.2)", () => {
  assert.equal(voi(40, 40, 400, "LINEAR_EXACT"), 0.5);
  assert.equal(voi(240, 40, 400, "LINEAR_EXACT"), 1);
});

test("SIGMOID is 0.5 at the center and monotonic (C.11.2.1.3.1)", () => {
  assert.equal(voi(40, 40, 400, "SIGMOID"), 0.5);
  assert.ok(voi(100, 40, 400, "SIGMOID") > voi(0, 40, 400, "SIGMOID"));
});

test("the file's own window is used first, else one from the pixel range", () => {
  const image = { window_center: [40], window_width: [400], rescale_slope: 1, rescale_intercept: -1024,
    pixel_min: 0, pixel_max: 2048 };
  assert.deepEqual(defaultWindow(image), { center: 40, width: 400 });
  assert.deepEqual(defaultWindow({ ...image, window_center: null }), { center: 0, width: 2048 });
  assert.deepEqual(autoWindow({ rescale_slope: 1, rescale_intercept: 0, pixel_min: 5, pixel_max: 5 }),
    { center: 5, width: 1 });
});

test("MONOCHROME1 inversion turns black into white", () => {
  const p = { slope: 1, intercept: 0, center: 128, width: 256, fn: "LINEAR", invert: false };
  assert.equal(grey(0, p), 0);
  assert.equal(grey(0, { ...p, invert: true }), 255);
});
