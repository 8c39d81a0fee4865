// Small helpers shared by the Lists, Compliance, Audit and Users pages: building elements, calling the API,
// tables that turn into stacked cards on a phone, downloads. No external code.
import { api, apiError, errorWords } from "../api.js";
import { t } from "../i18n.js";

// Their stylesheet, loaded once (a <link> to our own origin: allowed by the CSP, no inline style).
export function ensureStyles() {
  if (document.getElementById("admin-css")) return;
  const link = document.createElement("link");
  link.id = "admin-css";
  link.rel = "stylesheet";
  link.href = "/static/admin.css";
  document.head.append(link);
}

// h("button", { class: "danger", onclick: f, "data-x": 1 }, "text", child...)
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else if (key === "text") el.textContent = value;
    else if (key in el && typeof value !== "string") el[key] = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export const can = (ctx, permission) => (ctx.me.permissions || []).includes(permission);

// A labelled form field: h("label") + the control, stacked.
export function field(label, control, hint) {
  return h("div", { class: "field" }, h("label", { for: control.id, text: label }), control,
    hint ? h("span", { class: "hint", text: hint }) : null);
}

// Put a message in a status element: kind "error" (role alert), "ok" or "" (plain).
export function say(el, text, kind = "error") {
  el.textContent = text || "";
  el.className = `note ${kind}`;
  if (kind === "error") el.setAttribute("role", "alert");
  else el.setAttribute("role", "status");
}

// Call the API; {ok, data} or {ok: false, error: {status, code, message, field}}. Never throws on HTTP errors.
export async function call(path, options = {}) {
  const resp = await api(path, options);
  if (!resp.ok) return { ok: false, error: await apiError(resp) };
  return { ok: true, data: resp.status === 204 ? null : await resp.json() };
}

export function json(path, body, method = "POST") {
  return call(path, { method, headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
}

// The API's error in the user's words, with the field it names (api.js).
export { errorWords };

// A table whose cells carry their column's name (data-label): on a narrow screen each row becomes a card.
// columns: [{ key, label, render?(row) -> Node|string, class? }]
export function table(columns, rows, { empty = t("admin.none"), rowAttrs } = {}) {
  if (!rows.length) return h("p", { class: "hint empty", text: empty });
  const head = h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col", text: c.label }))));
  const body = h("tbody", {}, rows.map((row) => h("tr", rowAttrs ? rowAttrs(row) : {}, columns.map((c) => {
    const value = c.render ? c.render(row) : row[c.key];
    return h("td", { "data-label": c.label, class: c.class }, value === undefined || value === null ? "" : value);
  }))));
  return h("div", { class: "table-wrap" }, h("table", { class: "cards" }, head, body));
}

// Save what a GET route answers (CSV) as a file: fetched with the session (or token), then handed to the browser.
export async function download(path, fileName) {
  const resp = await api(path);
  if (!resp.ok) return { ok: false, error: await apiError(resp) };
  const url = URL.createObjectURL(await resp.blob());
  const a = h("a", { href: url, download: fileName, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
  return { ok: true };
}

export function section(titleKey, ...children) {
  return h("section", { class: "panel-card" }, h("h2", { text: t(titleKey) }), ...children);
}

// Disable a button while an action runs.
export async function busy(button, action) {
  button.disabled = true;
  try {
    return await action();
  } finally {
    button.disabled = false;
  }
}
