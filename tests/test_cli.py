from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml
from support import ROOT


def sf(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "specflow", *args], cwd=cwd, capture_output=True, text=True,
        timeout=timeout, env={**__import__("os").environ, "COLUMNS": "200"},
    )


def write(p: Path, text: str) -> Path:
    p.write_text(text)
    return p


def test_quickstart_runs_and_its_cue_twin_is_the_same_job(workdir: Path) -> None:
    import specflow

    specs = ROOT / "specs"
    assert specflow.load_spec(specs / "quickstart.cue") == specflow.load_spec(
        specs / "quickstart.yaml")
    r = sf("run", str(specs / "quickstart.cue"), cwd=workdir, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "run done" in r.stdout
    assert list(workdir.glob(".specflow/runs/*/checkpoint.db"))
    png = workdir / ".specflow" / "quickstart" / "preview.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_example_spec_validates(workdir: Path) -> None:
    specs = sorted(str(p) for p in (ROOT / "specs").iterdir() if p.suffix in (".yaml", ".cue"))
    assert len(specs) >= 4
    r = sf("validate", *specs, cwd=workdir)
    assert r.returncode == 0, r.stderr + r.stdout


def test_run_status_and_runs(workdir: Path, user_ops: str) -> None:
    spec = write(workdir / "s.yaml", f"""
"@type": execute
backend: inline
target:
  "@type": test.append_many
  path: {workdir / 'out.txt'}
  n: 30
""")
    r = sf("run", "-i", user_ops, str(spec), "--run-dir", "r1", cwd=workdir)
    assert r.returncode == 0, r.stderr
    assert len((workdir / "out.txt").read_text().splitlines()) == 30
    st = sf("status", "r1/checkpoint.db", "--json", cwd=workdir)
    data = json.loads(st.stdout)
    assert data["status"] == "done"
    assert data["counts"] == {"test.append": {"done": 30}}
    runs = sf("runs", "--root", ".", "--json", cwd=workdir)
    assert [x["status"] for x in json.loads(runs.stdout)] == ["done"]


def test_failed_task_exit_1_and_status_shows_error(workdir: Path, user_ops: str) -> None:
    spec = write(workdir / "s.yaml", '"@type": sequential_flow\nstages:\n'
                 '  - {"@type": test.fail_flow}\n')
    write(workdir / "ops2.py", "import specflow\nfrom user_ops import fail\n"
          "@specflow.register('test.fail_flow')\n@specflow.flow_schema\n"
          "def ff():\n    yield fail.make_task(message='it broke')\n")
    r = sf("run", "-i", user_ops, "-i", str(workdir / "ops2.py"), str(spec), "--run-dir", "r",
           "--backend", "inline", cwd=workdir)
    assert r.returncode == 1
    assert "ValueError: it broke" in r.stderr
    assert "specflow resume" in r.stdout
    st = json.loads(sf("status", "r", "--json", cwd=workdir).stdout)
    assert st["status"] == "failed"
    (f,) = st["failures"]
    assert f["error"] == "ValueError: it broke" and "raise ValueError" in f["traceback"]


def test_bad_specs_exit_2_with_path_and_line_no_traceback(workdir: Path) -> None:
    cases = {
        "unknown.yaml": ('"@type": sequential_flow\nstages:\n  - {"@type": ech, message: hi}\n',
                         "stages[0].@type: unknown @type 'ech'", "did you mean 'echo'"),
        "argument.yaml": ('"@type": sleep\nsecond: 1\n', "second: unexpected argument",
                          "unknown.yaml" and "argument.yaml:2:1"),
        "missing.yaml": ('"@type": sleep\n', "missing argument 'seconds'", "missing.yaml:1:1"),
        "type.yaml": ('"@type": sleep\nseconds: [1]\n', "seconds: wrong type", "type.yaml:2:1"),
        "syntax.yaml": ("a: [1, 2\nb: 3\n", "YAML syntax error", "syntax.yaml:2:"),
        "syntax.json": ('{"a": 1,,}', "JSON syntax error", "syntax.json:1:"),
    }
    for name, (text, first, where) in cases.items():
        write(workdir / name, text)
        r = sf("run", name, cwd=workdir)
        assert r.returncode == 2, (name, r.stderr)
        assert first in r.stderr and where in r.stderr, (name, r.stderr)
        assert "Traceback" not in r.stderr, name
    r = sf("run", "missing-file.yaml", cwd=workdir)
    assert r.returncode == 2 and "no such spec file" in r.stderr
    r = sf("run", "unknown.yaml", "--traceback", cwd=workdir)
    assert r.returncode == 2 and "Traceback" in r.stderr


def test_bad_set_and_corrupt_checkpoint(workdir: Path) -> None:
    write(workdir / "s.yaml", '"@type": sleep\nseconds: 0\n')
    r = sf("run", "s.yaml", "--set", "seconds[2]=1", cwd=workdir)
    assert r.returncode == 2 and "is not a list" in r.stderr
    r = sf("run", "s.yaml", "--set", "noequals", cwd=workdir)
    assert r.returncode == 2 and "PATH=VALUE" in r.stderr
    write(workdir / "bad.db", "garbage" * 100)
    for cmd in ("status", "resume"):
        r = sf(cmd, "bad.db", cwd=workdir)
        assert r.returncode == 2 and "not a readable SQLite database" in r.stderr, r.stderr
        assert "Traceback" not in r.stderr


def test_set_overrides_and_export(workdir: Path) -> None:
    write(workdir / "s.yaml", 'target:\n  stages: [{x: 1}, {x: 2}]\nname: a\n')
    r = sf("export", "s.yaml", "--set", "target.stages[1].x=5", "--set", "name=[1, b]",
           "--set", "new.key=true", cwd=workdir)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"target": {"stages": [{"x": 1}, {"x": 5}]},
                                    "name": [1, "b"], "new": {"key": True}}
    r = sf("export", "s.yaml", "--format", "yaml", cwd=workdir)
    assert yaml.safe_load(r.stdout)["name"] == "a"


