import assert from "node:assert/strict";
import { test } from "node:test";

// The viewer page's globals, before the modules are loaded: early.js opens its socket when
// it is evaluated on a /viewer/ page.
const sockets = [];
class FakeSocket {
  static OPEN = 1;
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.sent = [];
    sockets.push(this);
  }
  send(text) { this.sent.push(JSON.parse(text)); }
  close() {}
  /** What the network does: the event goes to whichever handler is set now. */
  deliver(type, fields = {}) {
    if (type === "open") this.readyState = FakeSocket.OPEN;
    this[`on${type}`]?.({ type, ...fields });
  }
}
globalThis.WebSocket = FakeSocket;
globalThis.location = { pathname: "/viewer/1.2.3", search: "", protocol: "http:", host: "lightbox.test" };

const { adoptEarlySocket, viewerSocketUrl } = await import("../../frontend/js/net/early.js");
const { FrameStream } = await import("../../frontend/js/net/frames.js");

/** A binary frame message as backend/live/viewer.py builds it. */
function frameMessage(index) {
  let header = JSON.stringify({ series: "s", index, encoding: "raw" });
  header += " ".repeat((8 - ((4 + header.length) % 8)) % 8);
  const bytes = new Uint8Array(4 + header.length + 2);
  new DataView(bytes.buffer).setUint32(0, header.length, true);
  bytes.set(new TextEncoder().encode(header), 4);
  bytes.set([index, index], 4 + header.length);
  return bytes.buffer;
}

const settle = () => new Promise((resolve) => setTimeout(resolve, 0));

test("the page's socket is opened at once and adopted with what it received meanwhile", async () => {
  assert.equal(sockets.length, 1);
  const [early] = sockets;
  assert.equal(early.url, "ws://lightbox.test/ws/viewer/1.2.3");
  early.deliver("open");
  early.deliver("message", { data: JSON.stringify({ type: "study", series: [] }) });
  early.deliver("message", { data: frameMessage(7) });

  const seen = [];
  const stream = new FrameStream("1.2.3", {
    onStudy: (study) => seen.push(["study", study.type]),
    onFrame: (header, data) => seen.push(["frame", header.index, [...data]]),
    onFrameError: () => {},
    onError: () => {},
    onState: (state) => seen.push(["state", state]),
    have: () => ({}),
  });
  assert.deepEqual(seen, [], "replayed after the constructor returns, not inside it");
  assert.equal(stream.socket, early, "no second socket");
  early.deliver("message", { data: frameMessage(8) });  // after adoption, behind the others
  await settle();

  assert.deepEqual(seen, [
    ["state", "open"],
    ["study", "study"],
    ["frame", 7, [7, 7]],
    ["frame", 8, [8, 8]],
  ]);
  assert.deepEqual(early.sent, [{ type: "ack", count: 1 }, { type: "ack", count: 1 }]);
  assert.equal(sockets.length, 1);
});

test("it is adopted once, and only for the same study and encoding", () => {
  assert.equal(adoptEarlySocket(viewerSocketUrl("1.2.3", false)), null, "already adopted");
  assert.equal(viewerSocketUrl("1.2.3", true), "ws://lightbox.test/ws/viewer/1.2.3?encoding=deflate");
  const before = sockets.length;
  const stream = new FrameStream("4.5.6", {
    onStudy() {}, onFrame() {}, onFrameError() {}, onError() {}, onState() {}, have: () => ({}),
  });
  assert.equal(sockets.length, before + 1);
  assert.equal(stream.socket.url, "ws://lightbox.test/ws/viewer/4.5.6");
});

test("a refusal and the close that came before adoption are kept for the page, in order", async () => {
  // A new page load: early.js evaluated again, for a study this reader may not see.
  globalThis.location.pathname = "/viewer/9.9";
  const { adoptEarlySocket: adopt } = await import("../../frontend/js/net/early.js?again");
  const early = sockets.at(-1);
  assert.equal(early.url, "ws://lightbox.test/ws/viewer/9.9");
  early.deliver("open");
  const message = "This study does not exist, or you are not allowed to see it.";
  early.deliver("message", { data: JSON.stringify({ type: "error", code: "not-found", message }) });
  early.deliver("close", { code: 4404 });
  const taken = adopt(viewerSocketUrl("9.9", false));
  assert.deepEqual(taken.events.map((e) => e.type), ["open", "message", "close"]);
});
