"""Seeing into runs: failures that name their input, status --tasks, export of a run, the
HTML report in a real headless browser, the trace, and the CLI's conventions."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import ROOT

from specflow.run.report import CHUNK_RE


def sf(*args: str, cwd: Path, timeout: float = 180, columns: str | None = "200",
       ) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    if columns is not None:
        env["COLUMNS"] = columns
    return subprocess.run([sys.executable, "-m", "specflow", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, env=env)


def chromium_dom(page: Path, tmp: Path) -> tuple[str, str]:
    """The DOM of ``page`` after Chromium loaded it and ran its script, and the browser's
    log (console messages are logged with --enable-logging=stderr)."""
    browser = shutil.which("chromium")
    assert browser is not None, "Debian's chromium package is needed (.ci/run installs it)"
    r = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
         "--v=0", f"--user-data-dir={tmp / 'chromium-profile'}", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=180,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout, r.stderr


VOLUME_SPEC = """
"@type": execute
backend: inline
keep_going: true
target:
  "@type": sequential_flow
  stages:
    - "@type": synthetic_volume
      path: vol/raw.zarr
      size: [64, 48, 16]
      chunk_size: [16, 16, 16]
    - "@type": build_subchunkable_apply_flow
      op: {"@type": test.fail_chunks_below, x: 16}
      op_kwargs:
        src: {"@type": build_ts_layer, path: vol/raw.zarr}
      dst: {"@type": build_ts_layer, path: vol/out.zarr, info_reference_path: vol/raw.zarr}
      dst_resolution: [1, 1, 1]
      bbox: {"@type": BBox3D.from_coords, start_coord: [0, 0, 0], end_coord: [64, 48, 16],
             resolution: [1, 1, 1]}
      processing_chunk_sizes: [[16, 16, 16]]
      level_intermediaries_dirs: [vol/tmp]
"""


def test_a_volume_job_with_failing_chunks_names_them_and_its_report_agrees(
        workdir: Path, user_ops: str) -> None:
    (workdir / "vol.yaml").write_text(VOLUME_SPEC)
    r = sf("run", "-i", user_ops, "vol.yaml", "--run-dir", "r", cwd=workdir)
    assert r.returncode == 1, r.stderr
    # the chunks below x=16 fail: x 0:16, every y of three, one z
    failing = [f"x 0:16 y {y}:{y + 16} z 0:16" for y in (0, 16, 32)]
    text = r.stdout + r.stderr
    for region in failing:
        assert re.search(rf"  input: {region} @ 1x1x1 nm = \[.*\] nm in file://\S*out\.zarr",
                         text), (region, text)
    assert text.count("ValueError: this chunk is refused") == 3
    ck = workdir / "r" / "checkpoint.db"
    assert f"traceback: specflow status {ck} --task " in r.stderr
    # status: the same failures, filtered
    st = sf("status", "r", "--failures", "--op", "subchunkable.process_chunk", "--limit", "2",
            cwd=workdir)
    assert st.stdout.count("failed subchunkable.process_chunk") == 2
    assert all(("input: x 0:16" in line) for line in st.stdout.splitlines()
               if line.startswith("  input:"))
    tid = re.search(r"--task ([0-9a-f]{12})", r.stderr)
    assert tid
    one = sf("status", "r", "--task", tid.group(1), cwd=workdir)
    assert "Traceback (most recent call last)" in one.stdout
    assert "ValueError: this chunk is refused" in one.stdout

    data = json.loads(sf("status", "r", "--json", cwd=workdir).stdout)
    assert data["counts"]["subchunkable.process_chunk"] == {"done": 12 + 9, "failed": 3}
    found = []
    for f in data["failures"]:
        m = CHUNK_RE.search(f["args"])
        assert m, f["args"]
        found.append(f"x {m.group(1)}:{m.group(2)} y {m.group(3)}:{m.group(4)} "
                     f"z {m.group(5)}:{m.group(6)}")
    assert sorted(found) == sorted(failing)

    rep = sf("report", "r", "--trace", "trace.tsv", cwd=workdir)
    assert rep.returncode == 0, rep.stderr
    page = workdir / "r" / "report.html"
    html_text = page.read_text()
    assert "http://" not in html_text.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in html_text
    dom, log = chromium_dom(page, workdir)
    assert 'data-ready="1"' in dom, "the page's script did not run to its end"
    assert re.search(r'<div id="js-errors"></div>', dom), "the page reported script errors"
    assert not re.search(r"CONSOLE|Uncaught", log), log[-2000:]
    # every number of the operations table is the one status --json gives
    for op, counts in data["counts"].items():
        for k in ("done", "failed"):
            cell = re.search(rf'data-op="{re.escape(op)}" data-k="{k}" data-v="(\d+)"', dom)
            assert cell and int(cell.group(1)) == counts.get(k, 0), (op, k)
    for k in ("done", "failed"):
        total = re.search(rf'id="sum-tasks-{k}">([\d,]+)<', dom)
        assert total and int(total.group(1).replace(",", "")) == data["totals"][k]
    # the volume map of the processed layer: 12 chunks, 3 failed
    m = re.search(r'<svg class="volmap"[^>]*data-layer="([^"]*out\.zarr/?)" '
                  r'data-operation="subchunkable.process_chunk" data-done="(\d+)" '
                  r'data-failed="(\d+)"', dom)
    assert m and (int(m.group(2)), int(m.group(3))) == (9, 3)
    # the timeline drew every task
    n_tasks = sum(sum(c.values()) for c in data["counts"].values())
    assert re.search(rf'<svg id="timeline"[^>]*data-tasks="{n_tasks}"', dom)
    assert dom.count('class="fail-item"') == 3
    trace = (workdir / "trace.tsv").read_text().splitlines()
    assert trace[0].split("\t")[:4] == ["task_id", "hash", "name", "status"]
    assert len(trace) == 1 + n_tasks
    assert sum(1 for line in trace if "\tFAILED\t" in line) == 3


def test_status_lists_tasks_values_and_stages_and_export_shows_what_a_run_used(
        workdir: Path, user_ops: str) -> None:
    (workdir / "s.yaml").write_text("""
