// Supervisor dashboard: vanilla JS, no external code. People sign in with email + password (+ TOTP):
// the gateway sets an HttpOnly session cookie and every state-changing request carries the session's
// CSRF token in X-CSRF-Token. Machines and kiosks may still use an API token, sent in the Authorization
// header (never in a URL). The live stream (/v1/stream) is read with fetch.
// An ES module: once signed in, the navigation bar and the hash router (nav.js, router.js) show the pages;
// the live board below is the "live" page.
import { api, apiError, credentials, errorText, errorWords, sendJson as postJson } from "./api.js";
import {
  browserLanguage, clock, currentZone, has, hourIn, number, percent as pct, reasonText, setLanguage, t,
  translateDocument,
} from "./i18n.js";
import { registerBuiltin, startRouter, stopRouter } from "./router.js";
import { holdText, startBusiness, stopBusiness, words } from "./business.js";

const TOKEN_KEY = "dialerToken";
const NEAR_CAP = 0.8; // alert when an abandon rate reaches 80 % of the campaign's cap
const OUTCOMES = [
  ["answered", "#1f8a4c"], ["no_answer", "#8e9aaf"], ["busy", "#b7791f"], ["machine", "#6b5bd6"],
  ["abandoned", "#c0392b"], ["failed", "#555"], ["congestion", "#a0522d"], ["opted_out", "#d63384"],
];
const ACTIONS = { pause: ["running"], resume: ["paused"], stop: ["running", "paused", "scheduled"] };

const state = { me: null, stream: null, cards: new Map(), retry: null };

const $ = (id) => document.getElementById(id);

// --- sign in / out -------------------------------------------------------------------------

async function signIn(token) {
  credentials.token = token;
  credentials.csrf = null;
  const resp = await api("/v1/me");
  if (!resp.ok) {
    credentials.token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    showSignIn(resp.status === 401 ? t("signin.bad_token") : await errorText(resp));
    return;
  }
  const me = await resp.json();
  sessionStorage.setItem(TOKEN_KEY, token);
  enter(me);
}

// The console, for a caller whose identity is known (from /v1/me or the session): the user's language and
// zone, then the navigation bar and the page the address names (or the user's home page).
async function enter(me) {
  state.me = me;
  let prefs = { language: browserLanguage(), time_zone: "" };
  try {
    const resp = await api("/v1/me/preferences");
    if (resp.ok) prefs = await resp.json();
  } catch (e) { /* keep the browser's */ }
  await setLanguage(prefs.language, prefs.time_zone || Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC");
  $("sign-in").hidden = true;
  $("enrol").hidden = true;
  $("who").hidden = false;
  $("who-text").textContent = `${me.user} (${t(`role.${me.role}`)}) · ${me.tenant}`;
  startRouter({ me, prefs, api, postJson, errorText, t });
}

// The live board: the cards of the tenant's active campaigns, fed by /v1/stream.
registerBuiltin("board", {
  render() {
    $("board").hidden = false;
    $("live").hidden = false;
    openStream();
    startBusiness(state.me);
    return () => {
      $("board").hidden = true;
      $("live").hidden = true;
      stopBusiness();
      closeStream();
    };
  },
});

function enterSession(session) {
  credentials.token = null;
  credentials.csrf = session.csrf_token;
  if (session.stage === "enrol") startEnrol();
  else if (session.stage === "code") askSsoCode("");
  else enter(session);
}

// --- single sign-on (OpenID Connect): a button per provider; back from the provider the session is set,
// or the page is opened with ?signin_error=<code> and shows that refusal's text. -----------------------

async function loadSso() {
  const resp = await fetch("/v1/session/oidc", { cache: "no-store", credentials: "same-origin" });
  if (!resp.ok) return;
  const listing = await resp.json();
  $("sso-buttons").replaceChildren(...listing.items.map((provider) => {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = t("signin.with", { name: provider.name });
    button.addEventListener("click", () => window.location.assign(provider.start));
    return button;
  }));
  $("sso").hidden = listing.items.length === 0 || !$("sso-code-form").hidden;
  const refused = new URLSearchParams(window.location.search).get("signin_error");
  if (refused) {
    state.ssoRefusal = has(`error.${refused}`) ? t(`error.${refused}`)
      : (listing.refusals[refused] || t("signin.sso_failed"));
    window.history.replaceState(null, "", "/");
  }
}

function askSsoCode(message) {
  showSignIn(message);
  $("login-form").hidden = true;
  $("sso").hidden = true;
  $("token-sign-in").hidden = true;
  $("sso-code-form").hidden = false;
  $("sso-code").focus();
}

async function verifySsoCode() {
  const resp = await postJson("/v1/session/mfa/verify", { code: $("sso-code").value.trim() });
  $("sso-code").value = "";
  if (!resp.ok) {
    if (resp.status === 401 || resp.status === 429) signOut(await errorText(resp));
    else askSsoCode(await errorText(resp));
    return;
  }
  enterSession(await resp.json());
}

async function passwordSignIn() {
  const body = { email: $("email").value.trim(), password: $("password").value };
  const code = $("code").value.trim();
  if (code) body.code = code;
  $("sign-in-error").textContent = "";
  const resp = await fetch("/v1/session", { method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body), cache: "no-store", credentials: "same-origin" });
  if (resp.ok) {
    $("password").value = "";
    $("code").value = "";
    $("code-row").hidden = true;
    enterSession(await resp.json());
    return;
  }
  const error = await apiError(resp);
  if (error.code === "mfa_required") {
    $("code-row").hidden = false;
    $("code").focus();
  } else if (error.code === "bad_code") {
    $("code").value = "";
    $("code").focus();
  } else {
    $("password").value = "";
  }
  $("sign-in-error").textContent = error.code === "mfa_required" ? t("signin.enter_code") : errorWords(error);
}

