/**
 * The shares page: share a study (found by the study search, or by its UID) with a user
 * or a group, optionally until a date; list the shares and revoke them.
 */
import { api } from "../net/api.js";
import { $, attempt, badge, button, cell, day, el, row, say, when } from "./dom.js";
import { studySearch } from "./study-search.js";

async function loadTargets() {
  const [{ users }, { groups }] = await Promise.all([api("/manage/api/users"), api("/manage/api/groups?brief=1")]);
  const options = (/** @type {string} */ kind, /** @type {any[]} */ rows, /** @type {string} */ key) =>
    rows.map((r) => el("option", { value: `${kind}:${r.id}` }, r[key]));
  $("#create-share select[name=with]").replaceChildren(
    el("optgroup", { label: "Groups" }, ...options("group", groups, "name")),
    el("optgroup", { label: "Users" }, ...options("user", users.filter((u) => u.is_active), "username")));
}

async function refresh() {
  const { shares } = await api("/manage/api/shares");
  $("#shares tbody").replaceChildren(...shares.map(shareRow));
  say($("#shares-status"), shares.length ? "" : "Nothing is shared.");
}

/** @param {any} s */
function shareRow(s) {
  const target = s.user ? `user ${s.user.username}` : `group ${s.group.name}`;
  const until = s.expired ? badge(`expired ${when(s.expires_at)}`, "bad")
    : el("span", {}, s.expires_at ? `through ${lastDay(s.expires_at)}` : "no end");
  return row([s.study.patient_name.replaceAll("^", " "), s.study.patient_id,
    cell(s.study.study_instance_uid, "mono"), target, cell(until), s.created_by, day(s.created_at),
    cell(button("Revoke", () => revoke(s), "link"))], s.expired ? "inactive" : "");
}

/**
 * A share made "until" a date ends as the next day starts: show that date.
 * @param {string} iso
 */
function lastDay(iso) {
  return new Date(Date.parse(iso) - 1).toLocaleDateString();
}

/** @param {any} share */
async function revoke(share) {
  if (!window.confirm("Revoke this share?")) return;
  if (await attempt($("#shares-status"), () => api(`/manage/api/shares/${share.id}/revoke`, {}))) {
    await refresh();
  }
}

/** @param {SubmitEvent} event */
async function share(event) {
  event.preventDefault();
  const form = /** @type {HTMLFormElement} */ (event.target);
  const data = new FormData(form);
  const [kind, id] = String(data.get("with") ?? "").split(":");
  const body = { study_instance_uid: String(data.get("study_instance_uid") ?? ""),
    expires_on: String(data.get("expires_on") ?? ""), [kind]: Number(id) };
  const status = $("#share-status");
  const created = await attempt(status, () => api("/manage/api/shares", body));
  if (!created) return;
  say(status, `shared with ${created.share.user?.username ?? created.share.group.name}`, "ok");
  await refresh();
}

studySearch($("#find-study"), $("#study-results"), $("#find-status"), (study) => {
  $("#create-share input[name=study_instance_uid]").value = study.study_instance_uid;
  say($("#share-status"), `${study.patient_name.replaceAll("^", " ")} — ${study.study_description}`);
});
$("#create-share").addEventListener("submit", share);
await attempt($("#shares-status"), async () => { await loadTargets(); await refresh(); });
