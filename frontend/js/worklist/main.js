/**
 * The worklist: search, sort and page the studies the user may see (/api/studies), kept
 * current by the live WebSocket, with uploads by drag and drop or file picker.
 * Every DICOM-derived string is set as text, never markup.
 */
import { connectLive } from "../net/live.js";
import {
  DEFAULT_SORT, PAGE_SIZE, hasNext, modalities, nextSort, personName, presetRange, queryFor, rangeText,
  shortTime,
} from "./search.js";
import { describe, droppedFiles, pickedFiles, summarize, uploadAll } from "./upload.js";

const form = document.querySelector("#search");
const body = document.querySelector("#studies tbody");
const empty = document.querySelector("#empty");
const status = document.querySelector("#live-status");
const searchStatus = document.querySelector("#search-status");
const headers = [...document.querySelectorAll("#studies th[data-sort]")];

const state = { sort: DEFAULT_SORT, offset: 0, total: 0 };
let selectedUid = null;
let generation = 0; // answers to superseded requests are dropped

// ---------------------------------------------------------------- search and results

function fields() {
  return Object.fromEntries([...new FormData(form)].map(([k, v]) => [k, String(v)]));
}

function currentQuery() {
  const values = fields();
  return queryFor({ fields: values, when: values.when ?? "", sort: state.sort, offset: state.offset });
}

async function refresh({ quiet = false } = {}) {
  const mine = ++generation;
  const query = currentQuery();
  if (!quiet) searchStatus.textContent = "Searching…";
  searchStatus.classList.remove("error");
  let response;
  try {
    response = await fetch(`/api/studies?${query}`, { credentials: "same-origin" });
  } catch {
    if (mine === generation) showError("The server cannot be reached. Retrying when the connection is back.");
    return;
  }
  if (mine !== generation) return;
  if (response.status === 401 || response.redirected) { location.href = "/login/"; return; }
  const answer = await response.json().catch(() => ({ error: `the server answered ${response.status}` }));
  if (mine !== generation) return;
  if (!response.ok) { showError(answer.error ?? `the server answered ${response.status}`); return; }
  render(answer);
  rememberInUrl(query);
}

function showError(message) {
  searchStatus.textContent = message;
  searchStatus.classList.add("error");
}

function render({ studies, total, total_exact: exact, offset }) {
  state.total = total;
  state.offset = offset;
  const focused = document.activeElement?.closest?.("#studies tbody tr");
  body.replaceChildren(...studies.map(row));
  empty.hidden = studies.length > 0;
  empty.textContent = hasCriteria()
    ? "No study matches this search."
    : "No studies yet. Drop DICOM files here, send images to the DICOM port, or run manage.py import.";
  searchStatus.textContent = rangeText(offset, studies.length, total, exact);
  document.querySelector("#page-range").textContent = searchStatus.textContent;
  document.querySelector("#previous").disabled = offset === 0;
  document.querySelector("#next").disabled = !hasNext(offset, studies.length, total, exact, PAGE_SIZE);
  for (const th of headers) {
    const column = th.dataset.sort;
    const sorted = state.sort.replace(/^-/, "") === column;
    th.setAttribute("aria-sort", sorted ? (state.sort.startsWith("-") ? "descending" : "ascending") : "none");
  }
  const keep = body.querySelector(`tr[data-uid="${CSS.escape(selectedUid ?? "")}"]`);
  if (keep) select(keep, { focus: Boolean(focused) });
}

function hasCriteria() {
  const query = currentQuery();
  return [...query.keys()].some((key) => !["limit", "offset", "sort"].includes(key));
}

const CELLS = [
  (s) => personName(s.patient_name),
  (s) => s.patient_id,
  (s) => s.patient_birth_date,
  (s) => s.patient_sex,
  (s) => [s.study_date, shortTime(s.study_time)].filter(Boolean).join(" "),
  (s) => modalities(s.modalities_in_study),
  (s) => s.study_description,
  (s) => s.accession_number,
  (s) => s.number_of_series,
  (s) => s.number_of_instances,
];

/** @param {Record<string, any>} study */
function row(study) {
  const tr = document.createElement("tr");
  tr.dataset.uid = String(study.study_instance_uid);
  tr.tabIndex = -1;
  tr.classList.toggle("new", Boolean(study.new));
  if (study.new) tr.title = "New: arrived or grew since you last opened it";
  for (const [index, cell] of CELLS.entries()) {
    const td = document.createElement("td");
    td.textContent = cell(study) == null ? "" : String(cell(study));
    if (index >= 8) td.className = "number";
    tr.append(td);
  }
  return tr;
}

function select(tr, { focus = true } = {}) {
  for (const other of body.querySelectorAll("tr[aria-selected=true]")) {
    other.setAttribute("aria-selected", "false");
    other.tabIndex = -1;
  }
  tr.setAttribute("aria-selected", "true");
  tr.tabIndex = 0;
  selectedUid = tr.dataset.uid;
  if (focus) tr.focus();
}

