/**
 * Worklist placeholder: lists the newest studies and refreshes when the server reports a
 * change over the live WebSocket. Every DICOM-derived string is set as text, never markup.
 */
import { connectLive } from "../net/live.js";

const body = document.querySelector("#studies tbody");
const empty = document.querySelector("#empty");
const status = document.querySelector("#live-status");

const COLUMNS = ["patient_name", "patient_id", "patient_birth_date", "study_date",
  "modalities_in_study", "study_description", "accession_number", "number_of_series",
  "number_of_instances"];

/** @param {Record<string, unknown>} study */
function row(study) {
  const tr = document.createElement("tr");
  tr.dataset.uid = String(study.study_instance_uid);
  tr.tabIndex = 0;
  tr.addEventListener("click", () => open(tr.dataset.uid));
  tr.addEventListener("keydown", (event) => { if (event.key === "Enter") open(tr.dataset.uid); });
  for (const column of COLUMNS) {
    const td = document.createElement("td");
    td.textContent = study[column] == null ? "" : String(study[column]).replaceAll("^", " ");
    tr.append(td);
  }
  return tr;
}

/** @param {string | undefined} uid */
function open(uid) {
  if (uid) location.href = `/viewer/${encodeURIComponent(uid)}`;
}

async function refresh() {
  const response = await fetch("/api/studies?limit=100", { credentials: "same-origin" });
  if (response.status === 401 || response.redirected) { location.href = "/login/"; return; }
  const { studies } = await response.json();
  body.replaceChildren(...studies.map(row));
  empty.hidden = studies.length > 0;
}

let pending = null;
function refreshSoon() {
  // Coalesce bursts (one event per received image) into one request.
  if (!pending) pending = setTimeout(() => { pending = null; refresh(); }, 200);
}

function csrfToken() {
  return document.cookie.split("; ").find((c) => c.startsWith("csrftoken="))?.split("=")[1] ?? "";
}

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

showAdminLinks();
refresh();
connectLive("/ws/worklist", refreshSoon, (state) => {
  if (state === "signed-out") { location.href = "/login/"; return; }
  status.textContent = state === "open" ? "live" : "reconnecting…";
  // A refused reconnection may mean the session ended: refresh() then goes to the login.
  refresh().catch(() => {});
});
