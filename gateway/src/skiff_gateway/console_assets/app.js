// Skiff's console: plain JavaScript, no framework, no build step. Three views picked by the URL's
// hash (#/, #/e/<endpoint>, #/j/<endpoint>/<job>), each redrawn from the gateway's JSON once a
// second. The API key lives in sessionStorage and travels only in the Authorization header.
"use strict";

const KEY = "skiff.key";
const REFRESH_MS = 1000;
const $ = (id) => document.getElementById(id);
let timer = null;

function esc(value) {
  return String(value ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}
const seconds = (s) => (s == null ? "-" : s < 60 ? `${s.toFixed(1)}s` : `${(s / 60).toFixed(1)}m`);
const ms = (v) => (v == null ? "-" : v < 1000 ? `${Math.round(v)} ms` : `${(v / 1000).toFixed(2)} s`);
const when = (t) => (t == null ? "-" : new Date(t * 1000).toLocaleTimeString());
const pretty = (v) => (v == null ? "-" : JSON.stringify(v, null, 2));
const enc = encodeURIComponent;

class Unauthorized extends Error {}

async function api(path) {
  const key = sessionStorage.getItem(KEY);
  const response = await fetch(path, { headers: { Authorization: `Bearer ${key}` }, cache: "no-store" });
  const body = await response.json().catch(() => ({}));
  if (response.status === 401 || response.status === 403) throw new Unauthorized(body.error || "invalid API key");
  if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  return body;
}

// A small line chart: one polyline per series, nulls skipped, scaled to the largest value.
function spark(series, { width = 160, height = 36, colors = ["#2563eb", "#b54708"] } = {}) {
  const values = series.flat().filter((v) => v != null);
  const top = Math.max(1e-9, ...values);
  const lines = series.map((points, i) => {
    const step = points.length > 1 ? width / (points.length - 1) : width;
    const xy = points
      .map((v, j) => (v == null ? null : `${(j * step).toFixed(1)},${(height - 2 - (v / top) * (height - 4)).toFixed(1)}`))
      .filter(Boolean)
      .join(" ");
    return `<polyline points="${xy}" stroke="${colors[i % colors.length]}"/>`;
  });
  const label = values.length ? `max ${top.toFixed(top < 10 ? 1 : 0)}` : "no data";
  return `<svg class="spark" width="${width}" height="${height}" role="img" aria-label="${label}">${lines.join("")}</svg>`;
}

function reasonBox(reason) {
  if (!reason) return "";
  let text = `Waiting: ${reason.message}`;
  if (reason.output && reason.output.length) text += `\n\nLast output of ${reason.worker_id}:\n${reason.output.join("\n")}`;
  return `<div class="reason" data-code="${esc(reason.code)}">${esc(text)}</div>`;
}

function crumbs(parts) {
  $("crumbs").innerHTML = parts.map(([label, href]) => (href ? `<a href="${href}">${esc(label)}</a>` : esc(label))).join(" / ");
}

// ------------------------------------------------------------------ views
async function endpointsView() {
  const data = await api("/v1/console/endpoints");
  crumbs([["Endpoints"]]);
  const rows = data.endpoints.map((e) => {
    const states = Object.entries(e.workers).map(([s, n]) => `${esc(s)} ${n}`).join(", ") || "none";
    const s = e.series;
    return `<tr data-endpoint="${esc(e.name)}">
      <td><a href="#/e/${enc(e.name)}">${esc(e.name)}</a><div class="muted">${esc(e.type)}</div></td>
      <td>${states}</td>
      <td class="num queued">${e.queued}</td><td class="num">${e.in_flight}</td>
      <td>${spark([s.map((p) => p.jobs_per_min)])}</td>
      <td>${spark([s.map((p) => p.delay_p50_ms), s.map((p) => p.delay_p95_ms)])}</td>
      <td>${spark([s.map((p) => p.execution_p50_ms), s.map((p) => p.execution_p95_ms)])}</td></tr>`;
  });
  return `<h1>Endpoints</h1><table id="endpoints"><thead><tr><th>endpoint</th><th>workers</th><th>queued</th>
    <th>in flight</th><th>jobs/min (1 h)</th><th>delay p50 / p95</th><th>execution p50 / p95</th></tr></thead>
    <tbody>${rows.join("")}</tbody></table>
    <p class="muted">Charts: this gateway replica's jobs over the last hour, in five-minute steps.</p>`;
}

async function endpointView(name) {
  const e = await api(`/v1/console/endpoints/${enc(name)}`);
  crumbs([["Endpoints", "#/"], [name]]);
  const workers = e.workers.map((w) => `<tr><td>${esc(w.id)}</td><td>${esc(w.state)}</td><td class="num">${seconds(w.idle_s)}</td>
    <td class="num">${seconds(w.cold_start_s)}</td><td class="num">${w.jobs_done}</td><td class="num">${seconds(w.uptime_s)}</td></tr>`);
  const exited = (e.exited || []).map((w) => `<tr><td>${esc(w.id)}</td><td class="num">${w.exit_code}</td>
    <td class="num">${seconds(w.exited_s_ago)}</td><td class="num">${seconds(w.ran_s)}</td>
    <td><pre>${esc((w.last_output || []).join("\n"))}</pre></td></tr>`);
  const trouble = e.trouble
    ? `<div class="reason">Last exit: ${esc(e.trouble.message)}${e.trouble.exit_code != null ? ` (exit code ${e.trouble.exit_code})` : ""}</div>`
    : "";
  const jobs = e.jobs.map((j) => `<tr data-job="${esc(j.id)}"><td><a href="#/j/${enc(name)}/${enc(j.id)}">${esc(j.id)}</a></td>
    <td class="status ${esc(j.status)}">${esc(j.status)}</td><td class="num">${ms(j.delay_ms)}</td><td class="num">${ms(j.execution_ms)}</td>
    <td class="num">${j.retries}</td><td>${j.waiting ? esc(j.waiting.message) : ""}</td></tr>`);
  const history = e.history || [];
  return `<h1>${esc(name)} <span class="muted">${esc(e.type)}</span></h1>
    <div class="cards"><div class="card">queued<b class="num" id="queued">${e.queued}</b></div>
      <div class="card">in flight<b class="num">${e.in_flight}</b></div>
      <div class="card">oldest wait<b class="num">${seconds(e.oldest_wait_s)}</b></div>
      <div class="card">workers min / max<b class="num">${e.scaling.min_workers} / ${e.scaling.max_workers}</b></div>
      <div class="card">wanted vs serving${spark([history.map((h) => h.wanted), history.map((h) => h.serving)])}</div></div>
    ${reasonBox(e.waiting)}${trouble}
    <h2>Workers</h2><table id="workers"><thead><tr><th>worker</th><th>state</th><th>idle</th><th>cold start</th><th>jobs done</th>
      <th>up</th></tr></thead><tbody>${workers.join("") || '<tr><td colspan="6" class="muted">no workers (scaled to zero)</td></tr>'}</tbody></table>
    ${exited.length ? `<h2>Exited workers</h2><table id="exited"><thead><tr><th>worker</th><th>exit code</th><th>ago</th>
      <th>ran</th><th>last output</th></tr></thead><tbody>${exited.join("")}</tbody></table>` : ""}
    <h2>Recent jobs</h2><table id="jobs"><thead><tr><th>job</th><th>status</th><th>delay</th><th>execution</th><th>retries</th>
      <th>waiting because</th></tr></thead><tbody>${jobs.join("") || '<tr><td colspan="6" class="muted">none yet</td></tr>'}</tbody></table>`;
}

async function jobView(name, id) {
  const j = await api(`/v1/console/jobs/${enc(name)}/${enc(id)}`);
  crumbs([["Endpoints", "#/"], [name, `#/e/${enc(name)}`], [id]]);
  const result = j.error != null ? `<h2>Error</h2><pre class="error">${esc(pretty(j.error))}</pre>` : `<h2>Output</h2><pre id="output">${esc(pretty(j.output))}</pre>`;
  return `<h1>Job <span class="num">${esc(j.id)}</span></h1>
    <div class="cards"><div class="card">status<b class="status ${esc(j.status)}" id="job-status">${esc(j.status)}</b></div>
      <div class="card">delay<b class="num">${ms(j.delay_ms)}</b></div><div class="card">execution<b class="num">${ms(j.execution_ms)}</b></div>
      <div class="card">retries<b class="num">${j.retries}</b></div><div class="card">worker<b>${esc(j.worker_id || "-")}</b></div></div>
    <p class="muted">accepted ${when(j.created_at)}, started ${when(j.started_at)}, finished ${when(j.completed_at)}</p>
    ${reasonBox(j.waiting)}
    <h2>Input</h2><pre>${esc(pretty(j.input))}</pre>${result}
    <h2>Stream</h2><pre>${esc(j.stream.map((c) => JSON.stringify(c)).join("\n") || "-")}</pre>
    <h2>Log lines</h2><pre id="logs">${esc(j.logs.join("\n") || "-")}</pre>`;
}

// ------------------------------------------------------------------ routing and refresh
function route() {
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  if (parts[0] === "e" && parts[1]) return () => endpointView(parts[1]);
  if (parts[0] === "j" && parts[1] && parts[2]) return () => jobView(parts[1], parts[2]);
  return endpointsView;
}

async function refresh() {
  clearTimeout(timer);
  if (!sessionStorage.getItem(KEY)) return showLogin("");
  try {
    $("view").innerHTML = await route()();
    $("live").textContent = `live, updated ${new Date().toLocaleTimeString()}`;
  } catch (err) {
    if (err instanceof Unauthorized) {
      sessionStorage.removeItem(KEY);
      return showLogin(err.message);
    }
    $("live").textContent = `update failed: ${err.message}`;
  }
  timer = setTimeout(refresh, REFRESH_MS);
}

function showLogin(message) {
  $("login").hidden = false;
  $("logout").hidden = true;
  $("view").innerHTML = "";
  $("live").textContent = "";
  $("login-error").textContent = message;
}

$("login").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(KEY, $("key").value.trim());
  $("key").value = "";
  $("login").hidden = true;
  $("logout").hidden = false;
  refresh();
});
$("logout").addEventListener("click", () => {
  sessionStorage.removeItem(KEY);
  showLogin("");
});
window.addEventListener("hashchange", refresh);
if (sessionStorage.getItem(KEY)) {
  $("login").hidden = true;
  $("logout").hidden = false;
}
refresh();
