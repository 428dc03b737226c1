"""zetta's execute entries map onto specflow's run settings, and a top-level list of
executions runs its entries in order."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from specflow.builder import build
from specflow.cli import app
from specflow.run import ExecutionRequest
from specflow.spec import SpecError
from specflow.volumes import build_ts_layer
from specflow.volumes.geometry import VolumetricIndex
from specflow.zetta_execute import slurm_minutes

TASK = {"@type": "echo", "message": "hi"}


def request(spec: dict[str, Any], opt_ins: tuple[str, ...] = ()) -> ExecutionRequest:
    out = build(spec, opt_ins=opt_ins)
    assert isinstance(out, ExecutionRequest)
    return out


def test_execute_and_execute_locally(capsys: pytest.CaptureFixture[str]) -> None:
    r = request({"@type": "mazepa.execute", "target": TASK, "max_batch_len": 7,
                 "raise_on_failed_task": False, "checkpoint": "gs://x/ckpt"})
    assert r.settings == {"backend": "local", "batch_size": 7, "keep_going": True}
    err = capsys.readouterr().err
    assert "checkpoint: no effect" in err and "specflow resume" in err
    r = request({"@type": "mazepa.execute_locally", "target": TASK, "num_procs": 3,
                 "semaphores_spec": {"read": 2, "cpu": 3}})
    assert r.settings["backend"] == "local" and r.settings["workers"] == 3
    assert r.settings["semaphores"] == {"read": 2, "cpu": 3}
    assert request({"@type": "mazepa.execute_locally", "target": TASK,
                    "debug": True}).settings["backend"] == "inline"
    with pytest.raises(SpecError, match="num_procs must be at least 1"):
        build({"@type": "mazepa.execute_locally", "target": TASK, "num_procs": 0})


def test_execute_on_slurm_maps_zettas_worker_settings() -> None:
    r = request({"@type": "mazepa.execute_on_slurm", "target": TASK, "worker_replicas": 12,
                 "worker_resources": {"cpus_per_task": 2, "mem_per_cpu": "4G",
                                      "gres": "gpu:1", "time": "0-2:30:00",
                                      "partition": "batch"},
                 "init_command": "source venv/bin/activate", "semaphores_spec": {"cpu": 2}},
                opt_ins=("shell",))
    assert r.settings["backend"] == "slurm" and r.settings["semaphores"] == {"cpu": 2}
    assert r.backend_settings == {"max_jobs_in_flight": 12, "cpus_per_task": 2,
                                  "mem": "8192M", "gres": "gpu:1", "partition": "batch",
                                  "time_limit": 150, "setup": ["source venv/bin/activate"]}
    # init_command is shell run in every job: only with --allow-shell
    with pytest.raises(SpecError, match="init_command runs shell commands.*--allow-shell"):
        build({"@type": "mazepa.execute_on_slurm", "target": TASK, "worker_replicas": 1,
               "worker_resources": {}, "init_command": "rm -rf ~"})
    with pytest.raises(SpecError, match="setup runs shell commands.*--allow-shell"):
        build({"@type": "execute_on_slurm", "target": TASK, "setup": ["curl x | sh"]})
    local = request({"@type": "mazepa.execute_on_slurm", "target": TASK, "worker_replicas": 1,
                     "worker_resources": {"cpus_per_task": 1, "mem_per_cpu": "1G"},
                     "local_test": True, "num_procs": 2})
    assert local.settings["backend"] == "local" and local.settings["workers"] == 2
    with pytest.raises(SpecError, match="worker_resources: unknown memory"):
        build({"@type": "mazepa.execute_on_slurm", "target": TASK, "worker_replicas": 1,
               "worker_resources": {"memory": "1G"}})
    assert slurm_minutes("6-0:0:0") == 6 * 24 * 60
    assert slurm_minutes("90") == 90 and slurm_minutes("1:00:30") == 61


def test_execute_on_gcp_runs_here_and_says_what_it_did_not_apply(
        capsys: pytest.CaptureFixture[str]) -> None:
    r = request({"@version": "0.4", "@type": "mazepa.execute_on_gcp_with_sqs", "target": TASK,
                 "worker_image": "us.gcr.io/x/zetta:1", "worker_groups": {"g": {}},
                 "num_procs": 2})
    assert r.settings["backend"] == "local" and r.settings["workers"] == 2
    err = capsys.readouterr().err
    assert "worker_image: not applied" in err and "worker_groups: not applied" in err
    old = request({"@type": "mazepa.execute_on_gcp_with_sqs", "target": TASK,
                   "worker_image": "img", "worker_replicas": 10,
                   "worker_resources": {"memory": "10G"}})
    assert old.settings["backend"] == "local"
    assert "worker_replicas: not applied" in capsys.readouterr().err


def test_a_list_of_executions_runs_in_order(workdir: Path) -> None:
    raw, copied = str(workdir / "raw.zarr"), str(workdir / "copy.zarr")
    first = {"@type": "mazepa.execute", "target": {
        "@type": "synthetic_volume", "path": raw, "size": [16, 16, 16],
        "chunk_size": [8, 8, 8], "dtype": "uint8", "scale": 200}}
    second = {"@type": "mazepa.execute_on_gcp_with_sqs", "worker_image": "img",
              "worker_replicas": 4, "target": {
                  "@type": "build_subchunkable_apply_flow",
                  "fn": {"@type": "copy", "@mode": "partial"},
                  "op_kwargs": {"src": {"@type": "build_ts_layer", "path": raw}},
                  "dst": {"@type": "build_ts_layer", "path": copied,
                          "info_reference_path": raw},
                  "dst_resolution": [1, 1, 1], "processing_chunk_sizes": [[8, 8, 8]],
                  "skip_intermediaries": True, "bbox": {"@type": "BBox3D",
                                                        "start": [0, 0, 0],
                                                        "end": [16, 16, 16]}}}
    spec = workdir / "two.json"
    spec.write_text(json.dumps([first, second]))
    done = CliRunner().invoke(app, ["run", str(spec), "--backend", "inline", "--no-progress",
                                    "--run-dir", str(workdir / "run")])
    assert done.exit_code == 0, done.output
    assert "worker_replicas: not applied" in done.stderr
    whole = VolumetricIndex.from_voxels([0, 0, 0], [16, 16, 16], [1, 1, 1])
    data = build_ts_layer(raw).read(whole)
    assert data.any() and np.array_equal(build_ts_layer(copied).read(whole), data)
