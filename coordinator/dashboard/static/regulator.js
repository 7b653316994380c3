// The regulator's view: every log's verification state, alerts, the audit timeline and budget use.
// Reads GET /audit/status, /audit/alerts, /audit/entries, /audit/usage; "Verify now" is POST /audit/sync.

import { api } from "./api.js";
import { usageBars } from "./charts.js";
import { byId, h, replaceChildren, shortId, showProblem, utc } from "./dom.js";

const PAGE_SIZE = 50;
const STATES = {
  verified: { text: "Verified", mark: "✓" },
  failed: { text: "Failed", mark: "✗" },
  unreachable: { text: "Unreachable", mark: "!" },
};

let offset = 0;
let wired = false;

export function startRegulator() {
  if (!wired) {
    wire();
    wired = true;
  }
  offset = 0;
  return reload();
}

/** Read everything again, as of the index's last check (no new check). */
function reload() {
  return Promise.all([loadStatus(), loadAlerts(), loadTimeline(), loadUsage()]);
}

export function stopRegulator() {
  for (const id of ["log-rows", "alert-rows", "entry-rows", "usage-cards"]) byId(id).replaceChildren();
  byId("filters").reset();
  byId("sync-note").textContent = "";
}

function wire() {
  byId("verify-now").addEventListener("click", verifyNow);
  byId("refresh-audit").addEventListener("click", reload);
  byId("filters").addEventListener("submit", (event) => {
    event.preventDefault();
    offset = 0;
    loadTimeline();
  });
  byId("filters").addEventListener("reset", () => {
    offset = 0;
    window.setTimeout(loadTimeline, 0); // after the form has cleared its fields
  });
  byId("page-newer").addEventListener("click", () => {
    offset = Math.max(0, offset - PAGE_SIZE);
    loadTimeline();
  });
  byId("page-older").addEventListener("click", () => {
    offset += PAGE_SIZE;
    loadTimeline();
  });
}

async function guarded(region, work) {
  try {
    await work();
    showProblem(byId(region), "");
  } catch (error) {
    showProblem(byId(region), error.detail || String(error));
  }
}

// --- logs ---------------------------------------------------------------------------------------------

function loadStatus() {
  return guarded("logs-problem", async () => {
    const statuses = await api("/audit/status");
    renderStatus(statuses);
    byId("sync-note").textContent = statuses.length
      ? `As of the last check. ${summary(statuses)}`
      : "No log has been checked yet: press Verify now.";
  });
}

async function verifyNow() {
  const button = byId("verify-now");
  button.disabled = true;
  button.textContent = "Verifying…";
  byId("sync-note").textContent = "Fetching and verifying every log's new entries…";
  try {
    await guarded("logs-problem", async () => {
      const full = byId("full-sync").checked;
      const statuses = await api("/audit/sync", { method: "POST", params: { full: full ? "true" : "" } });
      renderStatus(statuses);
      byId("sync-note").textContent = `Checked ${full ? "every entry again" : "new entries"} just now. ${summary(statuses)}`;
    });
    await Promise.all([loadAlerts(), loadTimeline(), loadUsage()]);
  } finally {
    // Enabled again only once everything shown is as of this check.
    button.disabled = false;
    button.textContent = "Verify now";
  }
}

function summary(statuses) {
  const count = (state) => statuses.filter((item) => item.state === state).length;
  const parts = [`${count("verified")} of ${statuses.length} logs verified`];
  if (count("failed")) parts.push(`${count("failed")} failed`);
  if (count("unreachable")) parts.push(`${count("unreachable")} unreachable`);
  return `${parts.join(", ")}.`;
}

