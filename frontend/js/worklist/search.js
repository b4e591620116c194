/**
 * The worklist's search, as pure functions: form values → the /api/studies query, date
 * presets, and how DICOM values are written in a row. No DOM here (tests/js runs these).
 */

export const DEFAULT_SORT = "-study_date";
export const PAGE_SIZE = 50;
const TEXT_FIELDS = ["name", "patient_id", "accession", "description", "modality"];

/** @param {Date} day @returns {string} YYYY-MM-DD in the browser's time zone */
export function isoDate(day) {
  const pad = (n) => String(n).padStart(2, "0");
  return `${day.getFullYear()}-${pad(day.getMonth() + 1)}-${pad(day.getDate())}`;
}

/**
 * The study date range of a preset, in local dates.
 * @param {string} preset - "today", "yesterday", "week" (the last 7 days, today included)
 * @param {Date} now
 * @returns {{from: string, to: string} | null}
 */
export function presetRange(preset, now = new Date()) {
  const day = (offset) => isoDate(new Date(now.getFullYear(), now.getMonth(), now.getDate() + offset));
  switch (preset) {
    case "today": return { from: day(0), to: day(0) };
    case "yesterday": return { from: day(-1), to: day(-1) };
    case "week": return { from: day(-6), to: day(0) };
    default: return null;
  }
}

/**
 * The query string for a search state.
 * @param {{fields: Record<string, string>, when: string, sort: string, offset: number}} state
 * @param {Date} now
 * @returns {URLSearchParams}
 */
export function queryFor(state, now = new Date()) {
  const query = new URLSearchParams();
  for (const key of TEXT_FIELDS) {
    const value = (state.fields[key] ?? "").trim();
    if (value) query.set(key, value);
  }
  const range = state.when === "custom"
    ? { from: state.fields.date_from ?? "", to: state.fields.date_to ?? "" }
    : presetRange(state.when, now);
  if (range?.from) query.set("date_from", range.from);
  if (range?.to) query.set("date_to", range.to);
  if (state.sort && state.sort !== DEFAULT_SORT) query.set("sort", state.sort);
  if (state.offset > 0) query.set("offset", String(state.offset));
  query.set("limit", String(PAGE_SIZE));
  return query;
}

/**
 * The next sort when a column header is clicked: a new column sorts descending for dates
 * and counts (newest, largest first) and ascending for names; the same column flips.
 * @param {string} current - e.g. "-study_date"
 * @param {string} column - e.g. "patient_name"
 */
export function nextSort(current, column) {
  if (current.replace(/^-/, "") === column) return current.startsWith("-") ? column : `-${column}`;
  return ["study_date", "birth_date", "series", "images", "received"].includes(column)
    ? `-${column}` : column;
}

/**
 * A DICOM person name (PS3.5 §6.2.1) as people write it: "Family, Given Middle", the
 * alphabetic group first, then the others after " = ".
 * @param {string | null | undefined} value
 */
export function personName(value) {
  if (!value) return "";
  return value.split("=").map((group) => {
    const [family = "", given = "", middle = "", prefix = "", suffix = ""] = group.split("^");
    const first = [prefix, given, middle].filter(Boolean).join(" ");
    const name = [family, first].filter(Boolean).join(", ");
    return [name, suffix].filter(Boolean).join(" ");
  }).filter(Boolean).join(" = ");
}

/** "HH:MM:SS" → "HH:MM"; null → "". */
export function shortTime(value) {
  return value ? value.slice(0, 5) : "";
}

/** Backslash-separated modalities as "CT, PT". */
export function modalities(value) {
  return value ? value.split("\\").filter(Boolean).join(", ") : "";
}

/**
 * "1–50 of 1,234", or "1–50 of 1,000+" when the server stopped counting (total_exact false).
 * @param {number} offset @param {number} shown @param {number} total @param {boolean} exact
 */
export function rangeText(offset, shown, total, exact = true) {
  const format = (n) => n.toLocaleString("en");
  if (shown === 0) return offset === 0 ? "no studies" : `no studies past ${format(offset)}`;
  const of = exact ? format(total) : `${format(Math.max(total, offset + shown))}+`;
  return `${format(offset + 1)}–${format(offset + shown)} of ${of}`;
}

/** Whether a page follows the one shown. */
export function hasNext(offset, shown, total, exact, pageSize) {
  return shown === pageSize && (!exact || offset + shown < total);
}
