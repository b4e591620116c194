/**
 * An invitation link, shown once to the administrator who made it, with a copy button.
 */
import { button, el, when } from "./dom.js";

/**
 * @param {HTMLElement} container - replaced by the link
 * @param {string} username
 * @param {{url: string, expires_at: string}} invitation
 */
export function showInvitation(container, username, invitation) {
  const input = /** @type {HTMLInputElement} */ (
    el("input", { value: invitation.url, readOnly: true, "aria-label": "Invitation link" }));
  const copy = button("Copy", async () => {
    input.select();
    try {
      await navigator.clipboard.writeText(input.value);
    } catch {
      document.execCommand("copy"); // plain-HTTP pages have no clipboard API
    }
    copy.textContent = "Copied";
  });
  container.replaceChildren(el("div", { className: "invite", "data-testid": "invitation" },
    el("p", {}, `Give this link to ${username}. It works once, until ${when(invitation.expires_at)},`
      + " and is not shown again."),
    el("div", { className: "link" }, input, copy)));
}
