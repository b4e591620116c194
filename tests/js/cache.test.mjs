import assert from "node:assert/strict";
import { test } from "node:test";

import { FrameCache, capFromQuery } from "../../frontend/js/viewer/cache.js";
import { buildStack, typedFrame } from "../../frontend/js/viewer/stack.js";

const frame = () => new Uint8Array(100);

test("the cache keeps under its cap, dropping the frames farthest from the reader", () => {
  const cache = new FrameCache(500);
  cache.setFocus("s", 10);
  for (const i of [10, 11, 9, 12, 8, 30]) cache.put("s", i, frame());
  assert.ok(cache.bytes <= 500);
  assert.ok(!cache.has("s", 30));
  assert.ok(cache.has("s", 10) && cache.has("s", 11));
});

test("series nobody looks at are dropped before the shown one", () => {
  const cache = new FrameCache(300);
  cache.setFocus("shown", 0);
  cache.put("other", 0, frame());
  cache.put("shown", 0, frame());
  cache.put("shown", 1, frame());
  cache.put("shown", 2, frame());
  assert.equal(cache.count("other"), 0);
  assert.equal(cache.count("shown"), 3);
});

test("held frames are described as ranges for resuming the stream", () => {
  const cache = new FrameCache(1e9);
  for (const i of [0, 1, 2, 5, 7, 8]) cache.put("s", i, frame());
  assert.equal(cache.ranges("s"), "0-2,5,7-8");
});

test("a stack lists the viewable frames in slice order, frames of multi-frame instances in turn", () => {
  const stack = buildStack({ instances: [
    { viewable: true, frames: 2, sop_instance_uid: "a" },
    { viewable: false, frames: 0, sop_instance_uid: "b" },
    { viewable: true, frames: 1, sop_instance_uid: "c" },
  ] });
  assert.deepEqual(stack.map((e) => [e.instance.sop_instance_uid, e.frame]), [["a", 0], ["a", 1], ["c", 0]]);
});

test("frames are viewed in place with their dtype", () => {
  const bytes = new Uint8Array(new Int16Array([-1000, 3000]).buffer);
  assert.deepEqual([...typedFrame(bytes, "<i2")], [-1000, 3000]);
});

test("?cache_mb= sets the cap; the peak never passes it", () => {
  assert.equal(capFromQuery("?cache_mb=8"), 8 * 1024 * 1024);
  assert.equal(capFromQuery("?cache_mb=0.5"), 1024 * 1024, "at least 1 MB");
  assert.ok(capFromQuery("?cache_mb=nonsense") >= 256 * 1024 * 1024, "else the device's default");
  const cache = new FrameCache(1000);
  for (let i = 0; i < 50; i += 1) {
    cache.setFocus("s", i);
    cache.put("s", i, frame());
  }
  assert.ok(cache.peak <= 1000);
  assert.equal(cache.ranges("s"), "40-49", "the frames farthest behind the reader went");
});

test("an image that could not be decoded keeps its place in the stack", () => {
  const series = { instances: [
    { viewable: true, frames: 1 }, { viewable: false, undecodable: true, frames: 1 },
    { viewable: false, undecodable: false, frames: 0 }, { viewable: true, frames: 2 },
  ] };
  assert.deepEqual(buildStack(series).map((e) => series.instances.indexOf(e.instance)), [0, 1, 3, 3]);
});