async function startEnrol() {
  $("who").hidden = true;
  $("sign-in").hidden = true;
  $("board").hidden = true;
  $("enrol").hidden = false;
  $("enrol-setup").hidden = false;
  $("recovery").hidden = true;
  $("enrol-error").textContent = "";
  const resp = await api("/v1/session/mfa/setup", { method: "POST" });
  if (!resp.ok) {
    $("enrol-error").textContent = await errorText(resp);
    return;
  }
  const setup = await resp.json();
  $("enrol-qr").src = setup.qr;
  $("enrol-qr").title = setup.otpauth_uri;
  $("enrol-secret").textContent = setup.secret;
  $("enrol-code").focus();
}

async function confirmEnrol() {
  const resp = await postJson("/v1/session/mfa/confirm", { code: $("enrol-code").value.trim() });
  $("enrol-code").value = "";
  if (!resp.ok) {
    $("enrol-error").textContent = await errorText(resp);
    return;
  }
  const done = await resp.json();
  credentials.csrf = done.csrf_token;
  $("enrol-setup").hidden = true;
  $("recovery").hidden = false;
  $("recovery-codes").replaceChildren(...done.recovery_codes.map((code) => {
    const li = document.createElement("li");
    li.textContent = code;
    return li;
  }));
}

async function resumeSession() {
  const resp = await fetch("/v1/session", { cache: "no-store", credentials: "same-origin" });
  const session = resp.ok ? await resp.json() : { stage: "none" };
  if (session.stage === "none") showSignIn(state.ssoRefusal || "");
  else enterSession(session);
  state.ssoRefusal = "";
}

function showSignIn(message) {
  stopRouter();
  closeStream();
  $("board").hidden = true;
  $("enrol").hidden = true;
  $("who").hidden = true;
  $("sign-in").hidden = false;
  $("login-form").hidden = false;
  $("token-sign-in").hidden = false;
  $("sso-code-form").hidden = true;
  $("sso").hidden = $("sso-buttons").childElementCount === 0;
  $("sign-in-error").textContent = message || "";
}

async function signOut(message = "") {
  if (!credentials.token && credentials.csrf) {
    try { await api("/v1/session", { method: "DELETE" }); } catch (e) { /* gone already */ }
  }
  sessionStorage.removeItem(TOKEN_KEY);
  credentials.token = null;
  credentials.csrf = null;
  state.me = null;
  stopBusiness();
  state.cards.clear();
  $("campaigns").replaceChildren();
  $("board-error").textContent = "";
  showSignIn(typeof message === "string" ? message : "");
}

