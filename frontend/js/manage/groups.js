/**
 * The groups page: each access group with its members, its rules and how many studies
 * the rules select; create, rename and delete groups, add and remove members and rules.
 */
import { api } from "../net/api.js";
import { $, attempt, button, cell, el, row, say, values } from "./dom.js";

const ATTRIBUTES = { institution: "Institution name", calling_ae: "Sent by calling AE title",
  modality: "Modality", referring: "Referring physician name", all: "Every study" };

/** @type {any[]} */
let users = [];

/** @param {number} n */
const count = (n) => `${n} ${n === 1 ? "study" : "studies"}`;

async function refresh() {
  const [{ groups }, list] = await Promise.all([api("/manage/api/groups"), api("/manage/api/users")]);
  users = list.users;
  $("#groups").replaceChildren(...groups.map(groupCard));
  if (!groups.length) $("#groups").append(el("p", { className: "status" }, "No groups yet."));
}

/** @param {any} group */
function groupCard(group) {
  const status = el("span", { className: "status", role: "status" });
  /** POST to the group's API; redraw everything on success. */
  const post = async (/** @type {string} */ path, /** @type {object} */ body) => {
    if (await attempt(status, () => api(path, body))) await refresh();
  };
  return el("article", { className: "card group", "data-group": group.name },
    el("header", {},
      el("h3", {}, group.name),
      el("span", { className: "status" }, `${count(group.studies)} selected by its rules`),
      button("Delete", () => remove(group, post), "danger")),
    renameForm(group, post),
    el("h3", {}, "Members"),
    members(group, post),
    el("h3", {}, "Rules"),
    rules(group, post),
    status);
}

/**
 * @param {any} group
 * @param {(path: string, body: object) => Promise<void>} post
 */
function renameForm(group, post) {
  const form = el("form", { className: "fields" },
    el("label", {}, "Name ", el("input", { name: "name", value: group.name, maxLength: 100, required: true })),
    el("label", { className: "wide" }, "Description ",
      el("input", { name: "description", value: group.description, maxLength: 2000 })),
    el("button", { type: "submit" }, "Save"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    post(`/manage/api/groups/${group.id}`, values(/** @type {HTMLFormElement} */ (form)));
  });
  return form;
}

/**
 * @param {any} group
 * @param {(path: string, body: object) => Promise<void>} post
 */
function members(group, post) {
  const chips = group.members.map((m) => {
    const drop = button("×", () => post(`/manage/api/groups/${group.id}/members/remove`, { user: m.id }));
    drop.setAttribute("aria-label", `Remove ${m.username}`);
    return el("span", { className: "chip" }, m.username, drop);
  });
  const inGroup = new Set(group.members.map((m) => m.id));
  const select = el("select", { name: "user", "aria-label": `Add a member to ${group.name}` },
    ...users.filter((u) => !inGroup.has(u.id)).map((u) => el("option", { value: String(u.id) }, u.username)));
  const add = el("form", { className: "fields" }, select, el("button", { type: "submit" }, "Add member"));
  add.addEventListener("submit", (event) => {
    event.preventDefault();
    if (select.value) post(`/manage/api/groups/${group.id}/members/add`, { user: Number(select.value) });
  });
  const none = chips.length ? null : el("span", { className: "status" }, "No members");
  return el("div", {}, el("div", { className: "chips" }, ...chips, none ?? ""), add);
}

/**
 * @param {any} group
 * @param {(path: string, body: object) => Promise<void>} post
 */
function rules(group, post) {
  const table = el("table", {}, el("thead", {}, row(["Attribute", "Pattern", "Studies", ""].map((h) => el("th", {}, h)))),
    el("tbody", {}, ...group.rules.map((r) => row([ATTRIBUTES[r.attribute] ?? r.attribute,
      cell(r.pattern, "mono"), String(r.studies),
      cell(button("Remove", () => post(`/manage/api/rules/${r.id}/delete`, {}), "link"))]))));
  const attribute = el("select", { name: "attribute", "aria-label": "Attribute" },
    ...Object.entries(ATTRIBUTES).map(([value, label]) => el("option", { value }, label)));
  const pattern = el("input", { name: "pattern", maxLength: 200, placeholder: "pattern, e.g. CT* or ST MARY?S",
    "aria-label": "Pattern" });
  attribute.addEventListener("change", () => { pattern.disabled = attribute.value === "all"; });
  const add = el("form", { className: "fields" }, attribute, pattern, el("button", { type: "submit" }, "Add rule"));
  add.addEventListener("submit", (event) => {
    event.preventDefault();
    post(`/manage/api/groups/${group.id}/rules`, { attribute: attribute.value, pattern: pattern.value });
  });
  return el("div", {}, group.rules.length ? table : el("p", { className: "status" }, "No rules: only shared studies"), add);
}

/**
 * @param {any} group
 * @param {(path: string, body: object) => Promise<void>} post
 */
function remove(group, post) {
  const question = `Delete the group ${group.name}? Its members stay; its rules and shares go.`;
  if (window.confirm(question)) post(`/manage/api/groups/${group.id}/delete`, {});
}

/** @param {SubmitEvent} event */
async function create(event) {
  event.preventDefault();
  const form = /** @type {HTMLFormElement} */ (event.target);
  const status = $("#create-status");
  const created = await attempt(status, () => api("/manage/api/groups", values(form)));
  if (!created) return;
  say(status, `${created.group.name} created`, "ok");
  form.reset();
  await refresh();
}

$("#create-group").addEventListener("submit", create);
await attempt($("#groups-status"), refresh);
