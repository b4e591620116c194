/**
 * JSON requests to Lightbox's own API with the session cookie and CSRF token.
 * @param {string} path
 * @param {object} [body] - sent as JSON with POST when given
 * @returns {Promise<any>} the decoded JSON; throws an Error with the server's message
 */
export async function api(path, body) {
  const options = { credentials: "same-origin", headers: {} };
  if (body !== undefined) {
    options.method = "POST";
    options.headers["Content-Type"] = "application/json";
    options.headers["X-CSRFToken"] = csrfToken();
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.error || `${response.status} ${response.statusText}`);
  return data;
}

/** @returns {string} Django's CSRF token from its cookie */
export function csrfToken() {
  return document.cookie.split("; ").find((c) => c.startsWith("csrftoken="))?.split("=")[1] ?? "";
}
