// Switchyard dashboard. Plain script, no framework. Everything it shows comes from the admin
// API with the key typed into the login form (kept in sessionStorage only). Records hold
// client text: every string from the API is rendered with textContent, never as markup.
"use strict";

const KEY_STORAGE = "switchyard.adminKey";
const REFRESH_MS = 15000;
const RANGES = { hour: HOUR, day: DAY, week: 7 * DAY };

const state = {
  range: "hour",
  custom: null,
  timer: null,
  data: null,
  record: null,
  generation: 0,
};

const $ = (selector) => document.querySelector(selector);

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

// ---------- chart data ----------

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
  // Whole days by date, hours within a day by the clock, and both in between.
  const label = (t, every) => {
    if (every >= DAY) return shortDate(t);
    return range.to - range.from > DAY ? `${shortDate(t)} ${clock(t)}` : clock(t);
  };
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
