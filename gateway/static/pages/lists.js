// Lists: upload a contact file (drag and drop or file picker) after a preview of its format and column mapping,
// watch the import (upload progress, then rows done / total), read its error report (a file-level failure first)
// and, for roles that may, scrub a list through the gate and export it. Uploaders see upload, imports and lists.
import { credentials } from "../api.js";
import { dateTime, has, number, reasonText, t } from "../i18n.js";
import {
  busy, call, can, download, ensureStyles, errorWords, field, h, say, section, table,
} from "./admin-kit.js";

const HEAD_BYTES = 256 * 1024; // the preview reads the head of the file only
const POLL_MS = 500;

export async function render(container, ctx) {
  ensureStyles();
  const page = h("div", { class: "page-admin", id: "lists-page" }, h("h1", { text: t("nav.lists") }));
  container.append(page);
  const state = { file: null, preview: null, timers: new Set(), gone: false };
  const imports = h("div", { id: "imports" });
  const lists = h("div", { id: "lists" });
  const report = h("div", { id: "import-report" });
  if (can(ctx, "lists.write")) page.append(uploadPanel(ctx, state, report, () => refresh()));
  page.append(section("lists.report_title", report));
  page.append(section("lists.imports_title", imports), section("lists.lists_title", lists));

  async function refresh() {
    const [im, li] = await Promise.all([call("/v1/imports"), call("/v1/lists")]);
    if (state.gone) return;
    imports.replaceChildren(im.ok ? importsTable(im.data.items, report) : errorLine(im.error));
    lists.replaceChildren(li.ok ? listsTable(ctx, li.data.items) : errorLine(li.error));
  }
  report.append(h("p", { class: "hint", text: t("lists.report_hint") }));
  await refresh();
  return () => {
    state.gone = true;
    for (const timer of state.timers) clearTimeout(timer);
  };
}

// An import's error (a row's or the whole file's) in the user's words: its reason code's text (import.CODE, or
// error.CODE for the file-level codes the API also answers), else the importer's own message (English).
const importText = (e) => {
  const code = e.reason || e.code;
  if (e.severity === "not_listed") {
    return t("import.not_listed", { n: number(e.count ?? 0), reason: has(`import.${code}`) ? t(`import.${code}`) : code });
  }
  if (has(`import.${code}`)) return t(`import.${code}`, { first_row: e.first_row ?? "?" });
  return has(`error.${code}`) ? t(`error.${code}`) : e.message;
};
const errorLine = (error) => h("p", { class: "note error", role: "alert", text: errorWords(error) });

// --- upload: choose, preview, import --------------------------------------------------------------------------

