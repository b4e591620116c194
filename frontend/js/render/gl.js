/**
 * WebGL2 renderer: a frame goes to the GPU at full bit depth (16-bit integers as integer
 * textures, floats as R32F, colour as RGB8) and the shader applies the Modality LUT, the VOI
 * LUT function and MONOCHROME1 inversion per pixel, so window/level costs one draw call.
 * Lookup tables from the file (Modality LUT Sequence, VOI LUT Sequence; PS3.3 C.11.1,
 * C.11.2) are R32F textures LUT_WIDTH entries wide, indexed by the value they map.
 */
import { lutMaximum } from "./voi.js";

const LUT_WIDTH = 2048;  // WebGL2 guarantees textures at least 2048 wide (MAX_TEXTURE_SIZE)

const VERTEX = `#version 300 es
in vec2 a_position;
void main() { gl_Position = vec4(a_position, 0.0, 1.0); }`;

const FRAGMENT = `#version 300 es
precision highp float;
precision highp int;
precision highp usampler2D;
precision highp isampler2D;
precision highp sampler2D;
uniform SAMPLER u_image;
uniform sampler2D u_modalityLut;
uniform sampler2D u_voiLut;
uniform bool u_useModalityLut;
uniform bool u_useVoiLut;
uniform float u_modalityFirst;
uniform float u_voiFirst;
uniform int u_modalityCount;
uniform int u_voiCount;
uniform float u_voiMax;
uniform mat3 u_screenToImage;
uniform ivec2 u_size;
uniform float u_height;
uniform float u_slope;
uniform float u_intercept;
uniform float u_center;
uniform float u_width;
uniform int u_function;
uniform bool u_invert;
uniform bool u_rgb;
out vec4 color;
// Nearest entry, clamped at both ends (C.11.2.1.1).
float lookup(sampler2D lut, float value, float first, int count) {
  int i = clamp(int(floor(value - first + 0.5)), 0, count - 1);
  return texelFetch(lut, ivec2(i % ${LUT_WIDTH}, i / ${LUT_WIDTH}), 0).r;
}
void main() {
  vec2 screen = vec2(gl_FragCoord.x, u_height - gl_FragCoord.y);
  vec3 p = vec3(screen, 1.0) * u_screenToImage;
  ivec2 texel = ivec2(floor(p.xy));
  if (texel.x < 0 || texel.y < 0 || texel.x >= u_size.x || texel.y >= u_size.y) {
    color = vec4(0.0, 0.0, 0.0, 1.0);
    return;
  }
  vec4 raw = vec4(texelFetch(u_image, texel, 0));
  if (u_rgb) {
    color = vec4(u_invert ? 1.0 - raw.rgb : raw.rgb, 1.0);
    return;
  }
  float v = u_useModalityLut
    ? lookup(u_modalityLut, raw.r, u_modalityFirst, u_modalityCount)
    : raw.r * u_slope + u_intercept;
  float y;
  if (u_useVoiLut) {
    y = lookup(u_voiLut, v, u_voiFirst, u_voiCount) / u_voiMax;
  } else if (u_function == 1) {
    y = 1.0 / (1.0 + exp(-4.0 * (v - u_center) / max(u_width, 1e-9)));
  } else if (u_function == 2) {
    y = (v - u_center) / max(u_width, 1e-9) + 0.5;
  } else {
    y = (v - (u_center - 0.5)) / max(max(u_width, 1.0) - 1.0, 1e-9) + 0.5;
  }
  y = clamp(y, 0.0, 1.0);
  if (u_invert) y = 1.0 - y;
  color = vec4(y, y, y, 1.0);
}`;

/** dtype → [internal format, format, type, sampler kind] */
const FORMATS = {
  "|u1": ["R8UI", "RED_INTEGER", "UNSIGNED_BYTE", "usampler2D"],
  "<u1": ["R8UI", "RED_INTEGER", "UNSIGNED_BYTE", "usampler2D"],
  "|i1": ["R8I", "RED_INTEGER", "BYTE", "isampler2D"],
  "<u2": ["R16UI", "RED_INTEGER", "UNSIGNED_SHORT", "usampler2D"],
  "<i2": ["R16I", "RED_INTEGER", "SHORT", "isampler2D"],
  "<u4": ["R32UI", "RED_INTEGER", "UNSIGNED_INT", "usampler2D"],
  "<i4": ["R32I", "RED_INTEGER", "INT", "isampler2D"],
  "<f4": ["R32F", "RED", "FLOAT", "sampler2D"],
};
const FUNCTIONS = { LINEAR: 0, SIGMOID: 1, LINEAR_EXACT: 2 };

