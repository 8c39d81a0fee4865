// Create or edit a campaign: lists, queue or AI endpoint, pacing mode and limits, caller ID, recording, retry rules,
// and its schedule: when it starts (starts_at) and its own calling windows (schedule_windows: days, from, until, in
// each called person's local time; the gate's legal hours apply on top).
// Fields are checked here first, with messages in words in the user's language; the API checks everything again
// and its refusals (a list that does not exist, a caller ID the rules reject...) are shown next to the field named.
import { apiError, errorMessage, getJson, sendJson } from "../api.js";
import { EDITABLE, h } from "../dom.js";
import { currentZone, number, t } from "../i18n.js";
import { instantIn, wallTimeIn } from "../zones.js";
import { navigate } from "../router.js";

const PURPOSES = ["telemarketing", "informational", "debt_collection", "survey", "political", "charity"];
const AUDIENCES = ["consumer", "business"];
const VOICES = ["human", "artificial"];
const MODES = ["progressive", "power", "predictive", "agentless"];
const RETRYABLE = ["busy", "no_answer", "congestion", "failed", "abandoned", "machine", "unknown"];
const CALLER_ID = /^\+[1-9][0-9]{6,14}$/;
const QUEUE = /^[A-Za-z0-9_-]{1,80}$/;
const DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]; // dialer/campaigns.py DAYS
const HHMM = /^([01][0-9]|2[0-3]):[0-5][0-9]$/;
const MAX_WINDOWS = 50; // CONFIG_SCHEMA schedule_windows maxItems

// One calling window: its days (check boxes), from and until (HH:MM), a remove button and its own error line.
function windowRow(win, onRemove) {
  const row = h("div", { class: "window", dataset: { window: "" } },
    h("div", { class: "days" }, DAYS.map((d) => h("label", { class: "check day" },
      h("input", { type: "checkbox", name: "window-day", value: d, checked: (win.days || []).includes(d) }),
      ` ${t(`day.${d}`)}`))),
    h("label", { class: "time" }, h("span", {}, t("field.schedule_windows.start")),
      h("input", { type: "time", name: "window-start", value: win.start || "", step: 60 })),
    h("label", { class: "time" }, h("span", {}, t("field.schedule_windows.end")),
      h("input", { type: "time", name: "window-end", value: win.end || "", step: 60 })),
    h("button", { type: "button", class: "remove-window", onclick: () => onRemove(row) }, t("form.window_remove")),
    h("p", { class: "field-error window-error", role: "alert" }));
  return row;
}

function fieldRow(name, label, input, hint) {
  return h("div", { class: "field", dataset: { for: name } },
    h("label", { for: `f-${name}` }, label), input,
    hint ? h("small", { class: "muted" }, hint) : null,
    h("p", { class: "field-error", id: `e-${name}`, role: "alert" }));
}

function choice(name, values, current, label) {
  return h("select", { id: `f-${name}`, name }, values.map((v) => h("option", { value: v, selected: v === current },
    label(v))));
}

function input(name, value, attrs = {}) {
  return h("input", { id: `f-${name}`, name, value: value ?? "", ...attrs });
}

