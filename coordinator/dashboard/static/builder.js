// The model builder's view: its org's jobs, and the chosen job's progress and training curve.
// Reads GET /jobs and GET /jobs/{id}; while the chosen job is queued or running it is read again every few
// seconds.

import { api } from "./api.js";
import { lineChart } from "./charts.js";
import { byId, h, number, replaceChildren, showProblem, utc } from "./dom.js";

const REFRESH_MS = 5000;
const ACTIVE = new Set(["queued", "running"]);
const PREFERRED_METRICS = ["train_loss", "loss"];

let chosen = null;
let job = null;
let timer = null;
let wired = false;

export function startBuilder() {
  if (!wired) {
    byId("refresh-jobs").addEventListener("click", () => loadJobs());
    byId("metric").addEventListener("change", () => job && drawCurve(job));
    wired = true;
  }
  return loadJobs();
}

export function stopBuilder() {
  window.clearTimeout(timer);
  timer = null;
  chosen = null;
  job = null;
  byId("job-rows").replaceChildren();
  byId("job-detail").hidden = true;
}

async function loadJobs() {
  try {
    const jobs = await api("/jobs");
    showProblem(byId("jobs-problem"), "");
    byId("jobs-empty").hidden = jobs.length > 0;
    if (!chosen && jobs.length) {
      const active = jobs.filter((item) => ACTIVE.has(item.state));
      chosen = (active.length ? active : jobs)[(active.length ? active : jobs).length - 1].job_id;
    }
    replaceChildren(byId("job-rows"), jobs.map(jobRow));
    if (chosen) await loadJob(chosen);
  } catch (error) {
    showProblem(byId("jobs-problem"), error.detail || String(error));
  }
}

function jobRow(item) {
  const open = h("button", { type: "button", class: "link", "aria-pressed": item.job_id === chosen ? "true" : "false" }, item.job_id);
  open.addEventListener("click", () => {
    chosen = item.job_id;
    for (const other of byId("job-rows").querySelectorAll("button.link")) other.setAttribute("aria-pressed", "false");
    open.setAttribute("aria-pressed", "true");
    loadJob(chosen);
  });
  return h(
    "tr",
    { "data-testid": `job-row-${item.job_id}`, class: item.job_id === chosen ? "chosen" : "" },
    h("th", { scope: "row" }, open),
    h("td", {}, item.task),
    h("td", {}, `${item.dataset} · ${item.purpose}`),
    h("td", {}, h("span", { class: `badge job-${item.state}` }, item.state)),
    h("td", { class: "num" }, `${item.rounds_completed} / ${item.rounds_planned}`),
    h("td", { class: "time" }, utc(item.updated_at)),
  );
}

async function loadJob(jobId) {
  window.clearTimeout(timer);
  try {
    const status = await api(`/jobs/${encodeURIComponent(jobId)}`);
    if (jobId !== chosen) return; // another job was chosen meanwhile
    job = status;
    showProblem(byId("job-problem"), "");
    renderJob(job);
    if (ACTIVE.has(job.state)) timer = window.setTimeout(() => chosen === jobId && loadJob(jobId), REFRESH_MS);
  } catch (error) {
    byId("job-detail").hidden = false;
    showProblem(byId("job-problem"), error.detail || String(error));
  }
}

function renderJob(status) {
  byId("job-detail").hidden = false;
  byId("job-title").textContent = `Job ${status.job_id}`;
  byId("job-state").replaceChildren(h("span", { class: `badge job-${status.state}` }, status.state));
  const progress = byId("job-progress");
  progress.max = Math.max(status.rounds_planned, 1);
  progress.value = status.rounds_completed;
  byId("job-progress-text").textContent = `${status.rounds_completed} of ${status.rounds_planned} rounds done`;
  const about = [
    `${status.task} on ${status.dataset} for ${status.purpose}`,
    `${status.spec.agreements.length} agreements`,
    status.spec.epsilon === null ? "no differential privacy" : `ε at most ${status.spec.epsilon} per node`,
    `submitted by ${status.submitted_by} ${utc(status.created_at)} UTC`,
  ];
  byId("job-reason").textContent = `${about.join(" · ")}${status.reason ? `. ${status.reason}` : ""}`;
  chooseMetric(status);
  drawCurve(status);
  renderEpsilon(status);
  renderRounds(status);
}

function metricNames(status) {
  const names = new Set();
  for (const round of status.rounds) for (const name of Object.keys(round.metrics)) names.add(name);
  return [...names].sort();
}

function chooseMetric(status) {
  const select = byId("metric");
  const names = metricNames(status);
  const current = select.value;
  const pick = names.includes(current) ? current : PREFERRED_METRICS.find((name) => names.includes(name)) || names[0];
  replaceChildren(select, names.map((name) => h("option", { value: name, selected: name === pick }, name)));
  select.disabled = names.length === 0;
}

function drawCurve(status) {
  const metric = byId("metric").value;
  const points = status.rounds
    .filter((round) => Number.isFinite(round.metrics[metric]))
    .map((round) => ({ x: round.round, y: round.metrics[metric] }));
  const box = byId("curve");
  if (!points.length) {
    box.replaceChildren(h("p", { class: "hint" }, "No round has reported yet: the curve appears after the first round."));
    return;
  }
  // The x axis runs to the planned rounds, so the curve also shows how far the job has come.
  box.replaceChildren(lineChart(points, { xLabel: "round", yLabel: metric, xEnd: status.rounds_planned }));
}

function renderEpsilon(status) {
  const spent = Object.entries(status.epsilon_spent_by_node).sort(([a], [b]) => a.localeCompare(b));
  byId("epsilon-empty").hidden = spent.length > 0;
  byId("epsilon-table").hidden = spent.length === 0;
  replaceChildren(
    byId("epsilon-rows"),
    spent.map(([node, epsilon]) => h("tr", {}, h("th", { scope: "row" }, node), h("td", { class: "num" }, number(epsilon, 3)))),
  );
}

function renderRounds(status) {
  const names = metricNames(status);
  replaceChildren(byId("round-head"), [
    h("tr", {}, h("th", { scope: "col", class: "num" }, "round"), names.map((name) => h("th", { scope: "col", class: "num" }, name))),
  ]);
  replaceChildren(
    byId("round-rows"),
    status.rounds.map((round) =>
      h(
        "tr",
        {},
        h("th", { scope: "row", class: "num" }, String(round.round)),
        names.map((name) => h("td", { class: "num" }, name in round.metrics ? number(round.metrics[name], 4) : "—")),
      ),
    ),
  );
}
