// Calls to the gateway's /v1 API from the console: a session cookie (+ CSRF token on writes) or, for kiosks and
// machines, an API token in the Authorization header. Pages import these; app.js sets the credentials.
import { has, t } from "./i18n.js";
export const credentials = { token: null, csrf: null };
const GENERIC = "invalid_field"; // the code of a field error that says only "not accepted"

export function api(path, options = {}) {
  const headers = { ...(options.headers || {}) };
  if (credentials.token) headers.Authorization = `Bearer ${credentials.token}`;
  else if (credentials.csrf && (options.method || "GET") !== "GET") headers["X-CSRF-Token"] = credentials.csrf;
  return fetch(path, { ...options, headers, cache: "no-store", credentials: "same-origin" });
}

export function sendJson(path, body, method = "POST") {
  return api(path, { method, headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
}

// The API's error as {status, code, message, field, rule?, params?}; never throws.
export async function apiError(resp) {
  try {
    const body = await resp.json();
    if (body.error) return { status: resp.status, ...body.error };
  } catch (e) { /* not JSON */ }
  return { status: resp.status, code: resp.status >= 500 ? "http_5xx" : "", message: `HTTP ${resp.status}` };
}

// A field's name for people: the form's label when the catalogues have one (field.NAME), with the window or item
// it is about ("schedule_windows[1].end" -> "Calling windows 2: end"), else the API's own path.
export function fieldName(path) {
  const match = /^([a-z_]+)(?:\[(\d+)\])?(?:\.([a-z_]+))?/.exec(path || "");
  if (!match || !has(`field.${match[1]}`)) return path || "";
  let name = t(`field.${match[1]}`);
  if (match[2] !== undefined) name = t("error.item", { name, n: Number(match[2]) + 1 });
  if (match[3]) {
    name = t("error.field_text", { field: name,
      text: has(`field.${match[1]}.${match[3]}`) ? t(`field.${match[1]}.${match[3]}`) : match[3] });
  }
  return name;
}

// What went wrong, in the user's language, without the field's name: the check the field failed (error.rule.RULE,
// with its figures), else the code's text (error.CODE; the generic invalid_field followed by the server's reason),
// else, for a code this console does not know yet, the server's own message (English).
export function errorMessage(error) {
  const params = { ...(error.params || {}) };
  if (params.form !== undefined) params.form = has(`error.form.${params.form}`) ? t(`error.form.${params.form}`) : "";
  if (params.type !== undefined && has(`error.type.${params.type}`)) params.type = t(`error.type.${params.type}`);
  if (error.rule && has(`error.rule.${error.rule}`)) return t(`error.rule.${error.rule}`, params);
  if (error.code && has(`error.${error.code}`)) {
    const text = t(`error.${error.code}`, params);
    // A field error with only the generic code (invalid_field) and no rule this console can word ("private
    // address refused"): "This value is not accepted." alone would hide why, so the server's own reason (English,
    // without its "field: " prefix) follows it.
    const reason = error.field && error.code === GENERIC ? serverReason(error) : "";
    return reason ? t("error.with_reason", { text, reason }) : text;
  }
  return error.message || t("error.http_5xx");
}

function serverReason(error) {
  const message = String(error.message || "");
  const prefix = `${error.field}: `;
  return (message.startsWith(prefix) ? message.slice(prefix.length) : message).trim();
}

// The same with the field named first: "Caller ID: must be a phone number in international form...".
export function errorWords(error) {
  const text = errorMessage(error);
  return error.field ? t("error.field_text", { field: fieldName(error.field), text }) : text;
}

export async function errorText(resp) {
  return errorWords(await apiError(resp));
}

// GET a JSON document; throws an Error carrying the API's message.
export async function getJson(path) {
  const resp = await api(path);
  if (!resp.ok) {
    const error = await apiError(resp);
    throw Object.assign(new Error(), error, { message: errorWords(error), serverMessage: error.message });
  }
  return resp.json();
}

// Read a Server-Sent Events stream with fetch (so the token travels in a header, never in a URL).
// onEvent(type, data) for each event; returns when the stream ends or `signal` aborts.
export async function readEvents(path, signal, onEvent) {
  const resp = await api(path, { signal, headers: { Accept: "text/event-stream" } });
  if (!resp.ok) {
    const error = await apiError(resp);
    throw Object.assign(new Error(), error, { message: errorWords(error), serverMessage: error.message });
  }
  const reader = resp.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let type = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) type = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
      }
      if (data.length) onEvent(type, JSON.parse(data.join("\n")));
    }
  }
}
