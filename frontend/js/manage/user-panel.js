/**
 * The panel that edits one user: names, role, referring identity, two-factor, groups; and
 * the account actions (invitation link, password reset, unlock, deactivate), sessions and
 * API tokens. Each change goes to the server, which audits it, and the panel shows the
 * user as the server has them afterwards.
 */
import { api } from "../net/api.js";
import { attempt, badge, button, cell, el, row, say, values, when } from "./dom.js";
import { showInvitation } from "./invite-link.js";

const EDITABLE = ["first_name", "last_name", "email", "role", "referring_name",
  "referring_accession_prefix", "require_two_factor"];

export class UserPanel {
  /**
   * @param {HTMLElement} root - the #user-panel section of users.html
   * @param {{onChange: () => Promise<void>}} options - onChange: after every change
   */
  constructor(root, { onChange }) {
    this.root = root;
    this.onChange = onChange;
    /** @type {(() => void)|null} called after a user is opened */
    this.onOpen = null;
    /** @type {number|null} */
    this.userId = null;
    /** @type {any} */
    this.user = null;
    this.part("#user-form").addEventListener("submit", (e) => this.save(e));
    this.part("#panel-close").addEventListener("click", () => this.close());
    this.part("#end-all").addEventListener("click", () => this.endSessions(null));
    this.bindActions();
  }

  /** @param {string} selector @returns {any} */
  part(selector) {
    return this.root.querySelector(selector);
  }

  bindActions() {
    const actions = {
      "#act-invite": ["invite", ""],
      "#act-reset": ["reset-password", "Reset this user's password? It stops working now, their sessions end, and you get a link for them to choose another."],
      "#act-unlock": ["unlock", ""],
      "#act-two-factor": ["reset-two-factor", "Forget this user's authenticator? They set up two-factor again at their next sign-in."],
      "#act-deactivate": ["deactivate", "Deactivate this user? They are signed out everywhere and can no longer sign in."],
      "#act-reactivate": ["reactivate", ""],
    };
    for (const [selector, [action, question]] of Object.entries(actions)) {
      this.part(selector).addEventListener("click", () => this.act(action, question));
    }
  }

  /**
   * Show the user with this id.
   * @param {number} userId
   */
  async open(userId) {
    this.userId = userId;
    this.part("#panel-invite").replaceChildren();
    say(this.part("#panel-status"), "");
    const [detail, { groups }] = await Promise.all([
      api(`/manage/api/users/${userId}`), api("/manage/api/groups?brief=1")]);
    this.groups = groups;
    this.show(detail);
    this.root.hidden = false;
    this.root.scrollIntoView({ block: "start" });
    this.onOpen?.();
  }

  close() {
    this.root.hidden = true;
    this.userId = null;
    this.onOpen?.();
  }

  /** @param {{user: any, sessions: any[], tokens: any[]}} detail */
  show({ user, sessions, tokens }) {
    this.user = user;
    this.part("#panel-title").textContent = `${user.username}${user.is_active ? "" : " (inactive)"}`;
    const form = this.part("#user-form");
    for (const name of EDITABLE) {
      const field = form.elements.namedItem(name);
      if (field.type === "checkbox") field.checked = user[name];
      else field.value = user[name];
    }
    form.elements.namedItem("role").disabled = user.is_superuser;
    this.showGroups(user);
    this.part("#act-deactivate").hidden = !user.is_active;
    this.part("#act-reactivate").hidden = user.is_active;
    this.part("#act-unlock").disabled = !user.locked_until;
    this.part("#act-two-factor").disabled = !user.two_factor_enrolled;
    this.part("#sessions tbody").replaceChildren(...sessions.map((s) => this.sessionRow(s)));
    this.part("#tokens tbody").replaceChildren(...tokens.map((t) => this.tokenRow(t)));
    if (!sessions.length) this.part("#sessions tbody").append(row(["Not signed in anywhere"]));
    if (!tokens.length) this.part("#tokens tbody").append(row(["No API tokens"]));
  }

  /** @param {any} user */
  showGroups(user) {
    const member = new Set(user.groups.map((g) => g.id));
    const boxes = this.groups.map((g) => el("label", {},
      el("input", { type: "checkbox", value: String(g.id), checked: member.has(g.id) }), g.name));
    const legend = el("legend", {}, "Groups");
    const none = this.groups.length ? null : el("span", { className: "status" }, "No groups yet");
    this.part("#user-groups").replaceChildren(legend, ...boxes, none ?? "");
  }

  /** @param {any} s */
  sessionRow(s) {
    return row([when(s.created_at), when(s.last_seen_at), s.address, cell(s.user_agent, "mono"),
      cell(button(s.current ? "End (this browser)" : "End", () => this.endSessions([s.id]), "link"))]);
  }

  /** @param {any} t */
  tokenRow(t) {
    const state = t.revoked_at ? badge(`revoked ${when(t.revoked_at)}`, "bad") : badge("active", "good");
    const revoke = t.revoked_at ? "" : button("Revoke", () => this.revoke(t), "link");
    return row([t.name, cell(t.prefix, "mono"), t.scopes.join(", "), when(t.created_at),
      when(t.last_used_at), cell(state), cell(revoke)]);
  }

  /** @param {SubmitEvent} event */
  async save(event) {
    event.preventDefault();
    const form = /** @type {HTMLFormElement} */ (event.target);
    const fields = values(form);
    const changes = Object.fromEntries(EDITABLE.map((k) => [k, fields[k]]));
    if (this.user.is_superuser) delete changes.role;
    changes.groups = [...this.part("#user-groups").querySelectorAll("input:checked")]
      .map((box) => Number(box.value));
    await this.send(`/manage/api/users/${this.userId}`, changes, "saved");
  }

  /**
   * @param {string} action - the API verb after /manage/api/users/<id>/
   * @param {string} question - asked first when not empty
   */
  async act(action, question) {
    if (question && !window.confirm(question)) return;
    const answer = await this.send(`/manage/api/users/${this.userId}/${action}`, {}, "done");
    if (answer?.invitation) showInvitation(this.part("#panel-invite"), answer.user.username, answer.invitation);
  }

  /** @param {number[]|null} ids - UserSession ids, or null for all */
  async endSessions(ids) {
    const body = ids ? { sessions: ids } : {};
    await this.send(`/manage/api/users/${this.userId}/end-sessions`, body, "sessions ended");
  }

  /** @param {any} token */
  async revoke(token) {
    if (!window.confirm(`Revoke the token ${token.name}? Scripts using it stop working.`)) return;
    await this.send(`/manage/api/tokens/${token.id}/revoke`, {}, "token revoked");
  }

  /**
   * POST, then show the user as the server now has them and refresh the list.
   * @param {string} path
   * @param {object} body
   * @param {string} done - the status shown on success
   */
  async send(path, body, done) {
    const status = this.part("#panel-status");
    say(status, "…");
    const answer = await attempt(status, () => api(path, body));
    if (!answer) return undefined;
    say(status, done, "ok");
    const detail = answer.sessions ? answer : await api(`/manage/api/users/${this.userId}`);
    this.show(detail);
    await this.onChange();
    return answer;
  }
}