function uploadPanel(ctx, state, report, refresh) {
  const listInput = h("input", { id: "upload-list", name: "list", required: true, pattern: "[A-Za-z0-9_.-]{1,64}",
    autocomplete: "off", spellcheck: "false" });
  const regionInput = h("input", { id: "upload-region", name: "region", value: "FR", maxlength: "2", size: "3" });
  const picker = h("input", { id: "upload-file", type: "file", accept: ".csv,.tsv,.txt,text/csv,text/plain" });
  const drop = h("div", { class: "drop", id: "drop-zone", tabindex: "0" },
    h("p", { text: t("lists.drop_here") }), picker);
  const previewBox = h("div", { id: "preview" });
  const status = h("p", { class: "note", id: "upload-status" });
  const bar = h("div");
  const progress = h("div", { class: "progress", id: "upload-progress", hidden: true, role: "progressbar",
    "aria-valuemin": "0", "aria-valuemax": "100" }, bar);
  const counts = h("div", { class: "counts", id: "upload-counts" });
  const importButton = h("button", { id: "import-button", type: "button", disabled: true, text: t("lists.import") });

  async function choose(file) {
    if (!file) return;
    state.file = file;
    state.mapping = null;
    drop.querySelector("p").textContent = t("lists.chosen", { name: file.name, size: number(file.size) });
    await runPreview();
  }

  async function runPreview() {
    say(status, t("lists.previewing"), "");
    importButton.disabled = true;
    const form = new FormData();
    const truncated = state.file.size > HEAD_BYTES;
    form.append("region", regionInput.value.trim() || "FR");
    if (state.mapping) form.append("mapping", JSON.stringify(state.mapping));
    form.append("truncated", truncated ? "true" : "false");
    form.append("file", truncated ? state.file.slice(0, HEAD_BYTES) : state.file, state.file.name);
    const answer = await call("/v1/imports/preview", { method: "POST", body: form });
    if (!answer.ok) {
      state.preview = null;
      previewBox.replaceChildren(h("p", { class: "note error", role: "alert", id: "preview-problem",
        text: t("lists.file_refused", { message: errorWords(answer.error) }) }));
      say(status, "", "");
      return;
    }
    state.preview = answer.data;
    previewBox.replaceChildren(previewView(answer.data, (mapping) => {
      state.mapping = mapping;
      runPreview();
    }));
    say(status, answer.data.problem ? "" : t("lists.preview_ok"), answer.data.problem ? "" : "ok");
    importButton.disabled = Boolean(answer.data.problem) || !listInput.value.trim();
  }

  listInput.addEventListener("input", () => {
    importButton.disabled = !state.preview || Boolean(state.preview.problem) || !listInput.value.trim();
  });
  regionInput.addEventListener("change", () => { if (state.file) runPreview(); });
  picker.addEventListener("change", () => choose(picker.files[0]));
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    choose(event.dataTransfer.files[0]);
  });
  drop.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") picker.click();
  });

  importButton.addEventListener("click", () => busy(importButton, async () => {
    const form = new FormData();
    form.append("list", listInput.value.trim());
    form.append("region", regionInput.value.trim() || "FR");
    if (state.mapping) form.append("mapping", JSON.stringify(state.mapping));
    form.append("file", state.file, state.file.name);
    progress.hidden = false;
    const answer = await send(form, (fraction) => {
      setBar(bar, progress, fraction);
      say(status, t("lists.uploading", { percent: Math.round(100 * fraction) }), "");
    });
    if (!answer.ok) {
      say(status, errorWords(answer.error));
      progress.hidden = true;
      return;
    }
    if (answer.data.duplicate_of) say(status, t("lists.duplicate"), "");
    await follow(answer.data.id, state, { bar, progress, counts, status }, report);
    refresh();
  }));

  return section("lists.upload_title",
    h("div", { class: "form-row" }, field(t("lists.list_name"), listInput, t("lists.list_hint")),
      field(t("lists.region"), regionInput, t("lists.region_hint"))),
    drop, previewBox,
    h("div", { class: "actions-row" }, importButton), progress, counts, status);
}

// multipart upload with progress (fetch cannot report upload progress): XMLHttpRequest, same credentials.
function send(form, onProgress) {
  return new Promise((resolve) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/v1/imports");
    if (credentials.token) xhr.setRequestHeader("Authorization", `Bearer ${credentials.token}`);
    else if (credentials.csrf) xhr.setRequestHeader("X-CSRF-Token", credentials.csrf);
    xhr.upload.addEventListener("progress", (e) => { if (e.lengthComputable) onProgress(e.loaded / e.total); });
    xhr.addEventListener("load", () => {
      let body = {};
      try { body = JSON.parse(xhr.responseText); } catch (e) { /* not JSON */ }
      if (xhr.status === 202) resolve({ ok: true, data: body });
      else resolve({ ok: false, error: body.error || { message: `HTTP ${xhr.status}` } });
    });
    xhr.addEventListener("error", () => resolve({ ok: false, error: { message: t("lists.network_error") } }));
    xhr.send(form);
  });
}

function setBar(bar, progress, fraction) {
  const pct = Math.max(0, Math.min(100, Math.round(100 * fraction)));
  bar.style.width = `${pct}%`;
  progress.setAttribute("aria-valuenow", String(pct));
}

// Poll the import until it is committed or failed: live row counts, then its report.
function follow(id, state, ui, report) {
  return new Promise((resolve) => {
    const tick = async () => {
      if (state.gone) return resolve();
      const answer = await call(`/v1/imports/${encodeURIComponent(id)}`);
      if (!answer.ok) {
        say(ui.status, errorWords(answer.error));
        return resolve();
      }
      const imp = answer.data;
      const total = imp.rows_total || 0;
      ui.progress.hidden = false;
      setBar(ui.bar, ui.progress, total ? imp.rows_done / total : 0);
      ui.counts.replaceChildren(
        h("span", {}, t("lists.rows_done"), " ", h("b", { "data-count": "rows_done", text: number(imp.rows_done) }),
          " / ", h("b", { "data-count": "rows_total", text: number(total) })),
        h("span", {}, t("lists.status"), " ", h("span", { class: `badge ${imp.status}`, id: "import-status",
          text: t(`lists.state.${imp.status}`) })));
      if (imp.status === "committed" || imp.status === "failed") {
        say(ui.status, imp.status === "committed" ? t("lists.done") : t("lists.failed"),
          imp.status === "committed" ? "ok" : "error");
        await showReport(id, report);
        return resolve();
      }
      const timer = setTimeout(() => {
        state.timers.delete(timer);
        tick();
      }, POLL_MS);
      state.timers.add(timer);
    };
    tick();
  });
}

