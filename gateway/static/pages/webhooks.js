// Webhooks (admins; auditors read): the tenant's endpoints with their events and secrets, registering one (its
// signing secret is shown once), deleting one, rotating its secret (the old one keeps signing for the overlap, as
// POST /v1/webhooks/{id}/rotate does), and the dead-letter list with redelivery (gateway/api/webhooks.py).
import { dateTime, has, t } from "../i18n.js";
import { busy, call, can, ensureStyles, errorWords, field, h, json, say, section, table } from "./admin-kit.js";

const OVERLAP_HOURS = 24; // the API's default: the current secret keeps signing a day after a rotation

// An event type in the user's words (webhooks.event.TYPE), else the type itself.
const eventName = (type) => (has(`webhooks.event.${type}`) ? t(`webhooks.event.${type}`) : type);

// The secrets' state: one secret, or the new one plus the old one(s) still valid until their expiry.
function secretsText(endpoint) {
  const old = endpoint.secrets.filter((s) => s.expires_at);
  if (!old.length) return t("webhooks.one_secret");
  return t("webhooks.rotating", { until: dateTime(old.map((s) => s.expires_at).sort().pop()) });
}

// The secret just issued, shown once, with a copy button.
function showSecret(box, secret, note) {
  box.replaceChildren(h("p", { class: "note ok", role: "status", text: note }),
    h("p", { class: "secret", id: "webhook-secret", text: secret }),
    h("div", { class: "actions-row" },
      h("button", { type: "button", text: t("users.copy"), onclick: () => navigator.clipboard
        && navigator.clipboard.writeText(secret) }),
      h("button", { type: "button", text: t("users.hide"), onclick: () => box.replaceChildren() })));
}

export async function render(container, ctx) {
  ensureStyles();
  const page = h("div", { class: "page-admin", id: "webhooks-page" }, h("h1", { text: t("nav.webhooks") }),
    h("p", { class: "hint", text: t("webhooks.intro") }));
  container.append(page);
  const admin = can(ctx, "webhooks.write");
  const status = h("p", { class: "note", id: "webhooks-status" });
  const secretBox = h("div", { id: "webhook-secret-box" });
  const endpoints = h("div", { id: "webhook-endpoints" });
  const dead = h("div", { id: "webhook-dead" });
  let types = [];

  async function refresh() {
    const [e, d] = await Promise.all([call("/v1/webhooks"), call("/v1/webhook-dead-letters")]);
    if (e.ok) endpoints.replaceChildren(endpointsTable(e.data.items));
    else endpoints.replaceChildren(h("p", { class: "note error", role: "alert", text: errorWords(e.error) }));
    if (d.ok) dead.replaceChildren(deadTable(d.data.items));
    else dead.replaceChildren(h("p", { class: "note error", role: "alert", text: errorWords(d.error) }));
  }

  async function act(button, path, options, done) {
    await busy(button, async () => {
      const answer = await call(path, options);
      if (!answer.ok) return say(status, errorWords(answer.error));
      say(status, done(answer.data), "ok");
      await refresh();
    });
  }

  function endpointsTable(items) {
    return table([
      { key: "url", label: t("webhooks.url"), render: (e) => h("span", {}, h("code", { text: e.url }),
        e.description ? h("span", { class: "hint", text: ` ${e.description}` }) : null) },
      { key: "events", label: t("webhooks.events"), render: (e) => e.events.map(eventName).join(", ") },
      { key: "secrets", label: t("webhooks.secrets"), render: (e) => h("span", {
        class: `badge ${e.secrets.length > 1 ? "warn" : "ok"}`, text: secretsText(e) }) },
      { key: "created_at", label: t("users.created"), render: (e) => dateTime(e.created_at) },
      { key: "actions", label: "", render: (e) => (!admin ? "" : h("span", {},
        h("button", { type: "button", "data-rotate": e.id, text: t("webhooks.rotate"),
          onclick: (ev) => busy(ev.currentTarget, async () => {
            if (!window.confirm(t("webhooks.rotate_confirm", { url: e.url, hours: OVERLAP_HOURS }))) return;
            const answer = await json(`/v1/webhooks/${encodeURIComponent(e.id)}/rotate`,
              { overlap_hours: OVERLAP_HOURS });
            if (!answer.ok) return say(status, errorWords(answer.error));
            say(status, "", "");
            showSecret(secretBox, answer.data.secret, t("webhooks.rotated_once", { url: e.url,
              until: secretsText(answer.data) }));
            await refresh();
          }) }),
        h("button", { type: "button", class: "danger", "data-delete": e.id, text: t("webhooks.delete"),
          onclick: (ev) => {
            if (!window.confirm(t("webhooks.delete_confirm", { url: e.url }))) return;
            act(ev.currentTarget, `/v1/webhooks/${encodeURIComponent(e.id)}`, { method: "DELETE" },
              () => t("webhooks.deleted", { url: e.url }));
          } }))) },
    ], items, { empty: t("webhooks.none"), rowAttrs: (e) => ({ "data-endpoint": e.id }) });
  }

  function deadTable(items) {
    return table([
      { key: "endpoint", label: t("webhooks.endpoint"), render: (d) => h("code", { text: d.endpoint }) },
      { key: "type", label: t("webhooks.event"), render: (d) => h("span", {}, eventName(d.type), " ",
        h("code", { text: d.event_id })) },
      { key: "attempts", label: t("webhooks.attempts") },
      { key: "last_error", label: t("webhooks.last_error"), render: (d) => [d.last_status, d.last_error]
        .filter(Boolean).join(" · ") },
      { key: "last_at", label: t("webhooks.last_at"), render: (d) => (d.last_at && !Number.isNaN(Date.parse(d.last_at))
        ? dateTime(d.last_at) : d.last_at || "") },
      { key: "redeliver", label: "", render: (d) => (!admin ? "" : h("button", { type: "button",
        "data-redeliver": d.event_id, text: t("webhooks.redeliver"),
        onclick: (ev) => act(ev.currentTarget, `/v1/webhook-dead-letters/${encodeURIComponent(d.endpoint)}/`
          + `${encodeURIComponent(d.event_id)}/redeliver`, { method: "POST" },
        () => t("webhooks.redelivered", { id: d.event_id })) })) },
    ], items, { empty: t("webhooks.no_dead"), rowAttrs: (d) => ({ "data-dead": d.event_id }) });
  }

  if (admin) {
    const listed = await call("/v1/webhook-event-types");
    types = listed.ok ? listed.data.items.map((x) => x.type) : [];
    page.append(registerForm(types, secretBox, status, refresh));
  }
  page.append(section("webhooks.endpoints_title", status, secretBox, endpoints));
  page.append(section("webhooks.dead_title", h("p", { class: "hint", text: t("webhooks.dead_hint") }), dead));
  await refresh();
}