export async function render(view, ctx, params) {
  const editing = Boolean(params.id);
  let campaign = {};
  let lists = [];
  try {
    [campaign, lists] = await Promise.all([
      editing ? getJson(`/v1/campaigns/${encodeURIComponent(params.id)}`) : Promise.resolve({}),
      getJson("/v1/lists").then((r) => r.items),
    ]);
  } catch (e) {
    view.append(h("p", { class: "error", role: "alert" }, e.message));
    return;
  }
  const c = { purpose: "telemarketing", audience: "consumer", voice: "human", agent_kind: "queue",
    pacing_mode: "progressive", pacing_ratio: 2, abandon_cap: 0.03, abandon_guard_minutes: 0, max_attempts: 3,
    recording: false, amd: false, retry_rules: {}, lists: [], schedule_windows: [], ...campaign };
  view.append(h("h2", {}, editing ? `${t("nav.campaign_edit")}: ${c.name}` : t("nav.campaign_new")));
  if (editing && !EDITABLE.includes(c.status)) {
    view.append(h("p", { class: "error", role: "alert" }, t("form.not_editable", { status: t(`status.${c.status}`) })));
    return;
  }

  const listBoxes = lists.map((l) => h("label", { class: "check" },
    h("input", { type: "checkbox", name: "lists", value: l.id, checked: c.lists.includes(l.id) }),
    ` ${l.id} `, h("small", { class: "muted" }, t("field.lists.contacts", { n: number(l.contacts || 0) }))));
  // A list the campaign names but the tenant no longer has: shown, so the refusal can name it.
  for (const missing of c.lists.filter((x) => !lists.some((l) => l.id === x))) {
    listBoxes.push(h("label", { class: "check" }, h("input", { type: "checkbox", name: "lists", value: missing,
      checked: true }), ` ${missing}`));
  }
  const kind = h("div", { class: "radios", id: "f-agent_kind" }, ["queue", "ai"].map((k) => h("label", { class: "check" },
    h("input", { type: "radio", name: "agent_kind", value: k, checked: c.agent_kind === k }),
    ` ${t(`field.agent_kind.${k}`)}`)));
  const retry = h("div", { class: "retry-grid", id: "f-retry_rules" }, RETRYABLE.map((d) => h("label", {},
    h("span", {}, t(`outcome.${d}`)),
    h("input", { type: "number", min: 1, max: 43200, step: 1, name: `retry-${d}`, id: `f-retry-${d}`,
      value: c.retry_rules[d] ?? "", inputmode: "numeric" }))));

  const windows = h("div", { class: "windows", id: "f-schedule_windows" });
  const removeWindow = (row) => {
    row.remove();
    addWindow.hidden = windows.childElementCount >= MAX_WINDOWS;
  };
  const addWindow = h("button", { type: "button", id: "add-window", onclick: () => {
    windows.append(windowRow({ days: ["mon", "tue", "wed", "thu", "fri"] }, removeWindow));
    windows.lastElementChild.querySelector('input[name="window-start"]').focus();
    addWindow.hidden = windows.childElementCount >= MAX_WINDOWS;
  } }, t("form.window_add"));
  for (const win of c.schedule_windows) windows.append(windowRow(win, removeWindow));
  const zone = c.time_zone || currentZone();
  const startsAt = input("starts_at", c.starts_at ? wallTimeIn(c.starts_at, zone) : "", { type: "datetime-local" });

  const form = h("form", { id: "campaign-form", class: "form", novalidate: true },
    h("fieldset", {}, h("legend", {}, t("field.name")),
      fieldRow("name", t("field.name"), input("name", c.name, { maxlength: 200, required: true })),
      fieldRow("purpose", t("field.purpose"), choice("purpose", PURPOSES, c.purpose, (v) => t(`purpose.${v}`))),
      fieldRow("audience", t("field.audience"), choice("audience", AUDIENCES, c.audience, (v) => t(`audience.${v}`))),
      fieldRow("voice", t("field.voice"), choice("voice", VOICES, c.voice, (v) => t(`voice.${v}`))),
      fieldRow("seller_name", t("field.seller_name"), input("seller_name", c.seller_name, { maxlength: 200 })),
      fieldRow("caller_id", t("field.caller_id"), input("caller_id", c.caller_id,
        { inputmode: "tel", placeholder: "+33162000000", autocomplete: "off" }))),
    h("fieldset", {}, h("legend", {}, t("field.lists")),
      fieldRow("lists", t("field.lists"), h("div", { class: "checks", id: "f-lists" },
        listBoxes.length ? listBoxes : h("p", { class: "muted" }, t("field.lists.none"))))),
    h("fieldset", {}, h("legend", {}, t("field.agent_kind")),
      fieldRow("agent_kind", t("field.agent_kind"), kind),
      fieldRow("queue", t("field.queue"), input("queue", c.queue, { autocomplete: "off" })),
      fieldRow("ai_endpoint", t("field.ai_endpoint"), input("ai_endpoint", c.ai_endpoint, { maxlength: 300 }))),
    h("fieldset", {}, h("legend", {}, t("field.pacing_mode")),
      fieldRow("pacing_mode", t("field.pacing_mode"), choice("pacing_mode", MODES, c.pacing_mode, (v) => t(`mode.${v}`))),
      fieldRow("pacing_ratio", t("field.pacing_ratio"), input("pacing_ratio", c.pacing_ratio,
        { type: "number", min: 1, max: 20, step: 0.1, inputmode: "decimal" })),
      fieldRow("abandon_cap", t("field.abandon_cap"), input("abandon_cap", +(100 * c.abandon_cap).toFixed(2),
        { type: "number", min: 0, max: 100, step: 0.1, inputmode: "decimal" })),
      fieldRow("abandon_guard_minutes", t("field.abandon_guard_minutes"), input("abandon_guard_minutes",
        c.abandon_guard_minutes, { type: "number", min: 0, max: 1440, step: 1, inputmode: "numeric" }))),
    h("fieldset", {}, h("legend", {}, t("field.retry_rules")),
      fieldRow("max_attempts", t("field.max_attempts"), input("max_attempts", c.max_attempts,
        { type: "number", min: 1, max: 50, step: 1, inputmode: "numeric" })),
      fieldRow("retry_rules", t("field.retry_rules"), retry),
      h("label", { class: "check" }, h("input", { type: "checkbox", id: "f-recording", checked: c.recording }),
        ` ${t("field.recording")}`),
      h("label", { class: "check" }, h("input", { type: "checkbox", id: "f-amd", checked: c.amd }), ` ${t("field.amd")}`)),
    h("fieldset", { id: "schedule" }, h("legend", {}, t("field.schedule")),
      fieldRow("time_zone", t("field.time_zone"), input("time_zone", c.time_zone || "",
        { placeholder: currentZone(), autocomplete: "off" }), t("field.time_zone.hint")),
      fieldRow("starts_at", t("field.starts_at"), startsAt, t("field.starts_at.hint", { zone })),
      fieldRow("schedule_windows", t("field.schedule_windows"), h("div", {}, windows, addWindow),
        t("field.schedule_windows.hint"))),
    h("p", { class: "error", id: "form-error", role: "alert" }),
    h("div", { class: "actions" },
      h("button", { type: "submit", class: "primary", id: "save-campaign" }, editing ? t("form.save") : t("form.create")),
      h("a", { class: "button", href: editing ? `#/campaigns/${encodeURIComponent(params.id)}` : "#/campaigns" },
        t("app.cancel"))));
  view.append(form);

  const $ = (id) => form.querySelector(`#${id}`);
  const showKind = () => {
    const ai = form.querySelector('input[name="agent_kind"]:checked').value === "ai";
    form.querySelector('[data-for="queue"]').hidden = ai;
    form.querySelector('[data-for="ai_endpoint"]').hidden = !ai;
  };
  form.querySelectorAll('input[name="agent_kind"]').forEach((r) => r.addEventListener("change", showKind));
  // The start time is typed in the campaign's zone: the hint names the zone the field will be read in.
  const zoneNow = () => {
    const typed = $("f-time_zone").value.trim();
    try {
      if (typed) new Intl.DateTimeFormat("en", { timeZone: typed });
      return typed || currentZone();
    } catch (e) {
      return currentZone();
    }
  };
  $("f-time_zone").addEventListener("input", () => {
    form.querySelector('[data-for="starts_at"] small').textContent = t("field.starts_at.hint", { zone: zoneNow() });
  });
  showKind();

  const setError = (name, text) => {
    const win = /^schedule_windows\[(\d+)\]/.exec(name);
    if (win) { // a window's own line, and the row marked
      const row = windows.querySelectorAll("[data-window]")[Number(win[1])];
      if (row) {
        row.querySelector(".window-error").textContent = text;
        row.classList.toggle("invalid", Boolean(text));
        form.querySelector('[data-for="schedule_windows"]').classList.toggle("invalid", Boolean(text));
        return;
      }
      name = "schedule_windows";
    }
    const slot = form.querySelector(`#e-${CSS.escape(name)}`) || $("form-error");
    slot.textContent = text;
    const row = form.querySelector(`[data-for="${CSS.escape(name)}"]`);
    if (row) row.classList.toggle("invalid", Boolean(text));
  };

  function collect() {
    const errors = {};
    const body = {};
    const text = (name) => $(`f-${name}`).value.trim();
    const num = (name, min, max, whole) => {
      const raw = text(name);
      const value = Number(raw.replace(",", "."));
      if (raw === "" || !Number.isFinite(value) || value < min || value > max || (whole && !Number.isInteger(value))) {
        errors[name] = t(whole ? "form.error.whole" : "form.error.range", { min: number(min), max: number(max) });
      }
      return value;
    };
    body.name = text("name");
    if (!body.name) errors.name = t("form.error.required");
    for (const k of ["purpose", "audience", "voice", "pacing_mode"]) body[k] = $(`f-${k}`).value;
    for (const k of ["seller_name", "caller_id"]) if (text(k) || editing) body[k] = text(k) || null;
    if (body.caller_id && !CALLER_ID.test(body.caller_id)) errors.caller_id = t("form.error.caller_id");
    body.lists = [...form.querySelectorAll('input[name="lists"]:checked')].map((x) => x.value);
    if (!body.lists.length) errors.lists = t("form.error.lists");
    body.agent_kind = form.querySelector('input[name="agent_kind"]:checked').value;
    if (body.agent_kind === "queue") {
      body.queue = text("queue");
      if (!body.queue) errors.queue = t("form.error.required");
      else if (!QUEUE.test(body.queue)) errors.queue = t("form.error.queue");
    } else {
      body.ai_endpoint = text("ai_endpoint");
      if (!body.ai_endpoint) errors.ai_endpoint = t("form.error.ai_endpoint");
    }
    body.pacing_ratio = num("pacing_ratio", 1, 20, false);
    body.abandon_cap = Math.round(num("abandon_cap", 0, 100, false) * 100) / 10000;
    body.abandon_guard_minutes = num("abandon_guard_minutes", 0, 1440, true);
    body.max_attempts = num("max_attempts", 1, 50, true);
    body.recording = $("f-recording").checked;
    body.amd = $("f-amd").checked;
    body.retry_rules = {};
    for (const d of RETRYABLE) {
      const raw = $(`f-retry-${d}`).value.trim();
      if (!raw) continue;
      const value = Number(raw);
      if (!Number.isInteger(value) || value < 1 || value > 43200) {
        errors.retry_rules = t("form.error.whole", { min: 1, max: number(43200) });
      } else body.retry_rules[d] = value;
    }
    const zone = text("time_zone");
    if (zone) {
      try {
        new Intl.DateTimeFormat("en", { timeZone: zone });
        body.time_zone = zone;
      } catch (e) {
        errors.time_zone = t("form.error.time_zone");
      }
    } else if (editing) body.time_zone = null;

    body.schedule_windows = [];
    windows.querySelectorAll("[data-window]").forEach((row, i) => {
      const days = [...row.querySelectorAll('input[name="window-day"]:checked')].map((x) => x.value);
      const start = row.querySelector('input[name="window-start"]').value.trim();
      const end = row.querySelector('input[name="window-end"]').value.trim();
      const path = `schedule_windows[${i}]`;
      if (!days.length) errors[`${path}.days`] = t("form.error.window_days");
      else if (!HHMM.test(start)) errors[`${path}.start`] = t("form.error.window_time");
      else if (!HHMM.test(end)) errors[`${path}.end`] = t("form.error.window_time");
      else if (end <= start) errors[`${path}.end`] = t("error.rule.window_order");
      body.schedule_windows.push({ days, start, end });
    });
    const wall = startsAt.value;
    if (wall) {
      const instant = instantIn(wall, body.time_zone || zoneNow());
      if (!instant) errors.starts_at = t("form.error.starts_at");
      else body.starts_at = instant;
    } else if (editing) body.starts_at = null;
    return { body, errors };
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    form.querySelectorAll(".field-error").forEach((p) => { p.textContent = ""; });
    form.querySelectorAll(".invalid").forEach((r) => r.classList.remove("invalid"));
    $("form-error").textContent = "";
    const { body, errors } = collect();
    if (Object.keys(errors).length) {
      for (const [name, text] of Object.entries(errors)) setError(name, text);
      $("form-error").textContent = t("form.fix");
      form.querySelector(".invalid input, .invalid select, .window.invalid input")?.focus();
      return;
    }
    const save = $("save-campaign");
    save.disabled = true;
    try {
      const resp = editing ? await sendJson(`/v1/campaigns/${encodeURIComponent(params.id)}`, body, "PATCH")
        : await sendJson("/v1/campaigns", body);
      if (resp.ok) {
        const saved = await resp.json();
        navigate(`#/campaigns/${encodeURIComponent(saved.id)}`);
        return;
      }
      const error = await apiError(resp);
      const field = String(error.field || "");
      const name = field.startsWith("schedule_windows[") ? field : field.replace(/\[\d+\]$/, "").split(".")[0];
      const text = errorMessage(error); // in the user's words (the code's or the rule's text), api.js
      if (name) setError(name, text);
      $("form-error").textContent = t("form.server_error", { message: text });
    } finally {
      save.disabled = false;
    }
  });
}
