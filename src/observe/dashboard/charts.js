// Switchyard dashboard: drawing and formatting. SVG charts drawn by hand (no library), and
// the number formats. Every label is set with textContent: names come from client traffic.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const MINUTE = 60000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

// ---------- elements and formats ----------


function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (name === "class") node.className = value;
    else node.setAttribute(name, value);
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = String(text);
  return node;
}

function titled(node, text) {
  node.append(svg("title", {}, text));
  return node;
}

const pad = (n) => String(n).padStart(2, "0");
function clock(ms) {
  const d = new Date(ms);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}`;
}
function dateTime(ms) {
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${clock(ms)}`;
}
function shortDate(ms) {
  const d = new Date(ms);
  return `${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}

function fmtInt(n) {
  return Math.round(n).toLocaleString("en-US");
}
function fmtCompact(n) {
  if (n >= 1e9) return `${(n / 1e9).toFixed(1)}G`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  if (n >= 1e4) return `${(n / 1e3).toFixed(1)}k`;
  return fmtInt(n);
}
function fmtUsd(n) {
  if (n === 0) return "$0";
  if (n >= 100) return `$${n.toFixed(0)}`;
  if (n >= 1) return `$${n.toFixed(2)}`;
  return `$${Number(n.toPrecision(3))}`;
}
function fmtMs(n) {
  if (n === null || n === undefined || Number.isNaN(n)) return "–";
  if (n === 0) return "0 ms";
  if (n >= 1000) return `${(n / 1000).toFixed(2)} s`;
  if (n >= 100) return `${n.toFixed(0)} ms`;
  return `${n.toFixed(1)} ms`;
}
function fmtPct(rate) {
  if (!rate) return "0%";
  const pct = rate * 100;
  return `${pct >= 1 ? pct.toFixed(1) : pct.toFixed(2)}%`;
}

// ---------- charts ----------

// A round step for four gridlines that reach past `max`.
function niceStep(max) {
  if (!(max > 0)) return 0.25;
  const rough = max / 4;
  const magnitude = 10 ** Math.floor(Math.log10(rough));
  for (const step of [1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) {
    if (rough <= step * magnitude) return step * magnitude;
  }
  return 10 * magnitude;
}

// Label times on round boundaries (every 5 minutes, 3 hours, a day…), at most `most` of them.
const LABEL_STEPS = [1, 2, 5, 10, 15, 30].map((m) => m * MINUTE)
  .concat([1, 2, 3, 6, 12].map((h) => h * HOUR), [1, 2, 7, 14, 28].map((d) => d * DAY));
function labelStep(span, most) {
  return LABEL_STEPS.find((step) => span / step <= most) || 28 * DAY;
}

function chart(figure, xs, xLabel, series, format) {
  const legend = figure.querySelector(".legend");
  legend.replaceChildren(...series.map((s) => el("span", {}, el("span", { class: `swatch ${s.cls}` }), s.name)));
  const host = figure.querySelector(".plot");
  const width = Math.max(280, Math.round(host.clientWidth || 560));
  const height = width < 500 ? 170 : 190;
  const m = { left: 58, right: 10, top: 8, bottom: 22 };
  const plotW = width - m.left - m.right;
  const plotH = height - m.top - m.bottom;
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": figure.querySelector("figcaption").textContent });
  const values = series.flatMap((s) => s.values).filter((v) => v !== null && v !== undefined);
  const tick = niceStep(Math.max(0, ...values));
  const top = tick * 4;
  const n = Math.max(1, xs.length);
  const slot = plotW / n;
  const x = (i) => m.left + i * slot;
  const y = (v) => m.top + plotH - (v / top) * plotH;

  const axis = svg("g", { class: "axis" });
  for (let k = 0; k <= 4; k += 1) {
    const v = tick * k;
    axis.append(svg("line", { class: "grid-line", x1: m.left, x2: width - m.right, y1: y(v), y2: y(v) }));
    axis.append(svg("text", { x: m.left - 6, y: y(v) + 4, "text-anchor": "end" }, format(v)));
  }
  const span = xs.length ? xs[xs.length - 1] - xs[0] + (xs[1] - xs[0] || 0) : 0;
  const every = labelStep(span, Math.max(3, Math.floor(plotW / 70)));
  const offset = new Date().getTimezoneOffset() * MINUTE;
  xs.forEach((t, i) => {
    if ((t - offset) % every !== 0) return;
    axis.append(svg("text", { x: x(i) + slot / 2, y: height - 6, "text-anchor": "middle" }, xLabel(t, every)));
  });
  axis.append(svg("line", { x1: m.left, x2: width - m.right, y1: m.top + plotH, y2: m.top + plotH }));
  root.append(axis);

  for (const s of series.filter((s) => s.kind === "bar")) {
    const g = svg("g", { class: "bars" });
    const barW = Math.max(1, slot * 0.8);
    s.values.forEach((v, i) => {
      if (!v) return;
      const bar = svg("rect", { class: `bar ${s.cls}`, "data-value": v, x: x(i) + (slot - barW) / 2, y: y(v), width: barW, height: Math.max(0.5, m.top + plotH - y(v)) });
      g.append(titled(bar, `${dateTime(xs[i])}: ${format(v)} ${s.name}`));
    });
    root.append(g);
  }
  for (const s of series.filter((s) => s.kind === "line")) {
    let d = "";
    let pen = false;
    s.values.forEach((v, i) => {
      if (v === null || v === undefined) {
        pen = false;
        return;
      }
      d += `${pen ? "L" : "M"}${(x(i) + slot / 2).toFixed(1)},${y(v).toFixed(1)}`;
      pen = true;
    });
    root.append(svg("path", { class: `line ${s.cls}`, d }));
    s.values.forEach((v, i) => {
      if (v === null || v === undefined) return;
      root.append(titled(svg("circle", { class: `dot ${s.cls}`, cx: x(i) + slot / 2, cy: y(v), r: n > 120 ? 1.2 : 2.2 }), `${dateTime(xs[i])}: ${s.name} ${format(v)}`));
    });
  }
  // One hover column per interval, titled with every series' value.
  const hover = svg("g", { class: "hovers" });
  xs.forEach((t, i) => {
    const parts = series
      .filter((s) => s.values[i] !== null && s.values[i] !== undefined)
      .map((s) => `${s.name} ${format(s.values[i])}`);
    if (!parts.length) return;
    hover.append(titled(svg("rect", { class: "hover", x: x(i), y: m.top, width: slot, height: plotH }), `${dateTime(t)}\n${parts.join("\n")}`));
  });
  root.append(hover);
  if (!values.some((v) => v > 0)) {
    root.append(svg("text", { class: "empty", x: m.left + plotW / 2, y: m.top + plotH / 2, "text-anchor": "middle" }, "no requests in this range"));
  }
  host.replaceChildren(root);
}

function distribution(host, rows, field) {
  const sorted = rows.slice().sort((a, b) => b[field] - a[field]).slice(0, 10);
  const width = Math.max(260, Math.round(host.clientWidth || 300));
  const rowH = 24;
  const height = Math.max(rowH, sorted.length * rowH) + 4;
  const labelW = Math.min(140, Math.round(width * 0.38));
  const valueW = 48;
  const barMax = width - labelW - valueW - 8;
  const max = Math.max(1, ...sorted.map((r) => r[field]));
  const total = sorted.reduce((sum, r) => sum + r[field], 0) || 1;
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "distribution" });
  if (!sorted.length) root.append(svg("text", { class: "empty", x: 4, y: 16 }, "no requests in this range"));
  sorted.forEach((r, i) => {
    const top = i * rowH + 2;
    const name = r.name.length > 22 ? `${r.name.slice(0, 21)}…` : r.name;
    const row = svg("g", { class: "dist-row", "data-name": r.name, "data-value": r[field] });
    row.append(svg("text", { class: "dist-label", x: labelW - 6, y: top + 15, "text-anchor": "end" }, name));
    row.append(titled(svg("rect", { class: "bar bar-dist", x: labelW, y: top + 4, height: rowH - 8, width: Math.max(1, (r[field] / max) * barMax) }),
      `${r.name}: ${fmtInt(r[field])} requests (${fmtPct(r[field] / total)}), ${fmtInt(r.errors)} errors, ${fmtUsd(r.cost)}`));
    row.append(svg("text", { class: "dist-value", x: width - 4, y: top + 15, "text-anchor": "end" }, fmtInt(r[field])));
    root.append(row);
  });
  host.replaceChildren(root);
}
