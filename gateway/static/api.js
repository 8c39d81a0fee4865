// Calls to the gateway's /v1 API from the console: a session cookie (+ CSRF token on writes) or, for kiosks and
// machines, an API token in the Authorization header. Pages import these; app.js sets the credentials.
export const credentials = { token: null, csrf: null };

export function api(path, options = {}) {
  const headers = { ...(options.headers || {}) };
  if (credentials.token) headers.Authorization = `Bearer ${credentials.token}`;
  else if (credentials.csrf && (options.method || "GET") !== "GET") headers["X-CSRF-Token"] = credentials.csrf;
  return fetch(path, { ...options, headers, cache: "no-store", credentials: "same-origin" });
}

export function sendJson(path, body, method = "POST") {
  return api(path, { method, headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
}

// The API's error as {status, code, message, field}; never throws.
export async function apiError(resp) {
  try {
    const body = await resp.json();
    if (body.error) return { status: resp.status, ...body.error };
  } catch (e) { /* not JSON */ }
  return { status: resp.status, code: "", message: `HTTP ${resp.status}` };
}

export async function errorText(resp) {
  return (await apiError(resp)).message;
}

// GET a JSON document; throws an Error carrying the API's message.
export async function getJson(path) {
  const resp = await api(path);
  if (!resp.ok) {
    const error = await apiError(resp);
    throw Object.assign(new Error(error.message), error);
  }
  return resp.json();
}

// Read a Server-Sent Events stream with fetch (so the token travels in a header, never in a URL).
// onEvent(type, data) for each event; returns when the stream ends or `signal` aborts.
export async function readEvents(path, signal, onEvent) {
  const resp = await api(path, { signal, headers: { Accept: "text/event-stream" } });
  if (!resp.ok) {
    const error = await apiError(resp);
    throw Object.assign(new Error(error.message), error);
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