function renderStatus(statuses) {
  const rows = statuses.map((item) => {
    const state = STATES[item.state] || { text: item.state, mark: "?" };
    return h(
      "tr",
      { class: `state-${item.state}`, "data-testid": `log-row-${item.log}`, "data-state": item.state },
      h("th", { scope: "row" }, item.log, h("span", { class: "kind" }, item.kind === "coordinator" ? "coordinator" : "node")),
      h("td", {}, h("span", { class: `badge ${item.state}`, "data-testid": "log-state" }, `${state.mark} ${state.text}`)),
      h("td", { class: "num" }, String(item.verified_size)),
      h("td", { class: "num" }, item.head ? String(item.head.tree_size) : "—"),
      h(
        "td",
        { class: "num", "data-testid": "first-bad-index" },
        item.first_bad_index === null ? "—" : h("strong", {}, `#${item.first_bad_index}`),
      ),
      h("td", { class: "reason" }, item.reason),
      h("td", { class: item.alerts ? "num alerting" : "num" }, item.alerts ? `⚠ ${item.alerts}` : "0"),
      h("td", { class: "time" }, utc(item.checked_at)),
    );
  });
  replaceChildren(byId("log-rows"), rows);
  const select = byId("f-log");
  const chosen = select.value;
  replaceChildren(select, [
    h("option", { value: "" }, "any"),
    ...statuses.map((item) => h("option", { value: item.log, selected: item.log === chosen }, item.log)),
  ]);
}

// --- alerts -------------------------------------------------------------------------------------------

function loadAlerts() {
  return guarded("logs-problem", async () => {
    const alerts = await api("/audit/alerts");
    byId("alerts-empty").hidden = alerts.length > 0;
    byId("alerts-table").hidden = alerts.length === 0;
    const rows = [...alerts].reverse().map((alert) =>
      h(
        "tr",
        { "data-testid": `alert-${alert.alert_id}`, "data-kind": alert.kind },
        h("td", { class: "num" }, String(alert.alert_id)),
        h("th", { scope: "row" }, alert.node),
        h("td", {}, h("span", { class: "badge failed" }, `⚠ ${alert.kind}`)),
        h("td", { class: "reason" }, alert.detail),
        h("td", { class: "num" }, `${alert.conflicting.tree_size} kept · ${alert.head.tree_size} seen`),
        h("td", {}, alert.source),
        h("td", { class: "time" }, utc(alert.raised_at)),
      ),
    );
    replaceChildren(byId("alert-rows"), rows);
  });
}

// --- timeline -----------------------------------------------------------------------------------------

function filters() {
  const form = new FormData(byId("filters"));
  const params = {};
  for (const name of ["log", "org", "dataset", "agreement", "purpose", "decision"]) {
    params[name] = String(form.get(name) || "").trim();
  }
  for (const name of ["since", "until"]) {
    const value = String(form.get(name) || "");
    // datetime-local gives "2026-05-01T09:30" or "...:12"; the field says UTC, the API wants RFC 3339
    if (value) params[name] = `${value.length === 16 ? `${value}:00` : value}Z`;
  }
  return params;
}

let timelineRequest = 0;

function loadTimeline() {
  const request = ++timelineRequest;
  return guarded("timeline-problem", async () => {
    const page = await api("/audit/entries", { params: { ...filters(), limit: PAGE_SIZE, offset } });
    if (request !== timelineRequest) return; // a newer search (other filters) was sent meanwhile
    replaceChildren(byId("entry-rows"), page.entries.map(entryRow));
    const last = page.offset + page.entries.length;
    byId("timeline-summary").textContent = page.total
      ? `Entries ${page.offset + 1}–${last} of ${page.total}, newest first.`
      : "No entry matches these filters.";
    byId("page-newer").disabled = page.offset === 0;
    byId("page-older").disabled = last >= page.total;
  });
}

