// Campaigns: every campaign of the tenant, finished ones included, with status, progress, answers, abandon rate
// and denials; filter by status group and name, sort. Refreshes itself every REFRESH_MS while open.
import { getJson } from "../api.js";
import { ACTIVE, FINISHED, h } from "../dom.js";
import { dateTime, number, percent, reasonText, t } from "../i18n.js";

const REFRESH_MS = 5000;
const GROUPS = { all: () => true, active: (c) => ACTIVE.includes(c.status), draft: (c) => c.status === "draft",
  finished: (c) => FINISHED.includes(c.status) };
const STATUS_ORDER = ["running", "paused", "stopping", "scheduled", "draft", "completed", "archived"];
const share = (c) => {
  const p = c.progress || {};
  const total = (p.done || 0) + (p.remaining || 0) + (p.never_callable || 0);
  return total ? ((p.done || 0) + (p.never_callable || 0)) / total : 0;
};
const SORTS = {
  created: (a, b) => String(b.created_at || "").localeCompare(String(a.created_at || "")),
  name: (a, b) => String(a.name).localeCompare(String(b.name)),
  status: (a, b) => STATUS_ORDER.indexOf(a.status) - STATUS_ORDER.indexOf(b.status),
  progress: (a, b) => share(b) - share(a),
  abandon: (a, b) => (b.progress?.abandon_rate || 0) - (a.progress?.abandon_rate || 0),
  denials: (a, b) => (b.progress?.denials || 0) - (a.progress?.denials || 0),
};

function select(id, label, options, value, onChange) {
  return h("label", { class: "field inline", for: id }, h("span", {}, label),
    h("select", { id, onchange: (e) => onChange(e.target.value) },
      options.map(([v, text]) => h("option", { value: v, selected: v === value }, text))));
}

function progressBar(p) {
  const total = Math.max(1, p.done + p.remaining + p.never_callable);
  const part = (cls, n) => h("span", { class: `seg ${cls}`, style: `width:${(100 * n) / total}%` });
  return h("div", { class: "progress" },
    h("div", { class: "bar", role: "img", "aria-label": t("campaigns.progress", {
      done: p.done, remaining: p.remaining, never: p.never_callable }) },
    part("done", p.done), part("never", p.never_callable)),
    h("small", {}, t("campaigns.progress", { done: number(p.done), remaining: number(p.remaining),
      never: number(p.never_callable) })));
}

function row(c) {
  const p = c.progress || { done: 0, remaining: 0, never_callable: 0, answered: 0, abandon_rate: 0, denials: 0,
    top_denials: [] };
  const top = p.top_denials && p.top_denials[0];
  return h("tr", { dataset: { campaign: c.id, status: c.status } },
    h("td", { dataset: { label: t("campaigns.col.name") } },
      h("a", { href: `#/campaigns/${encodeURIComponent(c.id)}`, class: "name" }, c.name || c.id),
      h("small", { class: "muted block" }, c.id)),
    h("td", { dataset: { label: t("campaigns.col.status") } },
      h("span", { class: `status ${c.status}`, dataset: { field: "status" } }, t(`status.${c.status}`))),
    h("td", { dataset: { label: t("campaigns.col.progress") }, class: "wide" }, progressBar(p)),
    h("td", { dataset: { label: t("campaigns.col.answers"), field: "answers" }, class: "num" }, number(p.answered)),
    h("td", { dataset: { label: t("campaigns.col.abandon") }, class: "num" }, percent(p.abandon_rate)),
    h("td", { dataset: { label: t("campaigns.col.denials") }, class: "num" }, number(p.denials),
      top ? h("small", { class: "muted block", title: top.reason },
        t("campaigns.top_denial", { text: reasonText(top.reason) })) : null),
    h("td", { dataset: { label: t("campaigns.col.created") } }, c.created_at ? dateTime(c.created_at) : ""));
}

export async function render(view, ctx) {
  const state = { group: "all", search: "", sort: "created", items: [] };
  const params = new URLSearchParams(location.hash.split("?")[1] || "");
  if (GROUPS[params.get("show")]) state.group = params.get("show");
  const error = h("p", { class: "error", role: "alert" });
  const body = h("tbody");
  const count = h("p", { class: "muted", id: "campaign-count" });
  const canWrite = ctx.me.permissions.includes("campaigns.write");

  const draw = () => {
    const needle = state.search.trim().toLowerCase();
    const shown = state.items.filter(GROUPS[state.group])
      .filter((c) => !needle || String(c.name).toLowerCase().includes(needle) || c.id.includes(needle))
      .sort(SORTS[state.sort]);
    body.replaceChildren(...shown.map(row));
    if (!shown.length) body.append(h("tr", {}, h("td", { colspan: 7, class: "muted" }, t("campaigns.none"))));
    count.textContent = t("campaigns.count", { n: shown.length });
  };
  const load = async () => {
    try {
      state.items = (await getJson("/v1/campaigns?progress=true")).items;
      error.textContent = "";
      draw();
    } catch (e) {
      error.textContent = e.message;
    }
  };

  view.append(
    h("div", { class: "page-head" }, h("h2", {}, t("campaigns.title")),
      canWrite ? h("a", { class: "button primary", href: "#/campaigns/new", id: "new-campaign" }, t("campaigns.new"))
        : null),
    h("div", { class: "toolbar" },
      select("campaign-filter", t("campaigns.filter"), Object.keys(GROUPS).map((g) => [g, t(`campaigns.filter.${g}`)]),
        state.group, (v) => { state.group = v; draw(); }),
      h("label", { class: "field inline", for: "campaign-search" }, h("span", {}, t("campaigns.search")),
        h("input", { id: "campaign-search", type: "search", oninput: (e) => { state.search = e.target.value; draw(); } })),
      select("campaign-sort", t("campaigns.sort"), Object.keys(SORTS).map((s) => [s, t(`campaigns.sort.${s}`)]),
        state.sort, (v) => { state.sort = v; draw(); })),
    error, count,
    h("table", { class: "grid stack", id: "campaign-table" },
      h("thead", {}, h("tr", {}, ["name", "status", "progress", "answers", "abandon", "denials", "created"]
        .map((k) => h("th", { scope: "col" }, t(`campaigns.col.${k}`))))),
      body));
  await load();
  const timer = setInterval(load, REFRESH_MS);
  return () => clearInterval(timer);
}
