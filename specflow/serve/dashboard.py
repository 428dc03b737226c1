"""The dashboard page of ``specflow serve``: one self-contained HTML page (no CDN) that
polls the JSON API and updates in place."""

DASHBOARD = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>specflow</title><link rel="icon" href="data:,">
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1d232a;background:#f6f7f9}
header{background:#1d232a;color:#fff;padding:10px 18px;font-weight:600}
main{display:flex;gap:18px;padding:18px}
section{background:#fff;border:1px solid #d9dde3;border-radius:6px;padding:12px;flex:1;min-width:0}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #eceff3;white-space:nowrap}
tr.run{cursor:pointer} tr.run:hover{background:#eef3fb} tr.sel{background:#dde8f8}
.bar{background:#eceff3;border-radius:3px;height:8px;width:120px;display:inline-block}
.bar i{display:block;height:8px;border-radius:3px;background:#3d7be0}
.st-done{color:#207a3c}.st-failed,.st-crashed,.st-damaged{color:#b3261e}
.st-running,.st-resuming{color:#3d7be0}.st-interrupted{color:#9a6700}
button{margin-right:6px} pre{white-space:pre-wrap;background:#f6f7f9;padding:6px}
#error{color:#b3261e} textarea{width:100%;box-sizing:border-box;font:12px monospace}
form p{margin:6px 0}
</style></head><body>
<header>specflow <span id="error"></span></header>
<main>
<section><h3>runs</h3>
<table><thead><tr><th>run</th><th>status</th><th>progress</th><th>done</th><th>failed</th>
</tr></thead><tbody id="runs"></tbody></table></section>
<section id="detail"><h3>run</h3><p>select a run</p></section>
</main>
<main><section><h3>submit a spec</h3>
<form id="submit-form"><textarea id="spec-text" rows="8" spellcheck="false"
placeholder='"@type": echo&#10;message: hello'></textarea>
<p><label>format <select id="spec-format"><option>yaml</option><option>json</option>
<option>cue</option></select></label>
<label>backend <select id="spec-backend"><option value="">the spec's</option>
<option>local</option><option>inline</option></select></label>
<button id="submit" type="submit">submit</button> <span id="submitted"></span></p>
</form></section></main>
<script>
"use strict";
const token = new URLSearchParams(location.search).get("token");
const headers = token ? {"Authorization": "Bearer " + token} : {};
let selected = null;
function esc(s) {
  return String(s == null ? "" : s).replace(/[&<>"]/g,
    c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[c]));
}
async function api(path, method, body) {
  const init = {method: method || "GET", headers: Object.assign({}, headers)};
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const r = await fetch(path, init);
  const answer = await r.json();
  if (!r.ok) throw new Error(answer.error || r.statusText);
  return answer;
}
const STATUSES = ["pending", "queued", "running", "done", "failed", "cancelled", "timeout",
                  "skipped", "reused"];
const FINISHED = ["done", "failed", "cancelled", "timeout", "skipped", "reused"];
function progress(run) {
  // of the tasks known so far (flows make theirs as they go), the share that finished
  const t = run.totals || {};
  const known = STATUSES.reduce((n, k) => n + (t[k] || 0), 0);
  const ended = FINISHED.reduce((n, k) => n + (t[k] || 0), 0);
  const pct = run.status === "done" ? 100 : (known ? Math.round(100 * ended / known) : 0);
  return '<span class="bar" data-pct="' + pct + '" title="' + ended + ' of ' + known +
    ' tasks known so far"><i style="width:' + pct + '%"></i></span>';
}
async function refresh() {
  try {
    const runs = await api("/api/runs");
    const rows = runs.map(r => '<tr class="run' + (r.run_id === selected ? " sel" : "") +
      '" data-id="' + esc(r.run_id) + '"><td>' + esc(r.run_id) + '</td><td class="st-' +
      esc(r.status) + '" data-status="' + esc(r.status) + '">' + esc(r.status) + '</td><td>' +
      progress(r) + '</td><td>' + esc(r.done) + '</td><td>' + esc(r.failed) + '</td></tr>');
    document.getElementById("runs").innerHTML = rows.join("");
    for (const tr of document.querySelectorAll("tr.run")) {
      tr.onclick = () => { selected = tr.dataset.id; refresh(); };
    }
    if (selected) await detail(selected);
    document.getElementById("error").textContent = "";
  } catch (e) {
    document.getElementById("error").textContent = String(e.message || e);
  }
}
async function detail(id) {
  const r = await api("/api/runs/" + encodeURIComponent(id));
  const counts = r.counts || {};
  // done and failed always; the other statuses where some task has them
  const shown = STATUSES.filter(k => k === "done" || k === "failed" ||
    Object.values(counts).some(c => c[k]));
  const ops = Object.entries(counts).map(([op, c]) => '<tr class="op" data-operation="' +
    esc(op) + '" data-done="' + esc(c.done || 0) + '" data-failed="' + esc(c.failed || 0) +
    '"><td>' + esc(op) + '</td>' + shown.map(k => '<td data-k="' + k + '">' + esc(c[k] || 0) +
    '</td>').join("") + '</tr>');
  const fails = (r.failures || []).map(f => '<li class="failure" data-operation="' +
    esc(f.operation) + '" data-id="' + esc(f.id) + '"><b>' + esc(f.operation) + '</b> ' +
    esc(f.args || "") + '<pre>' + esc(f.error) + '</pre></li>');
  document.getElementById("detail").innerHTML = '<h3 id="detail-run" data-id="' + esc(r.run_id) +
    '">' + esc(r.run_id) + '</h3><p>status <b class="st-' + esc(r.status) +
    '" id="detail-status" data-status="' + esc(r.status) + '">' + esc(r.status) +
    '</b> · attempt ' + esc(r.attempt) +
    '</p><p><button id="cancel">cancel</button><button id="resume">resume</button>' +
    '<a href="/api/runs/' + encodeURIComponent(r.run_id) + '/report' +
    (token ? "?token=" + encodeURIComponent(token) : "") + '">report</a></p>' +
    '<table id="operations"><thead><tr><th>operation</th>' +
    shown.map(k => '<th>' + k + '</th>').join("") + '</tr>' +
    '</thead><tbody>' +
    ops.join("") + '</tbody></table>' + (fails.length ? '<h4>failures</h4><ul id="failures">' +
    fails.join("") + '</ul>' : "");
  document.getElementById("cancel").onclick = () =>
    api("/api/runs/" + encodeURIComponent(id) + "/cancel", "POST").then(refresh, showError);
  document.getElementById("resume").onclick = () =>
    api("/api/runs/" + encodeURIComponent(id) + "/resume", "POST").then(refresh, showError);
}
function showError(e) { document.getElementById("error").textContent = String(e.message || e); }
document.getElementById("submit-form").onsubmit = async (ev) => {
  ev.preventDefault();
  const body = {spec: document.getElementById("spec-text").value,
                format: document.getElementById("spec-format").value};
  const backend = document.getElementById("spec-backend").value;
  if (backend) body.backend = backend;
  const shown = document.getElementById("submitted");
  try {
    const r = await api("/api/runs", "POST", body);
    selected = r.run_id;
    shown.textContent = "submitted " + r.run_id;
    shown.dataset.id = r.run_id;
    refresh();
  } catch (e) {
    shown.textContent = "";
    showError(e);
  }
};
refresh();
setInterval(refresh, 1000);
</script></body></html>
"""
