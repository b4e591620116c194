/**
 * Remote DICOM nodes: test a node, query it, retrieve a study from it, send one to it, and
 * follow the jobs. Every value from a node is set as text, never markup.
 */
import { api } from "../net/api.js";

const $ = (selector) => document.querySelector(selector);
const RETURN_KEYS = ["PatientName", "PatientID", "StudyDate", "ModalitiesInStudy",
  "StudyDescription", "AccessionNumber", "NumberOfStudyRelatedInstances", "StudyInstanceUID"];

/** @param {string[]} values @param {HTMLElement} [last] */
function row(values, last) {
  const tr = document.createElement("tr");
  for (const value of values) {
    const td = document.createElement("td");
    td.textContent = value ?? "";
    tr.append(td);
  }
  if (last) {
    const td = document.createElement("td");
    td.append(last);
    tr.append(td);
  }
  return tr;
}

const node = () => encodeURIComponent($("#node").value);

/** Poll a job until it has finished; returns the finished job. */
async function finished(job) {
  while (job.state === "queued" || job.state === "running") {
    await new Promise((resolve) => setTimeout(resolve, 500));
    job = await api(`/api/jobs/${job.id}`);
  }
  return job;
}

async function loadNodes() {
  const { nodes } = await api("/api/nodes");
  $("#node").replaceChildren(...nodes.map((n) => {
    const option = document.createElement("option");
    option.value = n.ae_title;
    option.textContent = `${n.ae_title} — ${n.name || n.host}:${n.port}`;
    return option;
  }));
}

async function echo() {
  $("#echo-result").textContent = "…";
  try {
    const job = await finished(await api(`/api/nodes/${node()}/echo`, {}));
    $("#echo-result").textContent = job.state === "succeeded" ? "connected" : job.error;
  } catch (error) {
    $("#echo-result").textContent = error.message;
  }
}

async function query(event) {
  event.preventDefault();
  const keys = Object.fromEntries(RETURN_KEYS.map((k) => [k, ""]));
  for (const [k, v] of new FormData(event.target)) if (v) keys[k] = String(v);
  $("#query-state").textContent = "searching…";
  try {
    const job = await finished(await api(`/api/nodes/${node()}/find`, { level: "STUDY", keys }));
    const matches = job.result?.matches ?? [];
    $("#query-state").textContent = job.state === "succeeded"
      ? `${matches.length} studies${job.result.truncated ? " (more not shown)" : ""}` : job.error;
    $("#matches tbody").replaceChildren(...matches.map((m) => row(
      RETURN_KEYS.slice(0, 7).map((k) => String(m[k] ?? "").replaceAll("^", " ")),
      retrieveButton(m.StudyInstanceUID))));
  } catch (error) {
    $("#query-state").textContent = error.message;
  }
}

function retrieveButton(studyInstanceUid) {
  const button = document.createElement("button");
  button.type = "button";
  button.textContent = "Retrieve";
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      await api(`/api/nodes/${node()}/retrieve`, { study_instance_uid: studyInstanceUid, method: "move" });
      refreshJobs();
    } catch (error) {
      button.textContent = error.message;
    }
  });
  return button;
}

async function send(event) {
  event.preventDefault();
  const uid = new FormData(event.target).get("study_instance_uid");
  try {
    await api(`/api/nodes/${node()}/send`, { study_instance_uid: String(uid) });
    refreshJobs();
  } catch (error) {
    alert(error.message);
  }
}

async function refreshJobs() {
  const { jobs } = await api("/api/jobs");
  $("#jobs tbody").replaceChildren(...jobs.map((j) => row([String(j.id), j.kind, j.node, j.state,
    String(j.progress.completed), String(j.progress.failed), String(j.progress.remaining), j.error])));
}

$("#echo").addEventListener("click", echo);
$("#query").addEventListener("submit", query);
$("#send").addEventListener("submit", send);
await loadNodes();
await refreshJobs();
setInterval(refreshJobs, 2000);