def test_validate_reports_every_problem(workdir: Path) -> None:
    write(workdir / "good.yaml", '"@type": echo\nmessage: hi\n')
    write(workdir / "bad.yaml", '"@type": sequential_flow\nstages:\n'
          '  - {"@type": echo, mesage: hi}\n  - {"@type": nope}\n')
    r = sf("validate", "good.yaml", cwd=workdir)
    assert r.returncode == 0 and "good.yaml" in r.stdout
    r = sf("validate", "good.yaml", "bad.yaml", cwd=workdir)
    assert r.returncode == 2
    assert "3 problem(s)" in r.stderr  # the misspelt argument is also a missing one
    assert "stages[0].mesage" in r.stderr and "stages[1].@type" in r.stderr
    assert "missing argument 'message'" in r.stderr


def test_dry_run_counts_tasks_and_runs_nothing(workdir: Path, user_ops: str) -> None:
    out = workdir / "o.txt"
    write(workdir / "s.yaml", f'"@type": test.append_many\npath: {out}\nn: 7\n')
    r = sf("run", "-i", user_ops, "s.yaml", "--dry-run", cwd=workdir)
    assert r.returncode == 0, r.stderr
    assert "test.append" in r.stdout and " 7 " in r.stdout
    assert not out.exists()


def test_shell_needs_allow_shell(workdir: Path) -> None:
    write(workdir / "s.yaml", '"@type": shell\ncommand: "echo hi > made.txt"\n')
    r = sf("run", "s.yaml", "--backend", "inline", cwd=workdir)
    assert r.returncode == 2 and "--allow-shell" in r.stderr
    assert not (workdir / "made.txt").exists()
    r = sf("run", "s.yaml", "--backend", "inline", "--allow-shell", cwd=workdir)
    assert r.returncode == 0, r.stderr
    assert (workdir / "made.txt").read_text().strip() == "hi"


def test_types_lists_builtins(workdir: Path) -> None:
    r = sf("types", cwd=workdir)
    assert r.returncode == 0
    for name in ("sequential_flow", "mazepa.concurrent_flow", "execute", "echo", "shell"):
        assert name in r.stdout


def test_checked_in_schema_is_current(workdir: Path) -> None:
    r = sf("schema", cwd=workdir)
    assert r.returncode == 0, r.stderr
    checked_in = (ROOT / "schemas" / "specflow.schema.json").read_text()
    assert json.loads(r.stdout) == json.loads(checked_in), (
        "schemas/specflow.schema.json is stale: run `specflow schema -o schemas/specflow.schema.json`"
    )


def test_resume_refuses_changed_spec_unless_forced(workdir: Path, user_ops: str) -> None:
    spec = write(workdir / "s.yaml", '"@type": test.fail\nmessage: first\n')
    r = sf("run", "-i", user_ops, "s.yaml", "--run-dir", "r", "--backend", "inline", cwd=workdir)
    assert r.returncode == 1
    write(spec, '"@type": test.fail\nmessage: second\n')
    r = sf("resume", "r/checkpoint.db", cwd=workdir)
    assert r.returncode == 2 and "changed since this run started" in r.stderr
    r = sf("resume", "r/checkpoint.db", "--force", cwd=workdir)
    assert r.returncode == 1 and "ValueError: first" in r.stderr  # the stored spec ran
