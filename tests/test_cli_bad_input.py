"""Bad input is a clean spec error in `run`, `run --dry-run` and `validate` alike: exit 2, a
message naming what is wrong and where, no run created, never `internal error`."""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

import pytest
from test_cli import sf, write

SUBCHUNKABLE = """
"@type": build_subchunkable_apply_flow
fn: {"@type": copy, "@mode": partial}
op_kwargs: {src: {"@type": build_ts_layer, path: src.zarr}}
dst: {"@type": build_ts_layer, path: dst.zarr, info_reference_path: src.zarr}
dst_resolution: [1, 1, 1]
start_coord: [0, 0, 0]
end_coord: [64, 64, 32]
coord_resolution: [1, 1, 1]
"""

BAD: dict[str, tuple[str, list[str]]] = {
    "empty": ("", ["the spec is empty"]),
    "only a comment": ("# nothing here\n", ["the spec is empty"]),
    "mapping without @type": ("a: 1\nb: [2, 3]\n",
                              ['mapping without "@type"', "s.yaml:1:1"]),
    "list of plain values": ("- 1\n- 2\n", ["[0]: is the value 1", "s.yaml:1:3"]),
    "execute target of plain values": (
        '"@type": execute\nbackend: inline\ntarget: [{"@type": noop}, hello]\n',
        ["target[1]: is the value 'hello'", "s.yaml:3"]),
    "negative semaphore": (
        '"@type": execute\nbackend: inline\nsemaphores: {read: -1}\n'
        'target: {"@type": noop}\n',
        ["semaphores.read", "positive integer", "got -1", "s.yaml:3"]),
    "semaphore not an int": (
        '"@type": execute\nbackend: inline\nsemaphores: {write: lots}\n'
        'target: {"@type": noop}\n',
        ["semaphores.write", "got 'lots'", "s.yaml:3"]),
    "unknown backend": ('"@type": execute\nbackend: lokal\ntarget: {"@type": noop}\n',
                        ["unknown backend 'lokal'", "s.yaml:2"]),
    "negative sleep": ('"@type": sleep\nseconds: -1\n', ["seconds must be >= 0", "s.yaml:1"]),
    "divisibility": (SUBCHUNKABLE + "processing_chunk_sizes: [[32, 32, 32], [10, 10, 10]]\n"
                     "level_intermediaries_dirs: [tmp, tmp]\n",
                     ["processing_chunk_sizes[1]", "auto_divisibility", "s.yaml:"]),
}


def assert_clean(r: subprocess.CompletedProcess[str], needles: list[str]) -> None:
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    text = r.stdout + r.stderr
    assert "internal error" not in text and "Traceback" not in text, text
    for needle in needles:
        assert needle in text, (needle, text)


@pytest.mark.parametrize("case", list(BAD))
@pytest.mark.parametrize("command", ["run", "dry-run", "validate"])
def test_bad_specs_are_clean_errors_in_every_command(workdir: Path, case: str,
                                                     command: str) -> None:
    text, needles = BAD[case]
    write(workdir / "s.yaml", text)
    args = {"run": ["run", "s.yaml", "--backend", "inline"],
            "dry-run": ["run", "s.yaml", "--dry-run"],
            "validate": ["validate", "s.yaml"]}[command]
    assert_clean(sf(*args, cwd=workdir), needles)
    assert sorted(p.name for p in workdir.iterdir()) == ["s.yaml"], "something was written"


def test_validate_finds_what_a_flow_refuses_once_it_knows_its_layers(workdir: Path) -> None:
    # chunks not aligned with dst's stored chunks need a staging folder: the flow learns the
    # stored chunks (from src, which an earlier stage creates) only when it is walked
    write(workdir / "s.yaml", """
"@type": sequential_flow
stages:
  - {"@type": synthetic_volume, path: src.zarr, size: [64, 64, 32], chunk_size: [32, 32, 32]}
  - """ + SUBCHUNKABLE.strip().replace("\n", "\n    ") + """
    processing_chunk_sizes: [[24, 32, 32]]
    skip_intermediaries: true
""")
    r = sf("validate", "s.yaml", cwd=workdir)
    assert_clean(r, ["the run would fail", "skip_intermediaries"])
    assert sorted(p.name for p in workdir.iterdir()) == ["s.yaml"]


def test_validate_says_which_opt_ins_the_run_needs(workdir: Path) -> None:
    write(workdir / "s.yaml", '"@type": sequential_flow\nstages:\n'
          '  - {"@type": shell, command: "touch made.txt"}\n')
    # without the flag validate refuses the spec, naming the flag the run will need
    r = sf("validate", "s.yaml", cwd=workdir)
    assert r.returncode == 2 and "--allow-shell" in r.stderr
    # with it the spec passes, and validate still says what the run will need
    r = sf("validate", "s.yaml", "--allow-shell", cwd=workdir)
    assert r.returncode == 0, r.stderr
    assert "--allow-shell" in r.stdout
    assert not (workdir / "made.txt").exists()


def test_run_dir_that_is_a_file_is_refused(workdir: Path) -> None:
    write(workdir / "s.yaml", '"@type": noop\n')
    write(workdir / "afile", "")
    for run_dir in ("afile", "afile/deeper"):
        r = sf("run", "s.yaml", "--run-dir", run_dir, "--backend", "inline", cwd=workdir)
        assert_clean(r, [f"--run-dir {run_dir}", "afile is a file, not a folder"])
    assert (workdir / "afile").read_text() == ""


def _small_file_limit() -> None:
    # writes past 8 KiB fail (EFBIG): a disk that fills while the run is created
    resource.setrlimit(resource.RLIMIT_FSIZE, (8192, 8192))


def test_a_run_that_cannot_be_written_is_a_clean_error(workdir: Path) -> None:
    write(workdir / "s.yaml", '"@type": noop\n')
    r = subprocess.run(
        [sys.executable, "-m", "specflow", "run", "s.yaml", "--run-dir", "r",
         "--backend", "inline"], cwd=workdir, capture_output=True, text=True, timeout=120,
        preexec_fn=_small_file_limit,
    )
    assert_clean(r, ["cannot create the run in r"])
    assert not (workdir / "r").exists(), "a failed creation leaves nothing behind"


BOMB = "\n".join(
    [f'l0: &l0 [{", ".join(["lol"] * 9)}]']
    + [f'l{i}: &l{i} [{", ".join([f"*l{i - 1}"] * 9)}]' for i in range(1, 10)]
    + ['"@type": echo', "message: *l9", ""])


@pytest.mark.parametrize("command", ["run", "validate"])
def test_yaml_alias_bombs_are_refused_without_expanding_them(workdir: Path,
                                                             command: str) -> None:
    write(workdir / "s.yaml", BOMB)  # 9**10 values if expanded
    args = ["run", "s.yaml", "--dry-run"] if command == "run" else ["validate", "s.yaml"]
    assert_clean(sf(*args, cwd=workdir), ["YAML aliases expand this spec", "s.yaml:10"])


def test_ordinary_anchors_still_load(workdir: Path) -> None:
    write(workdir / "s.yaml", '"@type": sequential_flow\nstages:\n'
          '  - &s {"@type": sleep, seconds: 0}\n' + "  - *s\n" * 60)
    r = sf("run", "s.yaml", "--dry-run", "--json", cwd=workdir)
    assert r.returncode == 0, r.stderr
    assert '"sleep": 1' in r.stdout  # sixty times the same task: it runs once
