import assert from "node:assert/strict";
import { test } from "node:test";

import { angleDegrees, probe, regionStats } from "../../frontend/js/tools/measure.js";

const image = (values, columns, rows, extra = {}) => ({
  data: values, columns, rows, slope: 1, intercept: 0, spacing: [1, 1], ...extra,
});

test("a right angle measures 90°, with anisotropic pixels taken into account", () => {
  assert.equal(angleDegrees([10, 0], [0, 0], [0, 10], [1, 1]), 90);
  assert.ok(Math.abs(angleDegrees([1, 0], [0, 0], [1, 1], [2, 1]) - 63.435) < 1e-3);
});

test("rectangle statistics in modality units", () => {
  const values = Int16Array.from({ length: 16 }, (_, i) => i);
  const stats = regionStats(image(values, 4, 4, { intercept: -1000 }), "rectangle", [1, 1], [3, 3]);
  assert.equal(stats.count, 4);
  assert.equal(stats.mean, (5 + 6 + 9 + 10) / 4 - 1000);
  assert.equal(stats.min, -995);
  assert.equal(stats.max, -990);
  assert.ok(Math.abs(stats.sd - Math.sqrt(4.25)) < 1e-9);
  assert.equal(stats.area, 4);
});

test("ellipse area is π/4 of its box, in mm² from PixelSpacing", () => {
  const values = new Uint16Array(100 * 100).fill(7);
  const stats = regionStats(image(values, 100, 100, { spacing: [0.5, 0.5] }), "ellipse", [0, 0], [100, 100]);
  assert.ok(Math.abs(stats.area - Math.PI * 25 * 25) < 1e-9);
  assert.ok(Math.abs(stats.count / 10000 - Math.PI / 4) < 0.01);
  assert.equal(stats.mean, 7);
  assert.equal(stats.sd, 0);
});

test("the probe reads the modality value under a point, nothing outside", () => {
  const img = image(Int16Array.from([0, 1, 2, 3]), 2, 2, { slope: 2, intercept: -1 });
  assert.equal(probe(img, [1.5, 1.2]), 5);
  assert.equal(probe(img, [2, 0]), null);
});

test("values are in modality units through a Modality LUT Sequence table when there is one", () => {
  const image = { data: [0, 1, 2, 3], columns: 2, rows: 2, slope: 1, intercept: 0,
    modalityLut: { first: 0, bits: 16, data: [10, 20, 30, 40] }, spacing: [1, 1] };
  assert.equal(probe(image, [1.5, 1.5]), 40);
  assert.equal(regionStats(image, "rectangle", [0, 0], [2, 2]).mean, 25);
});
