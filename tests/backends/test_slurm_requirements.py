"""Requirements on SLURM: tasks with different requirements run in different job arrays
with matching resources (checked with ``sacct``); worker types name partitions or the
backend's ``worker_types``; what no node can meet is refused before anything is submitted."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import slurm_cluster

pytestmark = pytest.mark.slurm

OPS = str(Path(__file__).resolve().parent.parent / "execution" / "status_ops.py")




def node_cpus() -> int:
    out = subprocess.run(["sinfo", "-h", "-N", "-o", "%c"], capture_output=True, text=True,
                         check=True).stdout.split()
    return max(int(c) for c in out)


def run(tmp_path: Path, body: str, job_name: str,
        name: str = "run") -> subprocess.CompletedProcess[str]:
    spec = tmp_path / f"{name}.yaml"
    spec.write_text(f'"@type": execute_on_slurm\ntime_limit: 5\ntarget:\n{body}')
    return subprocess.run(
        [sys.executable, "-m", "specflow", "run", str(spec), "-i", OPS, "--run-dir",
         str(tmp_path / name), "-q", "--set", f"job_name={job_name}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600)


def sacct_cpus(job_ids: set[str]) -> dict[str, int]:
    """Array job id (``MAIN_INDEX``) → CPUs allocated, from accounting."""
    mains = sorted({j.split("_")[0] for j in job_ids})
    out: dict[str, int] = {}
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        proc = subprocess.run(["sacct", "-X", "-n", "-P", "-o", "JobID,AllocCPUS,ReqCPUS",
                               "-S", "now-1days", "-j", ",".join(mains)],
                              capture_output=True, text=True, check=False)
        for line in proc.stdout.splitlines():
            jid, alloc, req = line.split("|")
            out[jid] = int(alloc or req or 0)
        if job_ids <= set(out):
            return out
        time.sleep(0.5)  # accounting writes its records shortly after the jobs end
    return out


def test_different_cpus_run_in_arrays_with_different_cpus_per_task(
        tmp_path: Path, job_name: str) -> None:
    big = min(2, node_cpus())
    assert big == 2, "the test cluster's node has at least 2 CPUs"
    body = "  \"@type\": concurrent_flow\n  stages:\n"
    for i in range(3):
        body += (f'    - {{"@type": st.where, out: "{tmp_path / f"small{i}"}", '
                 '"@requirements": {cpus: 1}}\n')
        body += (f'    - {{"@type": st.where, out: "{tmp_path / f"big{i}"}", '
                 '"@requirements": {cpus: 2}}\n')
    r = run(tmp_path, body, job_name)
    assert r.returncode == 0, r.stdout + r.stderr
    seen: dict[str, set[str]] = {"small": set(), "big": set()}
    for kind in seen:
        for i in range(3):
            env = json.loads((tmp_path / f"{kind}{i}").read_text())
            # an array of one element may be a plain job
            seen[kind].add(f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
                           if env["SLURM_ARRAY_JOB_ID"] else env["SLURM_JOB_ID"])
            assert env["SLURM_CPUS_PER_TASK"] == ("2" if kind == "big" else "1"), env
    # different arrays: no job ran tasks of both kinds, and the arrays differ
    assert not seen["small"] & seen["big"]
    assert {j.split("_")[0] for j in seen["small"]}.isdisjoint(
        {j.split("_")[0] for j in seen["big"]})
    cpus = sacct_cpus(seen["small"] | seen["big"])
    assert {cpus[j] for j in seen["small"]} == {1}, cpus
    assert {cpus[j] for j in seen["big"]} == {2}, cpus


def test_worker_types_name_partitions_or_the_backends_entries(
        tmp_path: Path, job_name: str) -> None:
    spec_body = ("  \"@type\": concurrent_flow\n  stages:\n"
                 f'    - {{"@type": st.where, out: "{tmp_path / "p"}", "@worker_type": debug}}\n'
                 f'    - {{"@type": st.where, out: "{tmp_path / "w"}", "@worker_type": wide}}\n')
    spec = tmp_path / "spec.yaml"
    spec.write_text('"@type": execute_on_slurm\ntime_limit: 5\n'
                    'worker_types: {wide: {cpus_per_task: 2}}\ntarget:\n' + spec_body)
    r = subprocess.run(
        [sys.executable, "-m", "specflow", "run", str(spec), "-i", OPS, "--run-dir",
         str(tmp_path / "run"), "-q", "--set", f"job_name={job_name}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    p = json.loads((tmp_path / "p").read_text())
    w = json.loads((tmp_path / "w").read_text())
    assert p["SLURM_JOB_PARTITION"] == "debug"
    assert w["SLURM_CPUS_PER_TASK"] == "2" and p["SLURM_JOB_ID"] != w["SLURM_JOB_ID"]


def test_what_no_node_can_meet_is_refused_before_submitting(
        tmp_path: Path, job_name: str) -> None:
    too_many = node_cpus() * 8
    r = run(tmp_path, f'  "@type": st.where\n  out: "{tmp_path / "x"}"\n'
                      f'  "@requirements": {{cpus: {too_many}}}\n', job_name)
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"cpus={too_many}" in r.stderr and "largest node of partition" in r.stderr
    r = run(tmp_path, f'  "@type": st.where\n  out: "{tmp_path / "x"}"\n'
                      '  "@worker_type": gpu\n', job_name, name="second")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "worker_type 'gpu'" in r.stderr and "debug" in r.stderr
    assert not slurm_cluster.squeue(job_name), "nothing was submitted"
    assert not (tmp_path / "x").exists()
