// Users and tokens (admins; auditors read): invite a user with a first password, change roles, disable, reset a
// password or a second factor, end sessions; create API tokens (the secret is shown once) and revoke them.
import { dateTime, t } from "../i18n.js";
import { busy, call, can, ensureStyles, errorWords, field, h, json, say, section, table } from "./admin-kit.js";

const ROLES = ["admin", "supervisor", "uploader", "auditor"];

// A first password to hand over: 18 random characters from an unambiguous alphabet (crypto, not Math.random).
function randomPassword() {
  const alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
  const bytes = crypto.getRandomValues(new Uint8Array(18));
  return Array.from(bytes, (b) => alphabet[b % alphabet.length]).join("");
}

export async function render(container, ctx) {
  ensureStyles();
  const page = h("div", { class: "page-admin", id: "users-page" }, h("h1", { text: t("nav.users") }));
  container.append(page);
  const admin = can(ctx, "users.write");
  const users = h("div", { id: "users" });
  const tokens = h("div", { id: "tokens" });
  const status = h("p", { class: "note", id: "users-status" });
  let known = [];

  async function refresh() {
    const [u, k] = await Promise.all([call("/v1/users"), can(ctx, "tokens.read") ? call("/v1/tokens")
      : Promise.resolve({ ok: true, data: { items: [] } })]);
    if (u.ok) {
      known = u.data.items;
      users.replaceChildren(usersTable(ctx, known, admin, status, refresh));
    } else users.replaceChildren(h("p", { class: "note error", text: errorWords(u.error) }));
    if (k.ok) tokens.replaceChildren(tokensTable(k.data.items, can(ctx, "tokens.write"), status, refresh));
    else tokens.replaceChildren(h("p", { class: "note error", text: errorWords(k.error) }));
    if (tokenUser) {
      const chosen = tokenUser.value;
      tokenUser.replaceChildren(...known.filter((x) => !x.disabled).map((x) => h("option", { value: x.name,
        text: x.name, selected: x.name === chosen })));
    }
  }

  let tokenUser = null;
  if (admin) page.append(inviteForm(status, refresh));
  page.append(section("users.users_title", status, users));
  if (can(ctx, "tokens.read")) {
    const parts = [tokens];
    if (can(ctx, "tokens.write")) {
      tokenUser = h("select", { id: "token-user" });
      parts.unshift(tokenForm(tokenUser, refresh));
    }
    page.append(section("users.tokens_title", ...parts));
  }
  await refresh();
}

function inviteForm(status, refresh) {
  const email = h("input", { id: "invite-email", type: "email", autocomplete: "off", spellcheck: "false",
    required: true });
  const role = h("select", { id: "invite-role" }, ROLES.map((r) => h("option", { value: r, text: t(`role.${r}`),
    selected: r === "supervisor" })));
  const password = h("input", { id: "invite-password", autocomplete: "new-password", minlength: "12",
    spellcheck: "false" });
  const generate = h("button", { type: "button", id: "invite-generate", text: t("users.generate"),
    onclick: () => { password.value = randomPassword(); } });
  const result = h("p", { class: "note", id: "invite-result" });
  const send = h("button", { type: "submit", id: "invite-send", text: t("users.invite") });
  const form = h("form", { id: "invite-form" },
    h("div", { class: "form-row" }, field(t("users.email"), email), field(t("users.role"), role),
      field(t("users.first_password"), password, t("users.first_password_hint"))),
    h("div", { class: "actions-row" }, generate, send), result);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    busy(send, async () => {
      if (!password.value) password.value = randomPassword();
      const answer = await json("/v1/users", { name: email.value.trim(), role: role.value,
        password: password.value });
      if (!answer.ok) return say(result, errorWords(answer.error));
      say(result, t("users.invited", { email: answer.data.name, password: password.value }), "ok");
      email.value = "";
      password.value = "";
      say(status, "", "");
      await refresh();
    });
  });
  return section("users.invite_title", h("p", { class: "hint", text: t("users.invite_hint") }), form);
}

