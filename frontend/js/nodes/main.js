/**
 * Remote DICOM nodes: test a node, query it, list a study's series on it, retrieve a study
 * or one series from it by C-MOVE or C-GET, send a study to it, and follow the jobs. Every
 * value from a node is set as text, never markup.
 */
import { api } from "../net/api.js";
import {
  STUDY_KEYS, SERIES_KEYS, describeJob, retrieveRequest, seriesKeys, sortSeries,
} from "./queries.js";

const $ = (selector) => document.querySelector(selector);

/** @param {string[]} values @param {HTMLElement[]} [actions] */
function row(values, actions = []) {
  const tr = document.createElement("tr");
  for (const value of values) {
    const td = document.createElement("td");
    td.textContent = value ?? "";
    tr.append(td);
  }
  if (actions.length) {
    const td = document.createElement("td");
    td.append(...actions);
    tr.append(td);
  }
  return tr;
}

/**
 * A button that runs `action` once (a retrieve is not queued twice by a double click), or
 * again after each run when `repeatable`.
 * @param {string} label @param {() => Promise<void>} action @param {boolean} [repeatable]
 */
function button(label, action, repeatable = false) {
  const element = document.createElement("button");
  element.type = "button";
  element.textContent = label;
  element.addEventListener("click", async () => {
    element.disabled = true;
    try {
      await action();
      element.disabled = !repeatable;
    } catch (error) {
      element.textContent = error.message;
    }
  });
  return element;
}

const node = () => encodeURIComponent($("#node").value);
const shown = (value) => String(value ?? "").replaceAll("^", " ");

/** Poll a job until it has finished; returns the finished job. */
async function finished(job) {
  while (job.state === "queued" || job.state === "running") {
    await new Promise((resolve) => setTimeout(resolve, 500));
    job = await api(`/api/jobs/${job.id}`);
  }
  return job;
}

/** Run a C-FIND job on the chosen node; its matches, or an Error with the job's reason. */
async function find(level, keys) {
  const job = await finished(await api(`/api/nodes/${node()}/find`, { level, keys }));
  if (job.state !== "succeeded") throw new Error(job.error || job.state);
  return job.result;
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
  const keys = Object.fromEntries(STUDY_KEYS.map((k) => [k, ""]));
  for (const [k, v] of new FormData(event.target)) if (v) keys[k] = String(v);
  $("#query-state").textContent = "searching…";
  $("#series-panel").hidden = true;
  try {
    const { matches, truncated } = await find("STUDY", keys);
    $("#query-state").textContent = `${matches.length} studies${truncated ? " (more not shown)" : ""}`;
    $("#matches tbody").replaceChildren(...matches.map((m) => row(
      STUDY_KEYS.slice(0, 7).map((k) => shown(m[k])),
      [button("Series", () => listSeries(m), true), retrieveButton("Retrieve study", m.StudyInstanceUID)])));
  } catch (error) {
    $("#query-state").textContent = error.message;
  }
}

/** The study's series on the node (C-FIND at SERIES level), each with its own Retrieve. */
async function listSeries(study) {
  $("#series-panel").hidden = false;
  $("#series-study").textContent = [shown(study.PatientName), study.StudyDate,
    study.StudyDescription].filter(Boolean).join(" · ");
  $("#series-state").textContent = "searching…";
  $("#series tbody").replaceChildren();
  try {
    const { matches } = await find("SERIES", seriesKeys(study.StudyInstanceUID));
    $("#series-state").textContent = `${matches.length} series`;
    $("#series tbody").replaceChildren(...sortSeries(matches).map((m) => row(
      SERIES_KEYS.slice(0, 4).map((k) => shown(m[k])),
      [retrieveButton("Retrieve series", study.StudyInstanceUID, m.SeriesInstanceUID)])));
  } catch (error) {
    $("#series-state").textContent = error.message;
  } finally {
    $("#series-panel").scrollIntoView({ block: "nearest" });
  }
}

/** @param {string} label @param {string} studyInstanceUid @param {string} [seriesInstanceUid] */
function retrieveButton(label, studyInstanceUid, seriesInstanceUid) {
  return button(label, async () => {
    const body = retrieveRequest($("#method").value, studyInstanceUid, seriesInstanceUid);
    await api(`/api/nodes/${node()}/retrieve`, body);
    await refreshJobs();
  });
}

async function send(event) {
  event.preventDefault();
  const uid = new FormData(event.target).get("study_instance_uid");
  try {
    await api(`/api/nodes/${node()}/send`, { study_instance_uid: String(uid) });
    await refreshJobs();
  } catch (error) {
    alert(error.message);
  }
}

async function refreshJobs() {
  const { jobs } = await api("/api/jobs");
  $("#jobs tbody").replaceChildren(...jobs.map((j) => row([String(j.id), j.kind, describeJob(j),
    j.node, j.state, String(j.progress.completed), String(j.progress.failed),
    String(j.progress.remaining ?? ""), j.error])));
}

$("#echo").addEventListener("click", echo);
$("#query").addEventListener("submit", query);
$("#send").addEventListener("submit", send);
await loadNodes();
await refreshJobs();
setInterval(refreshJobs, 2000);
