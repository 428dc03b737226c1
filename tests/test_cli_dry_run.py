"""`specflow run --dry-run` against real runs: every example spec, the README's example, and
flows whose counts only a run can tell."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from support import ROOT
from test_cli import sf, write

SPECS = sorted(p for p in (ROOT / "specs").iterdir() if p.suffix in (".yaml", ".cue"))


def listing(folder: Path) -> list[tuple[str, int]]:
    """Every file and folder under ``folder`` with its size (folders: 0)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        for d in dirnames:
            out.append((os.path.relpath(os.path.join(dirpath, d), folder), 0))
        for f in filenames:
            p = os.path.join(dirpath, f)
            out.append((os.path.relpath(p, folder), os.path.getsize(p)))
    return sorted(out)


def dry_counts(*args: str, cwd: Path) -> dict[str, object]:
    r = sf("run", *args, "--dry-run", "--json", cwd=cwd)
    assert r.returncode == 0, r.stderr + r.stdout
    data: dict[str, object] = json.loads(r.stdout)
    return data


def real_counts(*args: str, cwd: Path, run_dir: str) -> dict[str, int]:
    r = sf("run", *args, "--backend", "inline", "--no-progress", "--run-dir", run_dir,
           cwd=cwd, timeout=300)
    assert r.returncode == 0, r.stderr + r.stdout
    st = sf("status", run_dir, "--json", cwd=cwd)
    counts = json.loads(st.stdout)["counts"]
    return {op: c["done"] for op, c in counts.items() if c.get("done")}


@pytest.mark.parametrize("spec", SPECS, ids=[p.name for p in SPECS])
def test_dry_run_of_every_example_equals_its_real_run(workdir: Path, spec: Path) -> None:
    before = listing(workdir)
    dry = dry_counts(str(spec), cwd=workdir)
    assert listing(workdir) == before, "a dry run wrote something"
    assert dry["exact"] is True
    real = real_counts(str(spec), cwd=workdir, run_dir="real")
    assert dry["counts"] == real
    assert dry["total"] == sum(real.values())


def test_dry_run_over_existing_outputs_equals_a_second_real_run(workdir: Path) -> None:
    spec = str(ROOT / "specs" / "quickstart.yaml")
    real_counts(spec, cwd=workdir, run_dir="first")
    before = listing(workdir)
    dry = dry_counts(spec, cwd=workdir)  # the layers exist now: their metadata is read
    assert listing(workdir) == before
    assert dry["counts"] == real_counts(spec, cwd=workdir, run_dir="second")


def test_quickstart_text_output_counts_95_tasks(workdir: Path) -> None:
    r = sf("run", str(ROOT / "specs" / "quickstart.yaml"), "--dry-run", cwd=workdir)
    assert r.returncode == 0, r.stderr
    assert re.search(r"total\s*│\s*95\b", r.stdout), r.stdout
    assert "at least" not in r.stdout
    assert listing(workdir) == []


def _readme_ops(pure: bool) -> str:
    """The README's operations example, as it is written there."""
    text = (ROOT / "README.md").read_text()
    block = text.split("## Writing operations", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    assert "count_up" in block and "add_one" in block
    if not pure:
        block = block.replace("@specflow.taskable_operation(pure=True)",
                              "@specflow.taskable_operation")
    return block


def test_readme_count_up_dry_run_is_exact(workdir: Path) -> None:
    write(workdir / "my_ops.py", _readme_ops(pure=True))
    write(workdir / "spec.yaml", '"@type": count_up\nn: 5\n')
    before = listing(workdir)
    dry = dry_counts("-i", "my_ops.py", "spec.yaml", cwd=workdir)
    assert listing(workdir) == before, "a dry run wrote something"
    real = real_counts("-i", "my_ops.py", "spec.yaml", cwd=workdir, run_dir="r")
    assert real == {"add_one": 6}
    assert dry == {"counts": {"add_one": 6}, "total": 6, "exact": True}


def test_a_flow_that_needs_a_run_value_is_named_and_counted_as_at_least(workdir: Path) -> None:
    write(workdir / "my_ops.py", _readme_ops(pure=False))  # add_one not declared pure
    write(workdir / "spec.yaml", '"@type": count_up\nn: 5\n')
    r = sf("run", "-i", "my_ops.py", "spec.yaml", "--dry-run", cwd=workdir)
    assert r.returncode == 0, r.stderr
    assert "at least 5 tasks" in r.stdout
    assert "'count_up'" in r.stdout and "add_one" in r.stdout
    data = dry_counts("-i", "my_ops.py", "spec.yaml", cwd=workdir)
    assert data["exact"] is False and data["total"] == 5
    assert data["unknown"] == [{"flow": "count_up", "operation": "add_one",
                                "reason": "uses the value of add_one, which only a run "
                                          "produces"}]


def test_a_failure_the_run_would_meet_exits_2_naming_it(workdir: Path) -> None:
    # chunks not aligned with dst's stored chunks (32) cannot skip intermediaries; the flow
    # finds out once it knows dst's chunks, i.e. after prepare_dst
    write(workdir / "s.yaml", """
"@type": sequential_flow
stages:
  - {"@type": synthetic_volume, path: src.zarr, size: [64, 64, 32], chunk_size: [32, 32, 32]}
  - "@type": build_subchunkable_apply_flow
    fn: {"@type": copy, "@mode": partial}
    op_kwargs: {src: {"@type": build_ts_layer, path: src.zarr}}
    dst: {"@type": build_ts_layer, path: dst.zarr, info_reference_path: src.zarr}
    dst_resolution: [1, 1, 1]
    start_coord: [0, 0, 0]
    end_coord: [64, 64, 32]
    coord_resolution: [1, 1, 1]
    processing_chunk_sizes: [[24, 32, 32]]
    skip_intermediaries: true
""")
    r = sf("run", "s.yaml", "--dry-run", cwd=workdir)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "the run would fail" in r.stderr
    assert "subchunkable_apply_flow" in r.stderr and "skip_intermediaries" in r.stderr
    assert "internal error" not in r.stderr
    assert sorted(p.name for p in workdir.iterdir()) == ["s.yaml"]
