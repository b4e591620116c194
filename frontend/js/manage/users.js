/**
 * The users page: every user at a glance, a form that creates a user and shows their
 * invitation link, and the panel (user-panel.js) that edits one user.
 */
import { api } from "../net/api.js";
import { $, attempt, badge, button, cell, el, row, say, values, when } from "./dom.js";
import { showInvitation } from "./invite-link.js";
import { UserPanel } from "./user-panel.js";

const ROLES = { admin: "Administrator", radiologist: "Radiologist", referring: "Referring physician",
  uploader: "Technologist / uploader" };

/** @type {any[]} */
let users = [];
const panel = new UserPanel($("#user-panel"), { onChange: refresh });

async function refresh() {
  ({ users } = await api("/manage/api/users"));
  render();
}

function render() {
  const needle = $("#filter").value.trim().toLowerCase();
  const shown = users.filter((u) => !needle || searchable(u).includes(needle));
  $("#users tbody").replaceChildren(...shown.map(userRow));
}

/** @param {any} u */
function searchable(u) {
  return [u.username, u.first_name, u.last_name, u.email, ROLES[u.role],
    ...u.groups.map((g) => g.name)].join(" ").toLowerCase();
}

/** @param {any} u */
function userRow(u) {
  const tr = row([
    u.username,
    `${u.first_name} ${u.last_name}`.trim(),
    ROLES[u.role] ?? u.role,
    u.groups.map((g) => g.name).join(", "),
    u.is_active ? "yes" : badge("inactive", "bad"),
    cell(twoFactor(u)),
    when(u.last_login),
    String(u.active_sessions),
    cell(status(u)),
    cell(button("Edit", () => panel.open(u.id), "link")),
  ], u.is_active ? "" : "inactive");
  tr.dataset.username = u.username;
  tr.classList.toggle("selected", panel.userId === u.id);
  return tr;
}

/** @param {any} u */
function twoFactor(u) {
  if (u.two_factor_enrolled) return badge("enrolled", "good");
  return u.require_two_factor ? badge("required, not set up", "warn") : el("span", {}, "—");
}

/** @param {any} u */
function status(u) {
  const span = el("span");
  if (u.locked_until) span.append(badge(`locked until ${when(u.locked_until)}`, "bad"));
  if (u.invitation_expires_at) span.append(badge("invited", "warn"));
  else if (!u.has_password) span.append(badge("no password", "warn"));
  if (u.is_superuser) span.append(badge("superuser"));
  return span;
}

/** @param {SubmitEvent} event */
async function create(event) {
  event.preventDefault();
  const form = /** @type {HTMLFormElement} */ (event.target);
  const status = $("#create-status");
  say(status, "creating…");
  const created = await attempt(status, () => api("/manage/api/users", values(form)));
  if (!created) return;
  say(status, `${created.user.username} created`, "ok");
  showInvitation($("#create-invite"), created.user.username, created.invitation);
  form.reset();
  await refresh();
}

$("#create-user").addEventListener("submit", create);
$("#filter").addEventListener("input", render);
panel.onOpen = render;
await refresh();
