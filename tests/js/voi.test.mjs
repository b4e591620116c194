// Unit tests of the pure display pipeline (node --test; run by tests/test_javascript.py).
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  autoWindow, defaultWindow, fileWindows, grey, lookup, lutMaximum, modality, modalityValue, presentation, voi,
} from "../../frontend/js/render/voi.js";

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

// VOI LUT Sequence and Modality LUT Sequence tables (PS3.3 C.11.2.1.1, C.11.1.1.1).
const table = { first: -100, bits: 8, data: [0, 50, 100, 255], explanation: "STEP" };

test("a LUT maps from its first value, clamping below and above", () => {
  assert.equal(lookup(table, -100), 0);
  assert.equal(lookup(table, -98), 100);
  assert.equal(lookup(table, -5000), 0);
  assert.equal(lookup(table, 5000), 255);
  assert.equal(lookup(table, -98.6), 50, "the nearest entry");
});

test("a VOI LUT's output is scaled by its bits, or by its largest entry if bigger", () => {
  assert.equal(lutMaximum(table), 255);
  assert.equal(lutMaximum({ first: 0, bits: 12, data: [0, 4095] }), 4095);
  assert.equal(lutMaximum({ first: 0, bits: 8, data: [0, 1000] }), 1000);
});

test("grey goes through the modality value and the VOI LUT instead of the window", () => {
  const p = { slope: 1, intercept: -1024, center: 0, width: 1, fn: "LINEAR", invert: false };
  // stored 926 → modality -98 → entry 2 → 100/255
  assert.equal(grey(926, { ...p, voiLut: table }), 100);
  assert.equal(grey(926, { ...p, voiLut: table, invert: true }), 155);
  const modalityLut = { first: 0, bits: 16, data: [-100, -99, -98] };
  assert.equal(modalityValue(2, { ...p, modalityLut }), -98);
  assert.equal(grey(2, { ...p, modalityLut, voiLut: table }), 100);
  assert.equal(grey(7, { ...p, modalityLut, voiLut: table }), 100, "clamped to the last entry");
});

test("the file's window comes first, then its LUT; the reader can pick either", () => {
  const image = { window_center: [40, 300], window_width: [400, 1500], voi_luts: [1, 0],
    modality_lut: null, rescale_slope: 1, rescale_intercept: 0, pixel_min: 0, pixel_max: 100 };
  const other = { first: 0, bits: 8, data: [0, 255], explanation: "" };
  const tables = [table, other];
  assert.equal(presentation(image, tables, null).voiLut, null);
  assert.equal(presentation(image, tables, null).center, 40);
  assert.equal(presentation(image, tables, { kind: "window", index: 1 }).width, 1500);
  assert.equal(presentation(image, tables, { kind: "lut", index: 0 }).voiLut, other);
  const second = presentation(image, tables, { kind: "lut", index: 1 });
  assert.equal(second.voiLut, table);
  assert.equal(second.label, "VOI LUT 2: STEP");
  const lutOnly = { ...image, window_center: null, window_width: null };
  assert.equal(presentation(lutOnly, tables, null).voiLut, other);
  assert.equal(presentation(lutOnly, tables, { kind: "manual", center: 5, width: 10 }).voiLut, null);
  assert.equal(presentation(lutOnly, tables, { kind: "window", index: 0 }).voiLut, other, "no such window");
});

test("the automatic window of a file with a Modality LUT spans the LUT's outputs", () => {
  const image = { modality_lut: 0, voi_luts: [], rescale_slope: 1, rescale_intercept: 0, pixel_min: 0, pixel_max: 2 };
  const p = presentation(image, [{ first: 0, bits: 16, data: [10, 20, 30] }], null);
  assert.deepEqual([p.center, p.width], [20, 20]);
  assert.deepEqual(fileWindows({ window_center: [1, 2], window_width: [0, 5] }), [{ center: 2, width: 5 }]);
});
