/**
 * A series as a stack of frames, in the order the server streams them: viewable instances
 * in slice order (the server sorted them along the slice normal), each instance's frames
 * in turn. Position i of the stack is what the server calls index i. An image whose pixels
 * could not be decoded keeps its place (the server sends why instead of its frames).
 */

/**
 * @typedef {{instance: any, frame: number}} StackEntry
 * @param {{instances: any[]}} series
 * @returns {StackEntry[]}
 */
export function buildStack(series) {
  const stack = [];
  for (const instance of series.instances) {
    if (!instance.viewable && !instance.undecodable) continue;
    for (let frame = 0; frame < instance.frames; frame += 1) stack.push({ instance, frame });
  }
  return stack;
}

const ARRAYS = {
  "|u1": Uint8Array,
  "<u1": Uint8Array,
  "|i1": Int8Array,
  "<u2": Uint16Array,
  "<i2": Int16Array,
  "<u4": Uint32Array,
  "<i4": Int32Array,
  "<f4": Float32Array,
  "<f8": Float64Array,
};

/**
 * The frame's values as a typed array of its dtype (little-endian, as sent), viewing the
 * received bytes in place (they start 8-byte aligned).
 * @param {Uint8Array} bytes
 * @param {string} dtype - numpy's dtype string, e.g. "<i2"
 * @returns {ArrayBufferView}
 */
export function typedFrame(bytes, dtype) {
  const Type = ARRAYS[dtype] || Uint8Array;
  const values = new Type(bytes.buffer, bytes.byteOffset, bytes.byteLength / Type.BYTES_PER_ELEMENT);
  return values instanceof Float64Array ? Float32Array.from(values) : values;
}

/**
 * Bytes one frame of `instance` takes in memory (as typedFrame keeps it).
 * @param {any} instance - from the manifest
 * @returns {number}
 */
export function frameBytes(instance) {
  const Type = instance.dtype === "<f8" ? Float32Array : ARRAYS[instance.dtype] || Uint8Array;
  return instance.rows * instance.columns * (instance.samples || 1) * Type.BYTES_PER_ELEMENT;
}

/**
 * PixelSpacing as [between rows, between columns], 1 mm when absent or invalid.
 * @param {any} instance
 * @returns {[number, number]}
 */
export function spacingOf(instance) {
  const s = instance.pixel_spacing;
  if (Array.isArray(s) && s.length === 2 && s.every((v) => Number.isFinite(v) && v > 0)) {
    return [s[0], s[1]];
  }
  return [1, 1];
}
