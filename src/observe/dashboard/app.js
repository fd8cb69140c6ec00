// Switchyard dashboard. Plain script, no framework. Everything it shows comes from the admin
// API with the key typed into the login form (kept in sessionStorage only). Records hold
// client text: every string from the API is rendered with textContent, never as markup.
"use strict";

const KEY_STORAGE = "switchyard.adminKey";
const REFRESH_MS = 15000;
const SVG_NS = "http://www.w3.org/2000/svg";
const MINUTE = 60000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
const RANGES = { hour: HOUR, day: DAY, week: 7 * DAY };

const state = {
  range: "hour",
  custom: null,
  timer: null,
  data: null,
  record: null,
  generation: 0,
};

// ---------- small helpers ----------

const $ = (selector) => document.querySelector(selector);

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

// ---------- the admin API ----------

class AuthError extends Error {}

async function api(path, options) {
  const key = sessionStorage.getItem(KEY_STORAGE);
  if (!key) throw new AuthError("sign in with the admin key");
  const init = Object.assign({ headers: {} }, options || {});
  init.headers.Authorization = `Bearer ${key}`;
  init.cache = "no-store";
  init.credentials = "omit";
  const response = await fetch(path, init);
  let body = null;
  try {
    body = await response.json();
  } catch (_) {
    body = null;
  }
  if (response.status === 401 || response.status === 403) {
    throw new AuthError("the admin key was refused");
  }
  if (!response.ok) {
    const message = body && body.error && body.error.message;
    throw new Error(message ? String(message) : `${path}: HTTP ${response.status}`);
  }
  return body;
}

function failed(err) {
  if (err instanceof AuthError) {
    signOut(`${err.message}: sign in again.`);
    return true;
  }
  return false;
}

// ---------- login ----------

function showLogin(message) {
  $("#login").hidden = false;
  $("#dashboard").hidden = true;
  $("#range").hidden = true;
  $("#session").hidden = true;
  $("#login-error").textContent = message || "";
  $("#admin-key").value = "";
  $("#admin-key").focus();
}

function showDashboard() {
  $("#login").hidden = true;
  $("#dashboard").hidden = false;
  $("#range").hidden = false;
  $("#session").hidden = false;
  $("#login-error").textContent = "";
}

function signOut(message) {
  sessionStorage.removeItem(KEY_STORAGE);
  clearInterval(state.timer);
  state.timer = null;
  state.generation += 1;
  showLogin(message);
}

async function signIn(event) {
  event.preventDefault();
  const key = $("#admin-key").value.trim();
  if (!key) return;
  $("#login-submit").disabled = true;
  sessionStorage.setItem(KEY_STORAGE, key);
  try {
    await api("/admin/policy");
    showDashboard();
    start();
    search();
  } catch (err) {
    if (!failed(err)) signOut(`Could not reach the admin API: ${err.message}`);
  } finally {
    $("#login-submit").disabled = false;
  }
}

// ---------- time range ----------

function currentRange() {
  let from;
  let to;
  if (state.range === "custom" && state.custom) {
    ({ from, to } = state.custom);
  } else {
    to = Date.now();
    from = to - RANGES[state.range];
  }
  const span = to - from;
  const interval = span <= 6 * HOUR ? "minute" : span <= 31 * DAY ? "hour" : "day";
  const step = { minute: MINUTE, hour: HOUR, day: DAY }[interval];
  return { from, to, interval, step };
}

function chooseRange(name) {
  state.range = name;
  for (const button of document.querySelectorAll("[data-range]")) {
    button.classList.toggle("active", button.dataset.range === name);
  }
  $("#custom-range").hidden = name !== "custom";
  if (name === "custom") {
    const { from, to } = state.custom || { from: Date.now() - DAY, to: Date.now() };
    $("#custom-from").value = localInput(from);
    $("#custom-to").value = localInput(to);
    return;
  }
  start();
}

