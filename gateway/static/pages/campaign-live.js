// One campaign, live: today's figures, its agents and their states, calls waiting, how the pacer paces and why it
// holds back, abandon windows, outcomes and denials in words, an hourly chart in the campaign's local time; the
// control buttons. Figures come from the campaign's event stream (/v1/campaigns/{id}/events), agents from
// /v1/campaigns/{id}/agents (polled every second). A campaign that completes shows it at once: its stream sends a
// last event with the final status.
import { api, apiError, errorWords, getJson, readEvents } from "../api.js";
import { ACTIONS, EDITABLE, FINISHED, h, s } from "../dom.js";
import { clock, currentZone, dateTime, duration, hourIn, number, percent, reasonText, t } from "../i18n.js";

const NEAR_CAP = 0.8;
const OUTCOMES = [["answered", "#1f8a4c"], ["no_answer", "#8e9aaf"], ["busy", "#b7791f"], ["machine", "#6b5bd6"],
  ["abandoned", "#c0392b"], ["failed", "#555"], ["congestion", "#a0522d"], ["opted_out", "#d63384"],
  ["unknown", "#999"]];
const LIVE_TILES = ["dialing", "ringing", "connected", "calls_per_minute", "queue_depth"];
const AGENT_POLL_MS = 1000;

const dayIn = (when, zone) => new Intl.DateTimeFormat("en-CA", { timeZone: zone, year: "numeric", month: "2-digit",
  day: "2-digit" }).format(new Date(when));

function tile(name, label) {
  return h("div", { class: "tile" }, h("span", { class: "label" }, label),
    h("span", { class: "value", dataset: { tile: name } }, "0"));
}

function panel(title, ...children) {
  return h("section", { class: "panel" }, h("h3", {}, title), ...children);
}

