/**
 * The audit log page: search the append-only audit events, page through them newest
 * first (the server pages by event, so deep pages stay fast), and export the search as CSV.
 */
import { api } from "../net/api.js";
import { $, attempt, badge, cell, el, row, say, when } from "./dom.js";
import { fillForm, filterOf, publish } from "./audit-filter.js";

const PAGE = 50;
/** Ids of the last event of each page shown before this one ("Older" pushes, "Newer" pops). */
const cursors = /** @type {(number|null)[]} */ ([]);
/** @type {number|null} */
let current = null;
/** @type {number|null} */
let nextCursor = null;

/** @param {number|null} before - show events older than this one, or the newest */
async function load(before) {
  const params = filterOf($("#audit-filter"));
  publish(params, $("#export"));
  params.set("limit", String(PAGE));
  if (before) params.set("before", String(before));
  say($("#audit-status"), "searching…");
  const page = await attempt($("#audit-status"), () => api(`/manage/api/audit?${params}`));
  if (!page) return;
  current = before;
  nextCursor = page.more ? page.events.at(-1).id : null;
  $("#events tbody").replaceChildren(...page.events.map(eventRow));
  say($("#audit-status"), page.events.length ? "" : "No event matches.");
  $("#page-info").textContent = page.events.length ? `page ${cursors.length + 1}` : "";
  $("#older").disabled = nextCursor === null;
  $("#newer").disabled = cursors.length === 0;
}

/** @param {any} e */
function eventRow(e) {
  const outcome = e.outcome === "success" ? badge("success", "good") : badge(e.outcome, "bad");
  const aes = [e.calling_ae, e.called_ae].filter(Boolean).join(" → ");
  return row([when(e.time), cell(e.event_type, "mono"), cell(outcome), e.user, e.peer_address, aes,
    cell(e.study_instance_uid, "mono"), e.patient_id, cell(detail(e.detail), "detail")]);
}

/** @param {object} value @returns {string} */
function detail(value) {
  const text = JSON.stringify(value);
  return text === "{}" ? "" : text;
}

async function loadEventTypes() {
  const { event_types: types } = await api("/manage/api/audit/event-types");
  const families = [...new Set(types.map((t) => `${t.split(".")[0]}.*`))];
  $("#event-types").replaceChildren(...[...families, ...types].map((t) => el("option", { value: t })));
}

$("#audit-filter").addEventListener("submit", (/** @type {SubmitEvent} */ event) => {
  event.preventDefault();
  cursors.length = 0;
  load(null);
});
$("#clear").addEventListener("click", () => {
  $("#audit-filter").reset();
  cursors.length = 0;
  load(null);
});
$("#older").addEventListener("click", () => {
  cursors.push(current);
  load(nextCursor);
});
$("#newer").addEventListener("click", () => load(cursors.pop() ?? null));

fillForm($("#audit-filter"), new URLSearchParams(location.search));
await Promise.all([load(null), attempt($("#audit-status"), loadEventTypes)]);