// --- the live stream (Server-Sent Events over fetch) ---------------------------------------

function setLive(on) {
  const el = $("live");
  el.textContent = t(on ? "board.live" : "board.reconnecting");
  el.className = `live ${on ? "on" : "off"}`;
}

function closeStream() {
  if (state.stream) state.stream.abort();
  state.stream = null;
  clearTimeout(state.retry);
}

async function openStream() {
  closeStream();
  const controller = new AbortController();
  state.stream = controller;
  try {
    const resp = await api("/v1/stream", { signal: controller.signal, headers: { Accept: "text/event-stream" } });
    if (resp.status === 401) return signOut(credentials.token ? "" : t("signin.session_ended"));
    if (!resp.ok) throw new Error(await errorText(resp));
    setLive(true);
    $("board-error").textContent = "";
    const reader = resp.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        handleEvent(buffer.slice(0, cut));
        buffer = buffer.slice(cut + 2);
      }
    }
  } catch (e) {
    if (controller.signal.aborted) return;
    $("board-error").textContent = t("live.stream_lost", { message: e.message });
  }
  if (state.stream === controller && state.me) {
    setLive(false);
    state.retry = setTimeout(openStream, 1000);
  }
}

function handleEvent(block) {
  let type = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith("event:")) type = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
  }
  if (type === "stats" && data.length) render(JSON.parse(data.join("\n")));
}

// --- rendering -----------------------------------------------------------------------------

function card(id) {
  let el = state.cards.get(id);
  if (!el) {
    el = $("campaign-template").content.firstElementChild.cloneNode(true);
    el.dataset.campaign = id;
    translateDocument(el);
    for (const button of el.querySelectorAll("[data-action]")) {
      button.addEventListener("click", () => control(id, button.dataset.action, el));
    }
    for (const button of el.querySelectorAll("[data-kill]")) {
      button.addEventListener("click", () => killSwitch(id, button.dataset.kill, el));
    }
    state.cards.set(id, el);
    $("campaigns").append(el);
  }
  $("empty").hidden = true;
  return el;
}

const field = (el, name) => el.querySelector(`[data-field="${name}"]`);
const percent = (x) => pct(x, 2);

function render(snap) {
  const el = card(snap.campaign);
  el.dataset.status = snap.status;
  field(el, "name").textContent = snap.name || snap.campaign;
  const status = field(el, "status");
  const held = snap.holds || [];
  status.textContent = held.length ? t("board.status_held", { status: t(`status.${snap.status}`) })
    : t(`status.${snap.status}`);
  status.className = `status ${snap.status}${held.length ? " held" : ""}`;
  field(el, "updated").textContent = snap.updated_at
    ? t("live.updated", { time: clock(snap.updated_at, undefined, true) })
    : t("live.no_figures");
  for (const [name, value] of Object.entries(snap.gauges)) {
    const tile = el.querySelector(`[data-tile="${name}"]`);
    if (tile) tile.textContent = name === "share" ? pct(value, 0) : number(value, Number.isInteger(value) ? 0 : 1);
  }
  const pacing = snap.pacing || {};
  const why = field(el, "pacing");
  if (held.length) {  // a kill-switch (tenant suspended, budget used up, campaign suspended): say who and why
    why.textContent = t("board.held_now", { text: held.map(holdText).join("; ") });
    why.className = "pacing alert over";
  } else {
    // The reason in the user's words; the engine's own sentence (English, with its figures) on hover.
    why.textContent = pacing.reason ? t("board.pacing", { text: words("pacing", pacing.reason) }) : "";
    why.title = pacing.why || "";
    why.className = pacing.why ? "pacing alert over" : "pacing";
  }
  renderButtons(el, snap.status);
  renderKill(el, snap.status, held);
  renderAbandon(el, snap);
  renderDraining(el, snap.servers_draining || []);
  renderDenials(el, snap.denials);
  renderChart(el, snap.hourly);
}