/**
 * @typedef {{data: ArrayBufferView, rows: number, columns: number, samples: number,
 *   dtype: string}} Frame
 * @typedef {import("./voi.js").LookupTable} LookupTable
 * @typedef {{screenToImage: number[], slope: number, intercept: number, center: number,
 *   width: number, fn: string, invert: boolean, modalityLut?: LookupTable|null,
 *   voiLut?: LookupTable|null}} Presentation
 */

export class GLRenderer {
  /** @param {HTMLCanvasElement} canvas */
  constructor(canvas) {
    const gl = canvas.getContext("webgl2", { antialias: false, preserveDrawingBuffer: true });
    if (!gl) throw new Error("WebGL2 is not available");
    this.gl = gl;
    this.canvas = canvas;
    this.programs = {};
    this.texture = gl.createTexture();
    this.uploaded = null;
    // Texture units 1 and 2 hold the Modality and VOI LUTs; `tables` what each holds.
    this.lutTextures = [gl.createTexture(), gl.createTexture()];
    /** @type {(LookupTable|null|undefined)[]} */
    this.tables = [undefined, undefined];
    const buffer = gl.createBuffer();
    gl.bindBuffer(gl.ARRAY_BUFFER, buffer);
    gl.bufferData(gl.ARRAY_BUFFER, new Float32Array([-1, -1, 1, -1, -1, 1, 1, 1]), gl.STATIC_DRAW);
    // Compile what 16-bit images need while the page is idle (waiting for its first frame),
    // not when that frame is to be drawn; a failure shows then, where it can be reported.
    if (typeof requestIdleCallback === "function") {
      for (const sampler of ["isampler2D", "usampler2D"]) {
        requestIdleCallback(() => { try { this.program(sampler); } catch { /* at draw */ } });
      }
    }
  }

  /** @param {string} sampler */
  program(sampler) {
    if (this.programs[sampler]) return this.programs[sampler];
    const gl = this.gl;
    const compile = (type, source) => {
      const shader = gl.createShader(type);
      gl.shaderSource(shader, source);
      gl.compileShader(shader);
      if (!gl.getShaderParameter(shader, gl.COMPILE_STATUS)) {
        throw new Error(gl.getShaderInfoLog(shader) || "shader error");
      }
      return shader;
    };
    const program = gl.createProgram();
    gl.attachShader(program, compile(gl.VERTEX_SHADER, VERTEX));
    gl.attachShader(program, compile(gl.FRAGMENT_SHADER, FRAGMENT.replace("SAMPLER", sampler)));
    gl.linkProgram(program);
    if (!gl.getProgramParameter(program, gl.LINK_STATUS)) {
      throw new Error(gl.getProgramInfoLog(program) || "link error");
    }
    const uniforms = {};
    for (const name of ["u_image", "u_screenToImage", "u_size", "u_height", "u_slope",
      "u_intercept", "u_center", "u_width", "u_function", "u_invert", "u_rgb",
      "u_modalityLut", "u_voiLut", "u_useModalityLut", "u_useVoiLut", "u_modalityFirst",
      "u_voiFirst", "u_modalityCount", "u_voiCount", "u_voiMax"]) {
      uniforms[name] = gl.getUniformLocation(program, name);
    }
    this.programs[sampler] = { program, uniforms, position: gl.getAttribLocation(program, "a_position") };
    return this.programs[sampler];
  }