// --- preview ---------------------------------------------------------------------------------------------------

function previewView(data, remap) {
  const fmt = data.format;
  const choices = ["ignore", ...data.fields];
  const selects = data.columns.map((column) => h("select", { "data-column": column.index,
    "aria-label": t("lists.field_for", { column: column.name }) },
  choices.map((f) => h("option", { value: f, selected: f === column.field, text: fieldName(f) }))));
  const apply = h("button", { type: "button", id: "apply-mapping", text: t("lists.apply_mapping"), onclick: () => {
    const columns = {};
    data.columns.forEach((column, i) => { columns[`#${column.index + 1}`] = selects[i].value; });
    remap({ columns, header: data.has_header });
  } });
  const mapping = table([
    { key: "name", label: t("lists.column"), render: (c) => c.name },
    { key: "field", label: t("lists.field"), render: (c) => selects[data.columns.indexOf(c)] },
  ], data.columns);
  const shown = data.columns.filter((c) => c.field !== "ignore");
  const rows = data.rows.length ? table([
    { key: "row", label: t("lists.row") },
    ...shown.map((c) => ({ key: c.name, label: c.name, render: (r) => r.cells[c.name] ?? "" })),
    { key: "imported", label: t("lists.outcome"), render: (r) => h("span", {},
      h("span", { class: `badge ${r.imported ? "ok" : "bad"}`, text: r.imported ? t("lists.will_import")
        : t("lists.will_reject") }),
      r.errors.map((e) => h("div", { class: "hint" }, e.column, ": ", importText(e)))) },
  ], data.rows) : null;
  return h("div", { class: "preview", id: "preview-view" },
    h("h3", { text: t("lists.detected") }),
    h("p", { id: "preview-format", text: t("lists.format_line", { encoding: fmt.encoding,
      delimiter: t(`lists.delimiter.${fmt.delimiter_name}`), header: data.has_header ? t("lists.with_header")
        : t("lists.without_header") }) }),
    data.truncated ? h("p", { class: "hint", text: t("lists.head_only") }) : null,
    data.problem ? h("p", { class: "note error", role: "alert", id: "preview-problem",
      text: importText(data.problem) }) : null,
    h("h3", { text: t("lists.mapping") }), mapping, h("div", { class: "actions-row" }, apply),
    rows ? h("h3", { text: t("lists.first_rows") }) : null, rows);
}

function fieldName(name) {
  const key = `lists.fieldname.${name}`;
  const text = t(key);
  return text === key ? name : text;
}

// --- report, imports, lists --------------------------------------------------------------------------------------

async function showReport(id, report) {
  const answer = await call(`/v1/imports/${encodeURIComponent(id)}/report`);
  if (!answer.ok) {
    report.replaceChildren(errorLine(answer.error));
    return;
  }
  const r = answer.data;
  const s = r.summary || {};
  const figures = r.status === "committed" ? h("div", { class: "counts", id: "report-counts" },
    ["rows_read", "valid", "invalid", "duplicates", "contacts_added"].map((k) => h("span", {},
      t(`lists.sum.${k}`), " ", h("b", { "data-sum": k, text: number(s[k] || 0) })))) : null;
  const entries = table([
    { key: "row", label: t("lists.row"), render: (e) => (e.severity === "file" ? t("lists.whole_file") : e.row ?? "") },
    { key: "column", label: t("lists.column") },
    { key: "value", label: t("lists.value"), class: "any" },
    { key: "severity", label: t("lists.severity"), render: (e) => h("span", { class: `badge ${e.severity}`,
      text: t(`lists.sev.${e.severity}`) }) },
    { key: "message", label: t("lists.message"), render: (e) => h("span", {}, importText(e), " ",
      h("code", { text: e.reason })) },
  ], r.items, { empty: t("lists.no_errors") });
  const csv = h("button", { type: "button", id: "report-csv", text: t("lists.download_report"), onclick: (ev) =>
    busy(ev.currentTarget, () => download(`/v1/imports/${encodeURIComponent(id)}/errors`,
      `import-${id}-errors.csv`)) });
  report.replaceChildren(...[
    h("p", {}, h("b", { text: r.file_name || r.id }), " → ", r.list || "", " ",
      h("span", { class: `badge ${r.status}`, text: t(`lists.state.${r.status}`) })),
    figures, entries, r.more ? h("p", { class: "hint", text: t("lists.more_in_csv") }) : null,
    h("div", { class: "actions-row" }, csv)].filter(Boolean));
}

