// A hash router: "#/campaigns/abc/edit" -> the NAV row "campaigns/:id/edit" with params {id: "abc"}.
// Hash routes need nothing from the server (the gateway serves one page at "/") and survive a reload.
import { NAV } from "./nav.js";
import { t } from "./i18n.js";

const builtins = new Map(); // "builtin:NAME" -> { render }
let current = { leave: null, token: 0 };
let context = null;
let view = null;

export function registerBuiltin(name, page) {
  builtins.set(`builtin:${name}`, page);
}

export function allowed(row, me) {
  return row.roles.includes(me.role) && (!row.permission || (me.permissions || []).includes(row.permission));
}

// The row and parameters for a hash path, or null.
export function match(path) {
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  for (const row of NAV) {
    const pattern = row.route.split("/");
    if (pattern.length !== parts.length) continue;
    const params = {};
    const ok = pattern.every((p, i) => {
      if (p.startsWith(":")) {
        params[p.slice(1)] = parts[i];
        return true;
      }
      return p === parts[i];
    });
    if (ok) return { row, params };
  }
  return null;
}

export function href(route, params = {}) {
  return `#/${route.split("/").map((p) => (p.startsWith(":") ? encodeURIComponent(params[p.slice(1)]) : p)).join("/")}`;
}

export function navigate(hash) {
  if (location.hash === hash) show();
  else location.hash = hash;
}

function home(me) {
  const row = NAV.find((r) => r.nav !== false && allowed(r, me));
  return row ? `#/${row.route}` : "#/";
}

function renderNav() {
  const nav = document.getElementById("nav");
  const list = document.createElement("ul");
  for (const row of NAV) {
    if (row.nav === false || !allowed(row, context.me)) continue;
    const li = document.createElement("li");
    const a = document.createElement("a");
    a.href = `#/${row.route}`;
    a.dataset.route = row.route;
    a.textContent = t(row.label);
    li.append(a);
    list.append(li);
  }
  nav.replaceChildren(list);
  nav.hidden = false;
}

function markCurrent(row) {
  for (const a of document.querySelectorAll("#nav a")) {
    const here = row && (row.route === a.dataset.route || row.route.startsWith(`${a.dataset.route}/`));
    if (here) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
}

async function show() {
  if (!context) return;
  const token = ++current.token;
  if (current.leave) {
    try { current.leave(); } catch (e) { console.warn(e); }
    current.leave = null;
  }
  const found = match(location.hash.replace(/^#\/?/, "").split("?")[0]);
  if (!found) {
    location.replace(home(context.me));
    return;
  }
  markCurrent(found.row);
  view.replaceChildren();
  view.dataset.route = found.row.route;
  document.title = `${t(found.row.label)} · ${t("app.title")}`;
  if (!allowed(found.row, context.me)) {
    const p = document.createElement("p");
    p.className = "error";
    p.setAttribute("role", "alert");
    p.textContent = t("app.not_allowed", { role: t(`role.${context.me.role}`) });
    view.append(p);
    return;
  }
  try {
    const page = builtins.get(found.row.page) || await import(found.row.page);
    if (token !== current.token) return; // the user moved on while the module loaded
    const leave = await page.render(view, context, found.params);
    if (token !== current.token) {
      if (typeof leave === "function") leave();
      return;
    }
    current.leave = typeof leave === "function" ? leave : null;
  } catch (e) {
    const p = document.createElement("p");
    p.className = "error";
    p.setAttribute("role", "alert");
    p.textContent = t("app.page_failed", { message: e.message });
    view.append(p);
  }
}

// ctx: { me, prefs, api, ... } passed to every page. Called once signed in. ctx.restart() redraws the navigation
// and the current page (after a change of language).
export function startRouter(ctx) {
  context = ctx;
  ctx.restart = () => {
    renderNav();
    show();
  };
  view = document.getElementById("view");
  view.hidden = false;
  renderNav();
  window.removeEventListener("hashchange", show);
  window.addEventListener("hashchange", show);
  show();
}

export function stopRouter() {
  window.removeEventListener("hashchange", show);
  if (current.leave) current.leave();
  current = { leave: null, token: current.token + 1 };
  context = null;
  const nav = document.getElementById("nav");
  nav.hidden = true;
  nav.replaceChildren();
  if (view) {
    view.hidden = true;
    view.replaceChildren();
  }
}
