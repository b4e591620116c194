/**
 * What the nodes page asks a remote node and how it names the jobs: Study Root C-FIND keys
 * (PS3.4 C.6.2), retrieve requests and job summaries. Pure functions, no DOM.
 */

/** Keys returned for each study (STUDY level); the first seven are shown. */
export const STUDY_KEYS = ["PatientName", "PatientID", "StudyDate", "ModalitiesInStudy",
  "StudyDescription", "AccessionNumber", "NumberOfStudyRelatedInstances", "StudyInstanceUID"];

/** Keys returned for each series of a study (SERIES level); the first four are shown. */
export const SERIES_KEYS = ["SeriesNumber", "Modality", "SeriesDescription",
  "NumberOfSeriesRelatedInstances", "SeriesInstanceUID"];

/** @typedef {"move" | "get"} Method */
export const METHODS = /** @type {Method[]} */ (["move", "get"]);

/**
 * The keys of a SERIES-level query for one study: its unique key with a single value
 * (hierarchical query, PS3.4 C.4.1.2.2.1) and the keys to return.
 * @param {string} studyInstanceUid
 * @returns {Record<string, string>}
 */
export function seriesKeys(studyInstanceUid) {
  return { ...Object.fromEntries(SERIES_KEYS.map((k) => [k, ""])), StudyInstanceUID: studyInstanceUid };
}

/**
 * The body of POST /api/nodes/<AE>/retrieve: a study, or one of its series.
 * @param {string} method - "move" (C-MOVE) or "get" (C-GET)
 * @param {string} studyInstanceUid
 * @param {string} [seriesInstanceUid]
 * @returns {{method: Method, study_instance_uid: string, series_instance_uid?: string}}
 */
export function retrieveRequest(method, studyInstanceUid, seriesInstanceUid) {
  const body = {
    method: METHODS.includes(/** @type {Method} */ (method)) ? /** @type {Method} */ (method) : "move",
    study_instance_uid: studyInstanceUid,
  };
  return seriesInstanceUid ? { ...body, series_instance_uid: seriesInstanceUid } : body;
}

/**
 * Series in the order a reader expects: by Series Number (IS, so compared as numbers),
 * those without one last.
 * @param {Record<string, string>[]} matches
 * @returns {Record<string, string>[]}
 */
export function sortSeries(matches) {
  const number = (m) => {
    const n = m.SeriesNumber?.trim() ? Number(m.SeriesNumber) : NaN;
    return Number.isFinite(n) ? n : Number.MAX_VALUE;
  };
  return [...matches].sort((a, b) => number(a) - number(b));
}

/**
 * A job's parameters in a few words, e.g. "C-GET series 1.2.3".
 * @param {{kind: string, parameters: Record<string, any>}} job
 * @returns {string}
 */
export function describeJob({ kind, parameters: p }) {
  const target = p.series_instance_uid ? `series ${p.series_instance_uid}`
    : p.study_instance_uid ? `study ${p.study_instance_uid}` : "";
  if (kind === "retrieve") return `${p.method === "get" ? "C-GET" : "C-MOVE"} ${target}`;
  if (kind === "find") return `${p.level} query`;
  if (kind === "send") return `C-STORE ${target}`;
  return kind === "echo" ? "C-ECHO" : "";
}
