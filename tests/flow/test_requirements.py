"""Task requirements and worker types: stated on operations, tasks (``@requirements``,
``@worker_type`` on any typed node) and flows; refused before running where no worker can
meet them; a task's ``timeout_seconds`` and ``max_retries`` override the run's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import specflow
from specflow.backends.base import machine_resources
from specflow.flow.task import Requirements, with_requirements

OPS = str(Path(__file__).resolve().parent.parent / "execution" / "status_ops.py")


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "specflow", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def run_spec(tmp_path: Path, text: str, *extra: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    spec = tmp_path / "spec.yaml"
    spec.write_text(text)
    run = tmp_path / "run"
    r = cli("run", str(spec), "-i", OPS, "--run-dir", str(run), "-q", *extra, cwd=tmp_path)
    return r, run


def counts(run: Path) -> dict[str, Any]:
    r = cli("status", str(run), "--json", cwd=run.parent)
    assert r.returncode == 0, r.stderr
    data: dict[str, Any] = json.loads(r.stdout)["counts"]
    return {op: {k: v for k, v in c.items() if v} for op, c in data.items()}


def test_requirements_are_checked_when_read() -> None:
    r = Requirements.of({"cpus": 2, "mem_gb": 1.5, "gpus": 0, "tags": ["ssd", "ssd"],
                         "platform": "Linux", "timeout_seconds": 5, "max_retries": 1})
    assert r.cpus == 2.0 and r.tags == ("ssd",) and r.platform == "linux"
    for bad, word in (({"cpus": 0}, "cpus"), ({"cpus": "many"}, "cpus"),
                      ({"gpus": 1.5}, "gpus"), ({"max_retries": -1}, "max_retries"),
                      ({"tags": [3]}, "tags"), ({"disk": 3}, "unknown requirement"),
                      ([1], "mapping")):
        with pytest.raises(ValueError, match=word):
            Requirements.of(bad)


def test_timeout_and_retries_override_the_task_settings() -> None:
    task = specflow.build({"@type": "echo", "message": "x"})
    placed = with_requirements(task, Requirements.of({"timeout_seconds": 3, "max_retries": 4}),
                               "big")
    assert placed.id == task.id, "requirements say where work runs, not what it is"
    assert placed.runtime_limit_sec == 3 and placed.max_attempts == 5
    assert placed.worker_type == "big" and task.requirements is None
    # a task's own requirements win over a flow's
    again = with_requirements(placed, Requirements.of({"cpus": 1}), "small")
    assert again.requirements is placed.requirements and again.worker_type == "big"


def test_a_spec_node_carries_requirements_to_its_task_and_flow() -> None:
    task = specflow.build({"@type": "echo", "message": "x",
                           "@requirements": {"cpus": 1, "tags": ["a"]}, "@worker_type": "w"})
    assert task.requirements == Requirements(cpus=1.0, tags=("a",))
    assert task.worker_type == "w"
    flow = specflow.build({"@type": "sequential_flow", "stages": [
        {"@type": "echo", "message": "x"}], "@requirements": {"mem_gb": 1}})
    assert flow.placement == (Requirements(mem_gb=1.0), None)


def test_bad_requirements_in_a_spec_exit_2_naming_the_path(tmp_path: Path) -> None:
    r, run = run_spec(tmp_path, '"@type": echo\nmessage: x\n"@requirements": {cpus: -1}\n')
    assert r.returncode == 2, r.stderr
    assert "@requirements" in r.stderr and "cpus must be a number > 0" in r.stderr
    assert "spec.yaml:3" in r.stderr
    r, run = run_spec(tmp_path, '"@type": echo\nmessage: x\n"@worker_type": 3\n')
    assert r.returncode == 2 and "@worker_type must be a name" in r.stderr


@pytest.mark.parametrize("backend", ["local", "inline"])
def test_a_task_this_machine_cannot_meet_is_refused_before_running(
        tmp_path: Path, backend: str) -> None:
    have = machine_resources()
    text = ('"@type": sequential_flow\nstages:\n'
            f'  - {{"@type": st.write, out: "{tmp_path / "first"}"}}\n'
            f'  - {{"@type": st.write, out: "{tmp_path / "second"}", '
            f'"@requirements": {{cpus: {have["cpus"] * 4}}}}}\n')
    r, run = run_spec(tmp_path, text, "--backend", backend)
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"cpus={have['cpus'] * 4}" in r.stderr
    assert f"this machine has {have['cpus']} CPU(s)" in r.stderr
    assert "Traceback" not in r.stderr
    # what ran before is on record; the refused task never ran
    assert (tmp_path / "first").exists() and not (tmp_path / "second").exists()
    assert counts(run)["st.write"] == {"done": 1}


def test_each_requirement_names_what_the_machine_has(tmp_path: Path) -> None:
    have = machine_resources()
    cases = [("gpus: 64", f"this machine has {have['gpus']} GPU(s)"),
             ("platform: plan9", f"this machine is {sys.platform}"),
             ("tags: [ssd]", "this machine's workers carry none")]
    if have["mem_gb"]:
        cases.append((f"mem_gb: {int(have['mem_gb'] * 10)}", "GB"))
    for req, said in cases:
        r, _ = run_spec(tmp_path, f'"@type": echo\nmessage: x\n"@requirements": {{{req}}}\n',
                        "--backend", "local", "--run-dir", str(tmp_path / req.split(":")[0]))
        assert r.returncode == 2, (req, r.stderr)
        assert said in r.stderr, (req, r.stderr)


def test_requirements_the_machine_meets_run(tmp_path: Path) -> None:
    text = ('"@type": execute\nbackend: local\nworker_tags: [ssd]\ntarget:\n'
            '  "@type": concurrent_flow\n  "@requirements": {cpus: 1, tags: [ssd]}\n'
            '  "@worker_type": anything\n  stages:\n'
            f'    - {{"@type": st.write, out: "{tmp_path / "a"}"}}\n'
            f'    - {{"@type": st.write, out: "{tmp_path / "b"}", '
            f'"@requirements": {{platform: {sys.platform}}}}}\n')
    r, run = run_spec(tmp_path, text)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "a").exists() and (tmp_path / "b").exists()


def test_timeout_seconds_of_a_task_overrides_the_run(tmp_path: Path) -> None:
    text = ('"@type": st.blocked\ngate: /nonexistent-gate\n'
            f'started: "{tmp_path / "s"}"\ni: 0\n"@requirements": {{timeout_seconds: 1, '
            'max_retries: 0}\n')
    r, run = run_spec(tmp_path, text, "--backend", "local", "--max-attempts", "5")
    assert r.returncode == 1, r.stderr
    data = json.loads(cli("status", str(run), "--json", cwd=tmp_path).stdout)
    assert data["counts"]["st.blocked"]["timeout"] == 1
    # max_retries: 0 means one attempt, whatever the run allows
    assert [f["attempts"] for f in data["failures"]] == [1]
    assert os.path.exists(tmp_path / "s.0")


def test_an_operation_states_its_requirements_in_python(tmp_path: Path) -> None:
    @specflow.taskable_operation(requirements={"cpus": 10**6}, worker_type="huge")
    def big(x: int) -> int:
        return x

    task = big.make_task(x=1)
    assert task.requirements is not None and task.requirements.cpus == 10**6
    assert task.worker_type == "huge"
    with pytest.raises(specflow.SpecError, match="cpus=1e\\+06|cpus=1000000"):
        specflow.execute(task, backend="inline")


def test_dask_maps_requirements_to_worker_resources(tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    from specflow.backends.dask import DaskBackend

    task = specflow.build({"@type": "echo", "message": "on ssd",
                           "@requirements": {"cpus": 1, "tags": ["ssd"]}})
    # workers that carry the tag run it
    report = specflow.execute(task, backend=DaskBackend(workers=1, resources={"tag:ssd": 1}),
                              run_dir=tmp_path / "a")
    assert report.status == "done" and report.total("done") == 1
    # workers without it cannot: refused before running, naming what they offer
    with pytest.raises(specflow.SpecError, match="tag:ssd=1.*offer"):
        specflow.execute(task, backend=DaskBackend(workers=1), run_dir=tmp_path / "b")


def test_validate_names_a_bad_requirement_and_accepts_good_ones(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text('"@type": echo\nmessage: x\n"@requirements": {cpus: 1, disk: 3}\n')
    r = cli("validate", str(bad), cwd=tmp_path)
    assert r.returncode == 2
    assert "@requirements: unknown requirement(s) 'disk'" in r.stdout + r.stderr
    assert "bad.yaml:3" in r.stdout + r.stderr
    good = tmp_path / "good.yaml"
    good.write_text('"@type": echo\nmessage: x\n"@requirements": {cpus: 1, tags: [a]}\n'
                    '"@worker_type": gpu\n')
    assert cli("validate", str(good), cwd=tmp_path).returncode == 0
