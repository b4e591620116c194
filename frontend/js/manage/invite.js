/**
 * The invitation page: the holder of a one-time link chooses their password. The link's
 * token is in the page's own path, and the account endpoint sits just below it.
 */
import { api } from "../net/api.js";
import { $, say } from "./dom.js";

const account = `${location.pathname.replace(/\/$/, "")}/account`;

async function welcome() {
  const invitee = await api(account);
  $("#set-password input[name=username]").value = invitee.username;
  const name = invitee.first_name ? `, ${invitee.first_name}` : "";
  $("#welcome").textContent = `Welcome${name}. Your username is ${invitee.username}: `
    + "choose a password to finish setting up your account.";
}

/** @param {SubmitEvent} event */
async function submit(event) {
  event.preventDefault();
  const data = new FormData(/** @type {HTMLFormElement} */ (event.target));
  const error = $("#invite-error");
  if (data.get("password") !== data.get("confirm")) {
    say(error, "The two passwords differ.", "error");
    return;
  }
  try {
    const done = await api(account, { password: String(data.get("password")) });
    location.assign(done.next);
  } catch (failure) {
    say(error, failure instanceof Error ? failure.message : String(failure), "error");
  }
}

$("#set-password").addEventListener("submit", submit);
try {
  await welcome();
} catch (failure) {
  say($("#invite-error"), failure instanceof Error ? failure.message : String(failure), "error");
  $("#set-password").hidden = true;
}
