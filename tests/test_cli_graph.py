"""`specflow run --dry-run --graph`: the flow graph of the example specs (its counts are those
of a real run, its levels those the operation is really called on), as text, DOT and JSON;
large fan-outs in one line; options that do not go together."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from support import ROOT
from test_cli import sf, write
from test_cli_dry_run import _readme_ops, dry_counts, listing, real_counts

SPECS = ROOT / "specs"


def graph_json(*args: str, cwd: Path) -> dict[str, Any]:
    r = sf("run", *args, "--dry-run", "--graph", "--graph-format", "json", cwd=cwd)
    assert r.returncode == 0, r.stderr + r.stdout
    data: dict[str, Any] = json.loads(r.stdout)
    return data


def operations(node: dict[str, Any]) -> dict[str, int]:
    """Tasks per operation in a graph node and below."""
    out: dict[str, int] = {}
    for item in node["items"]:
        if "operation" in item:
            out[item["operation"]] = out.get(item["operation"], 0) + item["tasks"]
        elif "flow" in item:
            for op, n in operations(item).items():
                out[op] = out.get(op, 0) + n
    return out


def flows(node: dict[str, Any]) -> list[dict[str, Any]]:
    return [i for i in node["items"] if "flow" in i]


def group(node: dict[str, Any], operation: str) -> dict[str, Any]:
    found = [i for i in node["items"] if i.get("operation") == operation]
    assert len(found) == 1, node
    return found[0]


def kinds(node: dict[str, Any]) -> list[str]:
    """The node's items in order: an operation's name, "wait" or "flow NAME"."""
    return [i["operation"] if "operation" in i else
            ("wait" if "wait" in i else f"flow {i['flow']}") for i in node["items"]]


def grid(region: list[int], chunk: list[int]) -> int:
    return math.prod(r // c for r, c in zip(region, chunk, strict=True))


def grown(chunk: list[int], crop: list[int], blend: list[int]) -> list[int]:
    return [c + 2 * (p + b) for c, p, b in zip(chunk, crop, blend, strict=True)]


# -- the example specs ---------------------------------------------------------------------
def test_quickstart_graph_has_its_stages_waits_and_levels(workdir: Path) -> None:
    spec = SPECS / "quickstart.yaml"
    stages = yaml.safe_load(spec.read_text())["target"]["stages"]
    g = graph_json(str(spec), cwd=workdir)
    assert listing(workdir) == [], "a dry run with --graph wrote something"
    dry = dry_counts(str(spec), cwd=workdir)
    assert g["counts"] == dry["counts"] and g["exact"] is True
    top = g["graph"]
    assert top["flow"] == "sequential_flow" and top["tasks"] == dry["total"]
    assert operations(top) == dry["counts"]
    # a sequential flow: each stage, then a wait for everything before it
    names = ["flow subchunkable_apply_flow"] * 4 + ["volume_summary"]
    assert kinds(top) == [k for n in names for k in (n, "wait")]
    assert all(w["wait"] == [] for w in top["items"] if "wait" in w)
    synth, blur, thresh, down = flows(top)
    for f, stage in zip((synth, blur, thresh, down), stages, strict=False):
        path = stage.get("path") or stage["dst"]["path"]
        assert path.rstrip("/") in f["detail"], (f["detail"], path)
    # the synthetic volume: one task per stored chunk, written directly
    size, chunk = stages[0]["size"], stages[0]["chunk_size"]
    assert kinds(synth) == ["subchunkable.prepare_dst", "wait", "subchunkable.process_chunk",
                            "wait"]
    assert synth["items"][1]["wait"] == ["subchunkable.prepare_dst"]
    assert group(synth, "subchunkable.process_chunk")["tasks"] == grid(size, chunk)
    # the blur: staged, two levels, the second computed inside the tasks; each slab of
    # reduction parts is a small flow that waits for the chunks it combines, among the chunks
    assert kinds(blur) == [
        "subchunkable.prepare_dst", "wait", "subchunkable.create_staging", "wait",
        "subchunkable.process_chunk", "flow subchunkable.reduce_slab", "wait",
        "subchunkable.delete_staging", "wait"]
    (part,) = flows(blur)
    assert kinds(part) == ["wait", "subchunkable.reduce_chunk"]
    assert part["items"][0]["wait"] == ["subchunkable.process_chunk"]
    b = stages[1]
    chunks, crops, blends = (b["processing_chunk_sizes"], b["processing_crop_pads"],
                             b["processing_blend_pads"])
    region = [e - s for s, e in zip(b["bbox"]["start_coord"], b["bbox"]["end_coord"],
                                    strict=True)]
    top_chunks = grid(region, chunks[0])
    per = grid(grown(chunks[0], crops[0], blends[0]), chunks[1])
    pc = group(blur, "subchunkable.process_chunk")
    assert pc["tasks"] == top_chunks
    assert [(lvl["name"], lvl["per_parent"], lvl["total"]) for lvl in pc["levels"]] == [
        ("level 0", 1, top_chunks), ("level 1", per, top_chunks * per)]
    assert "40×40×20" in pc["levels"][1]["label"] and "crop 5×5×5" in pc["levels"][1]["label"]
    reductions = dry["counts"]["subchunkable.reduce_chunk"]
    assert group(part, "subchunkable.reduce_chunk")["tasks"] == reductions
    assert 1 <= part["instances"] <= reductions


RECORDING_OPS = '''
import os
import specflow

@specflow.register("graph_test.record_calls")
def record_calls(src, log):
    """The input as it is; one line per call in ``log`` (the shape it was called on)."""
    with open(log, "a") as f:
        f.write(" ".join(str(n) for n in src.shape[-3:]) + "\\n")
    return src
'''


def test_two_level_graph_counts_equal_a_real_run_down_to_the_sub_chunks(workdir: Path) -> None:
    """The tasks per operation equal a real run's checkpoint; the sub-chunks of level 1 are
    the calls the operation really gets, on chunks of the size the graph says."""
    data = yaml.safe_load((SPECS / "two_level.yaml").read_text())
    stage = data["target"]["stages"][1]
    stage["fn"] = {"@type": "graph_test.record_calls", "@mode": "partial",
                   "log": str(workdir / "calls.txt")}
    write(workdir / "ops.py", RECORDING_OPS)
    write(workdir / "spec.yaml", yaml.safe_dump(data))
    g = graph_json("-i", "ops.py", "spec.yaml", cwd=workdir)
    assert not (workdir / "calls.txt").exists(), "the dry run called the operation"
    real = real_counts("-i", "ops.py", "spec.yaml", cwd=workdir, run_dir="real")
    assert g["counts"] == real and operations(g["graph"]) == real
    calls = (workdir / "calls.txt").read_text().split("\n")[:-1]
    blur = flows(g["graph"])[1]
    pc = group(blur, "subchunkable.process_chunk")
    region = [e - s for s, e in zip(stage["start_coord"], stage["end_coord"], strict=True)]
    assert pc["tasks"] == grid(region, stage["processing_chunk_sizes"][0])
    levels = pc["levels"]
    assert len(levels) == 2 and levels[0]["total"] == pc["tasks"]
    assert levels[1]["total"] == len(calls) > pc["tasks"]
    assert levels[1]["per_parent"] * pc["tasks"] == len(calls)
    # each call computes a level-1 chunk grown by its crop pad
    chunk, crop = stage["processing_chunk_sizes"][1], stage["processing_crop_pads"][1]
    shape = " ".join(str(c + 2 * p) for c, p in zip(chunk, crop, strict=True))
    assert set(calls) == {shape}
    assert "×".join(map(str, chunk)) in levels[1]["label"]


def test_builtin_ops_graph_shows_concurrent_stages_and_equals_a_real_run(workdir: Path) -> None:
    spec = str(SPECS / "builtin_ops.yaml")
    r = sf("run", spec, "--dry-run", "--graph", cwd=workdir)
    assert r.returncode == 0, r.stderr
    real = real_counts(spec, cwd=workdir, run_dir="real")
    total = sum(real.values())
    lines = r.stdout.splitlines()
    assert lines[0] == f"{spec}: {total} tasks (dry run)"
    assert lines[1] == f"sequential_flow  ({total} tasks)"
    text = "\n".join(lines)
    # the concurrent stage holds the repeat flow and the echo, with no wait between them
    m = re.search(r"├─ concurrent_flow  \((\d+) tasks\)\n│  ├─ repeat  \((\d+) tasks\)\n"
                  r"│  │  └─ sleep × (\d+)\n│  └─ echo × 1\n├─ ◇ wait for all above\n", text)
    assert m, text
    assert int(m[1]) == real["sleep"] + 1 and int(m[2]) == int(m[3]) == real["sleep"]
    assert "├─ system_info × 1\n├─ ◇ wait for all above\n├─ concurrent_flow" in text
    assert text.endswith("├─ echo × 1\n└─ ◇ wait for all above")
    g = graph_json(spec, cwd=workdir)
    assert operations(g["graph"]) == real


def test_two_level_text_tree_names_the_levels(workdir: Path) -> None:
    spec = str(SPECS / "two_level.yaml")
    r = sf("run", spec, "--dry-run", "--graph", cwd=workdir)
    assert r.returncode == 0, r.stderr
    g = graph_json(spec, cwd=workdir)
    pc = group(flows(g["graph"])[1], "subchunkable.process_chunk")
    lvl0, lvl1 = pc["levels"]
    assert f"│  ├─ subchunkable.process_chunk × {pc['tasks']}\n" in r.stdout
    assert f"│  │  ├╌ level 0: {lvl0['total']} chunks of 128×128×32 (blend 8×8×4 linear)" \
        in r.stdout
    # the second level has its own blend mode (processing_blend_modes gives one per level)
    assert f"│  │  └╌ level 1: {lvl1['total']} chunks of 48×48×20 (crop 4×4×2)  " \
        f"({lvl1['per_parent']} in each level 0 chunk, inside the tasks)" in r.stdout
    assert "◇ wait for subchunkable.create_staging" in r.stdout


# -- DOT -----------------------------------------------------------------------------------
def dot_tool() -> str | None:
    found = shutil.which("dot")
    if found is None and not os.environ.get("CI"):
        pytest.skip("Graphviz's dot is not installed (CI installs it)")
    assert found is not None, "CI must have Graphviz's dot (.ci/run installs graphviz)"
    return found


def test_dot_output_is_read_by_graphviz_with_a_cluster_per_flow(workdir: Path) -> None:
    dot = dot_tool()
    spec = str(SPECS / "quickstart.yaml")
    r = sf("run", spec, "--dry-run", "--graph", "--graph-format", "dot", cwd=workdir)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("digraph specflow {")
    assert listing(workdir) == []
    laid = subprocess.run([str(dot), "-Tjson"], input=r.stdout, capture_output=True,
                          text=True, check=False)
    assert laid.returncode == 0, laid.stderr
    assert not laid.stderr.strip(), laid.stderr  # no warnings either
    layout = json.loads(laid.stdout)
    objects = layout["objects"]
    clusters = [o for o in objects if o["name"].startswith("cluster_")]
    nodes = [o for o in objects if not o["name"].startswith("cluster_")]
    g = graph_json(spec, cwd=workdir)
    def nested(node: dict[str, Any]) -> int:
        return sum(1 + nested(f) for f in flows(node))

    assert len(clusters) == 1 + nested(g["graph"])
    assert clusters[0]["label"].startswith("sequential_flow")
    assert sum(c["label"].startswith("subchunkable_apply_flow") for c in clusters) == 4
    labels = [n["label"] for n in nodes]
    counts = g["counts"]
    # one box per operation and stage: its count is summed from the labels
    boxed: dict[str, int] = {}
    for label in labels:
        m = re.match(r"(\S+) × ([\d,]+)", label)
        if m:
            boxed[m[1]] = boxed.get(m[1], 0) + int(m[2].replace(",", ""))
    assert boxed == counts
    assert any("level 1: " in label for label in labels)
    # the edges chain the stages: every node but the first is reached from another
    by_id = {o["_gvid"]: o for o in objects}
    targets = {by_id[e["head"]]["name"] for e in layout.get("edges", [])}
    sources = {by_id[e["tail"]]["name"] for e in layout.get("edges", [])}
    names = {n["name"] for n in nodes}
    assert len(names - targets) == 1 and len(names - sources) == 1


def test_graph_out_writes_the_file_and_prints_the_counts(workdir: Path) -> None:
    spec = str(SPECS / "builtin_ops.yaml")
    r = sf("run", spec, "--dry-run", "--graph", "--graph-format", "dot", "--graph-out",
           "flow.dot", cwd=workdir)
    assert r.returncode == 0, r.stderr
    assert listing(workdir) == [("flow.dot", (workdir / "flow.dot").stat().st_size)]
    text = (workdir / "flow.dot").read_text()
    assert text.startswith("digraph specflow {") and "sleep × 16" in text
    assert re.search(r"total\s*│\s*19\b", r.stdout) and "written to flow.dot" in r.stdout


# -- fan-outs ------------------------------------------------------------------------------
def test_large_fan_outs_are_one_line_each(workdir: Path) -> None:
    stages = [{"@type": "specflow.repeat", "task": {"@type": "echo", "message": "x"},
               "count": 4096},
              {"@type": "concurrent_flow", "stages": [
                  {"@type": "specflow.repeat", "count": 3,
                   "task": {"@type": "echo", "message": f"part {i}"}} for i in range(300)]},
              [{"@type": "echo", "message": "twice"}, {"@type": "echo", "message": "twice"}]]
    write(workdir / "fan.yaml", yaml.safe_dump({"@type": "sequential_flow", "stages": stages}))
    r = sf("run", "fan.yaml", "--dry-run", "--graph", cwd=workdir)
    assert r.returncode == 0, r.stderr
    dry = dry_counts("fan.yaml", cwd=workdir)
    assert dry["counts"] == {"echo": 4096 + 900 + 1}
    assert r.stdout.splitlines() == [
        "fan.yaml: 4,997 tasks (dry run)",
        "sequential_flow  (4,997 tasks)",
        "├─ repeat  (4,096 tasks)",
        "│  └─ echo × 4,096",
        "├─ ◇ wait for all above",
        "├─ concurrent_flow  (900 tasks)",
        "│  └─ repeat × 300  (900 tasks)",
        "│     └─ echo × 900",
        "├─ ◇ wait for all above",
        "├─ echo × 1  (+1 yielded again, run once)",
        "└─ ◇ wait for all above",
        "1 duplicate task(s) would run once",
    ]
    d = sf("run", "fan.yaml", "--dry-run", "--graph", "--graph-format", "dot", cwd=workdir)
    assert d.returncode == 0, d.stderr
    assert len(re.findall(r"^\s*n\d+ \[", d.stdout, re.M)) == 6  # 3 boxes, 3 waits
    assert "repeat × 300" in d.stdout


def test_a_flow_that_needs_a_run_value_is_marked_in_the_graph(workdir: Path) -> None:
    write(workdir / "my_ops.py", _readme_ops(pure=False))
    write(workdir / "spec.yaml", '"@type": count_up\nn: 5\n')
    r = sf("run", "-i", "my_ops.py", "spec.yaml", "--dry-run", "--graph", cwd=workdir)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "spec.yaml: at least 5 tasks (dry run)"
    assert lines[1] == "count_up  (5 tasks)  [counting stopped: uses the value of add_one]"
    assert "at least 5 tasks: the rest depends on values only a run produces" in r.stdout


def test_a_failure_the_run_would_meet_shows_the_graph_so_far_and_exits_2(workdir: Path) -> None:
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
    r = sf("run", "s.yaml", "--dry-run", "--graph", cwd=workdir)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "the run would fail" in r.stderr and "skip_intermediaries" in r.stderr
    assert "├─ subchunkable_apply_flow  (5 tasks)" in r.stdout
    assert "[counting stopped: would fail: SubchunkableConfigError" in r.stdout
    assert "Traceback" not in r.stderr
    assert sorted(p.name for p in workdir.iterdir()) == ["s.yaml"]


# -- options that do not go together -------------------------------------------------------
@pytest.mark.parametrize(("args", "message"), [
    (["--graph"], "--graph shows the flows a dry run walks, running nothing: add --dry-run"),
    (["--dry-run", "--graph-format", "dot"], "--graph-format goes with --graph"),
    (["--dry-run", "--graph-out", "g.dot"], "--graph-out goes with --graph"),
    (["--dry-run", "--graph", "--graph-format", "svg"],
     "--graph-format svg: expected one of text, dot, json"),
    (["--dry-run", "--graph", "--json"], "use --graph-format json"),
    (["--dry-run", "--graph", "--graph-out", "no/such/dir/g.dot"],
     "--graph-out no/such/dir/g.dot: cannot write it"),
])
def test_graph_options_that_do_not_go_together_exit_2(workdir: Path, args: list[str],
                                                      message: str) -> None:
    write(workdir / "s.yaml", '{"@type": echo, message: hi}\n')
    r = sf("run", "s.yaml", *args, cwd=workdir)
    assert r.returncode == 2, r.stdout + r.stderr
    assert message in " ".join(r.stderr.split()), r.stderr
    assert "Traceback" not in r.stderr
    assert sorted(p.name for p in workdir.iterdir()) == ["s.yaml"], "something ran or was written"