function open(uid) {
  if (uid) location.href = `/viewer/${encodeURIComponent(uid)}`;
}

body.addEventListener("click", (event) => {
  const tr = event.target.closest("tr");
  if (tr) { select(tr); open(tr.dataset.uid); }
});

body.addEventListener("keydown", (event) => {
  const tr = event.target.closest("tr");
  if (!tr) return;
  const rows = [...body.rows];
  const at = rows.indexOf(tr);
  const moveTo = (index) => { event.preventDefault(); select(rows[Math.max(0, Math.min(rows.length - 1, index))]); };
  switch (event.key) {
    case "ArrowDown": moveTo(at + 1); break;
    case "ArrowUp":
      if (at === 0) { event.preventDefault(); form.elements.name.focus(); } else moveTo(at - 1);
      break;
    case "Home": moveTo(0); break;
    case "End": moveTo(rows.length - 1); break;
    case "PageDown": if (!document.querySelector("#next").disabled) { event.preventDefault(); page(1); } break;
    case "PageUp": if (state.offset > 0) { event.preventDefault(); page(-1); } break;
    case "Enter": event.preventDefault(); open(tr.dataset.uid); break;
    default:
  }
});

// From the search fields, ArrowDown goes to the results and Enter opens the first one.
form.addEventListener("keydown", (event) => {
  if (!(event.target instanceof HTMLInputElement) || event.target.type === "date") return;
  const first = body.rows[0];
  if (event.key === "ArrowDown" && first) { event.preventDefault(); select(first); }
  if (event.key === "Enter") {
    event.preventDefault();
    if (pendingSearch) { clearTimeout(pendingSearch); pendingSearch = null; refresh(); }
    else if (body.rows.length === 1) open(first.dataset.uid);
  }
});

let pendingSearch = null;
function searchSoon() {
  state.offset = 0;
  clearTimeout(pendingSearch);
  pendingSearch = setTimeout(() => { pendingSearch = null; refresh(); }, 250);
}

form.addEventListener("input", (event) => {
  if (event.target.name === "when") return; // handled on change
  searchSoon();
});
form.addEventListener("change", (event) => {
  if (event.target.name !== "when") return;
  const custom = event.target.value === "custom";
  for (const label of form.querySelectorAll(".range")) label.hidden = !custom;
  if (custom) {
    const week = presetRange("week");
    form.elements.date_from.value ||= week.from;
    form.elements.date_to.value ||= week.to;
    form.elements.date_from.focus();
  }
  state.offset = 0;
  refresh();
});
form.addEventListener("submit", (event) => event.preventDefault());
form.addEventListener("reset", () => {
  setTimeout(() => {
    for (const label of form.querySelectorAll(".range")) label.hidden = true;
    state.sort = DEFAULT_SORT;
    state.offset = 0;
    refresh();
    form.elements.name.focus();
  });
});

for (const th of headers) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "sort";
  button.append(...th.childNodes);
  th.append(button);
  button.addEventListener("click", () => {
    state.sort = nextSort(state.sort, th.dataset.sort);
    state.offset = 0;
    refresh();
  });
}

function page(direction) {
  state.offset = Math.max(0, state.offset + direction * PAGE_SIZE);
  selectedUid = null;
  refresh().then(() => { if (body.rows[0]) select(body.rows[0]); });
}
document.querySelector("#previous").addEventListener("click", () => page(-1));
document.querySelector("#next").addEventListener("click", () => page(1));

/** The search lives in the address, so reload and Back keep it. */
function rememberInUrl(query) {
  const shown = new URLSearchParams(query);
  shown.delete("limit");
  const when = fields().when;
  if (when && when !== "custom") { shown.delete("date_from"); shown.delete("date_to"); shown.set("when", when); }
  const url = shown.size ? `/?${shown}` : "/";
  if (url !== location.pathname + location.search) history.replaceState(null, "", url);
}

function restoreFromUrl() {
  const params = new URLSearchParams(location.search);
  for (const [key, value] of params) {
    const input = form.elements.namedItem(key);
    if (input && "value" in input) input.value = value;
  }
  if (!params.get("when") && (params.get("date_from") || params.get("date_to"))) form.elements.when.value = "custom";
  for (const label of form.querySelectorAll(".range")) label.hidden = form.elements.when.value !== "custom";
  state.sort = params.get("sort") || DEFAULT_SORT;
  state.offset = Number.parseInt(params.get("offset") ?? "0", 10) || 0;
}

// ---------------------------------------------------------------- live updates

let pendingRefresh = null;
function refreshSoon() {
  // Coalesce bursts (one event per received image) into one request.
  if (!pendingRefresh) pendingRefresh = setTimeout(() => { pendingRefresh = null; refresh({ quiet: true }); }, 200);
}

