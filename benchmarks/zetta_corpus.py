"""How much of a corpus of zetta_utils specs specflow builds, spec by spec.

    python benchmarks/zetta_corpus.py [--corpus ../shared/cue-conformance/cases] [-i MODULE]
                                      [--only SUBSTRING] [--quiet]

Every ``*.cue`` file is loaded with specflow's CUE evaluator and built (the registry's
argument checks, then the constructors) inside a fresh temporary directory, with every
opt-in granted (``lambda`` is only compiled when called, so nothing in a spec runs). Layers
are created lazily, so building writes nothing; tensorstore is made to refuse any storage that
is not local (building must not reach a bucket, and an unreachable one would only hang). Each spec lands in one of:

* ``builds``        - the whole spec builds;
* ``out of scope``  - it names a type specflow does not provide (training, alignment,
  inference, cloud execution, meshing), named in the line;
* ``should support``- every type it names is in scope, yet it fails: the error is printed.

zetta's must-raise specs (``__exc__`` in the name) count as ``refused`` when building refuses
them with a spec error, and as ``should support`` when they build or crash. A spec whose only
problem is that building reads a remote bucket (a layer's info) is counted apart: this
machine is offline.

Files that are not specs (the reference CUE refuses them too) are counted apart, as are
files that hold no ``@type`` at all (plain data: they build trivially). The last lines are
the summary counts, and the types and parameters behind the "should support" failures.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DEFAULT_CORPUS = HERE.parent.parent / "shared" / "cue-conformance" / "cases"


def typed_names(value: Any, out: set[str] | None = None) -> set[str]:
    out = set() if out is None else out
    if isinstance(value, dict):
        t = value.get("@type")
        if isinstance(t, str):
            out.add(t)
        for v in value.values():
            typed_names(v, out)
    elif isinstance(value, list):
        for v in value:
            typed_names(v, out)
    return out


_UNKNOWN = re.compile(r"unknown @type '([^']+)'")
_UNEXPECTED = re.compile(r"unexpected argument '([^']+)' for (\S+)")


def _kind(error: BaseException) -> str:
    """What one problem says is missing: a type, a parameter, or something else."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    if m := _UNKNOWN.search(text):
        return f"type {m.group(1)}"
    if m := _UNEXPECTED.search(text):
        return f"parameter {m.group(2)}.{m.group(1)}"
    return f"{type(error).__name__}: {text.split(': ', 1)[-1] if ': ' in text else text}"


class RemoteStorageTouched(RuntimeError):
    """Building a spec tried to reach storage off this machine."""


_REMOTE = re.compile(r"\b(?!file://|memory://)[a-z][a-z0-9+.-]*://")


