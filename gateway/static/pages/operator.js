// Operator: the installation's staff suspend a client tenant at once, or lift its suspension (issue 19's
// kill-switch; gateway/api/operator.py). Shown only to admins of an operator tenant (GET /v1/me lists
// tenants.operate for them alone); the API checks again on every request.
import { dateTime, t } from "../i18n.js";
import { busy, call, ensureStyles, errorWords, field, h, json, say, section, table } from "./admin-kit.js";

function state(row) {
  if (!row.holds.length) return h("span", { class: "verdict allowed", text: t("op.active") });
  return h("div", {}, row.holds.map((hold) => h("p", {
    class: "verdict denied", "data-code": hold.code,
    text: hold.code === "TENANT_SUSPENDED"
      ? t("op.suspended", { reason: hold.reason, by: hold.by, at: dateTime(hold.at) })
      : t("op.budget", { reason: hold.reason }),
  })));
}

export async function render(container) {
  ensureStyles();
  const page = h("div", { class: "page-admin", id: "operator-page" }, h("h1", { text: t("nav.operator") }),
    h("p", { class: "hint", text: t("op.intro") }));
  container.append(page);
  const tenant = h("select", { id: "op-tenant", required: true });
  const reason = h("input", { id: "op-reason", maxlength: 500, autocomplete: "off" });
  const suspend = h("button", { type: "button", id: "op-suspend", class: "danger", text: t("op.suspend") });
  const resume = h("button", { type: "button", id: "op-resume", text: t("op.resume") });
  const status = h("p", { class: "note" });
  const rows = h("div", { id: "op-tenants" });
  page.append(section("op.action_title", h("div", { class: "form-row" }, field(t("op.tenant"), tenant),
    field(t("op.reason"), reason, t("op.reason_hint"))), h("div", { class: "actions-row" }, suspend, resume), status));
  page.append(section("op.tenants_title", rows));

  async function load() {
    const answer = await call("/v1/operator/tenants");
    if (!answer.ok) {
      say(status, errorWords(answer.error));
      return;
    }
    const items = answer.data.items;
    const chosen = tenant.value;
    tenant.replaceChildren(...items.map((row) => h("option", { value: row.id, text: `${row.id} · ${row.name}` })));
    if (chosen) tenant.value = chosen;
    rows.replaceChildren(table([
      { key: "id", label: t("op.tenant") },
      { key: "name", label: t("op.name") },
      { key: "state", label: t("op.state"), render: state, class: "any" },
    ], items, { rowAttrs: (row) => ({ "data-tenant": row.id, "data-suspended": row.suspended ? "1" : "0" }) }));
  }

  async function act(button, action) {
    await busy(button, async () => {
      const id = tenant.value;
      const answer = await json(`/v1/operator/tenants/${encodeURIComponent(id)}/${action}`,
        reason.value.trim() ? { reason: reason.value.trim() } : {});
      if (!answer.ok) {
        say(status, errorWords(answer.error));
        return;
      }
      say(status, t(action === "suspend" ? "op.done_suspend" : "op.done_resume", { tenant: id }), "ok");
      reason.value = "";
      await load();
    });
  }
  suspend.addEventListener("click", () => act(suspend, "suspend"));
  resume.addEventListener("click", () => act(resume, "resume"));
  await load();
}
