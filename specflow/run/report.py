"""``specflow report``: one self-contained HTML file that shows a run, and ``--trace``: a
tab-separated per-task trace.

The page needs nothing from the network: its CSS, script and pictures (SVG) are inline.
It holds a summary (status, times, backend, settings, the resolved spec, the run's value),
a table per operation, a timeline of every task by worker (drawn task by task for small
runs, aggregated into time bins for large ones, so that 100,000 tasks still load at once),
the failures with their inputs, tracebacks and log excerpts, and for volume runs a map per
layer of the processed chunks (a projection along z) marking done, failed and slow ones.
Its numbers come from :func:`specflow.run.inspect.run_data`, as ``status --json``'s do.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from specflow.execution.rows import FAILED_STATUSES, LATEST, TASK_STATUSES
from specflow.run.inspect import log_excerpt, run_data, status_columns
from specflow.run.record import Run

#: tasks drawn one by one in the timeline; above this they are aggregated into time bins
MAX_DRAWN = 3000
#: failures shown in full
MAX_FAILURES = 200
#: reads back VolumetricIndex.__specflow_summary__ (with the layer a chunk task names)
CHUNK_RE = re.compile(
    r"x (-?\d+):(-?\d+) y (-?\d+):(-?\d+) z (-?\d+):(-?\d+) @ [^=]*= \[[^\]]*\] nm"
    r"(?: in (\S+))?"
)
PALETTE = ("#4e79a7", "#59a14f", "#9c755f", "#b07aa1", "#76b7b2", "#edc948", "#ff9da7",
           "#bab0ac", "#86bcb6", "#8cd17d", "#a0cbe8", "#d4a6c8")
FAILED_COLOUR = "#e15759"
SLOW_COLOUR = "#f28e2b"
DONE_COLOUR = "#59a14f"
ABSENT_COLOUR = "#e6e6e6"


@dataclass
class _Task:
    id: str
    operation: str
    status: str
    started: float | None
    finished: float | None
    worker: str
    args: str | None

    @property
    def duration(self) -> float:
        if self.started is None or self.finished is None:
            return 0.0
        return max(0.0, self.finished - self.started)


def _tasks(run: Run) -> list[_Task]:
    rows = run.checkpoint.conn.exec_driver_sql(
        f"SELECT id, operation, status, started, finished, worker, args FROM {LATEST} "
        "ORDER BY seq"
    )
    return [_Task(r[0], r[1], r[2], r[3], r[4], r[5] or "?", r[6]) for r in rows]


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _fmt_s(x: float) -> str:
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 1:
        return f"{x:.2f}"
    return f"{x:.3f}"


# -- timeline ---------------------------------------------------------------------------
def _timeline(tasks: list[_Task], colours: dict[str, str]) -> str:
    timed = [t for t in tasks if t.started is not None and t.finished is not None]
    if not timed:
        return "<p>No task has timings.</p>"
    t0 = min(t.started for t in timed if t.started is not None)
    t1 = max(t.finished for t in timed if t.finished is not None)
    span = max(t1 - t0, 1e-6)
    workers = sorted({t.worker for t in timed})
    lane = {w: i for i, w in enumerate(workers)}
    label_w, width, lane_h = 170, 900, 18
    height = lane_h * len(workers) + 24
    parts = [f'<svg id="timeline" xmlns="http://www.w3.org/2000/svg" width="{label_w + width + 40}" '
             f'height="{height}" data-tasks="{len(timed)}" data-lanes="{len(workers)}">']
    for w, i in lane.items():
        y = i * lane_h
        parts.append(f'<text x="{label_w - 6}" y="{y + 13}" text-anchor="end" '
                     f'class="lane">{_e(w)}</text>')
        parts.append(f'<rect x="{label_w}" y="{y + 1}" width="{width}" height="{lane_h - 2}" '
                     'fill="#f6f6f6"/>')
    scale = width / span
    aggregated = len(timed) > MAX_DRAWN
    if not aggregated:
        for t in timed:
            assert t.started is not None
            x = label_w + (t.started - t0) * scale
            w_px = max(0.8, t.duration * scale)
            colour = FAILED_COLOUR if t.status in FAILED_STATUSES else colours[t.operation]
            title = f"{t.operation} {t.id[:12]} · {t.status} · {_fmt_s(t.duration)} s"
            if t.args:
                title += f" · {t.args}"
            parts.append(f'<rect class="task" x="{x:.1f}" y="{lane[t.worker] * lane_h + 2}" '
                         f'width="{w_px:.1f}" height="{lane_h - 4}" fill="{colour}">'
                         f'<title>{_e(title)}</title></rect>')
    else:
        bins = max(60, min(400, 6_000 // max(1, len(workers))))
        bin_s = span / bins
        # busy seconds per (lane, bin, operation), and failures per (lane, bin)
        busy: dict[tuple[int, int], dict[str, float]] = {}
        fails: dict[tuple[int, int], int] = {}
        for t in timed:
            assert t.started is not None and t.finished is not None
            li = lane[t.worker]
            a = (t.started - t0) / bin_s
            b = (t.finished - t0) / bin_s
            first, last = int(a), min(bins - 1, int(b))
            if t.status in FAILED_STATUSES:
                key = (li, min(bins - 1, first))
                fails[key] = fails.get(key, 0) + 1
            for k in range(first, last + 1):
                overlap = (min(b, k + 1) - max(a, k)) * bin_s
                if overlap <= 0 and first != last:
                    continue
                cell = busy.setdefault((li, min(k, bins - 1)), {})
                cell[t.operation] = cell.get(t.operation, 0.0) + max(overlap, 0.0)
        bw = width / bins
        for (li, k), ops in sorted(busy.items()):
            op, secs = max(ops.items(), key=lambda kv: kv[1])
            total = sum(ops.values())
            share = min(1.0, total / bin_s) if bin_s > 0 else 1.0
            title = ", ".join(f"{o}: {s:.2f} s" for o, s in sorted(ops.items()))
            parts.append(f'<rect class="bin" x="{label_w + k * bw:.1f}" y="{li * lane_h + 2}" '
                         f'width="{bw + 0.3:.1f}" height="{lane_h - 4}" fill="{colours[op]}" '
                         f'fill-opacity="{0.25 + 0.75 * share:.2f}"><title>{_e(title)}'
                         '</title></rect>')
        for (li, k), n in sorted(fails.items()):
            parts.append(f'<rect class="fail" x="{label_w + k * bw:.1f}" y="{li * lane_h + 1}" '
                         f'width="{max(bw, 2):.1f}" height="4" fill="{FAILED_COLOUR}">'
                         f'<title>{n} failed</title></rect>')
    ticks = 6
    for i in range(ticks + 1):
        x = label_w + width * i / ticks
        parts.append(f'<text x="{x:.0f}" y="{height - 6}" text-anchor="middle" class="tick">'
                     f'{_fmt_s(span * i / ticks)} s</text>')
    parts.append("</svg>")
    note = f"{len(timed):,} tasks on {len(workers)} worker(s) over {_fmt_s(span)} s"
    if aggregated:
        note += (", aggregated into time bins: a cell's colour is the operation that took most "
                 "of it, its strength how busy the worker was; red marks failures")
    else:
        note += ", one bar per task (hover for details)"
    return f'<p class="note">{_e(note)}</p><div class="scroll">{"".join(parts)}</div>'


# -- volume map -------------------------------------------------------------------------
@dataclass
class _Cell:
    done: int = 0
    failed: int = 0
    slow: int = 0


def _volume_maps(tasks: list[_Task]) -> str:
    groups: dict[tuple[str, str], list[tuple[tuple[int, ...], _Task]]] = {}
    for t in tasks:
        if not t.args:
            continue
        m = CHUNK_RE.match(t.args)  # a chunk task's own summary starts with its region
        if m is None:
            continue
        box = tuple(int(m.group(i)) for i in range(1, 7))
        groups.setdefault((m.group(7) or "?", t.operation), []).append((box, t))
    if not groups:
        return ""
    out = ["<h2>Processed region</h2><p class=\"note\">Per layer and operation, the chunks "
           "seen from above (projected along z): <b style=\"color:#59a14f\">done</b>, "
           "<b style=\"color:#f28e2b\">slow</b> (at least twice the median time and in the "
           "slowest 5%), <b style=\"color:#e15759\">failed</b>; grey: not recorded. A cell's "
           "strength is how many of its z-chunks finished.</p><div class=\"maps\">"]
    for (layer, op), items in sorted(groups.items()):
        durs = sorted(t.duration for _, t in items if t.status == "done")
        med = durs[len(durs) // 2] if durs else 0.0
        p95 = durs[int(0.95 * (len(durs) - 1))] if durs else 0.0
        slow_at = max(2 * med, p95) if len(durs) >= 10 else float("inf")
        xs = sorted({(b[0], b[1]) for b, _ in items})
        ys = sorted({(b[2], b[3]) for b, _ in items})
        zs = {(b[4], b[5]) for b, _ in items}
        cells: dict[tuple[tuple[int, int], tuple[int, int]], _Cell] = {}
        for b, t in items:
            c = cells.setdefault(((b[0], b[1]), (b[2], b[3])), _Cell())
            if t.status in FAILED_STATUSES:
                c.failed += 1
            else:
                c.done += 1
                if t.duration >= slow_at and t.duration > 0:
                    c.slow += 1
        x_lo, x_hi = xs[0][0], max(x[1] for x in xs)
        y_lo, y_hi = ys[0][0], max(y[1] for y in ys)
        size = max(120, min(360, 40 * max(len(xs), len(ys))))
        k = size / max(x_hi - x_lo, y_hi - y_lo, 1)
        w, h = (x_hi - x_lo) * k, (y_hi - y_lo) * k
        svg = [f'<svg class="volmap" xmlns="http://www.w3.org/2000/svg" width="{w + 2:.0f}" '
               f'height="{h + 2:.0f}" data-layer="{_e(layer)}" data-operation="{_e(op)}" '
               f'data-done="{sum(c.done for c in cells.values())}" '
               f'data-failed="{sum(c.failed for c in cells.values())}">']
        for xi in xs:
            for yi in ys:
                found = cells.get((xi, yi))
                x, y = 1 + (xi[0] - x_lo) * k, 1 + (yi[0] - y_lo) * k
                cw, ch = (xi[1] - xi[0]) * k, (yi[1] - yi[0]) * k
                if found is None:
                    colour, opacity, title = ABSENT_COLOUR, 1.0, "not recorded"
                else:
                    colour = (FAILED_COLOUR if found.failed else SLOW_COLOUR if found.slow
                              else DONE_COLOUR)
                    opacity = 0.35 + 0.65 * min(1.0, (found.done + found.failed)
                                                / max(1, len(zs)))
                    title = f"{found.done} done, {found.failed} failed, {found.slow} slow"
                title = f"x {xi[0]}:{xi[1]} y {yi[0]}:{yi[1]} (all z) · {title}"
                svg.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(cw - 0.5, 0.5):.1f}" '
                           f'height="{max(ch - 0.5, 0.5):.1f}" fill="{colour}" '
                           f'fill-opacity="{opacity:.2f}"><title>{_e(title)}</title></rect>')
        svg.append("</svg>")
        failed = sum(c.failed for c in cells.values())
        out.append(f'<figure><figcaption><b>{_e(op)}</b><br><code>{_e(layer)}</code><br>'
                   f'{len(items):,} chunks in {len(xs)}×{len(ys)}×{len(zs)}, {failed:,} failed'
                   f'</figcaption>{"".join(svg)}</figure>')
    out.append("</div>")
    return "".join(out)


# -- page -------------------------------------------------------------------------------
CSS = """
body{font:14px/1.4 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0 2em 3em;color:#222}
h1{font-size:22px;margin:1em 0 .2em}h2{font-size:17px;margin:1.6em 0 .4em;border-bottom:1px
solid #ddd}
table{border-collapse:collapse}td,th{padding:3px 9px;border-bottom:1px solid #eee;
text-align:right}th{cursor:pointer;background:#fafafa}td:first-child,th:first-child{text-align:left}
.status-done{color:#2e7d32}.status-failed,.status-crashed{color:#c62828}.note{color:#666}
pre{background:#f7f7f7;padding:8px;overflow:auto;max-height:24em;font-size:12px}
.scroll{overflow-x:auto}.lane,.tick{font-size:10px;fill:#555}
.kv td,.values td,.values th{text-align:left}.values td{white-space:nowrap}.fail-item{border-left:4px solid #e15759;padding:2px 10px;margin:10px 0}
.maps{display:flex;flex-wrap:wrap;gap:24px}figure{margin:0}figcaption{font-size:12px;
margin-bottom:4px}.legend span{display:inline-block;margin-right:14px}
.legend i{display:inline-block;width:10px;height:10px;margin-right:4px}
#js-errors{color:#c62828;white-space:pre}
"""

JS = """
window.addEventListener('error', function (e) {
  document.getElementById('js-errors').textContent += 'error: ' + e.message + '\\n';
});
(function () {
  var t0 = performance.now();
  document.querySelectorAll('table.sortable').forEach(function (table) {
    table.querySelectorAll('th').forEach(function (th, col) {
      th.addEventListener('click', function () {
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        var dir = th.dataset.dir === 'asc' ? -1 : 1;
        th.dataset.dir = dir === 1 ? 'asc' : 'desc';
        rows.sort(function (a, b) {
          var x = a.cells[col].dataset.v || a.cells[col].textContent;
          var y = b.cells[col].dataset.v || b.cells[col].textContent;
          var nx = parseFloat(x), ny = parseFloat(y);
          if (!isNaN(nx) && !isNaN(ny)) { return (nx - ny) * dir; }
          return x.localeCompare(y) * dir;
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });
  var svg = document.getElementById('timeline');
  var shown = document.getElementById('timeline-count');
  if (svg && shown) { shown.textContent = svg.querySelectorAll('rect.task,rect.bin').length; }
  document.body.dataset.ready = '1';
  document.body.dataset.scriptMs = (performance.now() - t0).toFixed(1);
  document.body.dataset.parsedMs = performance.now().toFixed(1);
  window.addEventListener('load', function () {
    document.body.dataset.loadMs = performance.now().toFixed(1);
  });
})();
"""


def _kv(pairs: list[tuple[str, Any]]) -> str:
    rows = "".join(f"<tr><td><b>{_e(k)}</b></td><td id=\"sum-{_e(k.replace(' ', '-'))}\">"
                   f"{_e(v)}</td></tr>" for k, v in pairs)
    return f'<table class="kv">{rows}</table>'


def render(run: Run) -> str:
    """The report page of ``run``."""
    data = run_data(run, failures=True, limit=MAX_FAILURES)
    tasks = _tasks(run)
    info = run.info()
    ops = sorted(data["counts"])
    colours = {op: PALETTE[i % len(PALETTE)] for i, op in enumerate(ops)}
    import datetime as dt

    def when(ts: float) -> str:
        return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")

    totals = data["totals"]
    n_failed = totals["failed"] + totals["timeout"]
    extra = [k for k in status_columns(totals) if k not in ("done", "failed")]
    by_status = ", ".join(f"{k} {totals[k]:,}" for k in TASK_STATUSES if totals.get(k, 0))
    head = [
        f"<h1>specflow run {_e(data['run'])} · <span id=\"run-status\" "
        f"class=\"status-{_e(data['status'])}\">{_e(data['status'])}</span></h1>",
        '<div id="js-errors"></div>',
        _kv([
            ("tasks done", f"{totals['done']:,}"), ("tasks failed", f"{n_failed:,}"),
            ("tasks by status", by_status or "-"),
            ("started", when(data["created"])), ("last update", when(data["updated"])),
            ("duration", f"{_fmt_s(data['duration'])} s"), ("backend", data["backend"]),
            ("attempts", data["attempt"]), ("spec file", data["spec_file"] or "-"),
            ("overrides", " ".join(data["overrides"]) or "-"),
            ("specflow", data["specflow_version"]), ("run dir", data["run_dir"]),
        ]),
    ]
    if data["result"] is not None or data["stages"]:
        head.append("<h2>Values</h2>")
        if data["result"] is not None:
            head.append(f"<p>The run's flow returned:</p><pre>{_e(json.dumps(data['result'], indent=1, default=str)[:4000])}</pre>")
        if data["stages"]:
            rows = "".join(
                f"<tr><td>{_e(s['position'])}</td><td>{_e(s['name'])}</td>"
                f"<td>{_e(s['status'])}</td><td><code>"
                f"{_e(json.dumps(s['value'], default=str)[:300])}</code></td></tr>"
                for s in data["stages"])
            head.append("<table class=\"values\"><thead><tr><th>stage</th><th>name</th><th>status</th>"
                        f"<th>value</th></tr></thead><tbody>{rows}</tbody></table>")
    # per operation
    op_rows = []
    for op in ops:
        c = data["counts"][op]
        tm = data["timings"].get(op, {})
        n = tm.get("n", 0)

        def cell(key: str, value: Any, sort: Any = None, op: str = op) -> str:
            v = f' data-v="{sort}"' if sort is not None else ""
            return f'<td data-op="{_e(op)}" data-k="{key}"{v}>{_e(value)}</td>'

        op_rows.append(
            f"<tr><td><i style=\"background:{colours[op]};display:inline-block;width:10px;"
            f"height:10px\"></i> {_e(op)}</td>"
            + cell("done", f"{c.get('done', 0):,}", c.get("done", 0))
            + cell("failed", f"{c.get('failed', 0):,}", c.get("failed", 0))
            + "".join(cell(k, f"{c.get(k, 0):,}", c.get(k, 0)) for k in extra)
            + cell("retries", f"{tm.get('retries', 0):,}", tm.get("retries", 0))
            + "".join(cell(k, _fmt_s(tm[k]) if n else "-", tm.get(k, 0) if n else -1)
                      for k in ("mean_s", "p50_s", "p95_s", "max_s"))
            + cell("total_s", _fmt_s(tm["total_s"]) if n else "-", tm.get("total_s", 0))
            + "</tr>")
    op_table = (
        "<h2>Operations</h2><table id=\"ops\" class=\"sortable\"><thead><tr><th>operation</th>"
        "<th>done</th><th>failed</th>" + "".join(f"<th>{k}</th>" for k in extra)
        + "<th>retries</th><th>mean s</th><th>p50 s</th>"
        "<th>p95 s</th><th>max s</th><th>total s</th></tr></thead><tbody>"
        + "".join(op_rows) + "</tbody></table>")
    legend = "".join(f'<span><i style="background:{colours[op]}"></i>{_e(op)}</span>'
                     for op in ops)
    timeline = (f"<h2>Timeline</h2><div class=\"legend\">{legend}<span><i style=\"background:"
                f"{FAILED_COLOUR}\"></i>failed</span></div>{_timeline(tasks, colours)}"
                "<p class=\"note\">drawn: <span id=\"timeline-count\"></span> marks</p>")
    # failures
    fails = data["failures"]
    fparts = [f"<h2>Failures ({n_failed:,})</h2>"]
    if not fails:
        fparts.append("<p>None.</p>")
    for f in fails:
        excerpt = log_excerpt(f["log"], f["id"])
        fparts.append(
            f'<div class="fail-item" data-task="{_e(f["id"])}"><p><b>{_e(f["operation"])}</b> '
            f'<code>{_e(f["id"][:12])}</code> after {f["attempts"]} attempt(s) on '
            f'{_e(f["worker"] or "?")}: {_e(f["error"] or "failed")}</p>'
            f'<p>input: <code class="args">{_e(f["args"] or "-")}</code></p>'
            + (f'<p>log: <code>{_e(f["log"])}</code></p>' if f["log"] else "")
            + (f"<details><summary>traceback</summary><pre>{_e(f['traceback'])}</pre>"
               "</details>" if f["traceback"] else "")
            + (f"<details><summary>log excerpt</summary><pre>{_e(excerpt)}</pre></details>"
               if excerpt else "")
            + "</div>")
    if n_failed > len(fails):
        fparts.append(f"<p>… and {n_failed - len(fails):,} more "
                      f"(<code>specflow status {_e(data['checkpoint'])} --failures</code>)</p>")
    spec = (f"<h2>Resolved spec</h2><pre>{_e(json.dumps(info.spec, indent=2)[:200_000])}</pre>"
            f"<h2>Settings</h2><pre>{_e(json.dumps(info.settings, indent=2))}</pre>")
    body = "".join([*head[:3], op_table, timeline, _volume_maps(tasks), *fparts, *head[3:],
                    spec])
    return (
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>specflow run {_e(data['run'])}</title><style>{CSS}</style></head>"
        f"<body data-run=\"{_e(data['run'])}\">{body}<script>{JS}</script></body></html>"
    )


def write_report(run: Run, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(render(run), encoding="utf-8")
    tmp.replace(path)


TRACE_COLUMNS = ("task_id", "hash", "name", "status", "attempts", "start", "complete",
                 "realtime", "worker", "args", "log", "error")


def _trace_rows(run: Run) -> Iterator[list[str]]:
    rows = run.checkpoint.conn.exec_driver_sql(
        f"SELECT id, operation, status, attempts, started, finished, worker, args, log_path, "
        f"error FROM {LATEST} ORDER BY seq"
    )
    import datetime as dt

    def when(ts: float | None) -> str:
        if ts is None:
            return "-"
        return dt.datetime.fromtimestamp(ts).isoformat(sep=" ", timespec="milliseconds")

    for n, (tid, op, status, attempts, started, finished, worker, args, log, error) in \
            enumerate(rows, 1):
        real = (f"{max(0.0, finished - started) * 1000:.0f}ms"
                if started is not None and finished is not None else "-")
        cells = [str(n), tid[:12], op, status.upper(), str(attempts), when(started),
                 when(finished), real, worker or "-", args or "-", log or "-",
                 (error or "-").splitlines()[0] if error else "-"]
        yield [c.replace("\t", " ").replace("\n", " ") for c in cells]


def write_trace(run: Run, path: Path) -> int:
    """A Nextflow-style trace: one tab-separated row per task. Returns the row count."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\t".join(TRACE_COLUMNS) + "\n")
        for row in _trace_rows(run):
            fh.write("\t".join(row) + "\n")
            n += 1
    return n
