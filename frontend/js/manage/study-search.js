/**
 * A small study search for the share form: finds studies by patient name, patient ID,
 * accession number or UID, and hands the chosen one's Study Instance UID to a callback.
 */
import { api } from "../net/api.js";
import { attempt, button, cell, day, row, say } from "./dom.js";

/**
 * @param {HTMLFormElement} form - with an input named "q"
 * @param {HTMLTableElement} table - results go in its tbody
 * @param {HTMLElement} status
 * @param {(study: any) => void} onChoose
 */
export function studySearch(form, table, status, onChoose) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const q = String(new FormData(form).get("q") ?? "").trim();
    if (!q) return;
    say(status, "searching…");
    const found = await attempt(status, () => api(`/manage/api/studies?q=${encodeURIComponent(q)}`));
    if (!found) return;
    say(status, found.studies.length ? `${found.studies.length} found` : "no study matches");
    table.hidden = !found.studies.length;
    table.tBodies[0].replaceChildren(...found.studies.map((s) => row([
      s.patient_name.replaceAll("^", " "), s.patient_id, day(s.study_date), s.study_description,
      s.accession_number, s.modalities_in_study.replaceAll("\\", ", "),
      cell(button("Choose", () => onChoose(s), "link"))])));
  });
}
