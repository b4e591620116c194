const SIGNED_OUT = 4401; // close code of an ended browser session (backend/live/consumers.py)

/**
 * A WebSocket to the server that reconnects after a drop, with back-off.
 * @param {string} path - e.g. "/ws/worklist"
 * @param {(event: object) => void} onEvent - called with each parsed JSON message
 * @param {(state: "open" | "closed" | "signed-out") => void} onState - connection state
 *   changes; "signed-out" (close code 4401: the browser session ended) is final
 * @returns {{close: () => void}}
 */
export function connectLive(path, onEvent, onState) {
  let socket = null;
  let delay = 500;
  let stopped = false;
  const open = () => {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    socket = new WebSocket(`${scheme}//${location.host}${path}`);
    socket.onopen = () => { delay = 500; onState("open"); };
    socket.onmessage = (message) => onEvent(JSON.parse(message.data));
    socket.onclose = (event) => {
      if (event.code === SIGNED_OUT) { stopped = true; onState("signed-out"); return; }
      onState("closed");
      if (!stopped) setTimeout(open, delay);
      delay = Math.min(delay * 2, 10000);
    };
  };
  open();
  return { close() { stopped = true; socket?.close(); } };
}
