// Languages and time for the console. Messages are data (i18n/en.json, i18n/fr.json): a key maps to a text
// with {name} placeholders. The user's language and time zone come from their account (GET /v1/me/preferences);
// a missing key falls back to English, then to the key itself (visible, so a gap is noticed, never a blank).
export const LANGUAGES = ["en", "fr"];

const catalogues = new Map();
let language = "en";
let timeZone = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";

async function load(lang) {
  if (!catalogues.has(lang)) {
    const resp = await fetch(`/static/i18n/${lang}.json`, { cache: "no-cache" });
    catalogues.set(lang, resp.ok ? await resp.json() : {});
  }
  return catalogues.get(lang);
}

// The best of LANGUAGES for the browser's own preference list (used before the account says otherwise).
export function browserLanguage() {
  for (const tag of navigator.languages || [navigator.language || "en"]) {
    const base = String(tag).toLowerCase().split("-")[0];
    if (LANGUAGES.includes(base)) return base;
  }
  return "en";
}

export async function setLanguage(lang, zone) {
  language = LANGUAGES.includes(lang) ? lang : "en";
  if (zone) timeZone = zone;
  await Promise.all([load("en"), load(language)]);
  document.documentElement.lang = language;
  translateDocument();
}

export const currentLanguage = () => language;
export const currentZone = () => timeZone;

export function t(key, vars = {}) {
  const text = (catalogues.get(language) || {})[key] ?? (catalogues.get("en") || {})[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (whole, name) => (name in vars ? String(vars[name]) : whole));
}

// A key exists in the user's language or in English (for optional texts, e.g. a reason without a text).
export function has(key) {
  return key in (catalogues.get(language) || {}) || key in (catalogues.get("en") || {});
}

// Static text in index.html (every word of it: tests/test_console_i18n.py): elements with data-i18n="key" get
// their text, data-i18n-placeholder their placeholder, data-i18n-aria their aria-label, data-i18n-title their title,
// data-i18n-alt their alt text. `root` may be an element (a live-board card cloned from its template).
export function translateDocument(root = document) {
  const all = (selector) => [...(root.matches && root.matches(selector) ? [root] : []),
    ...root.querySelectorAll(selector)];
  for (const el of all("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of all("[data-i18n-placeholder]")) el.placeholder = t(el.dataset.i18nPlaceholder);
  for (const el of all("[data-i18n-aria]")) el.setAttribute("aria-label", t(el.dataset.i18nAria));
  for (const el of all("[data-i18n-title]")) el.title = t(el.dataset.i18nTitle);
  for (const el of all("[data-i18n-alt]")) el.alt = t(el.dataset.i18nAlt);
}

// Numbers and percentages in the user's language (French: 1 234,5 and "3,1 %").
export function number(x, digits = 0) {
  return new Intl.NumberFormat(language, { maximumFractionDigits: digits, minimumFractionDigits: digits }).format(x);
}

export function percent(x, digits = 1) {
  return new Intl.NumberFormat(language, { style: "percent", maximumFractionDigits: digits,
    minimumFractionDigits: digits }).format(x);
}

function asDate(when) {
  return when instanceof Date ? when : new Date(typeof when === "number" ? when * 1000 : when);
}

// A moment in a zone (default: the user's), with the zone named: "6 Dec 2026, 20:15 (Europe/Paris)".
export function dateTime(when, zone = timeZone, { date = true, seconds = false } = {}) {
  const d = asDate(when);
  if (Number.isNaN(d.getTime())) return "";
  const options = { timeZone: zone, hour: "2-digit", minute: "2-digit", hourCycle: "h23" };
  if (seconds) options.second = "2-digit";
  if (date) Object.assign(options, { day: "numeric", month: "short", year: "numeric" });
  return `${new Intl.DateTimeFormat(language, options).format(d)} (${zone})`;
}

// The time only, with the zone named: "20:15 (Europe/Paris)".
export function clock(when, zone = timeZone, seconds = false) {
  return dateTime(when, zone, { date: false, seconds });
}

// The hour (0-23) of a moment in a zone: used to place hourly figures in a campaign's local time.
export function hourIn(when, zone) {
  const text = new Intl.DateTimeFormat("en-GB", { timeZone: zone, hour: "2-digit", hourCycle: "h23" })
    .format(asDate(when));
  return Number.parseInt(text, 10) % 24;
}

// "3 min 20 s" / "1 h 05 min": a time in state.
export function duration(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return t("time.seconds", { s });
  if (s < 3600) return t("time.minutes", { m: Math.floor(s / 60), s: String(s % 60).padStart(2, "0") });
  return t("time.hours", { h: Math.floor(s / 3600), m: String(Math.floor((s % 3600) / 60)).padStart(2, "0") });
}

// A reason code's human text in the user's language (catalogue key reason.CODE), else the code itself.
export function reasonText(code) {
  return has(`reason.${code}`) ? t(`reason.${code}`) : code;
}
