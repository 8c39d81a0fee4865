// Compliance: look up a number (the gate's decisions about it, reasons in words, the next allowed time in the
// person's local time), its opt-outs and consents (add an opt-out; give or withdraw a consent, with evidence),
// and how fresh each registry copy is.
import { dateTime, has, number, t } from "../i18n.js";
import { busy, call, can, ensureStyles, errorWords, field, h, json, say, section, table } from "./admin-kit.js";

// A reason in the user's language when the catalogue has it, else the server's words; the code beside it.
function reasonWords(reason, texts = {}) {
  if (has(`reason.${reason.code}`)) return t(`reason.${reason.code}`);
  return reason.summary || texts[reason.code] || reason.text || reason.code;
}

function reasonList(reasons, texts, personZone) {
  return h("ul", { class: "reasons" }, reasons.map((r) => h("li", { "data-reason": r.code },
    reasonWords(r, texts),
    r.text && r.text !== reasonWords(r, texts) ? h("span", { class: "hint" }, ` (${r.text})`) : null, " ",
    h("code", { text: r.code }),
    r.until ? h("span", { class: "hint" }, ` · ${t("comp.until", { when: dateTime(r.until, personZone) })}`) : null)));
}

export async function render(container, ctx) {
  ensureStyles();
  const page = h("div", { class: "page-admin", id: "compliance-page" }, h("h1", { text: t("nav.compliance") }));
  container.append(page);
  const phone = h("input", { id: "lookup-phone", name: "phone", required: true, inputmode: "tel", autocomplete: "off",
    placeholder: "+33145678901" });
  const country = h("input", { id: "lookup-country", name: "country", maxlength: "2", size: "3",
    placeholder: "FR" });
  const campaign = h("select", { id: "lookup-campaign" }, h("option", { value: "", text: t("comp.any_campaign") }));
  const status = h("p", { class: "note" });
  const result = h("div", { id: "lookup-result" });
  const go = h("button", { type: "submit", id: "lookup-go", text: t("comp.look_up") });
  const form = h("form", { id: "lookup-form" },
    h("div", { class: "form-row" }, field(t("comp.phone"), phone, t("comp.phone_hint")),
      field(t("comp.country"), country), field(t("comp.campaign"), campaign)),
    h("div", { class: "actions-row" }, go), status);
  page.append(section("comp.lookup_title", form, result));
  const registries = h("div", { id: "registries" });
  if (can(ctx, "registry.read")) page.append(section("comp.registries_title", registries));

  if (can(ctx, "campaigns.read")) {
    call("/v1/campaigns").then((answer) => {
      if (!answer.ok) return;
      for (const c of answer.data.items) campaign.append(h("option", { value: c.id, text: c.name || c.id }));
    });
  }
  const lookup = () => busy(go, async () => {
    say(status, "", "");
    const params = new URLSearchParams({ phone: phone.value.trim() });
    if (country.value.trim()) params.set("country", country.value.trim());
    if (campaign.value) params.set("campaign", campaign.value);
    const answer = await call(`/v1/compliance/lookup?${params}`);
    if (!answer.ok) {
      result.replaceChildren();
      say(status, errorWords(answer.error));
      return;
    }
    const names = Object.fromEntries([...campaign.options].filter((o) => o.value).map((o) => [o.value, o.text]));
    result.replaceChildren(lookupView(ctx, answer.data, lookup, names));
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    lookup();
  });
  if (can(ctx, "registry.read")) {
    const answer = await call("/v1/compliance/registries");
    registries.replaceChildren(answer.ok ? registryTable(answer.data.items)
      : h("p", { class: "note error", text: errorWords(answer.error) }));
  }
}

function lookupView(ctx, data, again, names) {
  const zone = data.zones[0] || "UTC";
  const now = data.now;
  const verdict = h("p", { class: `verdict ${now.allowed ? "allowed" : "denied"}`, id: "verdict",
    text: now.allowed ? t("comp.allowed_now") : t("comp.denied_now") });
  const next = now.next_allowed_at ? h("p", { id: "next-allowed" }, t("comp.next_allowed"), " ",
    h("b", { text: dateTime(now.next_allowed_at, zone) }),
    h("span", { class: "hint" }, ` · ${t("comp.your_time", { when: dateTime(now.next_allowed_at) })}`))
    : (!now.allowed ? h("p", { id: "next-allowed", class: "hint", text: t("comp.no_next") }) : null);
  const decisions = table([
    { key: "at", label: t("comp.when"), render: (d) => dateTime(d.at) },
    { key: "campaign", label: t("comp.campaign"), render: (d) => names[d.campaign] || d.campaign },
    { key: "allowed", label: t("comp.decision"), render: (d) => h("span", { class: `badge ${d.allowed ? "allowed"
      : "denied"}`, text: d.allowed ? t("comp.allowed") : t("comp.denied") }) },
    { key: "reasons", label: t("comp.reasons"), render: (d) => reasonList(d.reasons, data.reason_texts, zone) },
    { key: "next", label: t("comp.next_local"), render: (d) => (d.next_allowed_at ? dateTime(d.next_allowed_at, zone)
      : "") },
  ], data.decisions, { empty: t("comp.no_decisions") });
  return h("div", { class: "lookup" },
    h("p", {}, h("b", { id: "looked-up", text: data.phone }), " · ",
      t("comp.local_zone", { zone: data.zones.join(", ") || "?" }), " · ", data.jurisdictions.join(", ")),
    verdict, now.reasons.length ? reasonList(now.reasons, data.reason_texts, zone) : null, next,
    h("h3", { text: t("comp.decisions_title") }), h("div", { id: "decisions" }, decisions),
    h("div", { class: "grid-2" }, optoutsView(ctx, data, again), consentsView(ctx, data, again)));
}

