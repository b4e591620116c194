/**
 * The audit filter form and the page's address kept in step: a search can be bookmarked,
 * reloaded and exported exactly as shown.
 */

/** The filter's fields, as the API names them. */
export const FILTERS = ["since", "until", "event_type", "user", "outcome", "study_instance_uid",
  "patient_id", "address", "text"];

/**
 * The filter in the form, as query parameters (empty fields left out).
 * @param {HTMLFormElement} form
 * @returns {URLSearchParams}
 */
export function filterOf(form) {
  const params = new URLSearchParams();
  for (const name of FILTERS) {
    const field = /** @type {HTMLInputElement|HTMLSelectElement} */ (form.elements.namedItem(name));
    if (field.value.trim()) params.set(name, field.value.trim());
  }
  return params;
}

/**
 * Fill the form from query parameters (the page's own, on load).
 * @param {HTMLFormElement} form
 * @param {URLSearchParams} params
 */
export function fillForm(form, params) {
  for (const name of FILTERS) {
    const field = /** @type {HTMLInputElement|HTMLSelectElement} */ (form.elements.namedItem(name));
    field.value = params.get(name) ?? "";
  }
}

/**
 * Keep the address bar and the export link on the current filter.
 * @param {URLSearchParams} params
 * @param {HTMLAnchorElement} exportLink
 */
export function publish(params, exportLink) {
  const query = params.toString();
  history.replaceState(null, "", query ? `?${query}` : location.pathname);
  exportLink.href = `/manage/api/audit.csv${query ? `?${query}` : ""}`;
}