function entryRow(entry) {
  const denied = entry.decision !== "allow";
  const what = [entry.dataset, entry.purpose].filter(Boolean).join(" · ") || "—";
  return h(
    "tr",
    {
      class: denied ? "deny" : "allow",
      "data-testid": denied ? "entry-deny" : "entry-allow",
      "data-log": entry.log,
      "data-index": entry.index,
    },
    h("td", { class: "time" }, utc(entry.time)),
    h("td", { class: "nowrap" }, entry.log, h("span", { class: "sub" }, `entry #${entry.index}`)),
    h("td", { class: "nowrap" }, h("strong", {}, entry.actor), h("span", { class: "sub" }, `${entry.org} · ${entry.role}`)),
    h(
      "td",
      { class: "method", title: entry.method },
      entry.method.replace(/^\/ipspace\.v1\./, ""), // every node RPC has this prefix; the title keeps it
      entry.target ? h("span", { class: "sub", title: entry.target }, shortId(entry.target, 28)) : null,
    ),
    h(
      "td",
      {},
      h("span", { class: `badge ${denied ? "failed" : "verified"}`, "data-testid": "decision" }, denied ? "✗ denied" : "✓ allowed"),
      h("span", { class: "sub" }, entry.status),
    ),
    h("td", { class: "reason", "data-testid": "reason" }, entry.reason),
    h("td", {}, what),
    h("td", { class: "id", title: entry.agreement_id || "" }, shortId(entry.agreement_id)),
  );
}

// --- usage --------------------------------------------------------------------------------------------

function loadUsage() {
  return guarded("usage-problem", async () => {
    // Entries made without an agreement carry an empty id; they are no agreement's use.
    const usage = (await api("/audit/usage")).filter((item) => item.agreement_id);
    byId("usage-empty").hidden = usage.length > 0;
    replaceChildren(byId("usage-cards"), usage.map(usageCard));
    replaceChildren(
      byId("agreement-ids"),
      usage.map((item) => h("option", { value: item.agreement_id }, `${item.provider_org || "?"} → ${item.consumer_org || "?"}`)),
    );
  });
}

function usageCard(item) {
  const actions = new Set(item.actions);
  const measures = [];
  if (actions.has("train") || item.epsilon_limit !== null || item.epsilon_spent) {
    measures.push({ label: "privacy ε", used: item.epsilon_spent || 0, limit: item.epsilon_limit, unit: "ε" });
  }
  if (actions.has("match") || item.match_queries) {
    measures.push({ label: "match queries", used: item.match_queries, limit: item.match_queries_limit, unit: "queries", digits: 0 });
  }
  if (actions.has("reveal") || item.reveal_records) {
    measures.push({ label: "revealed records", used: item.reveal_records, limit: item.reveal_records_limit, unit: "records", digits: 0 });
  }
  const parties = `${item.provider_org || "unknown provider"} → ${item.consumer_org || "unknown consumer"}`;
  const filter = h("button", { type: "button", class: "quiet small" }, "Show its entries");
  filter.addEventListener("click", () => {
    byId("f-agreement").value = item.agreement_id;
    offset = 0;
    loadTimeline();
    byId("timeline-title").scrollIntoView({ behavior: "smooth", block: "start" });
  });
  return h(
    "article",
    { class: item.revoked_at ? "usage revoked" : "usage", "data-testid": `usage-${item.agreement_id}` },
    h("h3", {}, parties),
    h(
      "p",
      { class: "sub" },
      [item.dataset, item.purpose, (item.actions || []).join(", ")].filter(Boolean).join(" · "),
      h("br"),
      "agreement ",
      h("code", { title: item.agreement_id }, shortId(item.agreement_id, 16)),
    ),
    item.revoked_at ? h("p", { class: "badge failed" }, `revoked ${utc(item.revoked_at)}`) : null,
    measures.length
      ? usageBars(measures, `Use of agreement ${shortId(item.agreement_id)}`)
      : h("p", { class: "hint" }, "Its limits are unknown here: the agreement is not registered with the coordinator."),
    h(
      "p",
      { class: "counts" },
      `${plural(item.allowed, "call")} allowed · `,
      h("span", { class: item.denied ? "denied-count" : "" }, `${item.denied} denied`),
      item.training_rounds ? ` · ${plural(item.training_rounds, "training round")}` : "",
      item.match_queries_per_day_limit ? ` · at most ${item.match_queries_per_day_limit} queries a day` : "",
      item.delta !== null ? ` · δ ${item.delta}` : "",
      " ",
      filter,
    ),
  );
}

function plural(count, noun) {
  return `${count} ${noun}${count === 1 ? "" : "s"}`;
}
