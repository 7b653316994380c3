// Small DOM helpers. Every text from the API goes in as a text node (never innerHTML): audit entries carry
// names and reasons that members chose.

const SVG_NS = "http://www.w3.org/2000/svg";

function build(element, attrs, children) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") element.setAttribute("class", value);
    else if (name === "text") element.textContent = String(value);
    else if (name.startsWith("on") && typeof value === "function") element.addEventListener(name.slice(2), value);
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

/** An HTML element: h("td", {class: "num"}, "12"). */
export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

/** An SVG element, drawn by our own code (no inline style: the page's CSP forbids it; classes do the look). */
export function s(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

export function byId(id) {
  const element = document.getElementById(id);
  if (!element) throw new Error(`the page has no #${id}`);
  return element;
}

export function replaceChildren(parent, children) {
  parent.replaceChildren(...children.filter((child) => child !== null && child !== undefined));
}

/** Show `message` in a problem region, or hide the region when `message` is empty. */
export function showProblem(region, message) {
  region.textContent = message || "";
  region.hidden = !message;
}

/** "2026-05-01T09:30:12.123456Z" -> "2026-05-01 09:30:12" (the API speaks UTC). */
export function utc(text) {
  if (!text) return "—";
  const match = /^(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d)/.exec(text);
  return match ? `${match[1]} ${match[2]}` : text;
}

/** The first characters of a long digest; the whole one goes in a title. */
export function shortId(id, length = 12) {
  if (!id) return "—";
  return id.length > length + 1 ? `${id.slice(0, length)}…` : id;
}

export function number(value, digits = 2) {
  if (value === null || value === undefined) return "—";
  return Number.isInteger(value) ? String(value) : value.toFixed(digits);
}