function usersTable(ctx, items, admin, status, refresh) {
  const act = async (button, path, options, done) => busy(button, async () => {
    const answer = await call(path, options);
    if (!answer.ok) return say(status, errorWords(answer.error));
    say(status, done(answer.data), "ok");
    await refresh();
  });
  const patch = (name, body) => ({ method: "PATCH", headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body) });
  return table([
    { key: "name", label: t("users.user") },
    { key: "role", label: t("users.role"), render: (u) => {
      if (!admin || u.name === ctx.me.user) return t(`role.${u.role}`);
      const select = h("select", { "data-role-of": u.name, "aria-label": t("users.role_of", { name: u.name }) },
        ROLES.map((r) => h("option", { value: r, text: t(`role.${r}`), selected: r === u.role })));
      select.addEventListener("change", () => act(select, `/v1/users/${encodeURIComponent(u.name)}`,
        patch(u.name, { role: select.value }), () => t("users.role_changed", { name: u.name })));
      return select;
    } },
    { key: "state", label: t("users.state"), render: (u) => h("span", {},
      h("span", { class: `badge ${u.disabled ? "bad" : "ok"}`, text: u.disabled ? t("users.disabled")
        : t("users.active") }), " ",
      h("span", { class: `badge ${u.mfa ? "ok" : ""}`, "data-mfa-of": u.name, text: u.mfa ? t("users.mfa_on")
        : t("users.mfa_off") }), " ",
      u.can_sign_in ? null : h("span", { class: "badge", text: t("users.api_only") })) },
    { key: "created_at", label: t("users.created"), render: (u) => (u.created_at ? dateTime(u.created_at) : "") },
    { key: "actions", label: "", render: (u) => (!admin || u.name === ctx.me.user ? "" : h("span", {},
      h("button", { type: "button", "data-toggle": u.name, text: u.disabled ? t("users.enable") : t("users.disable"),
        class: u.disabled ? "" : "danger", onclick: (ev) => act(ev.currentTarget,
          `/v1/users/${encodeURIComponent(u.name)}`, patch(u.name, { disabled: !u.disabled }),
          () => t(u.disabled ? "users.enabled_done" : "users.disabled_done", { name: u.name })) }),
      u.can_sign_in || u.name.includes("@") ? h("button", { type: "button", "data-reset-password": u.name,
        text: t("users.reset_password"), onclick: (ev) => {
          const password = randomPassword();
          act(ev.currentTarget, `/v1/users/${encodeURIComponent(u.name)}/password`, { method: "PUT",
            headers: { "Content-Type": "application/json" }, body: JSON.stringify({ password }) },
          () => t("users.password_done", { name: u.name, password }));
        } }) : null,
      u.mfa ? h("button", { type: "button", "data-reset-mfa": u.name, text: t("users.reset_mfa"),
        onclick: (ev) => {
          if (!window.confirm(t("users.reset_mfa_confirm", { name: u.name }))) return;
          act(ev.currentTarget, `/v1/users/${encodeURIComponent(u.name)}/mfa`, { method: "DELETE" },
            (d) => t("users.mfa_done", { name: u.name, n: d.revoked_sessions || 0 }));
        } }) : null,
      u.can_sign_in ? h("button", { type: "button", "data-end-sessions": u.name, text: t("users.end_sessions"),
        onclick: (ev) => act(ev.currentTarget, `/v1/users/${encodeURIComponent(u.name)}/sessions`,
          { method: "DELETE" }, (d) => t("users.sessions_done", { name: u.name, n: d.revoked_sessions || 0 })) })
        : null)) },
  ], items);
}

function tokenForm(user, refresh) {
  const label = h("input", { id: "token-label", maxlength: "200" });
  const days = h("input", { id: "token-days", type: "number", min: "1", max: "3650", placeholder: "90" });
  const result = h("div", { id: "token-result" });
  const create = h("button", { type: "submit", id: "token-create", text: t("users.create_token") });
  const form = h("form", { id: "token-form" },
    h("div", { class: "form-row" }, field(t("users.token_user"), user), field(t("users.label"), label),
      field(t("users.expires_days"), days, t("users.expires_hint"))),
    h("div", { class: "actions-row" }, create), result);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    busy(create, async () => {
      const body = { user: user.value, label: label.value.trim() };
      if (days.value) body.expires_in_days = Number(days.value);
      const answer = await json("/v1/tokens", body);
      if (!answer.ok) {
        result.replaceChildren(h("p", { class: "note error", role: "alert", text: errorWords(answer.error) }));
        return;
      }
      const secret = h("p", { class: "secret", id: "token-secret", text: answer.data.token });
      result.replaceChildren(h("p", { class: "note ok", text: t("users.token_once") }), secret,
        h("button", { type: "button", text: t("users.copy"), onclick: () => navigator.clipboard
          && navigator.clipboard.writeText(answer.data.token) }),
        h("button", { type: "button", text: t("users.hide"), onclick: () => result.replaceChildren() }));
      label.value = "";
      await refresh();
    });
  });
  return form;
}

function tokensTable(items, write, status, refresh) {
  return table([
    { key: "id", label: t("users.token_id"), render: (k) => h("code", { text: k.id }) },
    { key: "user", label: t("users.user") },
    { key: "label", label: t("users.label") },
    { key: "created_at", label: t("users.created"), render: (k) => (k.created_at ? dateTime(k.created_at) : "") },
    { key: "last_used_at", label: t("users.last_used"), render: (k) => (k.last_used_at ? dateTime(k.last_used_at)
      : t("users.never")) },
    { key: "expires_at", label: t("users.expires"), render: (k) => (k.expires_at ? dateTime(k.expires_at)
      : t("users.never")) },
    { key: "revoke", label: "", render: (k) => (write ? h("button", { type: "button", class: "danger",
      "data-revoke": k.id, text: t("users.revoke"), onclick: (ev) => busy(ev.currentTarget, async () => {
        if (!window.confirm(t("users.revoke_confirm", { id: k.id }))) return;
        const answer = await call(`/v1/tokens/${encodeURIComponent(k.id)}`, { method: "DELETE" });
        if (!answer.ok) return say(status, errorWords(answer.error));
        say(status, t("users.revoked", { id: k.id }), "ok");
        await refresh();
      }) }) : "") },
  ], items, { empty: t("users.no_tokens") });
}