function optoutsView(ctx, data, again) {
  const list = table([
    { key: "scope", label: t("comp.scope"), render: (o) => (o.scope === "campaign" ? `${t("comp.scope_campaign")} ${
      o.campaign}` : t("comp.scope_company")) },
    { key: "at", label: t("comp.when"), render: (o) => dateTime(o.at) },
    { key: "source", label: t("comp.source"), render: (o) => [o.source, o.keyword ? ` (“${o.keyword}”)` : ""].join("") },
  ], data.optouts, { empty: t("comp.no_optouts") });
  const box = h("div", { id: "optouts" }, h("h3", { text: t("comp.optouts_title") }), list);
  if (!can(ctx, "optouts.write")) return box;
  const source = h("input", { id: "optout-source", value: "console", maxlength: "100" });
  const scope = h("select", { id: "optout-scope" }, h("option", { value: "company", text: t("comp.scope_company") }),
    h("option", { value: "campaign", text: t("comp.scope_campaign") }));
  const campaignId = h("input", { id: "optout-campaign", placeholder: t("comp.campaign_id") });
  const status = h("p", { class: "note" });
  const add = h("button", { type: "button", id: "optout-add", text: t("comp.add_optout"), onclick: () => busy(add,
    async () => {
      const body = { phone: data.phone, source: source.value.trim() || "console", scope: scope.value };
      if (scope.value === "campaign") body.campaign = campaignId.value.trim();
      const answer = await json("/v1/optouts", body);
      if (!answer.ok) return say(status, errorWords(answer.error));
      again();
    }) });
  box.append(h("div", { class: "form-row" }, field(t("comp.source"), source), field(t("comp.scope"), scope),
    field(t("comp.campaign_id"), campaignId)), h("p", { class: "hint", text: t("comp.optout_permanent") }),
  h("div", { class: "actions-row" }, add), status);
  return box;
}

function consentsView(ctx, data, again) {
  const list = table([
    { key: "purpose", label: t("comp.purpose") },
    { key: "given_at", label: t("comp.given"), render: (c) => (c.given_at ? dateTime(c.given_at) : "") },
    { key: "withdrawn_at", label: t("comp.withdrawn"), render: (c) => (c.withdrawn_at ? dateTime(c.withdrawn_at)
      : "") },
    { key: "source", label: t("comp.source") },
    { key: "evidence", label: t("comp.evidence"), render: (c) => [c.evidence, c.written ? ` · ${t("comp.written")}`
      : ""].join("") },
  ], data.consents, { empty: t("comp.no_consents") });
  const box = h("div", { id: "consents" }, h("h3", { text: t("comp.consents_title") }), list);
  if (!can(ctx, "consents.write")) return box;
  const action = h("select", { id: "consent-action" }, h("option", { value: "grant", text: t("comp.grant") }),
    h("option", { value: "withdraw", text: t("comp.withdraw") }));
  const purpose = h("select", { id: "consent-purpose" }, ["telemarketing", "informational", "debt_collection",
    "survey", "political", "charity"].map((p) => h("option", { value: p, text: p })));
  const source = h("input", { id: "consent-source", maxlength: "100", placeholder: t("comp.source_hint") });
  const evidence = h("input", { id: "consent-evidence", maxlength: "2000", placeholder: t("comp.evidence_hint") });
  const written = h("input", { id: "consent-written", type: "checkbox" });
  const status = h("p", { class: "note" });
  const save = h("button", { type: "button", id: "consent-save", text: t("comp.save_consent"), onclick: () => busy(save,
    async () => {
      const body = { phone: data.phone, action: action.value, purpose: purpose.value, source: source.value.trim(),
        evidence: evidence.value.trim() };
      if (action.value === "grant") body.written = written.checked;
      const answer = await json("/v1/consents", body);
      if (!answer.ok) return say(status, errorWords(answer.error));
      again();
    }) });
  box.append(h("div", { class: "form-row" }, field(t("comp.action"), action), field(t("comp.purpose"), purpose),
    field(t("comp.source"), source), field(t("comp.evidence"), evidence),
    h("div", { class: "field check" }, written, h("label", { for: "consent-written", text: t("comp.written") }))),
  h("div", { class: "actions-row" }, save), status);
  return box;
}

// The verdict in the user's language, from the figures (the API's `text` says the same in English).
function freshnessWords(r) {
  const age = r.age_days === null ? "" : number(r.age_days, 1);
  if (r.state === "fresh") return t("comp.text.fresh", { age, max: r.max_age_days });
  if (r.state === "stale") return t("comp.text.stale", { age, max: r.max_age_days });
  if (r.state === "missing") return t("comp.text.missing");
  return r.age_days === null ? t("comp.text.unused_missing") : t("comp.text.unused", { age });
}

function registryTable(items) {
  return table([
    { key: "name", label: t("comp.registry") },
    { key: "state", label: t("comp.freshness"), render: (r) => h("span", { class: `badge ${r.state}`,
      "data-registry-state": r.name, text: t(`comp.state.${r.state}`) }) },
    { key: "copy_date", label: t("comp.copy_date"), render: (r) => (r.copy_date ? dateTime(r.copy_date) : "") },
    { key: "max_age_days", label: t("comp.max_age"), render: (r) => (r.max_age_days ? t("comp.days",
      { n: r.max_age_days }) : "") },
    { key: "text", label: t("comp.meaning"), render: (r) => [freshnessWords(r), r.packs.length
      ? ` (${r.packs.join(", ")})` : ""].join("") },
  ], items);
}
