/**
 * Small DOM helpers for the manage pages. Every value becomes text (textContent or text
 * nodes, never markup): names, UIDs and audit details come from users and from the network.
 */

/**
 * @param {string} tag
 * @param {Record<string, any>} [props] - element properties (className, type, value, ...);
 *   "aria-*" and "data-*" keys are set as attributes
 * @param {...(Node|string|number|null|undefined)} children - strings become text nodes
 * @returns {HTMLElement}
 */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key.startsWith("aria-") || key.startsWith("data-")) node.setAttribute(key, String(value));
    else node[key] = value;
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

/**
 * A table cell.
 * @param {Node|string|number|null|undefined} content
 * @param {string} [className]
 * @returns {HTMLTableCellElement}
 */
export function cell(content, className = "") {
  return /** @type {HTMLTableCellElement} */ (el("td", { className }, content ?? ""));
}

/**
 * A table row; plain values become cells, cells are kept as they are.
 * @param {Array<Node|string|number|null|undefined>} values
 * @param {string} [className]
 * @returns {HTMLTableRowElement}
 */
export function row(values, className = "") {
  const cells = values.map((v) => (v instanceof HTMLTableCellElement ? v : cell(v)));
  return /** @type {HTMLTableRowElement} */ (el("tr", { className }, ...cells));
}

/**
 * @param {string} label
 * @param {(event: Event) => any} onClick
 * @param {string} [className]
 * @returns {HTMLButtonElement}
 */
export function button(label, onClick, className = "") {
  const node = /** @type {HTMLButtonElement} */ (el("button", { type: "button", className }, label));
  node.addEventListener("click", onClick);
  return node;
}

/**
 * A small coloured label.
 * @param {string} text
 * @param {""|"good"|"warn"|"bad"} [kind]
 */
export function badge(text, kind = "") {
  return el("span", { className: `badge ${kind}` }, text);
}

/** @param {string|null|undefined} iso @returns {string} local date and time, or "—" */
export function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "—";
}

/** @param {string|null|undefined} iso @returns {string} local date, or "—" */
export function day(iso) {
  return iso ? new Date(iso).toLocaleDateString() : "—";
}

/**
 * Show a status message.
 * @param {HTMLElement} node
 * @param {string} message
 * @param {""|"ok"|"error"} [kind]
 */
export function say(node, message, kind = "") {
  node.textContent = message;
  node.classList.toggle("ok", kind === "ok");
  node.classList.toggle("error", kind === "error");
}

/**
 * Run `work`; show its error's message in `status` instead of throwing.
 * @template T
 * @param {HTMLElement} status
 * @param {() => Promise<T>} work
 * @returns {Promise<T|undefined>}
 */
export async function attempt(status, work) {
  try {
    return await work();
  } catch (error) {
    say(status, error instanceof Error ? error.message : String(error), "error");
    return undefined;
  }
}

/**
 * A form's values: checkboxes as booleans, everything else as the text typed.
 * @param {HTMLFormElement} form
 * @returns {Record<string, string|boolean>}
 */
export function values(form) {
  /** @type {Record<string, string|boolean>} */
  const result = {};
  for (const field of form.elements) {
    if (!(field instanceof HTMLInputElement || field instanceof HTMLSelectElement) || !field.name) continue;
    result[field.name] = field instanceof HTMLInputElement && field.type === "checkbox"
      ? field.checked : field.value;
  }
  return result;
}

/**
 * @param {string} selector
 * @returns {any} the element (the pages are static, so it exists)
 */
export const $ = (selector) => document.querySelector(selector);
