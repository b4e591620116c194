// Unit tests of the nodes page's pure helpers (node --test; run by tests/test_javascript.py).
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  SERIES_KEYS, describeJob, retrieveRequest, seriesKeys, sortSeries,
} from "../../frontend/js/nodes/queries.js";

const STUDY = "1.2.3";
const SERIES = "1.2.3.4";

test("a series query names its study with a single value and returns the series keys", () => {
  const keys = seriesKeys(STUDY);
  assert.equal(keys.StudyInstanceUID, STUDY);
  for (const k of SERIES_KEYS) assert.equal(keys[k], "");
});

test("a retrieve asks for a study or one series, by C-MOVE unless C-GET is chosen", () => {
  assert.deepEqual(retrieveRequest("get", STUDY), { method: "get", study_instance_uid: STUDY });
  assert.deepEqual(retrieveRequest("move", STUDY, SERIES),
    { method: "move", study_instance_uid: STUDY, series_instance_uid: SERIES });
  assert.equal(retrieveRequest("fetch", STUDY).method, "move");
});

test("series are ordered by number, those without a number last", () => {
  const sorted = sortSeries([{ SeriesNumber: "10" }, { SeriesNumber: "" }, { SeriesNumber: "2" },
    { SeriesNumber: "x" }, { SeriesNumber: " 3" }]);
  assert.deepEqual(sorted.map((s) => s.SeriesNumber), ["2", " 3", "10", "", "x"]);
});

test("jobs are described by method and level", () => {
  const retrieve = (p) => describeJob({ kind: "retrieve", parameters: p });
  assert.equal(retrieve({ method: "get", study_instance_uid: STUDY, series_instance_uid: SERIES }),
    `C-GET series ${SERIES}`);
  assert.equal(retrieve({ method: "move", study_instance_uid: STUDY }), `C-MOVE study ${STUDY}`);
  assert.equal(describeJob({ kind: "find", parameters: { level: "SERIES", keys: {} } }), "SERIES query");
  assert.equal(describeJob({ kind: "send", parameters: { study_instance_uid: STUDY } }), `C-STORE study ${STUDY}`);
  assert.equal(describeJob({ kind: "echo", parameters: {} }), "C-ECHO");
});