"@type": execute
backend: inline
target:
  "@type": sequential_flow
  stages:
    - {"@type": echo, message: first}
    - {"@type": test.total_of_squares, n: 4}
""")
    r = sf("run", "-i", user_ops, "s.yaml", "--run-dir", "r", "--set",
           "target.stages.0.message=hello", cwd=workdir)
    assert r.returncode == 0, r.stderr
    data = json.loads(sf("status", "r", "--tasks", "--json", cwd=workdir).stdout)
    assert len(data["tasks"]) == 5
    keys = {"id", "operation", "status", "attempts", "args", "value", "error", "log",
            "started", "finished", "worker"}
    assert all(keys <= set(t) for t in data["tasks"])
    squares = sorted(t["value"] for t in data["tasks"] if t["operation"] == "test.square")
    assert squares == [0, 1, 4, 9]
    assert {t["args"] for t in data["tasks"] if t["operation"] == "test.square"} == \
        {f"x={i}" for i in range(4)}
    assert [(s["name"], s["status"], s["value"]) for s in data["stages"]] == [
        ("echo", "done", "hello"), ("test.total_of_squares", "done", 14)]
    text = sf("status", "r", cwd=workdir).stdout
    assert "stage 1: echo (done) → \"hello\"" in text
    assert "stage 2: test.total_of_squares (done) → 14" in text
    exp = json.loads(sf("export", "r", cwd=workdir).stdout)
    assert exp["overrides"] == ["target.stages.0.message=hello"]
    assert exp["spec"]["target"]["stages"][0]["message"] == "hello"
    assert exp["settings"]["backend"] == "inline"
    only = json.loads(sf("export", "r/checkpoint.db", "--spec-only", cwd=workdir).stdout)
    assert only == exp["spec"]


def test_cli_conventions(workdir: Path) -> None:
    v = sf("--version", cwd=workdir)
    assert v.returncode == 0 and re.fullmatch(r"specflow \S+\n", v.stdout)
    h = sf("run", "-h", cwd=workdir)
    assert h.returncode == 0 and "--workers" in h.stdout
    for cmd in ("run", "resume", "status", "runs", "clean", "report", "export", "types"):
        helptext = sf(cmd, "--help", cwd=workdir, columns="300").stdout
        options = [ln for ln in helptext.splitlines() if re.match(r"│ +--[a-z]", ln)]
        assert options
        for ln in options:  # every option says what it does
            assert re.search(r"--\S+(?: +-\w)?(?: +\S+)? {2,}\S.*[a-z]", ln), (cmd, ln)
    assert "--install-completion" in sf("--help", cwd=workdir).stdout
    (workdir / "s.yaml").write_text('{"@type": echo, message: hi}\n')
    for bad in ("0", "-3"):
        w = sf("run", "s.yaml", "--workers", bad, cwd=workdir)
        assert w.returncode == 2 and "--workers" in w.stderr
    (workdir / "my_ops.py").write_text(
        "import specflow\n\n@specflow.register('mine.hello')\n@specflow.taskable_operation\n"
        "def hello(name: str) -> str:\n    '''Says hello.\n\n    More words.'''\n"
        "    print('hello', name)\n    return name\n")
    (workdir / "m.yaml").write_text(
        '{"@type": sequential_flow, stages: [{"@type": mine.hello, name: a}]}\n')
    r = sf("run", "-i", "my_ops", "m.yaml", "--backend", "inline", "--set",
           "stages.0.name=zed", "--run-dir", str(workdir / "elsewhere" / ("x" * 90)),
           cwd=workdir, columns=None)
    assert r.returncode == 0, r.stderr
    assert "hello zed" in r.stdout + r.stderr
    ck = workdir / "elsewhere" / ("x" * 90) / "checkpoint.db"
    assert f"checkpoint: {ck}\n" in r.stdout  # one line, not wrapped when piped
    types = sf("types", "-i", "my_ops", cwd=workdir, columns=None).stdout.splitlines()
    line = next(t for t in types if t.startswith("mine.hello "))
    assert line.split(None, 1)[1] == "Says hello."
    full = sf("types", "-i", "my_ops", "mine.hello", cwd=workdir).stdout
    assert "mine.hello(name: str)" in full and "More words." in full
    # runs: the run made with --run-dir is found with --all
    runs = json.loads(sf("runs", "--json", cwd=workdir).stdout)
    assert runs == []
    everything = json.loads(sf("runs", "--all", "--json", cwd=workdir).stdout)
    assert [(e["run_dir"], e["backend"], e["attempts"], e["status"]) for e in everything] == [
        (str(ck.parent), "inline", 1, "done")]
    assert everything[0]["duration"] >= 0


def test_clean_removes_old_runs_but_never_a_live_one(workdir: Path, user_ops: str) -> None:
    for name in ("a", "b"):
        (workdir / f"{name}.yaml").write_text(f'{{"@type": echo, message: {name}}}\n')
        r = sf("run", f"{name}.yaml", "--backend", "inline", cwd=workdir)
        assert r.returncode == 0, r.stderr
    (workdir / "live.yaml").write_text(
        f'{{"@type": test.wait_for, gate: {workdir / "gate"}, started: {workdir / "started"}}}\n')
    env = {**os.environ, "COLUMNS": "200"}
    live = subprocess.Popen(
        [sys.executable, "-m", "specflow", "run", "-i", user_ops, "live.yaml", "--backend",
         "inline", "--no-progress"], cwd=workdir, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        while not (workdir / "started").exists():
            assert live.poll() is None, live.communicate()
            time.sleep(0.02)
        root = workdir / ".specflow" / "runs"
        assert len(list(root.glob("*/checkpoint.db"))) == 3
        dry = sf("clean", "--keep", "0", "--dry-run", cwd=workdir)
        assert dry.stdout.count("would remove") == 2 and "kept" in dry.stdout
        c = sf("clean", "--keep", "0", cwd=workdir)
        assert c.returncode == 0, c.stderr
        assert c.stdout.count("removed") == 2
        assert "its driver is alive" in c.stdout
        left = list(root.glob("*/checkpoint.db"))
        assert len(left) == 1
    finally:
        (workdir / "gate").write_text("go")
        out, errs = live.communicate(timeout=120)
    assert live.returncode == 0, errs
    assert sf("clean", "--older-than", "7d", cwd=workdir).stdout.strip() == "nothing to remove"
    assert sf("clean", "--keep", "0", cwd=workdir).stdout.count("removed") == 1
    assert sf("clean", "--older-than", "soon", cwd=workdir).returncode == 2


def test_readme_first_command_is_one_line_with_a_venv() -> None:
    readme = (ROOT / "README.md").read_text()
    first = next(ln for ln in readme.splitlines() if "specs/quickstart.yaml" in ln
                 and ln.startswith("python3"))
    assert first.startswith("python3 -m venv .venv && . .venv/bin/activate && ")
    assert first.endswith("specflow run specs/quickstart.yaml")


@pytest.mark.parametrize("text, expected", [
    ("a.0.b", ["a", 0, "b"]), ("a[0].b", ["a", 0, "b"]), ("a.10", ["a", 10]),
    ('a."0"', ["a", "0"]),
])
def test_override_paths(text: str, expected: list[object]) -> None:
    from specflow.spec.overrides import apply_overrides, parse_path

    assert parse_path(text) == expected
    assert apply_overrides({"a": [{"b": 1}]}, ["a.0.b=2"]) == {"a": [{"b": 2}]}
    assert apply_overrides({"a": {"0": 1}}, ["a.0=2"]) == {"a": {"0": 2}}
