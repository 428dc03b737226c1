"""Helpers for tests that need the local SLURM cluster (``slurm/cluster.sh``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLUSTER_SH = ROOT / "slurm" / "cluster.sh"


def ensure_cluster(timeout: float = 1200.0) -> tuple[bool, str]:
    """Bring the single-node cluster up (installing it on a fresh machine) and say whether
    it accepts jobs, with the script's output."""
    if shutil.which("bash") is None:
        return False, "bash not found"
    try:
        proc = subprocess.run(["bash", str(CLUSTER_SH), "up"], capture_output=True, text=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        return False, f"slurm/cluster.sh up took more than {timeout:.0f} s: {exc}"
    out = (proc.stdout or "") + (proc.stderr or "")
    return proc.returncode == 0, out


def squeue(name: str, states: str = "all") -> dict[str, str]:
    """Job id → state of the jobs called ``name`` that the controller still holds."""
    proc = subprocess.run(["squeue", "-h", "-r", "-t", states, "-n", name, "-o", "%i|%T"],
                          capture_output=True, text=True, check=False)
    jobs: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        jid, _, state = line.partition("|")
        if jid:
            jobs[jid.strip()] = state.strip()
    return jobs


def sacct_states(job_ids: list[str]) -> dict[str, str]:
    """Job id → state from accounting (the last record of each id)."""
    if not job_ids:
        return {}
    mains = sorted({j.split("_")[0] for j in job_ids})
    proc = subprocess.run(["sacct", "-X", "-n", "-P", "-o", "JobID,State", "-S", "now-1days",
                           "-j", ",".join(mains)], capture_output=True, text=True, check=False)
    states: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        jid, _, state = line.partition("|")
        states[jid.strip()] = state.strip()
    return {j: states[j] for j in job_ids if j in states}


def wait_for_state(name: str, state: str, timeout: float = 60.0) -> str | None:
    """The id of the first job called ``name`` seen in ``state``, or None after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for jid, st in squeue(name).items():
            if st == state:
                return jid
        time.sleep(0.1)
    return None


def cancel_all(name: str) -> None:
    """Cancel every job called ``name`` (test cleanup)."""
    subprocess.run(["scancel", "-n", name], capture_output=True, check=False)


def in_ci() -> bool:
    return bool(os.environ.get("CI"))