function registerForm(types, secretBox, status, refresh) {
  const url = h("input", { id: "webhook-url", type: "url", autocomplete: "off", spellcheck: "false", required: true,
    placeholder: "https://crm.example.com/hooks/dialer" });
  const description = h("input", { id: "webhook-description", maxlength: "200", autocomplete: "off" });
  const boxes = types.map((type) => h("label", {},
    h("input", { type: "checkbox", name: "webhook-event", value: type }), ` ${eventName(type)}`));
  const result = h("p", { class: "note", id: "webhook-result" });
  const send = h("button", { type: "submit", id: "webhook-register", text: t("webhooks.register") });
  const form = h("form", { id: "webhook-form", novalidate: true },
    h("div", { class: "form-row" }, field(t("webhooks.url"), url, t("webhooks.url_hint")),
      field(t("webhooks.description"), description)),
    h("fieldset", { class: "event-checks", id: "webhook-events" }, h("legend", { text: t("webhooks.events") }), boxes),
    h("div", { class: "actions-row" }, send), result);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    busy(send, async () => {
      const events = [...form.querySelectorAll("input[name=webhook-event]:checked")].map((x) => x.value);
      const body = { url: url.value.trim(), events };
      if (description.value.trim()) body.description = description.value.trim();
      const answer = await json("/v1/webhooks", body);
      if (!answer.ok) return say(result, errorWords(answer.error));
      say(result, "", "");
      say(status, "", "");
      showSecret(secretBox, answer.data.secret, t("webhooks.registered_once", { url: answer.data.url }));
      url.value = "";
      description.value = "";
      for (const box of form.querySelectorAll("input[name=webhook-event]")) box.checked = false;
      await refresh();
    });
  });
  return section("webhooks.register_title", form);
}