export async function render(view, ctx, params) {
  const id = params.id;
  let campaign;
  try {
    campaign = await getJson(`/v1/campaigns/${encodeURIComponent(id)}`);
  } catch (e) {
    view.append(h("p", { class: "error", role: "alert" }, e.message));
    return undefined;
  }
  const zone = campaign.time_zone || currentZone();
  const canControl = ctx.me.permissions.includes("campaigns.control");
  const canWrite = ctx.me.permissions.includes("campaigns.write");
  const el = {};
  const field = (name, tag = "span", attrs = {}) => (el[name] = h(tag, { ...attrs, dataset: { field: name } }));
  const buttons = Object.keys(ACTIONS).map((action) => h("button", {
    type: "button", class: action === "stop" ? "danger" : "", dataset: { action }, hidden: true,
    onclick: () => control(action) }, t(`action.${action}`)));
  const edit = h("a", { class: "button", href: `#/campaigns/${encodeURIComponent(id)}/edit`, hidden: true,
    id: "edit-campaign" }, t("action.edit"));

  view.append(h("article", { class: "campaign-live", dataset: { campaign: id } },
    h("header", { class: "campaign-head" },
      field("name", "h2"), field("status", "span", { class: "status" }),
      h("div", { class: "actions" }, ...buttons, edit)),
    field("updated", "p", { class: "muted" }),
    field("error", "p", { class: "error", role: "alert" }),
    field("notice", "p", { class: "alert", role: "status", hidden: true }),
    field("pbx", "p", { class: "alert over", role: "status", hidden: true }),
    h("h3", { class: "section" }, t("live.today", { zone })),
    h("div", { class: "tiles" }, tile("today_attempts", t("live.tile.attempts")),
      tile("today_answered", t("live.tile.answered")), tile("today_abandoned", t("live.tile.abandoned")),
      ...LIVE_TILES.map((g) => tile(g, t(`live.tile.${g}`))), tile("waiting", t("live.tile.waiting"))),
    h("div", { class: "panels" },
      panel(t("live.pacing"), field("pacing", "div", { class: "pacing" })),
      panel(t("live.abandon"), ...["24h", "30d"].map((w) => h("div", { class: "abandon", dataset: { window: w } },
        h("span", { class: "label" }, t(`live.abandon.${w}`)),
        h("div", { class: "bar" }, h("div", { class: "fill" }), h("div", { class: "cap" })),
        h("span", { class: "figure" }))), field("abandon-legal", "p", { hidden: true }),
        field("abandon-alert", "p", { class: "alert", hidden: true })),
      h("section", { class: "panel wide" }, field("agents-title", "h3"), field("agents", "div"))),
    h("div", { class: "panels" },
      panel(t("live.outcomes"), field("outcomes", "ul", { class: "denials" })),
      panel(t("live.denials"), field("denials", "ul", { class: "denials" })),
      h("section", { class: "panel wide" }, h("h3", {}, t("live.chart", { zone })), field("chart", "div",
        { class: "chart" }), field("legend", "ul", { class: "legend" }))),
    h("details", { class: "panel settings" }, h("summary", {}, t("live.settings")), field("settings", "dl"))));

  let snap = null;
  let agents = null;
  let status = campaign.status;

  const showStatus = (value) => {
    status = value;
    el.status.textContent = t(`status.${value}`);
    el.status.className = `status ${value}`;
    el.status.dataset.status = value;
    for (const b of buttons) b.hidden = !canControl || !ACTIONS[b.dataset.action].includes(value);
    edit.hidden = !canWrite || !EDITABLE.includes(value);
    const finished = FINISHED.includes(value);
    el.notice.hidden = !(finished || value === "stopping");
    el.notice.textContent = finished ? t("live.finished", { status: t(`status.${value}`) }) : t("live.stopping");
  };

  const settings = () => {
    const c = campaign;
    const rows = [
      [t("field.pacing_mode"), t(`mode.${c.pacing_mode}`)],
      [t("field.pacing_ratio"), c.pacing_mode === "power" ? number(c.pacing_ratio, 1) : "–"],
      [t("field.abandon_cap"), percent(c.abandon_cap || 0)],
      [t("field.legal_campaign"), c.legal_campaign || "–"],
      [t("field.agent_kind"), c.agent_kind === "ai" ? `${t("field.agent_kind.ai")}: ${c.ai_endpoint || ""}`
        : `${t("field.agent_kind.queue")}: ${c.queue || ""}`],
      [t("field.lists"), (c.lists || []).join(", ")],
      [t("field.caller_id"), c.caller_id || ""],
      [t("field.recording"), c.recording ? "✓" : "✗"],
      [t("field.max_attempts"), String(c.max_attempts)],
      [t("field.retry_rules"), Object.entries(c.retry_rules || {}).map(([k, v]) => `${t(`outcome.${k}`)}: ${v} min`)
        .join(" · ") || "–"],
      [t("field.time_zone"), zone],
    ];
    el.settings.replaceChildren(...rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
  };

  const renderPacing = () => {
    const p = (snap && snap.pacing) || {};
    const g = (snap && snap.gauges) || {};
    const lines = [h("p", {}, t("live.pacing.mode", { mode: t(`mode.${campaign.pacing_mode}`) }))];
    if (campaign.pacing_mode === "power") {
      lines.push(h("p", {}, t("live.pacing.ratio", { ratio: number(campaign.pacing_ratio, 1) })));
    }
    const staffed = g.queue_staffed || 0;
    if (campaign.agent_kind !== "ai") {
      // VICIdial's "dial level": lines being dialled per agent logged in.
      const level = staffed ? ((g.dialing || 0) + (g.ringing || 0)) / staffed : 0;
      lines.push(h("p", { dataset: { field: "dial-level" } }, t("live.pacing.level", { level: number(level, 2) })));
    }
    const reason = status === "running" ? p.reason : "";
    const text = reason ? (t(`pacing.${reason}`) === `pacing.${reason}` ? reason : t(`pacing.${reason}`))
      : t("pacing.idle");
    const holding = ["no-agents", "cap-reached", "guard-window", "backoff", "policy-error"].includes(reason);
    lines.push(h("p", { class: holding ? "alert over" : "", dataset: { field: "pacing-reason", reason: reason || "" } },
      t("live.pacing.now", { text })));
    if (reason && p.why) lines.push(h("p", { class: "muted" }, p.why));
    if (status === "running" && p.limited_by) {
      lines.push(h("p", { class: "alert", dataset: { field: "pacing-limit" } },
        t("live.pacing.limited", { text: t(`limit.${p.limited_by}`) })));
    }
    el.pacing.replaceChildren(...lines);
  };

  const renderAbandon = () => {
    const cap = snap.abandon_cap || 0;
    let worst = "";
    for (const w of ["24h", "30d"]) {
      const rate = snap.gauges[`abandon_rate_${w}`] || 0;
      const rowEl = view.querySelector(`.abandon[data-window="${w}"]`);
      const scale = Math.max(cap * 1.33, rate, 0.0001);
      rowEl.querySelector(".fill").style.width = `${Math.min(100, (100 * rate) / scale)}%`;
      rowEl.querySelector(".cap").style.left = `${(100 * cap) / scale}%`;
      rowEl.querySelector(".figure").textContent = t("live.abandon.figure", { rate: percent(rate, 2), cap: percent(cap, 2) });
      const level = cap > 0 && rate >= cap ? "over" : cap > 0 && rate >= NEAR_CAP * cap ? "near" : "";
      rowEl.className = `abandon ${level}`;
      if (level === "over" || (level === "near" && !worst)) worst = level;
    }
    // A member of a legal campaign (docs/pacing.md): the cap applies to all its members together.
    const members = snap.gauges.legal_members || 0;
    el["abandon-legal"].hidden = !members;
    el["abandon-legal"].textContent = members ? t("live.abandon.legal", { key: campaign.legal_campaign || "",
      members: number(members), day: percent(snap.gauges.legal_abandon_rate_24h || 0, 2),
      month: percent(snap.gauges.legal_abandon_rate_30d || 0, 2) }) : "";
    el["abandon-alert"].hidden = !worst;
    el["abandon-alert"].className = `alert ${worst}`;
    el["abandon-alert"].textContent = worst === "over" ? t("live.abandon.over") : t("live.abandon.near");
  };

  const counts = (target, entries, text) => {
    const sorted = entries.filter(([, n]) => n > 0).sort((a, b) => b[1] - a[1]);
    const top = sorted.length ? sorted[0][1] : 1;
    target.replaceChildren(...sorted.map(([code, n]) => h("li", { dataset: { reason: code }, title: code },
      h("span", { class: "what" }, text(code)), h("div", { class: "dbar", style: `width:${(100 * n) / top}%` }),
      h("span", { class: "count" }, number(n)))));
    if (!sorted.length) target.append(h("li", { class: "muted" }, t("live.none")));
  };

  const renderChart = () => {
    const hourly = snap.hourly || [];
    const width = 960, height = 170, pad = 22;
    const slot = (width - pad) / Math.max(1, hourly.length);
    const total = (x) => OUTCOMES.reduce((sum, [k]) => sum + (x[k] || 0), 0);
    const top = Math.max(1, ...hourly.map((x) => Math.max(x.attempts || 0, total(x))));
    const scale = (v) => ((height - pad) * v) / top;
    const root = s("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": t("live.chart", { zone }),
      preserveAspectRatio: "none" });
    root.append(s("line", { x1: pad, y1: height - pad, x2: width, y2: height - pad, stroke: "#d9dde5" }));
    root.append(s("text", { x: 0, y: 12, "font-size": 12, fill: "#667085" }, String(top)));
    hourly.forEach((x, i) => {
      const left = pad + i * slot;
      const label = `${String(hourIn(x.hour, zone)).padStart(2, "0")}:00`;
      const attempts = x.attempts || 0;
      root.append(s("rect", { x: left + 1, y: height - pad - scale(attempts), width: Math.max(1, slot / 2 - 2),
        height: scale(attempts), fill: "#c9d3e6" }, s("title", {}, `${label}: ${attempts} ${t("live.chart.attempts")}`)));
      let y = height - pad;
      for (const [outcome, colour] of OUTCOMES) {
        const n = x[outcome] || 0;
        if (!n) continue;
        y -= scale(n);
        root.append(s("rect", { x: left + slot / 2, y, width: Math.max(1, slot / 2 - 2), height: scale(n), fill: colour },
          s("title", {}, `${label}: ${n} ${t(`outcome.${outcome}`)}`)));
      }
      if (i % 3 === 0) root.append(s("text", { x: left, y: height - 6, "font-size": 12, fill: "#667085" }, label.slice(0, 2)));
    });
    el.chart.replaceChildren(root);
    if (!el.legend.childElementCount) {
      el.legend.append(...[["attempts", "#c9d3e6"], ...OUTCOMES].map(([name, colour]) => h("li", {},
        h("span", { class: "swatch", style: `background:${colour}` }),
        name === "attempts" ? t("live.chart.attempts") : t(`outcome.${name}`))));
    }
  };

  const renderSnap = () => {
    el.name.textContent = snap.name || campaign.name;
    showStatus(snap.status);
    el.updated.textContent = snap.updated_at ? t("live.updated", { time: clock(snap.updated_at, currentZone(), true) })
      : t("live.no_figures");
    for (const g of LIVE_TILES) view.querySelector(`[data-tile="${g}"]`).textContent = number(snap.gauges[g] || 0);
    const today = dayIn(Date.now(), zone);
    const hours = (snap.hourly || []).filter((x) => dayIn(x.hour, zone) === today);
    const sum = (k) => hours.reduce((n, x) => n + (x[k] || 0), 0);
    view.querySelector('[data-tile="today_attempts"]').textContent = number(sum("attempts"));
    view.querySelector('[data-tile="today_answered"]').textContent = number(sum("answered"));
    view.querySelector('[data-tile="today_abandoned"]').textContent = number(sum("abandoned"));
    renderPacing();
    renderAbandon();
    counts(el.outcomes, Object.entries(snap.dispositions || {}), (code) => t(`outcome.${code}`));
    counts(el.denials, Object.entries(snap.denials || {}), (code) => reasonText(code));
    renderChart();
    const draining = snap.servers_draining || [];
    el.pbx.hidden = !draining.length;
    el.pbx.textContent = draining.map((d) => t("live.draining", { server: d.server, message: d.message,
      since: clock(d.since, currentZone(), true) })).join(" ");
  };

  const renderAgents = () => {
    if (!agents) return;
    el["agents-title"].textContent = agents.queue ? t("live.agents", { queue: agents.queue }) : t("live.agents.ai");
    view.querySelector('[data-tile="waiting"]').textContent = agents.waiting === null ? "–" : number(agents.waiting);
    if (!agents.queue) {
      el.agents.replaceChildren();
      return;
    }
    if (!agents.agents.length) {
      el.agents.replaceChildren(h("p", { class: "muted" }, t("live.agents.none")));
      return;
    }
    const offset = agents.now * 1000 - agents.received;
    const nowServer = (Date.now() + offset) / 1000;
    const callText = (call) => {
      if (!call) return "";
      if (call.other_tenant) return t("live.agents.other_tenant");
      return h("a", { href: `#/campaigns/${encodeURIComponent(call.campaign)}` }, call.name || call.campaign);
    };
    el.agents.replaceChildren(h("table", { class: "grid stack", id: "agents-table" },
      h("thead", {}, h("tr", {}, ["name", "state", "since", "call"].map((k) => h("th", { scope: "col" },
        t(`live.agents.col.${k}`))))),
      h("tbody", {}, agents.agents.map((a) => h("tr", { dataset: { agent: a.name, state: a.state } },
        h("td", { dataset: { label: t("live.agents.col.name") } }, a.name),
        h("td", { dataset: { label: t("live.agents.col.state"), field: "state" } },
          h("span", { class: `agent-state ${a.state}` }, t(`agent.${a.state}`))),
        h("td", { dataset: { label: t("live.agents.col.since"), field: "since" }, title: dateTime(a.since) },
          duration(nowServer - a.since)),
        h("td", { dataset: { label: t("live.agents.col.call") } }, callText(a.call)))))));
  };

  async function control(action) {
    if (action === "stop" && !window.confirm(t("action.stop_confirm"))) return;
    buttons.forEach((b) => { b.disabled = true; });
    el.error.textContent = "";
    try {
      const resp = await api(`/v1/campaigns/${encodeURIComponent(id)}/${action}`, { method: "POST" });
      if (!resp.ok) {
        el.error.textContent = errorWords(await apiError(resp));
        return;
      }
      campaign = { ...campaign, ...(await resp.json()) };
      showStatus(campaign.status);
      if (snap) renderPacing();
    } finally {
      buttons.forEach((b) => { b.disabled = false; });
    }
  }

  el.name.textContent = campaign.name;
  showStatus(status);
  settings();
  renderPacing();

  // The live parts: the event stream (reconnects after a second), the agents (polled), a clock for times in state.
  const controller = new AbortController();
  let closed = false;
  (async () => {
    while (!closed) {
      try {
        await readEvents(`/v1/campaigns/${encodeURIComponent(id)}/events`, controller.signal, (type, data) => {
          if (type === "stats") {
            snap = data;
            renderSnap();
            el.error.textContent = "";
          }
        });
      } catch (e) {
        if (closed) return;
        el.error.textContent = t("live.stream_lost", { message: e.message });
        if (e.status === 401 || e.status === 403 || e.status === 404) return;
      }
      await new Promise((resolve) => { setTimeout(resolve, 1000); });
    }
  })();
  const pollAgents = async () => {
    try {
      agents = { ...(await getJson(`/v1/campaigns/${encodeURIComponent(id)}/agents`)), received: Date.now() };
      renderAgents();
    } catch (e) { /* the stream reports connection problems */ }
  };
  await pollAgents();
  const timer = setInterval(pollAgents, AGENT_POLL_MS);
  return () => {
    closed = true;
    controller.abort();
    clearInterval(timer);
  };
}