def guard_remote_storage() -> None:
    """Make tensorstore refuse any kvstore that is not local, in this process: building
    must not touch storage, and an unreachable bucket would only hang."""
    import json

    import tensorstore as ts

    def guarded(fn: Any) -> Any:
        def call(spec: Any, *args: Any, **kwargs: Any) -> Any:
            text = spec if isinstance(spec, str) else json.dumps(
                spec.to_json() if hasattr(spec, "to_json") else spec, default=str)
            found = _REMOTE.search(text)
            if found:
                raise RemoteStorageTouched(f"building reached remote storage ({text[:120]})")
            return fn(spec, *args, **kwargs)

        return call

    ts.KvStore.open = staticmethod(guarded(ts.KvStore.open))  # type: ignore[method-assign]
    ts.open = guarded(ts.open)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def classify(path: Path) -> tuple[str, str, list[str]]:
    """(category, detail, what is missing) of one spec file."""
    from specflow.builder import build
    from specflow.builder.check import check_spec
    from specflow.builder.not_provided import NOT_PROVIDED, NotProvidedError
    from specflow.spec import SpecError, load_spec_with_source

    try:
        spec, source = load_spec_with_source(path)
    except SpecError as exc:
        return "not a spec", str(exc).splitlines()[0], []
    names = typed_names(spec)
    if not names:
        return "builds", "plain data (no @type)", []
    outside = sorted(n for n in names if n in NOT_PROVIDED)
    grant = frozenset({"eval", "shell"})
    problems: list[BaseException] = []
    here = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="zetta-corpus-") as tmp:
        os.chdir(tmp)
        try:
            problems.extend(check_spec(spec, source, opt_ins=grant))
            if not problems:
                build(spec, source=source, opt_ins=grant)
        except Exception as exc:  # a constructor's own failure is what we count
            problems.append(exc)
        finally:
            os.chdir(here)
            written = list(Path(tmp).rglob("*"))
    refused = [p for p in problems if isinstance(p, NotProvidedError)]
    problems = [p for p in problems if not isinstance(p, NotProvidedError)]
    outside = sorted(set(outside) | {p.type_name for p in refused})
    missing = sorted({_kind(p) for p in problems})
    if written:
        missing.append(f"building wrote {len(written)} file(s)")
    must_raise = "__exc__" in path.name
    if outside:
        reason_of = {**{p.type_name: p.reason for p in refused}, **NOT_PROVIDED}
        reasons = "; ".join(sorted({reason_of[n] for n in outside}))
        return "out of scope", f"{', '.join(outside)} ({reasons})", []
    if must_raise:
        if problems and all(isinstance(p, SpecError) for p in problems):
            return "refused", _first_line(problems[0]), []
        return "should support", "a must-raise spec " + (
            "built" if not problems else f"failed with {_first_line(problems[0])}"), \
            ["must-raise spec not refused cleanly"]
    if not missing:
        return "builds", "", []
    if problems and all(isinstance(p, RemoteStorageTouched) for p in problems):
        return "reads remote storage", _first_line(problems[0]), []
    more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
    return "should support", _first_line(problems[0]) + more if problems else missing[0], missing


def main(argv: Iterable[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("-i", "--import", dest="imports", action="append", default=[],
                    help="a module or .py file that registers types (repeatable)")
    ap.add_argument("--only", default=None, help="only files whose name contains this")
    ap.add_argument("--quiet", action="store_true", help="print only the summary")
    args = ap.parse_args(list(argv) if argv is not None else None)

    from specflow.builder import import_user_module
    from specflow.catalog import load_builtins

    load_builtins()
    guard_remote_storage()
    for name in args.imports:
        import_user_module(str(Path(name).resolve()) if name.endswith(".py") else name)
    files = sorted(args.corpus.glob("*.cue"))
    if args.only:
        files = [f for f in files if args.only in f.name]
    if not files:
        print(f"no .cue files under {args.corpus}", file=sys.stderr)
        return 2
    counts: collections.Counter[str] = collections.Counter()
    blockers: collections.Counter[str] = collections.Counter()
    reasons: collections.Counter[str] = collections.Counter()
    missing_count: collections.Counter[str] = collections.Counter()
    t0 = time.perf_counter()
    for f in files:
        category, detail, missing = classify(f)
        counts[category] += 1
        if category == "out of scope":
            names_part, _, reason_part = detail.partition(" (")
            for name in names_part.split(", "):
                blockers[name] += 1
            for reason in reason_part.rstrip(")").split("; "):
                reasons[reason] += 1
        for item in missing:
            missing_count[item] += 1
        if not args.quiet:
            print(f"{category:15s} {f.stem}" + (f"  -- {detail}" if detail else ""), flush=True)
    elapsed = time.perf_counter() - t0
    print()
    print(f"{len(files)} files in {elapsed:.1f} s")
    labels = {"builds": "builds", "out of scope": "out of scope (a type named)",
              "should support": "should support (fails)",
              "reads remote storage": "reads a bucket while building (offline here: not "
                                      "counted as a failure, but not built either)",
              "refused": "refused as zetta refuses them (its must-raise specs)",
              "not a spec": "not a spec (the reference CUE refuses them too)"}
    for category, label in labels.items():
        print(f"  {counts[category]:4d}  {label}")
    if missing_count:
        print("\nwhat the 'should support' specs miss (specs per item):")
        for item, n in missing_count.most_common():
            print(f"  {n:4d}  {item}")
    if reasons:
        print("\nout-of-scope specs by reason (a spec may have several):")
        for reason, n in reasons.most_common():
            print(f"  {n:4d}  {reason}")
    if blockers and not args.quiet:
        print("\nout-of-scope types (specs naming each):")
        for name, n in blockers.most_common():
            print(f"  {n:4d}  {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