  /**
   * @param {Frame} frame
   * @returns {string} the sampler kind the texture needs
   */
  upload(frame) {
    const gl = this.gl;
    gl.bindTexture(gl.TEXTURE_2D, this.texture);
    gl.pixelStorei(gl.UNPACK_ALIGNMENT, 1);
    for (const p of [gl.TEXTURE_MIN_FILTER, gl.TEXTURE_MAG_FILTER]) gl.texParameteri(gl.TEXTURE_2D, p, gl.NEAREST);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_S, gl.CLAMP_TO_EDGE);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_T, gl.CLAMP_TO_EDGE);
    if (frame.samples === 3) {
      gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGB8, frame.columns, frame.rows, 0, gl.RGB, gl.UNSIGNED_BYTE, frame.data);
      return "sampler2D";
    }
    let [internal, format, type, sampler] = FORMATS[frame.dtype] || FORMATS["<f4"];
    let data = frame.data;
    if (!FORMATS[frame.dtype]) data = Float32Array.from(/** @type {any} */ (frame.data));
    gl.texImage2D(gl.TEXTURE_2D, 0, gl[internal], frame.columns, frame.rows, 0, gl[format], gl[type], data);
    return sampler;
  }

  /**
   * Bind `table` (or an empty one) to texture unit 1 + `slot`, uploading it if it changed.
   * @param {number} slot - 0: Modality LUT, 1: VOI LUT
   * @param {LookupTable|null} table
   */
  bindTable(slot, table) {
    const gl = this.gl;
    gl.activeTexture(gl.TEXTURE1 + slot);
    gl.bindTexture(gl.TEXTURE_2D, this.lutTextures[slot]);
    if (this.tables[slot] === table) return;
    this.tables[slot] = table;
    const count = table ? table.data.length : 1;
    const rows = Math.ceil(count / LUT_WIDTH);
    const width = rows > 1 ? LUT_WIDTH : count;
    const values = new Float32Array(width * rows);
    if (table) values.set(table.data);
    gl.pixelStorei(gl.UNPACK_ALIGNMENT, 1);
    for (const p of [gl.TEXTURE_MIN_FILTER, gl.TEXTURE_MAG_FILTER]) gl.texParameteri(gl.TEXTURE_2D, p, gl.NEAREST);
    gl.texImage2D(gl.TEXTURE_2D, 0, gl.R32F, width, rows, 0, gl.RED, gl.FLOAT, values);
  }

  /** Paint the whole canvas black (nothing to show). */
  clear() {
    const gl = this.gl;
    gl.viewport(0, 0, this.canvas.width, this.canvas.height);
    gl.clearColor(0, 0, 0, 1);
    gl.clear(gl.COLOR_BUFFER_BIT);
  }

  /**
   * Draw `frame` with `presentation` over the whole canvas.
   * @param {Frame} frame
   * @param {Presentation} p
   */
  draw(frame, p) {
    const gl = this.gl;
    if (this.uploaded !== frame) {
      this.sampler = this.upload(frame);
      this.uploaded = frame;
    }
    const { program, uniforms, position } = this.program(this.sampler);
    gl.viewport(0, 0, this.canvas.width, this.canvas.height);
    gl.useProgram(program);
    gl.enableVertexAttribArray(position);
    gl.vertexAttribPointer(position, 2, gl.FLOAT, false, 0, 0);
    gl.activeTexture(gl.TEXTURE0);
    gl.bindTexture(gl.TEXTURE_2D, this.texture);
    gl.uniform1i(uniforms.u_image, 0);
    gl.uniformMatrix3fv(uniforms.u_screenToImage, false, p.screenToImage);
    gl.uniform2i(uniforms.u_size, frame.columns, frame.rows);
    gl.uniform1f(uniforms.u_height, this.canvas.height);
    gl.uniform1f(uniforms.u_slope, p.slope);
    gl.uniform1f(uniforms.u_intercept, p.intercept);
    gl.uniform1f(uniforms.u_center, p.center);
    gl.uniform1f(uniforms.u_width, p.width);
    gl.uniform1i(uniforms.u_function, FUNCTIONS[p.fn] ?? 0);
    gl.uniform1i(uniforms.u_invert, p.invert ? 1 : 0);
    gl.uniform1i(uniforms.u_rgb, frame.samples === 3 ? 1 : 0);
    const modalityLut = p.modalityLut || null;
    const voiLut = p.voiLut || null;
    this.bindTable(0, modalityLut);
    this.bindTable(1, voiLut);
    gl.uniform1i(uniforms.u_modalityLut, 1);
    gl.uniform1i(uniforms.u_voiLut, 2);
    gl.uniform1i(uniforms.u_useModalityLut, modalityLut ? 1 : 0);
    gl.uniform1i(uniforms.u_useVoiLut, voiLut ? 1 : 0);
    gl.uniform1f(uniforms.u_modalityFirst, modalityLut ? modalityLut.first : 0);
    gl.uniform1f(uniforms.u_voiFirst, voiLut ? voiLut.first : 0);
    gl.uniform1i(uniforms.u_modalityCount, modalityLut ? modalityLut.data.length : 1);
    gl.uniform1i(uniforms.u_voiCount, voiLut ? voiLut.data.length : 1);
    gl.uniform1f(uniforms.u_voiMax, voiLut ? lutMaximum(voiLut) : 1);
    gl.drawArrays(gl.TRIANGLE_STRIP, 0, 4);
  }
}