function importsTable(items, report) {
  return table([
    { key: "file_name", label: t("lists.file") },
    { key: "list", label: t("lists.list") },
    { key: "status", label: t("lists.status"), render: (i) => h("span", { class: `badge ${i.status}`,
      text: t(`lists.state.${i.status}`) }) },
    { key: "rows", label: t("lists.rows"), render: (i) => `${number(i.rows_done)} / ${number(i.rows_total)}` },
    { key: "created_at", label: t("lists.when"), render: (i) => (i.created_at ? dateTime(i.created_at) : "") },
    { key: "id", label: "", render: (i) => h("button", { type: "button", "data-report": i.id,
      text: t("lists.show_report"), onclick: () => showReport(i.id, report) }) },
  ], items, { empty: t("lists.no_imports") });
}

function listsTable(ctx, items) {
  const scrubBox = h("div", { id: "scrub" });
  const view = table([
    { key: "id", label: t("lists.list") },
    { key: "contacts", label: t("lists.contacts"), render: (l) => number(l.contacts || 0) },
    { key: "updated_at", label: t("lists.when"), render: (l) => (l.updated_at ? dateTime(l.updated_at) : "") },
    { key: "actions", label: "", render: (l) => h("span", {},
      can(ctx, "gate.check") ? h("button", { type: "button", "data-scrub": l.id, text: t("lists.scrub"),
        onclick: (ev) => busy(ev.currentTarget, () => scrub(l.id, scrubBox)) }) : null,
      can(ctx, "exports.create") ? h("button", { type: "button", "data-export": l.id, text: t("lists.export"),
        onclick: (ev) => busy(ev.currentTarget, async () => {
          const done = await download(`/v1/exports/contacts?list=${encodeURIComponent(l.id)}`, `contacts-${l.id}.csv`);
          if (!done.ok) say(scrubBox, errorWords(done.error));
        }) }) : null) },
  ], items, { empty: t("lists.no_lists") });
  return h("div", {}, view, scrubBox);
}

async function scrub(listId, box) {
  const answer = await call(`/v1/lists/${encodeURIComponent(listId)}/scrub`);
  if (!answer.ok) {
    box.replaceChildren(errorLine(answer.error));
    return;
  }
  const s = answer.data;
  const reasons = (byReason) => h("ul", { class: "reasons" }, Object.entries(byReason || {}).map(([code, n]) =>
    h("li", {}, `${reasonText(code) === code ? code : reasonText(code)}: ${number(n)} `, h("code", { text: code }))));
  box.replaceChildren(h("div", { class: "panel-card", id: "scrub-result" },
    h("h3", { text: t("lists.scrub_of", { list: listId }) }),
    h("div", { class: "counts" },
      h("span", {}, t("lists.scrub_now"), " ", h("b", { "data-scrub-count": "now", text: number(s.now) })),
      h("span", {}, t("lists.scrub_later"), " ", h("b", { "data-scrub-count": "later", text: number(s.later) })),
      h("span", {}, t("lists.scrub_never"), " ", h("b", { "data-scrub-count": "never", text: number(s.never) }))),
    Object.keys(s.later_by_reason || {}).length ? h("h3", { text: t("lists.scrub_later_why") }) : null,
    reasons(s.later_by_reason),
    Object.keys(s.never_by_reason || {}).length ? h("h3", { text: t("lists.scrub_never_why") }) : null,
    reasons(s.never_by_reason),
    h("div", { class: "actions-row" }, h("button", { type: "button", text: t("lists.download_scrub"),
      onclick: (ev) => busy(ev.currentTarget, () => download(`/v1/lists/${encodeURIComponent(listId)}/scrub/report`,
        `scrub-${listId}.csv`)) }))));
}
