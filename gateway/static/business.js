// The live board's business panels (issue 19): the month's usage with the budgets and the billing rounding, the holds
// in force, and the open data-subject requests. Admins act where they read: they change the budgets and the
// rounding (PUT /v1/usage/plan) and move a request (forwarded, done, refused with a reason, extended once with a
// reason: POST /v1/subject-requests/{id}/state and /extend). Others read; the API checks every call again.
import { api, credentials, errorText, sendJson } from "./api.js";
import { dateTime, has, number, t } from "./i18n.js";
import { h } from "./dom.js";

// The usage figures shown, in this order; their names are the catalogues' board.usage.NAME.
const USAGE_SHOWN = ["attempts", "connected", "billable_minutes", "ai_minutes", "recordings", "contacts_stored"];
// What a budget may count and over which period, and the billing rounding rules (dialer/usage/plan.py, meter.py).
const MEASURES = ["billable_minutes", "attempts"];
const PERIODS = ["day", "month"];
const ROUNDINGS = ["per_second", "per_6_seconds", "per_minute"];
const DEFAULT_ALERTS = [80, 100];
const REFRESH_MS = 60000;

const $ = (id) => document.getElementById(id);
const can = (me, p) => Boolean(me && (me.permissions || []).includes(p));
let me = null;
let timer = null;

// A hold in the user's language: what (hold.CODE), why (the reason as typed, or the budget's), who and since when;
// the server's own line for a hold this console does not know.
export const holdText = (hold) => (has(`hold.${hold.code}`) ? t(hold.until ? "board.hold_until" : "board.hold", {
  what: t(`hold.${hold.code}`), reason: hold.reason, by: hold.by, at: dateTime(hold.at),
  until: hold.until ? dateTime(hold.until) : "" }) : hold.text);
// A value's words from the catalogues when they have them (key prefix + value), else the value itself.
export const words = (prefix, value) => (has(`${prefix}.${value}`) ? t(`${prefix}.${value}`) : String(value));

function listItems(ul, rows) {
  ul.replaceChildren(...rows.map(([label, value, over]) => h("li", {}, h("span", {}, label),
    h("span", { class: over ? "count over" : "count" }, value))));
}

function say(el, text, ok) {
  el.textContent = text || "";
  el.className = `note ${ok ? "ok" : "error"}`;
  el.setAttribute("role", ok ? "status" : "alert");
}

export function startBusiness(who) {
  me = who;
  loadBusiness();
}

// Leaving the board or signing out: the admin's controls go with the user (the next one may not be an admin).
export function stopBusiness() {
  me = null;
  clearTimeout(timer);
  $("business").hidden = true;
  for (const id of ["plan-edit", "dsr-reason-field", "dsr-status"]) $(id)?.remove();
  $("requests").replaceChildren();
}

async function loadBusiness() {
  if (!me) return;
  $("business").hidden = !(can(me, "usage.read") || can(me, "subjects.read"));
  if (can(me, "usage.read")) await loadUsage();
  if (can(me, "subjects.read")) await loadRequests();
  clearTimeout(timer);
  if (me) timer = setTimeout(loadBusiness, REFRESH_MS);
}

async function loadUsage() {
  const resp = await api("/v1/usage");
  if (!resp.ok) return;
  const usage = await resp.json();
  $("usage-panel").hidden = false;
  $("usage-export").hidden = Boolean(credentials.token); // a plain link carries the session cookie, not a token
  listItems($("usage-figures"), [
    ...USAGE_SHOWN.map((k) => [t(`board.usage.${k}`), number(usage.totals[k] ?? 0)]),
    [t("plan.rounding"), words("plan.rounding", usage.rounding)]]);
  listItems($("budgets"), (usage.budgets || []).map((b) => [
    t(b.hard_stop ? "board.budget.hard_stop" : "board.budget", { measure: words("board.usage", b.measure),
      period: words("board.period", b.period) }),
    t("board.budget.figure", { used: number(b.used), limit: number(b.limit), percent: number(b.percent) }),
    b.percent >= 80]));
  const held = usage.holds || [];
  $("holds").hidden = !held.length;
  $("holds").textContent = held.length ? t("board.held", { text: held.map(holdText).join("; ") }) : "";
  if (can(me, "usage.write") && !$("plan-edit")) $("usage-panel").append(planEditor());
}

// --- the budgets and rounding, for admins: read when opened, saved whole (the API replaces the plan) ----------

function budgetRow(budget, index) {
  const id = (name) => `budget-${index}-${name}`;
  const select = (name, values, chosen, prefix) => h("select", { id: id(name), "data-budget": name },
    values.map((v) => h("option", { value: v, selected: v === chosen }, words(prefix, v))));
  const label = (name, text, control) => h("div", { class: "plan-field" }, h("label", { for: id(name) }, text),
    control);
  const row = h("div", { class: "plan-budget", "data-budget-row": String(index) },
    label("measure", t("plan.measure"), select("measure", MEASURES, budget.measure, "board.usage")),
    label("period", t("plan.period"), select("period", PERIODS, budget.period, "board.period")),
    label("limit", t("plan.limit"), h("input", { id: id("limit"), "data-budget": "limit", type: "number", min: "1",
      step: "1", value: budget.limit ?? "" })),
    label("alerts", t("plan.alerts"), h("input", { id: id("alerts"), "data-budget": "alerts", inputmode: "numeric",
      value: (budget.alerts || DEFAULT_ALERTS).join(", ") })),
    h("div", { class: "plan-field check" }, h("input", { id: id("hard"), "data-budget": "hard_stop", type: "checkbox",
      checked: Boolean(budget.hard_stop) }), h("label", { for: id("hard") }, t("plan.hard_stop"))),
    h("button", { type: "button", class: "danger", "data-remove-budget": String(index),
      onclick: () => row.remove() }, t("plan.remove")));
  return row;
}

