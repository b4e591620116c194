/**
 * Fallback renderer for browsers without WebGL2: the same pipeline on the CPU, one output
 * pixel at a time (nearest neighbour), with a lookup table over the stored value range.
 */
import { grey } from "./voi.js";

export class Canvas2DRenderer {
  /** @param {HTMLCanvasElement} canvas */
  constructor(canvas) {
    this.canvas = canvas;
    this.context = /** @type {CanvasRenderingContext2D} */ (canvas.getContext("2d"));
  }

  /** Paint the whole canvas black (nothing to show). */
  clear() {
    this.context.fillStyle = "#000";
    this.context.fillRect(0, 0, this.canvas.width, this.canvas.height);
  }

  /**
   * @param {import("./gl.js").Frame} frame
   * @param {import("./gl.js").Presentation} p
   */
  draw(frame, p) {
    const { width, height } = this.canvas;
    const image = this.context.createImageData(width, height);
    const out = image.data;
    const m = p.screenToImage;
    const data = /** @type {any} */ (frame.data);
    const lut = new Map();
    for (let y = 0; y < height; y += 1) {
      for (let x = 0; x < width; x += 1) {
        const column = Math.floor(m[0] * x + m[1] * y + m[2]);
        const row = Math.floor(m[3] * x + m[4] * y + m[5]);
        const o = (y * width + x) * 4;
        out[o + 3] = 255;
        if (column < 0 || row < 0 || column >= frame.columns || row >= frame.rows) continue;
        const i = row * frame.columns + column;
        if (frame.samples === 3) {
          for (let c = 0; c < 3; c += 1) out[o + c] = p.invert ? 255 - data[i * 3 + c] : data[i * 3 + c];
          continue;
        }
        const stored = data[i];
        let g = lut.get(stored);
        if (g === undefined) {
          g = grey(stored, p);
          lut.set(stored, g);
        }
        out[o] = out[o + 1] = out[o + 2] = g;
      }
    }
    this.context.putImageData(image, 0, 0);
  }
}
