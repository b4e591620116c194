/**
 * The viewer's frame stream: one WebSocket per open viewer (backend/live/viewer.py). The
 * server sends the study's manifest, then frames in the order asked for with focus();
 * each frame is acknowledged so the server keeps only a few in flight. A dropped
 * connection reconnects and resumes, telling the server what is already held.
 */

import { adoptEarlySocket, viewerSocketUrl } from "./early.js";

const decoder = new TextDecoder();

/**
 * @typedef {{series: string, index: number, encoding: string}} FrameHeader
 * @typedef {{
 *   onStudy: (study: any) => void,
 *   onFrame: (header: FrameHeader, data: Uint8Array) => void,
 *   onFrameError: (message: {series: string, index: number, reason: string}) => void,
 *   onError: (error: {code: string, message: string}) => void,
 *   onState: (state: "open" | "closed") => void,
 *   have: () => Record<string, string>,
 * }} Handlers
 */

export class FrameStream {
  /**
   * @param {string} studyUid
   * @param {Handlers} handlers
   * @param {{deflate?: boolean}} [options]
   */
  constructor(studyUid, handlers, options = {}) {
    this.url = viewerSocketUrl(studyUid, Boolean(options.deflate));
    this.handlers = handlers;
    this.delay = 500;
    this.stopped = false;
    this.focusMessage = null;
    this.pending = Promise.resolve();
    this.open();
  }

  open() {
    // The page's first connection may already be open (./early.js), with messages waiting.
    const early = this.socket ? null : adoptEarlySocket(this.url);
    const socket = early?.socket ?? new WebSocket(this.url);
    socket.binaryType = "arraybuffer";
    this.socket = socket;
    /** @type {Record<string, (event: any) => void>} */
    const handlers = {
      open: () => {
        this.delay = 500;
        this.handlers.onState("open");
      },
      message: (message) => {
        if (typeof message.data === "string") this.text(JSON.parse(message.data));
        else this.pending = this.pending.then(() => this.binary(message.data));
      },
      close: (event) => {
        this.handlers.onState("closed");
        if (this.stopped || event.code === 4404 || event.code === 4401) return;
        setTimeout(() => this.open(), this.delay);
        this.delay = Math.min(this.delay * 2, 10000);
      },
    };
    const listen = () => {
      socket.onopen = handlers.open;
      socket.onmessage = handlers.message;
      socket.onclose = handlers.close;
    };
    if (!early) return listen();
    // What the early socket had, in order, once the caller holds this FrameStream (not
    // from inside its constructor); whatever arrives before then queues behind it.
    socket.onopen = socket.onmessage = socket.onclose = (event) => early.events.push(event);
    queueMicrotask(() => {
      for (const event of early.events) handlers[event.type]?.(event);
      listen();
    });
  }

  /** @param {any} message */
  text(message) {
    if (message.type === "study") {
      this.handlers.onStudy(message);
      // Resume: tell the server what is held and where the reader is.
      if (this.focusMessage) this.send({ ...this.focusMessage, have: this.handlers.have() });
    } else if (message.type === "frame-error") {
      // One frame cannot be shown; the stream goes on with the others.
      this.pending = this.pending.then(() => this.handlers.onFrameError(message));
    } else if (message.type === "error") {
      this.stopped = true;
      this.handlers.onError(message);
    }
  }

  /** @param {ArrayBuffer} buffer */
  async binary(buffer) {
    const length = new DataView(buffer).getUint32(0, true);
    /** @type {FrameHeader} */
    const header = JSON.parse(decoder.decode(new Uint8Array(buffer, 4, length)));
    // The server aligns the values to 8 bytes: typed arrays can view them in place.
    let data = new Uint8Array(buffer, 4 + length);
    if (header.encoding === "deflate") {
      const stream = new Blob([data]).stream().pipeThrough(new DecompressionStream("deflate"));
      data = new Uint8Array(await new Response(stream).arrayBuffer());
    }
    this.send({ type: "ack", count: 1 });
    this.handlers.onFrame(header, data);
  }

  /**
   * Ask for frames around `index` of `series` first, then the other visible series.
   * @param {string} series
   * @param {number} index
   * @param {string[]} visible
   * @param {Record<string, string>} [have] - what is held, e.g. after evictions
   * @param {number} [limit] - how many frames the page can hold (0: no limit)
   */
  focus(series, index, visible, have, limit = 0) {
    this.focusMessage = { type: "focus", series, index, visible, limit };
    this.send(have ? { ...this.focusMessage, have } : this.focusMessage);
  }

  /** @param {object} message */
  send(message) {
    if (this.socket?.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify(message));
  }

  close() {
    this.stopped = true;
    this.socket?.close();
  }
}