// A budget as the API takes it; the alert thresholds as typed ("80, 100") become numbers (a typo stays as typed,
// so the API names the field).
function readBudget(row) {
  const get = (name) => row.querySelector(`[data-budget="${name}"]`);
  const limit = get("limit").value.trim();
  const alerts = get("alerts").value.split(/[\s,;%]+/).filter(Boolean)
    .map((a) => (/^\d+$/.test(a) ? Number(a) : a));
  return { measure: get("measure").value, period: get("period").value,
    limit: /^\d+$/.test(limit) ? Number(limit) : limit, alerts, hard_stop: get("hard_stop").checked };
}

function planEditor() {
  const rounding = h("select", { id: "plan-rounding" },
    ROUNDINGS.map((r) => h("option", { value: r }, words("plan.rounding", r))));
  const rows = h("div", { id: "plan-budgets" });
  const status = h("p", { class: "note", id: "plan-status" });
  let next = 0;
  const add = h("button", { type: "button", id: "plan-add" }, t("plan.add"));
  add.addEventListener("click", () => rows.append(budgetRow({ measure: "billable_minutes", period: "month" },
    next++)));
  const save = h("button", { type: "submit", id: "plan-save" }, t("plan.save"));
  const form = h("form", { id: "plan-form", novalidate: true },
    h("div", { class: "plan-field" }, h("label", { for: "plan-rounding" }, t("plan.rounding")), rounding),
    h("p", { class: "hint" }, t("plan.hint")), rows, h("div", { class: "plan-actions" }, add, save), status);
  const details = h("details", { id: "plan-edit" }, h("summary", {}, t("plan.edit")), form);
  details.addEventListener("toggle", async () => {
    if (!details.open) return;
    delete details.dataset.loaded; // set again once the form holds the stored plan (tests wait on it)
    const resp = await api("/v1/usage/plan");
    if (!resp.ok) return say(status, await errorText(resp));
    const plan = await resp.json();
    rounding.value = plan.rounding;
    rows.replaceChildren(...plan.budgets.map((b) => budgetRow(b, next++)));
    say(status, "", true);
    details.dataset.loaded = "1";
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    save.disabled = true;
    try {
      const budgets = [...rows.querySelectorAll("[data-budget-row]")].map(readBudget);
      const resp = await sendJson("/v1/usage/plan", { rounding: rounding.value, budgets }, "PUT");
      if (!resp.ok) return say(status, await errorText(resp));
      say(status, t("plan.saved"), true);
      await loadUsage();
    } finally {
      save.disabled = false;
    }
  });
  return details;
}

// --- the open data-subject requests; admins move them --------------------------------------------------------

async function loadRequests() {
  const resp = await api("/v1/subject-requests");
  if (!resp.ok) return;
  const open = (await resp.json()).items.filter((r) => r.state !== "done" && r.state !== "refused");
  const manage = can(me, "subjects.manage");
  $("requests-panel").hidden = false;
  $("requests-empty").hidden = open.length > 0;
  if (manage && !$("dsr-reason")) {
    $("requests").before(h("div", { class: "plan-field", id: "dsr-reason-field" },
      h("label", { for: "dsr-reason" }, t("dsr.reason")),
      h("input", { id: "dsr-reason", maxlength: "1000", autocomplete: "off" }),
      h("span", { class: "hint" }, t("dsr.reason_hint"))), h("p", { class: "note", id: "dsr-status" }));
  }
  $("requests").replaceChildren(...open.map((r) => h("li", { class: "request", "data-request": r.id },
    h("span", {}, [`${words("board.dsr.kind", r.kind)} (${r.regime})`, words("board.dsr.state", r.state),
      r.reference, r.extended ? t("dsr.extended") : ""].filter(Boolean).join(" · ")),
    h("span", { class: r.overdue || r.forward_overdue ? "count over" : "count" }, r.overdue
      ? t("board.dsr.overdue", { day: r.deadline.slice(0, 10) })
      : (r.forward_overdue ? t("board.dsr.forward_overdue")
        : t("board.dsr.due", { day: r.deadline.slice(0, 10), days: number(r.days_left) }))),
    manage ? requestActions(r) : null)));
}

function requestActions(r) {
  const button = (action, text, cls) => h("button", { type: "button", class: cls, "data-dsr": action,
    onclick: (ev) => moveRequest(ev.currentTarget, r, action) }, text);
  return h("span", { class: "dsr-actions" },
    r.state === "received" ? button("forwarded", t("dsr.forwarded")) : null,
    button("done", t("dsr.done")),
    button("refused", t("dsr.refuse"), "danger"),
    r.extended || r.overdue ? null : button("extend", t("dsr.extend")));
}

async function moveRequest(el, r, action) {
  const reason = $("dsr-reason").value.trim();
  const status = $("dsr-status");
  el.disabled = true;
  try {
    const path = `/v1/subject-requests/${encodeURIComponent(r.id)}/${action === "extend" ? "extend" : "state"}`;
    const body = action === "extend" ? { reason } : { state: action, ...(reason ? { reason } : {}) };
    const resp = await sendJson(path, body);
    if (!resp.ok) return say(status, await errorText(resp));
    const moved = await resp.json();
    $("dsr-reason").value = "";
    say(status, t(action === "extend" ? "dsr.extended_done" : "dsr.moved", {
      what: `${words("board.dsr.kind", r.kind)} (${r.regime})`, state: words("board.dsr.state", moved.state),
      day: String(moved.deadline || "").slice(0, 10) }), true);
    await loadRequests();
  } finally {
    el.disabled = false;
  }
}
