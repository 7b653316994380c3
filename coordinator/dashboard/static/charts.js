// Charts as inline SVG, drawn here: no library, no network. Each chart has a text alternative
// (role="img" with an aria-label) and the numbers are also written next to the bars or in a table.

import { number, s } from "./dom.js";

const BAR_WIDTH = 560;
const LABEL_WIDTH = 150;
const VALUE_WIDTH = 170;
const ROW_HEIGHT = 34;

/**
 * Horizontal bars of use against a limit, one row per measure:
 * [{label, used, limit, unit}] (limit null: none set).
 */
export function usageBars(measures, title) {
  const track = BAR_WIDTH - LABEL_WIDTH - VALUE_WIDTH;
  const height = measures.length * ROW_HEIGHT + 6;
  const summary = measures.map((m) => `${m.label}: ${usedText(m)}`).join("; ");
  const chart = s("svg", {
    class: "chart bars",
    viewBox: `0 0 ${BAR_WIDTH} ${height}`,
    role: "img",
    "aria-label": `${title}. ${summary}`,
  });
  measures.forEach((measure, row) => {
    const y = row * ROW_HEIGHT + 6;
    const share = measure.limit ? Math.min(measure.used / measure.limit, 1) : 0;
    const level = !measure.limit ? "none" : measure.used >= measure.limit ? "full" : share >= 0.8 ? "high" : "ok";
    chart.append(
      s("text", { x: 0, y: y + 15, class: "bar-label" }, measure.label),
      s("rect", {
        x: LABEL_WIDTH,
        y: y + 3,
        width: track,
        height: 16,
        rx: 3,
        class: measure.limit ? "bar-track" : "bar-track open",
      }),
      measure.limit
        ? s("rect", {
            x: LABEL_WIDTH,
            y: y + 3,
            width: Math.max(share * track, measure.used > 0 ? 2 : 0),
            height: 16,
            rx: 3,
            class: `bar-fill ${level}`,
          })
        : null,
      s("text", { x: LABEL_WIDTH + track + 10, y: y + 15, class: `bar-value ${level}` }, usedText(measure)),
    );
  });
  return chart;
}

function usedText(measure) {
  const used = number(measure.used, measure.digits ?? 2);
  if (!measure.limit) return `${used} ${measure.unit} · no limit`;
  const percent = Math.round((100 * measure.used) / measure.limit);
  return `${used} of ${number(measure.limit, measure.digits ?? 2)} ${measure.unit} (${percent}%)`;
}

const LINE = { width: 640, height: 300, left: 64, right: 18, top: 16, bottom: 46 };

/** A line chart of `points` [{x, y}] (x: round numbers from 1; the axis runs to `xEnd` at least), with axes,
 * ticks and labelled points. */
export function lineChart(points, { xLabel, yLabel, xEnd = 0 }) {
  const { width, height, left, right, top, bottom } = LINE;
  const chart = s("svg", {
    class: "chart line",
    viewBox: `0 0 ${width} ${height}`,
    role: "img",
    "aria-label": `${yLabel} by ${xLabel}: ${points.map((p) => `${p.x}: ${number(p.y, 4)}`).join(", ")}`,
  });
  const plotWidth = width - left - right;
  const plotHeight = height - top - bottom;
  const xs = points.map((p) => p.x);
  const ys = points.map((p) => p.y);
  const xMin = Math.min(...xs, 1);
  const xMax = Math.max(...xs, xEnd, xMin + 1);
  const yTicks = niceTicks(Math.min(...ys), Math.max(...ys));
  const [yMin, yMax] = [yTicks[0], yTicks[yTicks.length - 1]];
  const xAt = (x) => left + ((x - xMin) / (xMax - xMin)) * plotWidth;
  const yAt = (y) => top + plotHeight - ((y - yMin) / (yMax - yMin)) * plotHeight;

  for (const tick of yTicks) {
    chart.append(
      s("line", { x1: left, x2: width - right, y1: yAt(tick), y2: yAt(tick), class: "gridline" }),
      s("text", { x: left - 8, y: yAt(tick) + 4, class: "tick y" }, formatTick(tick, yTicks)),
    );
  }
  const step = Math.max(1, Math.ceil((xMax - xMin + 1) / 12));
  for (let x = xMin; x <= xMax; x += step) {
    chart.append(
      s("line", { x1: xAt(x), x2: xAt(x), y1: top + plotHeight, y2: top + plotHeight + 5, class: "axis" }),
      s("text", { x: xAt(x), y: top + plotHeight + 19, class: "tick x" }, String(x)),
    );
  }
  chart.append(
    s("line", { x1: left, x2: width - right, y1: top + plotHeight, y2: top + plotHeight, class: "axis" }),
    s("line", { x1: left, x2: left, y1: top, y2: top + plotHeight, class: "axis" }),
    s("text", { x: left + plotWidth / 2, y: height - 6, class: "axis-label" }, xLabel),
    s(
      "text",
      { x: 14, y: top + plotHeight / 2, class: "axis-label", transform: `rotate(-90 14 ${top + plotHeight / 2})` },
      yLabel,
    ),
  );
  const path = points.map((p, i) => `${i ? "L" : "M"}${xAt(p.x).toFixed(1)},${yAt(p.y).toFixed(1)}`).join(" ");
  chart.append(s("path", { d: path, class: "curve" }));
  for (const p of points) {
    chart.append(
      s(
        "circle",
        { cx: xAt(p.x), cy: yAt(p.y), r: 4, class: "point", "data-round": p.x },
        s("title", {}, `${xLabel} ${p.x}: ${yLabel} ${number(p.y, 4)}`),
      ),
    );
  }
  return chart;
}

/** About five round tick values spanning [low, high]. */
function niceTicks(low, high) {
  if (low === high) {
    const pad = Math.abs(low) * 0.1 || 1;
    [low, high] = [low - pad, high + pad];
  }
  const raw = (high - low) / 4;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((f) => f * magnitude).find((candidate) => candidate >= raw);
  const ticks = [];
  for (let tick = Math.floor(low / step) * step; tick <= high + step * 1e-9; tick += step) ticks.push(tick);
  if (ticks[ticks.length - 1] < high) ticks.push(ticks[ticks.length - 1] + step);
  return ticks;
}

function formatTick(value, ticks) {
  const step = ticks.length > 1 ? Math.abs(ticks[1] - ticks[0]) : 1;
  let digits = 0; // the fewest digits that still tell the ticks apart
  while (digits < 6 && Math.abs(Number(step.toFixed(digits)) - step) > step * 1e-6) digits += 1;
  return Math.abs(value) < step * 1e-9 ? "0" : value.toFixed(digits);
}
