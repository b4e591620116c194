/**
 * The frames in browser memory, with a byte cap. When full, the frames farthest from what
 * each viewport shows are dropped first, so a 2,000-slice series cannot exhaust a tab: the
 * frames near the reader stay, far ones are fetched again if the reader goes there.
 */

/** A cap that suits the device: a quarter of its memory (navigator.deviceMemory, GB),
 * between 256 MB and 1.5 GB. */
export function defaultCap() {
  const gb = (typeof navigator === "undefined" ? undefined : /** @type {any} */ (navigator).deviceMemory) || 4;
  return Math.min(1536, Math.max(256, gb * 256)) * 1024 * 1024;
}

/**
 * The cap for this page: `?cache_mb=N` in the viewer's address sets it to N MB (at least
 * 1), to try a small device or a huge series on a big one; otherwise defaultCap().
 * @param {string} search - location.search
 * @returns {number} bytes
 */
export function capFromQuery(search) {
  const mb = Number(new URLSearchParams(search).get("cache_mb"));
  if (Number.isFinite(mb) && mb > 0) return Math.max(1, mb) * 1024 * 1024;
  return defaultCap();
}

export class FrameCache {
  /** @param {number} capBytes */
  constructor(capBytes) {
    this.cap = capBytes;
    this.bytes = 0;
    /** the most ever held once a put() returned */
    this.peak = 0;
    /** @type {Map<string, Map<number, ArrayBufferView>>} */
    this.series = new Map();
    /** @type {Map<string, number>} where each series is being looked at */
    this.focus = new Map();
  }

  /**
   * @param {string} series
   * @param {number} index
   * @returns {ArrayBufferView | undefined}
   */
  get(series, index) {
    return this.series.get(series)?.get(index);
  }

  /** @param {string} series @param {number} index */
  has(series, index) {
    return this.series.get(series)?.has(index) ?? false;
  }

  /** @param {string} series */
  count(series) {
    return this.series.get(series)?.size ?? 0;
  }

  /**
   * @param {string} series
   * @param {number} index
   * @param {ArrayBufferView} frame
   * @returns {boolean} false when the frame was not kept (it would be the first to go)
   */
  put(series, index, frame) {
    if (!this.series.has(series)) this.series.set(series, new Map());
    const stack = /** @type {Map<number, ArrayBufferView>} */ (this.series.get(series));
    if (stack.has(index)) return true;
    stack.set(index, frame);
    this.bytes += frame.byteLength;
    let kept = true;
    while (this.bytes > this.cap) {
      const victim = this.farthest();
      if (!victim) break;
      this.drop(...victim);
      if (victim[0] === series && victim[1] === index) kept = false;
    }
    this.peak = Math.max(this.peak, this.bytes);
    return kept;
  }

  /** @param {string} series @param {number} index */
  setFocus(series, index) {
    this.focus.set(series, index);
  }

  /** @returns {[string, number] | null} */
  farthest() {
    let best = null;
    let bestDistance = -1;
    for (const [series, stack] of this.series) {
      const center = this.focus.get(series);
      for (const index of stack.keys()) {
        // Series nobody looks at go first, then the far ends of those that are shown.
        const distance = center === undefined ? Infinity : Math.abs(index - center);
        if (distance > bestDistance) {
          best = [series, index];
          bestDistance = distance;
          if (distance === Infinity) return best;
        }
      }
    }
    return best;
  }

  /** @param {string} series @param {number} index */
  drop(series, index) {
    const stack = this.series.get(series);
    const frame = stack?.get(index);
    if (!stack || !frame) return;
    stack.delete(index);
    this.bytes -= frame.byteLength;
  }

  /**
   * Compact run list of what is held for a series, e.g. "0-40,45", for resuming a stream.
   * @param {string} series
   * @returns {string}
   */
  ranges(series) {
    const indices = [...(this.series.get(series)?.keys() ?? [])].sort((a, b) => a - b);
    const runs = [];
    for (const i of indices) {
      const last = runs[runs.length - 1];
      if (last && last[1] === i - 1) last[1] = i;
      else runs.push([i, i]);
    }
    return runs.map(([a, b]) => (a === b ? `${a}` : `${a}-${b}`)).join(",");
  }
}
