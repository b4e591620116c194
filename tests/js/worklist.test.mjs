// Unit tests of the worklist's pure helpers (node --test; run by tests/test_javascript.py).
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  DEFAULT_SORT, hasNext, isoDate, modalities, nextSort, personName, presetRange, queryFor, rangeText, shortTime,
} from "../../frontend/js/worklist/search.js";
import { describe, summarize } from "../../frontend/js/worklist/upload.js";

const NOW = new Date(2026, 0, 1, 0, 30); // just after midnight, local time, on a year boundary

test("date presets are local calendar days", () => {
  assert.deepEqual(presetRange("today", NOW), { from: "2026-01-01", to: "2026-01-01" });
  assert.deepEqual(presetRange("yesterday", NOW), { from: "2025-12-31", to: "2025-12-31" });
  assert.deepEqual(presetRange("week", NOW), { from: "2025-12-26", to: "2026-01-01" });
  assert.equal(presetRange("", NOW), null);
  assert.equal(isoDate(new Date(2024, 1, 29)), "2024-02-29");
});

test("the query holds only the fields filled, trimmed, and the page", () => {
  const query = queryFor({
    fields: { name: "  doe ", patient_id: "", accession: "A1", modality: "CT", description: "" },
    when: "yesterday", sort: DEFAULT_SORT, offset: 0,
  }, NOW);
  assert.equal(query.toString(), "name=doe&accession=A1&modality=CT&date_from=2025-12-31&date_to=2025-12-31&limit=50");
});

test("a custom range passes either end alone; sort and offset only when not the default", () => {
  const query = queryFor({ fields: { date_from: "", date_to: "2024-01-31" }, when: "custom", sort: "patient_name", offset: 100 }, NOW);
  assert.equal(query.toString(), "date_to=2024-01-31&sort=patient_name&offset=100&limit=50");
});

test("clicking a header sorts dates and counts newest/largest first, names A→Z, then flips", () => {
  assert.equal(nextSort("-study_date", "study_date"), "study_date");
  assert.equal(nextSort("study_date", "study_date"), "-study_date");
  assert.equal(nextSort("-study_date", "patient_name"), "patient_name");
  assert.equal(nextSort("patient_name", "images"), "-images");
});

test("person names read as people write them", () => {
  assert.equal(personName("Buc^Jérôme"), "Buc, Jérôme");
  assert.equal(personName("Doe^John^Q^Dr^Jr"), "Doe, Dr John Q Jr");
  assert.equal(personName("Yamada^Tarou=山田^太郎=やまだ^たろう"), "Yamada, Tarou = 山田, 太郎 = やまだ, たろう");
  assert.equal(personName("ANONYMOUS"), "ANONYMOUS");
  assert.equal(personName("^^^^"), "");
  assert.equal(personName(null), "");
  assert.equal(personName("<script>^x"), "<script>, x"); // text: the page sets it with textContent
});

test("times, modalities and the page range", () => {
  assert.equal(shortTime("10:15:00"), "10:15");
  assert.equal(shortTime(null), "");
  assert.equal(modalities("CT\\PT\\SR"), "CT, PT, SR");
  assert.equal(rangeText(0, 50, 123456), "1–50 of 123,456");
  assert.equal(rangeText(0, 0, 0), "no studies");
  assert.equal(rangeText(950, 50, 1000, false), "951–1,000 of 1,000+");
  assert.equal(rangeText(5000, 50, 1000, false), "5,001–5,050 of 5,050+");
  assert.equal(rangeText(100, 0, 100), "no studies past 100");
});

test("a next page exists while the page is full and the count says more, or stopped counting", () => {
  assert.equal(hasNext(0, 50, 55, true, 50), true);
  assert.equal(hasNext(50, 5, 55, true, 50), false);
  assert.equal(hasNext(0, 50, 50, true, 50), false);
  assert.equal(hasNext(5000, 50, 1000, false, 50), true);
});

test("upload lines are described in words and counted for the summary", () => {
  assert.equal(describe({ status: "stored", reason: "" }), "stored");
  assert.equal(describe({ status: "skipped", reason: "not a DICOM file: no preamble" }), "not stored: not a DICOM file: no preamble");
  assert.equal(describe({ status: "received" }), "received, indexing…");
  const lines = ["stored", "replaced", "duplicate", "received", "skipped", "quarantined", "failed"].map((status) => ({ status }));
  assert.deepEqual(summarize(lines), { stored: 2, duplicate: 1, indexing: 1, notStored: 3 });
});
