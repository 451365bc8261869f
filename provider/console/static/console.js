// tidewater operator console: live view of the provider over Server-Sent Events.
// No framework, no build step: DOM built with textContent (nothing from the server is HTML).
"use strict";

const KEY = "tidewater.adminToken";
const SVG = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);
let source = null;
let retryTimer = null;
let latest = null;

function token() { return sessionStorage.getItem(KEY); }

function setState(state, text) {
  const el = $("connection");
  el.className = "state " + state;
  el.dataset.state = state;
  el.textContent = text;
}

function showLogin(message) {
  $("main").hidden = true;
  $("forget").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message || "";
  setState("off", "not connected");
}

async function api(method, path) {
  return fetch(path, { method, headers: { Authorization: "Bearer " + token() } });
}

async function connect() {
  clearTimeout(retryTimer);
  if (source) { source.close(); source = null; }
  let reply;
  try {
    reply = await api("POST", "/api/console/ticket");
  } catch (err) {
    return retry();
  }
  if (reply.status === 403) {
    sessionStorage.removeItem(KEY);
    return showLogin("That token is not a live admin token.");
  }
  if (!reply.ok) return retry();
  const { ticket } = await reply.json();
  $("login").hidden = true;
  $("main").hidden = false;
  $("forget").hidden = false;
  setState("retry", "connecting…");
  source = new EventSource("/api/console/events?ticket=" + encodeURIComponent(ticket));
  source.addEventListener("open", () => setState("live", "live"));
  source.addEventListener("snapshot", (event) => {
    latest = JSON.parse(event.data);
    render(latest);
  });
  // the stream ends every few minutes (tickets are re-checked) or drops: get a new ticket
  source.addEventListener("error", () => retry());
}

function retry() {
  if (source) { source.close(); source = null; }
  setState("retry", "reconnecting…");
  clearTimeout(retryTimer);
  retryTimer = setTimeout(connect, 2000);
}

function cell(row, text, cls) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "—" : String(text);
  if (cls) td.className = cls;
  row.appendChild(td);
  return td;
}

function seconds(value) {
  if (value === null || value === undefined) return "—";
  const s = Math.max(0, Math.round(value));
  if (s < 60) return s + " s";
  if (s < 3600) return Math.floor(s / 60) + " min " + (s % 60) + " s";
  return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
}

function bytes(n) {
  if (!n) return "0 B";
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return (i ? n.toFixed(1) : n) + " " + units[i];
}

function fill(table, rows, build, emptyId) {
  const body = $(table).tBodies[0];
  body.replaceChildren(...rows.map(build));
  if (emptyId) $(emptyId).hidden = rows.length > 0;
}

function render(snap) {
  fill("envs", snap.environments, (env) => {
    const tr = document.createElement("tr");
    tr.dataset.env = env.id;
    cell(tr, env.id, "mono");
    cell(tr, env.state, env.state === "available" ? "ok" : "bad");
    cell(tr, env.cpu);
    cell(tr, env.ramGB + " GB");
    cell(tr, env.diskGB + " GB");
    cell(tr, env.gpu ? env.gpu + " " + (env.gpuType || "") : "0");
    cell(tr, env.running);
    cell(tr, env.queued);
    cell(tr, env.maxJobs);
    cell(tr, seconds(env.maxJobDuration));
    cell(tr, env.price.map((p) => p.perMinute + " (" + p.feeToken.slice(0, 8) + "…)").join(", "));
    return tr;
  });
  $("running-count").textContent = snap.running.length;
  fill("running", snap.running, (job) => {
    const tr = document.createElement("tr");
    tr.dataset.job = job.jobId;
    cell(tr, job.jobId.slice(0, 12), "mono");
    cell(tr, job.owner, "mono");
    cell(tr, job.environment, "mono");
    cell(tr, job.stage + (job.stopRequested ? " (stopping)" : ""), "stage");
    const td = cell(tr, "", "elapsed");
    td.dataset.start = job.startedAt || job.createdAt;
    td.dataset.max = job.maxJobDuration || 0;
    const tail = document.createElement("pre");
    tail.className = "tail";
    tail.textContent = job.logTail || "";
    cell(tr, "", "log").replaceChildren(tail);
    const actions = cell(tr, "");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "stop";
    button.textContent = "Stop";
    button.addEventListener("click", () => stop(job.jobId, button));
    actions.replaceChildren(button);
    return tr;
  }, "no-running");
  tick();
  fill("finished", snap.finished, (job) => {
    const tr = document.createElement("tr");
    tr.dataset.job = job.jobId;
    cell(tr, job.jobId.slice(0, 12), "mono");
    cell(tr, job.statusText, job.succeeded ? "ok" : "bad");
    cell(tr, job.owner, "mono");
    cell(tr, job.environment, "mono");
    cell(tr, seconds(job.durationSeconds));
    cell(tr, bytes(job.resultBytes));
    cell(tr, job.finishedAt ? new Date(job.finishedAt * 1000).toLocaleTimeString() : null);
    cell(tr, job.succeeded ? "" : job.reason, "reason");
    return tr;
  }, "no-finished");
  drawChart(snap.chart);
}