function renderButtons(el, status) {
  const allowed = state.me && state.me.permissions.includes("campaigns.control");
  for (const button of el.querySelectorAll("[data-action]")) {
    button.hidden = !allowed || !ACTIONS[button.dataset.action].includes(status);
  }
}

// The tenant admin's kill-switch for one campaign (dialer/holds.py): shown to roles with campaigns.suspend.
function renderKill(el, status, held) {
  const allowed = state.me && state.me.permissions.includes("campaigns.suspend");
  const suspended = held.some((h) => h.code === "CAMPAIGN_SUSPENDED");
  el.querySelector('[data-kill="suspend"]').hidden = !allowed || suspended || status === "completed";
  el.querySelector('[data-kill="unsuspend"]').hidden = !allowed || !suspended;
}

async function killSwitch(id, kind, el) {
  let body = {};
  if (kind === "suspend") {
    const reason = window.prompt(t("board.suspend_prompt"));
    if (!reason || !reason.trim()) return;
    body = { reason: reason.trim() };
  }
  field(el, "error").textContent = "";
  const resp = await postJson(`/v1/campaigns/${encodeURIComponent(id)}/${kind}`, body);
  if (!resp.ok) field(el, "error").textContent = await errorText(resp);
  // the live stream brings the new state (the hold publishes on the campaign's channel)
}

function renderAbandon(el, snap) {
  const cap = snap.abandon_cap || 0;
  let worst = "";
  for (const window of ["24h", "30d"]) {
    const rate = snap.gauges[`abandon_rate_${window}`] || 0;
    const row = el.querySelector(`.abandon[data-window="${window}"]`);
    const scale = Math.max(cap * 1.33, rate, 0.0001); // the cap sits at 75 % of the bar
    row.querySelector(".fill").style.width = `${Math.min(100, (100 * rate) / scale)}%`;
    row.querySelector(".cap").style.left = `${(100 * cap) / scale}%`;
    row.querySelector(".figure").textContent = t("live.abandon.figure", { rate: percent(rate), cap: percent(cap) });
    const level = cap > 0 && rate >= cap ? "over" : cap > 0 && rate >= NEAR_CAP * cap ? "near" : "";
    row.className = `abandon ${level}`;
    if (level === "over" || (level === "near" && worst === "")) worst = level;
  }
  const alert = field(el, "abandon-alert");
  alert.hidden = worst === "";
  alert.className = `alert ${worst}`;
  alert.textContent = t(worst === "over" ? "live.abandon.over" : "live.abandon.near");
}

function renderDraining(el, servers) {
  // An Asterisk server refusing calls (restarting, shutting down): nothing is dialed there until it is back.
  const alert = field(el, "pbx-alert");
  alert.hidden = servers.length === 0;
  alert.textContent = servers.map((s) => t("live.draining", { server: s.server, since: clock(s.since, undefined, true),
    message: s.message })).join(" ");
}

function renderDenials(el, denials) {
  const list = field(el, "denials");
  const entries = Object.entries(denials).sort((a, b) => b[1] - a[1]);
  const top = entries.length ? entries[0][1] : 1;
  list.replaceChildren(...entries.map(([reason, count]) => {
    const li = document.createElement("li");
    li.dataset.reason = reason;
    const name = document.createElement("span");
    name.textContent = reasonText(reason); // the reason's text in the user's language; the code on hover
    name.title = reason;
    const bar = document.createElement("div");
    bar.className = "dbar";
    bar.style.width = `${(100 * count) / top}%`;
    const n = document.createElement("span");
    n.className = "count";
    n.textContent = String(count);
    li.append(name, bar, n);
    return li;
  }));
  if (!entries.length) {
    const li = document.createElement("li");
    li.textContent = t("live.none");
    list.append(li);
  }
}

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  return node;
}

