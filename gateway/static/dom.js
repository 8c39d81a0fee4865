// Building DOM from scripts without innerHTML (nothing from the API is ever parsed as HTML).
// h("a", {href: "#/x", class: "link", dataset: {id: "1"}, onclick: f}, "text", child) -> element
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "style") el.style.cssText = value; // through the CSSOM: the CSP blocks style attributes
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key in el && typeof value !== "string") el[key] = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

const SVG = "http://www.w3.org/2000/svg";
export function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  for (const child of children) el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return el;
}

// Campaign statuses, grouped the way the campaign list filters them.
export const ACTIVE = ["scheduled", "running", "paused", "stopping"];
export const FINISHED = ["completed", "archived"];
// Which control buttons a status allows (dialer/campaigns.py TRANSITIONS, for people).
export const ACTIONS = { start: ["draft", "scheduled"], pause: ["running"], resume: ["paused"],
  stop: ["running", "paused", "scheduled"], archive: ["draft", "completed"] };
export const EDITABLE = ["draft", "scheduled", "paused"];
