/**
 * Upload from the worklist: files, folders (walked recursively) or a .zip, dropped or picked.
 * Each file is one POST to /api/upload (the server unpacks a .zip), a few at a time, with
 * the bytes sent shown on one progress bar and a result line per file. Files the server took
 * are then followed until a worker has indexed them (/api/upload/status).
 */

const PARALLEL = 3;
const POLL_MS = 1000;
const POLL_GIVE_UP_MS = 10 * 60 * 1000;
const FINAL = new Set(["stored", "replaced", "duplicate", "quarantined"]);
const WORDS = {
  queued: "waiting",
  sending: "sending",
  received: "received, indexing…",
  stored: "stored",
  replaced: "stored (replaced an older copy)",
  duplicate: "already in the archive",
  quarantined: "not stored",
  skipped: "not stored",
  failed: "failed",
};

/**
 * Every file in a drop, folders walked (webkitGetAsEntry: Chromium, Firefox, Safari).
 * @param {DataTransfer} transfer
 * @returns {Promise<{file: File, path: string}[]>}
 */
export async function droppedFiles(transfer) {
  const entries = [...transfer.items]
    .filter((item) => item.kind === "file")
    .map((item) => item.webkitGetAsEntry?.())
    .filter(Boolean);
  if (entries.length === 0) return [...transfer.files].map((file) => ({ file, path: file.name }));
  const found = [];
  for (const entry of entries) await walk(entry, found);
  return found;
}

async function walk(entry, found) {
  if (entry.isFile) {
    const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
    found.push({ file, path: entry.fullPath.replace(/^\//, "") });
    return;
  }
  const reader = entry.createReader();
  // readEntries returns the folder in batches (100 in Chromium) until an empty one.
  for (;;) {
    const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
    if (batch.length === 0) break;
    for (const child of batch) await walk(child, found);
  }
}

/** @param {FileList} list - from <input type=file> (webkitRelativePath for folders) */
export function pickedFiles(list) {
  return [...list].map((file) => ({ file, path: file.webkitRelativePath || file.name }));
}

/**
 * Uploads files and reports as it goes.
 * @param {{file: File, path: string}[]} files
 * @param {{csrfToken: string, onLine: (line: object) => void, onProgress: (sent: number,
 *   total: number) => void, onDone: (lines: object[]) => void, onSignedOut: () => void}} ui
 */
export async function uploadAll(files, ui) {
  const total = files.reduce((sum, f) => sum + f.file.size, 0) || 1;
  const sent = new Array(files.length).fill(0);
  const lines = [];
  const progress = () => ui.onProgress(sent.reduce((a, b) => a + b, 0), total);
  let next = 0;
  const worker = async () => {
    while (next < files.length) {
      const index = next++;
      const { file, path } = files[index];
      const line = { name: path, status: "sending", reason: "" };
      ui.onLine(line);
      const answer = await post(file, path, ui.csrfToken, (loaded) => { sent[index] = loaded; progress(); });
      sent[index] = file.size;
      progress();
      if (answer.status === 401 || answer.status === 403) ui.onSignedOut();
      const results = answer.files ?? [{ name: path, status: "failed", reason: answer.error }];
      // A .zip answers for each of its members: the first replaces the line, the rest follow.
      Object.assign(line, results[0] ?? { status: "skipped", reason: "the .zip held no files" });
      ui.onLine(line);
      lines.push(line);
      for (const extra of results.slice(1)) { ui.onLine(extra); lines.push(extra); }
    }
  };
  await Promise.all(Array.from({ length: Math.min(PARALLEL, files.length) }, worker));
  await follow(lines, ui);
  ui.onDone(lines);
}

/** One file as the request body; resolves with the JSON answer (never rejects). */
function post(file, path, csrfToken, onProgress) {
  return new Promise((resolve) => {
    const request = new XMLHttpRequest();
    request.open("POST", `/api/upload?name=${encodeURIComponent(path)}`);
    request.setRequestHeader("Content-Type", "application/octet-stream");
    request.setRequestHeader("X-CSRFToken", csrfToken);
    request.responseType = "json";
    request.upload.onprogress = (event) => onProgress(event.loaded);
    request.onload = () => {
      const body = request.response ?? {};
      if (request.status === 200) resolve(body);
      else resolve({ status: request.status, error: body.error ?? explain(request.status) });
    };
    request.onerror = () => resolve({ status: 0, error: "the connection to the server was lost" });
    request.send(file);
  });
}

function explain(status) {
  if (status === 413) return "larger than the server accepts (LIGHTBOX_UPLOAD_MAX_BYTES)";
  if (status === 401 || status === 403) return "the session ended: sign in again";
  return `the server answered ${status}`;
}

/** Ask the server how indexing ended for the received files, until every one has ended. */
async function follow(lines, ui) {
  const started = Date.now();
  for (;;) {
    const waiting = lines.filter((line) => line.status === "received" && line.id);
    if (waiting.length === 0 || Date.now() - started > POLL_GIVE_UP_MS) return;
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    for (let i = 0; i < waiting.length; i += 200) {
      const query = new URLSearchParams(waiting.slice(i, i + 200).map((line) => ["id", line.id]));
      const response = await fetch(`/api/upload/status?${query}`, { credentials: "same-origin" });
      if (!response.ok) return;
      const { files } = await response.json();
      for (const state of files) {
        const line = waiting.find((l) => l.id === state.id);
        if (!line || !FINAL.has(state.state)) continue;
        Object.assign(line, { status: state.state, reason: state.reason });
        ui.onLine(line);
      }
    }
  }
}

/** The words a result line shows for its status. */
export function describe(line) {
  const words = WORDS[line.status] ?? line.status;
  return line.reason ? `${words}: ${line.reason}` : words;
}

/** Counts for the summary: {stored: n, …} grouped as the user reads them. */
export function summarize(lines) {
  const count = (...states) => lines.filter((l) => states.includes(l.status)).length;
  return {
    stored: count("stored", "replaced"),
    duplicate: count("duplicate"),
    indexing: count("received", "sending", "queued"),
    notStored: count("skipped", "quarantined", "failed"),
  };
}
