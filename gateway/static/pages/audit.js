// Audit: browse the tenant's hash-chained trail newest first, filter it (kind, actor, action, time), page back,
// open an entry, and verify the chain.
import { dateTime, number, t } from "../i18n.js";
import { busy, call, ensureStyles, errorWords, field, h, say, section, table } from "./admin-kit.js";

// dialer/audit.py KINDS
const KINDS = ["gate_decision", "gate_release", "call_outcome", "optout", "consent", "import", "registry_load",
  "campaign_control", "token_use", "export", "access", "rectification", "erasure", "retention", "api",
  "runtime_resume", "usage_plan", "hold", "subject_request", "campaign_dialing", "usage"];
const PAGE = 50;
const GIST = 180;

// One line for people: a gateway event's action and details, or a gate decision's verdict and reasons.
function gist(entry) {
  const p = entry.payload || {};
  if (entry.kind === "gate_decision") {
    const reasons = (p.reasons || []).map((r) => r[0]).join(", ");
    return `${p.allowed ? t("comp.allowed") : t("comp.denied")} · ${p.campaign || ""} · ${p.phone || ""}${
      reasons ? ` · ${reasons}` : ""}`;
  }
  const details = Object.entries(p).filter(([k]) => !["action", "token"].includes(k))
    .map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`).join(" ");
  const text = [p.action, details].filter(Boolean).join(" · ");
  return text.length > GIST ? `${text.slice(0, GIST)}…` : text; // the whole entry is one click away
}

// A datetime-local value (the browser's wall time) as an instant, or "".
function instant(input) {
  if (!input.value) return "";
  const d = new Date(input.value);
  return Number.isNaN(d.getTime()) ? "" : d.toISOString();
}

export async function render(container) {
  ensureStyles();
  const page = h("div", { class: "page-admin", id: "audit-page" }, h("h1", { text: t("nav.audit") }));
  container.append(page);
  const kind = h("select", { id: "audit-kind" }, h("option", { value: "", text: t("audit.any_kind") }),
    KINDS.map((k) => h("option", { value: k, text: k })));
  const actor = h("input", { id: "audit-actor", autocomplete: "off", spellcheck: "false" });
  const action = h("input", { id: "audit-action", autocomplete: "off", spellcheck: "false",
    placeholder: "login, user., token." });
  const since = h("input", { id: "audit-since", type: "datetime-local" });
  const until = h("input", { id: "audit-until", type: "datetime-local" });
  const apply = h("button", { type: "submit", id: "audit-apply", text: t("audit.apply") });
  const status = h("p", { class: "note" });
  const rows = h("div", { id: "audit-rows" });
  const more = h("button", { type: "button", id: "audit-more", hidden: true, text: t("audit.older") });
  const detail = h("div", { id: "audit-detail" });
  const form = h("form", { id: "audit-form" },
    h("div", { class: "form-row" }, field(t("audit.kind"), kind), field(t("audit.actor"), actor),
      field(t("audit.action"), action, t("audit.action_hint")), field(t("audit.since"), since),
      field(t("audit.until"), until, t("audit.browser_time"))),
    h("div", { class: "actions-row" }, apply), status);
  const verifyButton = h("button", { type: "button", id: "audit-verify", text: t("audit.verify") });
  const verifyResult = h("div", { id: "verify-result" });
  page.append(section("audit.verify_title", h("p", { class: "hint", text: t("audit.verify_hint") }),
    h("div", { class: "actions-row" }, verifyButton), verifyResult));
  page.append(section("audit.trail_title", form, rows, h("div", { class: "actions-row" }, more), detail));

  let entries = [];
  let before = null;
  async function load(reset) {
    const params = new URLSearchParams({ limit: String(PAGE) });
    for (const [name, el] of [["kind", kind], ["actor", actor], ["action", action]]) {
      if (el.value.trim()) params.set(name, el.value.trim());
    }
    if (instant(since)) params.set("since", instant(since));
    if (instant(until)) params.set("until", instant(until));
    if (!reset && before) params.set("before", String(before));
    const answer = await call(`/v1/audit?${params}`);
    if (!answer.ok) {
      say(status, errorWords(answer.error));
      return;
    }
    say(status, "", "");
    entries = reset ? answer.data.items : [...entries, ...answer.data.items];
    before = answer.data.next_before;
    more.hidden = !before;
    rows.replaceChildren(table([
      { key: "seq", label: "#" },
      { key: "at", label: t("audit.when"), render: (e) => dateTime(e.at, undefined, { seconds: true }) },
      { key: "kind", label: t("audit.kind") },
      { key: "actor", label: t("audit.actor") },
      { key: "gist", label: t("audit.what"), render: (e) => gist(e), class: "any" },
      { key: "open", label: "", render: (e) => h("button", { type: "button", "data-seq": e.seq, text: t("audit.open"),
        onclick: () => detail.replaceChildren(h("div", { class: "panel-card" },
          h("h3", { text: t("audit.entry", { seq: e.seq }) }),
          h("pre", { class: "payload", text: JSON.stringify(e, null, 2) }))) }) },
    ], entries, { empty: t("audit.empty") }));
  }
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    busy(apply, () => load(true));
  });
  more.addEventListener("click", () => busy(more, () => load(false)));
  verifyButton.addEventListener("click", () => busy(verifyButton, async () => {
    verifyResult.replaceChildren(h("p", { class: "hint", text: t("audit.verifying") }));
    const answer = await call("/v1/audit/verify");
    if (!answer.ok) {
      verifyResult.replaceChildren(h("p", { class: "note error", role: "alert", text: errorWords(answer.error) }));
      return;
    }
    const v = answer.data;
    verifyResult.replaceChildren(h("p", { class: `verdict ${v.ok ? "allowed" : "denied"}`, id: "verify-verdict",
      text: v.ok ? t("audit.intact", { n: number(v.checked) }) : t("audit.broken", { seq: v.bad_seq ?? "?" }) }),
    // The chain's head, or what is wrong where it breaks (the verifier's technical words, kept as they are).
    h("p", { class: "hint", text: v.ok ? t("audit.head", { seq: number(v.head_seq) })
      : t("audit.problem", { problem: v.problem }) }));
  }));
  await load(true);
}
