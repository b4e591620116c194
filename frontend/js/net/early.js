/**
 * The viewer's WebSocket, opened the moment the page starts. viewer.html loads this module
 * first and `async` (it imports nothing, so it runs as soon as it arrives): the server
 * checks the session, builds the manifest and sends the first frames while the rest of the
 * viewer's modules are still loading. FrameStream (./frames.js) then adopts the socket and
 * replays, in order, what it received meanwhile. A page that never adopts it loses nothing:
 * frames are sent only a few at a time until they are acknowledged.
 */

/**
 * @typedef {{url: string, socket: WebSocket, events: Event[]}} EarlySocket
 */

/**
 * The viewer socket's URL for a study.
 * @param {string} studyUid
 * @param {boolean} deflate - ask for zlib-compressed frames
 */
export function viewerSocketUrl(studyUid, deflate) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const query = deflate ? "?encoding=deflate" : "";
  return `${scheme}//${location.host}/ws/viewer/${encodeURIComponent(studyUid)}${query}`;
}

/** The study and encoding the viewer page asks for, from its own URL. */
export function viewerRequest() {
  const studyUid = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop() || "");
  const deflate = new URLSearchParams(location.search).get("encoding") === "deflate";
  return { studyUid, deflate };
}

/** @type {EarlySocket | null} */
let early = null;

if (typeof location !== "undefined" && location.pathname.startsWith("/viewer/")) {
  const { studyUid, deflate } = viewerRequest();
  const url = viewerSocketUrl(studyUid, deflate);
  const socket = new WebSocket(url);
  socket.binaryType = "arraybuffer";
  /** @type {Event[]} */
  const events = [];
  socket.onopen = socket.onmessage = socket.onclose = (event) => events.push(event);
  early = { url, socket, events };
}

/**
 * The early socket for `url`, once, with the events it has had so far; null if there is
 * none (another page, another study or encoding, or already adopted). The caller sets the
 * socket's handlers before it returns to the event loop, so no event falls between.
 * @param {string} url
 * @returns {EarlySocket | null}
 */
export function adoptEarlySocket(url) {
  if (!early || early.url !== url) return null;
  const taken = early;
  early = null;
  return taken;
}
