// The user's own console language and time zone, kept with their account (PUT /v1/me/preferences).
import { apiError, errorWords, sendJson } from "../api.js";
import { h } from "../dom.js";
import { LANGUAGES, currentLanguage, currentZone, setLanguage, t } from "../i18n.js";

const NAMES = { en: "English", fr: "Français" };

export async function render(view, ctx) {
  const browserZone = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  const zones = typeof Intl.supportedValuesOf === "function" ? Intl.supportedValuesOf("timeZone") : [browserZone];
  const chosen = (ctx.prefs && ctx.prefs.time_zone) || "";
  const message = h("p", { role: "status", id: "prefs-message" });
  const language = h("select", { id: "pref-language" }, LANGUAGES.map((l) => h("option", { value: l,
    selected: l === currentLanguage() }, NAMES[l])));
  const zone = h("select", { id: "pref-zone" },
    h("option", { value: "", selected: !chosen }, t("prefs.zone_browser", { zone: browserZone })),
    zones.map((z) => h("option", { value: z, selected: z === chosen }, z)));
  const form = h("form", { class: "form narrow", id: "prefs-form" },
    h("div", { class: "field" }, h("label", { for: "pref-language" }, t("app.language")), language),
    h("div", { class: "field" }, h("label", { for: "pref-zone" }, t("app.time_zone")), zone),
    h("p", { class: "muted" }, t("app.times_in", { zone: currentZone() })),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, t("app.save"))), message);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const resp = await sendJson("/v1/me/preferences", { language: language.value, time_zone: zone.value }, "PUT");
    if (!resp.ok) {
      message.className = "error";
      message.textContent = errorWords(await apiError(resp));
      return;
    }
    ctx.prefs = await resp.json();
    await setLanguage(ctx.prefs.language, ctx.prefs.time_zone || browserZone);
    ctx.restart(); // nav labels and this page, in the new language
  });
  view.append(h("h2", {}, t("prefs.title")), form);
}