function renderChart(el, hourly) {
  // One column per hour: a grey bar for attempts, stacked coloured outcomes beside it. Hours in the user's zone.
  const zone = currentZone();
  const hourOf = (h) => `${String(hourIn(h.hour, zone)).padStart(2, "0")}:00`;
  field(el, "chart-zone").textContent = `(${zone})`;
  const width = Math.max(480, field(el, "chart").clientWidth || 960), height = 160, pad = 18;
  const slot = (width - pad) / hourly.length;
  const top = Math.max(1, ...hourly.map((h) => Math.max(h.attempts || 0,
    OUTCOMES.reduce((sum, [k]) => sum + (h[k] || 0), 0))));
  const scale = (v) => ((height - pad) * v) / top;
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": t("board.chart_label") });
  root.append(svg("line", { x1: pad, y1: height - pad, x2: width, y2: height - pad, stroke: "#d9dde5" }));
  const label = svg("text", { x: 0, y: 10, "font-size": 10, fill: "#667085" });
  label.textContent = String(top);
  root.append(label);
  hourly.forEach((h, i) => {
    const x = pad + i * slot;
    const attempts = h.attempts || 0;
    const bar = svg("rect", { x: x + 1, y: height - pad - scale(attempts), width: slot / 2 - 2,
      height: scale(attempts), fill: "#c9d3e6" });
    const title = svg("title", {});
    title.textContent = t("board.chart_bar", { hour: hourOf(h), n: number(attempts),
      what: t("live.chart.attempts") });
    bar.append(title);
    root.append(bar);
    let y = height - pad;
    for (const [outcome, colour] of OUTCOMES) {
      const n = h[outcome] || 0;
      if (!n) continue;
      y -= scale(n);
      const part = svg("rect", { x: x + slot / 2, y, width: slot / 2 - 2, height: scale(n), fill: colour });
      const tip = svg("title", {});
      tip.textContent = t("board.chart_bar", { hour: hourOf(h), n: number(n),
        what: words("outcome", outcome) });
      part.append(tip);
      root.append(part);
    }
    if (i % 3 === 0) {
      const tick = svg("text", { x, y: height - 4, "font-size": 10, fill: "#667085" });
      tick.textContent = hourOf(h).slice(0, 2);
      root.append(tick);
    }
  });
  field(el, "chart").replaceChildren(root);
  const legend = field(el, "legend");
  if (!legend.childElementCount) {
    for (const [name, colour] of [["attempts", "#c9d3e6"], ...OUTCOMES]) {
      const li = document.createElement("li");
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = colour;
      const label = name === "attempts" ? t("live.chart.attempts") : words("outcome", name);
      li.append(swatch, document.createTextNode(label));
      legend.append(li);
    }
  }
}

// --- actions -------------------------------------------------------------------------------

async function control(id, action, el) {
  if (action === "stop" && !window.confirm(t("action.stop_confirm"))) return;
  const buttons = el.querySelectorAll("[data-action]");
  buttons.forEach((b) => { b.disabled = true; });
  field(el, "error").textContent = "";
  try {
    const resp = await api(`/v1/campaigns/${encodeURIComponent(id)}/${action}`, { method: "POST" });
    if (!resp.ok) {
      field(el, "error").textContent = await errorText(resp);
      return;
    }
    const campaign = await resp.json();
    el.dataset.status = campaign.status;
    const status = field(el, "status");
    status.textContent = t(`status.${campaign.status}`);
    status.className = `status ${campaign.status}`;
    renderButtons(el, campaign.status);
  } finally {
    buttons.forEach((b) => { b.disabled = false; });
  }
}

// --- start ---------------------------------------------------------------------------------

function start() {
  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    passwordSignIn();
  });
  $("sign-in-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("token").value.trim();
    $("token").value = "";
    if (token) signIn(token);
  });
  $("enrol-form").addEventListener("submit", (event) => {
    event.preventDefault();
    confirmEnrol();
  });
  $("sso-code-form").addEventListener("submit", (event) => {
    event.preventDefault();
    verifySsoCode();
  });
  $("recovery-done").addEventListener("click", resumeSession);
  $("enrol-cancel").addEventListener("click", () => signOut());
  $("sign-out").addEventListener("click", () => signOut());
  const saved = sessionStorage.getItem(TOKEN_KEY);
  loadSso().catch(() => { /* no single sign-on offered */ }).then(() => {
    if (saved) signIn(saved);
    else resumeSession();
  });
}

setLanguage(browserLanguage()).finally(start);