function tick() {
  const now = Date.now() / 1000;
  for (const td of document.querySelectorAll("#running td.elapsed")) {
    const elapsed = now - Number(td.dataset.start);
    const max = Number(td.dataset.max);
    const bar = document.createElement("span");
    bar.className = "bar" + (max && elapsed > max ? " late" : "");
    const inner = document.createElement("i");
    inner.style.width = (max ? Math.min(100, (100 * elapsed) / max) : 0).toFixed(1) + "%";
    bar.appendChild(inner);
    td.replaceChildren(bar, document.createTextNode(seconds(elapsed) + " / " + seconds(max)));
  }
}

async function stop(jobId, button) {
  button.disabled = true;
  button.textContent = "Stopping…";
  const reply = await api("POST", "/api/jobs/" + encodeURIComponent(jobId) + "/stop");
  if (!reply.ok) {
    button.disabled = false;
    button.textContent = "Stop (failed: " + reply.status + ")";
  }
}

function svg(name, attrs, text) {
  const el = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  if (text !== undefined) el.textContent = text;
  return el;
}

function drawChart(points) {
  const W = 760, H = 200, L = 44, R = 52, T = 12, B = 28;
  const w = W - L - R, h = H - T - B;
  const maxJobs = Math.max(1, ...points.map((p) => p.jobs));
  const medians = points.map((p) => p.medianSeconds).filter((m) => m !== null);
  const maxMedian = Math.max(1, ...medians);
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img",
    "aria-label": "jobs per minute and median duration over the last hour" });
  root.appendChild(svg("line", { class: "axis", x1: L, y1: T + h, x2: L + w, y2: T + h }));
  root.appendChild(svg("line", { class: "axis", x1: L, y1: T, x2: L, y2: T + h }));
  root.appendChild(svg("line", { class: "axis", x1: L + w, y1: T, x2: L + w, y2: T + h }));
  const step = w / points.length;
  let path = "";
  points.forEach((p, i) => {
    const bh = (p.jobs / maxJobs) * h;
    if (p.jobs) {
      const bar = svg("rect", { class: "jobs", x: L + i * step + 1, y: T + h - bh,
        width: Math.max(1, step - 2), height: bh });
      bar.appendChild(svg("title", {}, `${p.jobs} job(s), median ${seconds(p.medianSeconds)}`));
      root.appendChild(bar);
    }
    if (p.medianSeconds !== null) {
      const x = L + i * step + step / 2, y = T + h - (p.medianSeconds / maxMedian) * h;
      path += (path ? " L" : "M") + x.toFixed(1) + " " + y.toFixed(1);
      root.appendChild(svg("circle", { cx: x, cy: y, r: 2.5, class: "median" }));
    }
  });
  if (path) root.appendChild(svg("path", { class: "median", d: path }));
  root.appendChild(svg("text", { x: L - 6, y: T + 10, "text-anchor": "end" }, String(maxJobs)));
  root.appendChild(svg("text", { x: L - 6, y: T + h, "text-anchor": "end" }, "0"));
  root.appendChild(svg("text", { x: L + w + 6, y: T + 10 }, seconds(maxMedian)));
  root.appendChild(svg("text", { x: L, y: H - 8 }, "−60 min"));
  root.appendChild(svg("text", { x: L + w / 2, y: H - 8, "text-anchor": "middle" }, "−30 min"));
  root.appendChild(svg("text", { x: L + w, y: H - 8, "text-anchor": "end" }, "now"));
  root.appendChild(svg("text", { x: L + 4, y: T + 10, class: "legend" }, "▮ jobs per minute"));
  root.appendChild(svg("text", { x: L + 140, y: T + 10, class: "legend" }, "— median duration"));
  $("chart").replaceChildren(root);
}

document.addEventListener("DOMContentLoaded", () => {
  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY, $("token").value.trim());
    $("token").value = "";
    connect();
  });
  $("forget").addEventListener("click", () => {
    sessionStorage.removeItem(KEY);
    if (source) source.close();
    showLogin();
  });
  setInterval(tick, 1000);
  if (token()) connect(); else showLogin();
});
