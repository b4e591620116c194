/**
 * The DICOM tag browser: the shown instance's header as rows, filtered as you type.
 * Values are set as text, never markup.
 */

const panel = /** @type {HTMLElement} */ (document.querySelector("#tags"));
const search = /** @type {HTMLInputElement} */ (document.querySelector("#tag-search"));
const body = /** @type {HTMLElement} */ (document.querySelector("#tag-rows"));
let rows = [];

/**
 * Show (or refresh) the tags of an instance.
 * @param {string} studyUid
 * @param {string} sopUid
 */
export async function showTags(studyUid, sopUid) {
  panel.hidden = false;
  body.replaceChildren(row(["", "Loading…", "", ""], 0));
  const url = `/api/studies/${encodeURIComponent(studyUid)}/instances/${encodeURIComponent(sopUid)}/tags`;
  const response = await fetch(url, { credentials: "same-origin" });
  if (!response.ok) {
    body.replaceChildren(row(["", "The tags cannot be shown.", "", ""], 0));
    return;
  }
  rows = (await response.json()).tags;
  filter();
}

export function hideTags() {
  panel.hidden = true;
}

export function tagsShown() {
  return !panel.hidden;
}

function filter() {
  const needle = search.value.trim().toLowerCase();
  const shown = rows.filter((r) => !needle
    || `${r.tag} ${r.name} ${r.value}`.toLowerCase().includes(needle));
  body.replaceChildren(...shown.map((r) => row([r.tag, r.name, r.vr, r.value], r.depth)));
}

/** @param {string[]} cells @param {number} depth */
function row(cells, depth) {
  const tr = document.createElement("tr");
  cells.forEach((text, i) => {
    const td = document.createElement("td");
    td.textContent = text;
    if (i === 1 && depth) td.style.paddingLeft = `${depth * 0.8}rem`;
    tr.append(td);
  });
  return tr;
}

search.addEventListener("input", filter);
document.querySelector("#tags-close")?.addEventListener("click", hideTags);