// ---------------------------------------------------------------- upload

const uploads = document.querySelector("#uploads");
const uploadList = document.querySelector("#upload-files");
const uploadBar = document.querySelector("#upload-progress");
const uploadSummary = document.querySelector("#upload-summary");
const dropZone = document.querySelector("#drop-zone");
const lineItems = new Map();
let uploading = false;

function csrfToken() {
  return document.cookie.split("; ").find((c) => c.startsWith("csrftoken="))?.split("=")[1] ?? "";
}

function showLine(line) {
  let li = lineItems.get(line);
  if (!li) {
    li = document.createElement("li");
    const name = document.createElement("span");
    name.className = "file";
    const result = document.createElement("span");
    result.className = "result";
    li.append(name, result);
    uploadList.append(li);
    lineItems.set(line, li);
  }
  li.dataset.status = line.status;
  li.children[0].textContent = line.name;
  li.children[1].textContent = describe(line);
  updateSummary();
}

function updateSummary() {
  const counts = summarize([...lineItems.keys()]);
  const parts = [`${counts.stored} stored`];
  if (counts.duplicate) parts.push(`${counts.duplicate} already in the archive`);
  if (counts.notStored) parts.push(`${counts.notStored} not stored`);
  if (counts.indexing) parts.push(`${counts.indexing} in progress`);
  uploadSummary.textContent = parts.join(" · ");
}

async function upload(files) {
  if (files.length === 0) return;
  if (uploading) { uploadSummary.textContent = "Wait for the current upload to finish."; return; }
  uploading = true;
  uploads.hidden = false;
  uploadList.replaceChildren();
  lineItems.clear();
  uploadBar.removeAttribute("value"); // indeterminate until bytes move
  uploadSummary.textContent = `Uploading ${files.length} file${files.length === 1 ? "" : "s"}…`;
  try {
    await uploadAll(files, {
      csrfToken: csrfToken(),
      onLine: showLine,
      onProgress: (sent, total) => { uploadBar.max = total; uploadBar.value = sent; },
      onDone: () => { uploadBar.value = uploadBar.max; updateSummary(); uploadSummary.textContent += " — done"; },
      onSignedOut: () => { location.href = "/login/"; },
    });
  } finally {
    uploading = false;
  }
}

document.querySelector("#close-uploads").addEventListener("click", () => { uploads.hidden = true; });
const fileInput = document.querySelector("#file-input");
const folderInput = document.querySelector("#folder-input");
document.querySelector("#pick-files").addEventListener("click", () => fileInput.click());
document.querySelector("#pick-folder").addEventListener("click", () => folderInput.click());
for (const input of [fileInput, folderInput]) {
  input.addEventListener("change", () => { upload(pickedFiles(input.files)); input.value = ""; });
}

let dragDepth = 0;
const carriesFiles = (event) => [...(event.dataTransfer?.types ?? [])].includes("Files");
document.addEventListener("dragenter", (event) => {
  if (!carriesFiles(event)) return;
  dragDepth += 1;
  dropZone.hidden = false;
});
document.addEventListener("dragleave", () => {
  dragDepth = Math.max(0, dragDepth - 1);
  if (dragDepth === 0) dropZone.hidden = true;
});
document.addEventListener("dragover", (event) => {
  if (carriesFiles(event)) { event.preventDefault(); event.dataTransfer.dropEffect = "copy"; }
});
document.addEventListener("drop", async (event) => {
  if (!carriesFiles(event)) return;
  event.preventDefault();
  dragDepth = 0;
  dropZone.hidden = true;
  upload(await droppedFiles(event.dataTransfer));
});

// ---------------------------------------------------------------- page

document.querySelector("#logout").addEventListener("submit", (event) => {
  const input = document.createElement("input");
  Object.assign(input, { type: "hidden", name: "csrfmiddlewaretoken", value: csrfToken() });
  event.target.append(input);
});

/** Links only administrators can use are shown only to them. */
async function showAdminLinks() {
  const response = await fetch("/api/me", { credentials: "same-origin" });
  if (!response.ok) return;
  const { is_admin: isAdmin } = await response.json();
  for (const id of ["nodes-link", "manage-link"]) document.getElementById(id).hidden = !isAdmin;
}

restoreFromUrl();
form.elements.name.focus();
showAdminLinks();
refresh();
connectLive("/ws/worklist", refreshSoon, (liveState) => {
  if (liveState === "signed-out") { location.href = "/login/"; return; }
  status.textContent = liveState === "open" ? "live" : "reconnecting…";
  // What changed while disconnected; a refused reconnection may mean the session ended,
  // and refresh() then goes to the login.
  refresh({ quiet: true }).catch(() => {});
});