function localInput(ms) {
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${clock(ms)}`;
}

function applyCustom(event) {
  event.preventDefault();
  const from = new Date($("#custom-from").value).getTime();
  const to = new Date($("#custom-to").value).getTime();
  if (!(from < to)) {
    showLoadError("The custom range must start before it ends.");
    return;
  }
  state.custom = { from, to };
  start();
}

function start() {
  clearInterval(state.timer);
  state.timer = state.range === "custom" ? null : setInterval(refresh, REFRESH_MS);
  refresh();
}

function showLoadError(message) {
  const banner = $("#load-error");
  banner.textContent = message || "";
  banner.hidden = !message;
}

// ---------- loading ----------

async function refresh() {
  const generation = ++state.generation;
  const range = currentRange();
  const span = `from=${range.from}&to=${range.to}`;
  const grouped = (group) => api(`/admin/stats?${span}&interval=day&group_by=${group}`);
  try {
    const [series, models, features, users, policy, providers, limits] = await Promise.all([
      api(`/admin/stats?${span}&interval=${range.interval}`),
      grouped("model"),
      grouped("feature"),
      grouped("user"),
      api("/admin/policy"),
      api("/admin/providers"),
      api("/admin/limits?limit=200"),
    ]);
    if (generation !== state.generation) return;
    state.data = { range, series, models, features, users, policy, providers, limits };
    showLoadError("");
    render();
    $("#updated").textContent = `Updated ${clock(Date.now())}:${pad(new Date().getSeconds())}`;
  } catch (err) {
    if (generation !== state.generation || failed(err)) return;
    showLoadError(`Could not load: ${err.message}`);
  }
}

function render() {
  const { range, series, models, features, users, policy, providers, limits } = state.data;
  renderSummary(range, series.total || {});
  renderCharts(range, series.intervals || []);
  distribution($("#dist-model .plot"), sumGroups(models), "requests");
  distribution($("#dist-feature .plot"), sumGroups(features), "requests");
  topTable($("#top-users tbody"), sumGroups(users));
  topTable($("#top-features tbody"), sumGroups(features));
  renderPolicy(policy);
  renderProviders(providers.providers || []);
  renderLimits(limits);
}

// ---------- summary ----------

function renderSummary(range, total) {
  const summary = $("#summary");
  summary.dataset.from = String(range.from);
  summary.dataset.to = String(range.to);
  const latency = total.latency_ms || {};
  const tokens = (total.input_tokens || 0) + (total.output_tokens || 0);
  const figures = {
    "stat-requests": [total.requests || 0, fmtInt],
    "stat-errors": [total.errors || 0, fmtInt],
    "stat-error-rate": [total.error_rate || 0, fmtPct],
    "stat-p50": [latency.p50, fmtMs],
    "stat-p99": [latency.p99, fmtMs],
    "stat-cost": [total.cost_usd || 0, fmtUsd],
    "stat-tokens": [tokens, fmtCompact],
  };
  for (const [id, [value, format]] of Object.entries(figures)) {
    const node = summary.querySelector(`[data-testid="${id}"]`);
    node.dataset.value = value === null || value === undefined ? "" : String(value);
    node.textContent = format(value);
  }
}

// ---------- charts ----------

// Every interval of the range, with the stats row where the index had requests.
function buckets(range, intervals) {
  const byStart = new Map(intervals.map((row) => [row.start_ms, row]));
  const first = Math.floor(range.from / range.step) * range.step;
  const out = [];
  for (let t = first; t < range.to; t += range.step) out.push({ t, row: byStart.get(t) || null });
  return out;
}

function renderCharts(range, intervals) {
  const rows = buckets(range, intervals);
  const label = (t) => (range.step >= DAY || range.to - range.from > 2 * DAY ? `${shortDate(t)} ${clock(t)}` : clock(t));
  const pick = (fn) => rows.map(({ row }) => (row ? fn(row) : null));
  const xs = rows.map((r) => r.t);
  chart($("#chart-volume"), xs, label, [
    { name: "requests", cls: "bar-requests", kind: "bar", values: pick((r) => r.requests).map((v) => v || 0) },
    { name: "errors", cls: "bar-errors", kind: "bar", values: pick((r) => r.errors).map((v) => v || 0) },
  ], fmtInt);
  chart($("#chart-error-rate"), xs, label, [
    { name: "error rate", cls: "line-error-rate", kind: "line", values: pick((r) => r.error_rate) },
  ], fmtPct);
  chart($("#chart-latency"), xs, label, ["p50", "p90", "p99"].map((p) => ({
    name: p, cls: `line-${p}`, kind: "line", values: pick((r) => (r.latency_ms ? r.latency_ms[p] : null)),
  })), fmtMs);
  chart($("#chart-cost"), xs, label, [
    { name: "cost", cls: "bar-cost", kind: "bar", values: pick((r) => r.cost_usd).map((v) => v || 0) },
  ], fmtUsd);
}

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
    axis.append(svg("text", { x: x(i) + slot / 2, y: height - 6, "text-anchor": "middle" }, xLabel(t)));
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

// ---------- distribution and top tables ----------

function sumGroups(stats) {
  const totals = new Map();
  for (const interval of stats.intervals || []) {
    for (const group of interval.groups || []) {
      const name = group.group === null || group.group === undefined || group.group === "" ? "(none)" : String(group.group);
      const row = totals.get(name) || { name, requests: 0, errors: 0, tokens: 0, cost: 0 };
      row.requests += group.requests || 0;
      row.errors += group.errors || 0;
      row.tokens += (group.input_tokens || 0) + (group.output_tokens || 0);
      row.cost += group.cost_usd || 0;
      totals.set(name, row);
    }
  }
  return [...totals.values()];
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

function emptyRow(columns, text) {
  return el("tr", {}, el("td", { class: "empty", colspan: String(columns) }, text));
}

function topTable(tbody, rows) {
  const sorted = rows.slice().sort((a, b) => b.cost - a.cost || b.requests - a.requests).slice(0, 10);
  tbody.replaceChildren(...sorted.map((r) => el("tr", { "data-name": r.name },
    el("td", { title: r.name }, r.name),
    el("td", { class: "num" }, fmtInt(r.requests)),
    el("td", { class: "num" }, fmtCompact(r.tokens)),
    el("td", { class: "num" }, fmtUsd(r.cost)))));
  if (!sorted.length) tbody.append(emptyRow(4, "no requests in this range"));
}

// ---------- policy, providers, limits ----------

function renderPolicy(policy) {
  const card = $("#policy");
  card.querySelector('[data-testid="policy-version"]').textContent = String(policy.version ?? "–");
  card.querySelector('[data-field="loaded_at"]').textContent = policy.loaded_at ? dateTime(Date.parse(policy.loaded_at)) : "–";
  card.querySelector('[data-field="files"]').textContent = (policy.files || []).join(", ") || "none";
  card.querySelector('[data-field="reloads"]').textContent = `${policy.reloads_ok || 0} ok, ${policy.reloads_failed || 0} failed`;
  card.querySelector('[data-field="hook_errors"]').textContent = String(policy.hook_errors || 0);
  const error = card.querySelector('[data-testid="policy-error"]');
  const last = policy.last_error;
  error.classList.toggle("error", Boolean(last));
  if (!last) {
    error.textContent = "none";
    return;
  }
  const where = [last.file, last.line, last.column].filter((p) => p !== null && p !== undefined).join(":");
  error.textContent = `${where ? `${where}: ` : ""}${last.message}${last.at ? ` (${dateTime(Date.parse(last.at))})` : ""}`;
}

function renderProviders(providers) {
  const tbody = $("#providers tbody");
  tbody.replaceChildren(...providers.map((p) => {
    const chaos = (p.chaos || []).map((f) => `${fmtPct(f.error_rate)} → ${f.status || "refused"}${f.latency_ms ? `, +${f.latency_ms} ms` : ""}, ${Math.ceil(f.remaining_s)} s left`);
    return el("tr", { "data-name": p.name },
      el("td", { title: (p.models || []).join(", ") }, p.name),
      el("td", {}, p.kind),
      el("td", {}, el("span", { class: `badge ${p.breaker === "closed" ? "closed" : "open"}` }, p.breaker)),
      el("td", {}, chaos.join("; ") || "–"));
  }));
  if (!providers.length) tbody.append(emptyRow(4, "no providers"));
}

// `requests_per_minute` → `req/min`, for the narrow usage column.
function windowName(name) {
  return name.replace("requests", "req").replace("tokens", "tok").replace("_per_", "/")
    .replace("minute", "min").replace("concurrency", "concurrent");
}

function renderLimits(limits) {
  const buckets = (limits.buckets || []).map((b) => {
    const windows = Object.entries(b.windows || {});
    const fullest = windows.reduce((max, [, w]) => Math.max(max, w.limit ? w.used / w.limit : 0), 0);
    return { b, windows, fullest };
  }).sort((a, c) => c.fullest - a.fullest || c.b.queue.depth - a.b.queue.depth).slice(0, 12);
  $("#limits-waiting").textContent = `${fmtInt(limits.waiting || 0)} waiting${limits.truncated ? ", list cut" : ""}`;
  const tbody = $("#limits tbody");
  tbody.replaceChildren(...buckets.map(({ b, windows }) => el("tr", { "data-key": b.key },
    el("td", { title: b.key }, b.key),
    el("td", {}, windows.map(([name, w]) => `${fmtCompact(w.used)}/${fmtCompact(w.limit)} ${windowName(name)}`).join(", ") || "–"),
    el("td", { class: "num" }, fmtInt(b.in_flight || 0)),
    el("td", { class: "num" }, `${fmtInt(b.queue.depth)}${b.queue.depth ? ` (${fmtMs(b.queue.oldest_wait_ms)})` : ""}`))));
  if (!buckets.length) tbody.append(emptyRow(4, "no live rate-limit buckets"));
}

// ---------- log search and records ----------

async function search(event) {
  if (event) event.preventDefault();
  const q = $("#search-q").value.trim();
  const range = currentRange();
  const params = new URLSearchParams({ limit: "50", from: String(range.from), to: String(range.to) });
  if (q) params.set("q", q);
  const error = $("#search-error");
  try {
    const found = await api(`/admin/logs?${params}`);
    error.hidden = true;
    const hits = found.hits || [];
    const tbody = $("#results tbody");
    tbody.replaceChildren(...hits.map(resultRow));
    if (!hits.length) tbody.append(emptyRow(7, "no matching requests"));
    $("#search-summary").textContent = `${fmtInt(found.total || 0)} matching${found.total > hits.length ? `, newest ${hits.length} shown` : ""}`;
    $("#results").dataset.query = q;
  } catch (err) {
    if (failed(err)) return;
    error.textContent = err.message;
    error.hidden = false;
  }
}

function resultRow(hit) {
  const row = el("tr", { tabindex: "0", "data-id": hit.id },
    el("td", { title: hit.started_at || "" }, dateTime(hit.time)),
    el("td", { title: hit.served_model || hit.model }, hit.model),
    el("td", {}, hit.user),
    el("td", {}, hit.feature || "–"),
    el("td", { class: `num${hit.status >= 400 ? " error" : ""}` }, String(hit.status)),
    el("td", { class: "num" }, fmtMs(hit.latency_ms)),
    el("td", { class: "num" }, fmtUsd(hit.cost_usd || 0)));
  row.addEventListener("click", () => openRecord(hit.id, row));
  row.addEventListener("keydown", (e) => {
    if (e.key === "Enter") openRecord(hit.id, row);
  });
  return row;
}

async function openRecord(id, row) {
  for (const selected of document.querySelectorAll(".results tr.selected")) selected.classList.remove("selected");
  if (row) row.classList.add("selected");
  try {
    const record = await api(`/admin/logs/${encodeURIComponent(id)}`);
    state.record = record;
    $("#record").hidden = false;
    $("#record-id").textContent = String(record.id);
    $("#replay-result").textContent = "";
    $("#record-json").textContent = JSON.stringify(record, null, 2);
  } catch (err) {
    if (failed(err)) return;
    $("#record").hidden = false;
    $("#record-id").textContent = String(id);
    $("#record-json").textContent = `Could not load the record: ${err.message}`;
  }
}

async function replay() {
  if (!state.record) return;
  const button = $("#replay");
  const result = $("#replay-result");
  button.disabled = true;
  result.textContent = "Replaying…";
  try {
    const answer = await api(`/admin/logs/${encodeURIComponent(state.record.id)}/replay`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: "{}",
    });
    result.dataset.id = String(answer.id);
    result.textContent = `Replayed as ${answer.id}${answer.model ? ` on ${answer.model}` : ""}.`;
  } catch (err) {
    if (failed(err)) return;
    delete result.dataset.id;
    result.textContent = `Replay failed: ${err.message}`;
  } finally {
    button.disabled = false;
  }
}

// ---------- wiring ----------

let resizeTimer = null;
function onResize() {
  clearTimeout(resizeTimer);
  resizeTimer = setTimeout(() => {
    if (state.data && !$("#dashboard").hidden) render();
  }, 150);
}

function init() {
  $("#login-form").addEventListener("submit", signIn);
  $("#logout").addEventListener("click", () => signOut(""));
  $("#custom-range").addEventListener("submit", applyCustom);
  for (const button of document.querySelectorAll("[data-range]")) {
    button.addEventListener("click", () => chooseRange(button.dataset.range));
  }
  $("#search-form").addEventListener("submit", search);
  $("#replay").addEventListener("click", replay);
  $("#record-close").addEventListener("click", () => {
    $("#record").hidden = true;
    state.record = null;
  });
  window.addEventListener("resize", onResize);
  if (sessionStorage.getItem(KEY_STORAGE)) {
    showDashboard();
    start();
    search();
  } else {
    showLogin("");
  }
}

init();
