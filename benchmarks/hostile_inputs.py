"""Throw bad inputs and faults at the ``tinyfarm`` CLI; count tracebacks, zero exits and strays.

    python benchmarks/hostile_inputs.py            # every case (about 4 minutes on 2 cores)
    python benchmarks/hostile_inputs.py --quick    # a dozen fast ones (under a minute)
    python benchmarks/hostile_inputs.py --only twin_busy_held_by_another_client --keep

Each case (``hostile_cases.py``) is a fresh ``tinyfarm ...`` process in its own temporary folder,
with a timeout: a bad model, array, data set, config, farm file or database; a bad number; a device
that is missing, refuses, hangs up, talks garbage, is held by someone else or is killed mid-upload;
tinyfarm itself killed (SIGKILL) or stopped (SIGTERM) while a twin or QEMU runs under it.

For each case it records the exit code, whether a Python traceback
("Traceback (most recent call last)") appears in stdout or stderr, and the processes left: every
process the case started carries a mark in its environment (``TINYFARM_HOSTILE_CASE``), so a twin,
TFLM child or QEMU still alive a few seconds after the case ended is found whatever became of its
parent (``/proc`` scan, no psutil). A case fails on a traceback, a zero exit, a stray process, a
timeout, or its own check (e.g. a Lambda layer's or a pickle's marker file exists afterwards).

One line per case; the LAST line is one JSON object:
``{"cases": N, "tracebacks": T, "nonzero_exits": E, "stray_processes": S, "failed_cases": [...]}``.
Goals: tracebacks 0, stray_processes 0, nonzero_exits == cases.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hostile_cases import TINYFARM, Case, Ctx, build_cases  # noqa: E402
from hostile_fixtures import REPO, Fixtures  # noqa: E402
from hostile_procs import kill, pids, wait_leftovers  # noqa: E402

TRACEBACK = "Traceback (most recent call last)"
#: seconds a case's processes get to end after the case did, before they count as strays
GRACE_S = 3.0


def _base_env() -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1", TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="3",
               COLUMNS="200")
    for var in ("TINYFARM_FARM", "TINYFARM_DB"):  # the cases name their own files
        env.pop(var, None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def run_case(case: Case, fx: Fixtures, root: Path, run_id: str) -> dict:
    folder = root / case.name
    folder.mkdir(parents=True)
    ctx = Ctx(fx, folder, f"{run_id}:{case.name}", _base_env())
    before = pids()
    result = {"name": case.name, "exit": None, "traceback": False, "strays": [], "problems": []}
    t0 = time.monotonic()
    try:
        env = dict(ctx.env(), **case.env)
        if case.needs == "qemu":
            env["PATH"] = fx.paused_qemu_path
        args = [str(a) for a in case.args(ctx)]
        proc = subprocess.Popen(TINYFARM + args, cwd=folder, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True)
        if case.during is not None:
            threading.Thread(target=case.during, args=(ctx, proc), daemon=True).start()
        try:
            out, err = proc.communicate(timeout=case.timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            out, err = proc.communicate()
            result["problems"].append(f"timeout after {case.timeout:.0f} s")
        out, err = out.decode(errors="replace"), err.decode(errors="replace")
        result["exit"] = proc.returncode
        result["traceback"] = TRACEBACK in out or TRACEBACK in err
        lines = [ln for ln in err.splitlines() if ln.strip()]
        result["stderr_lines"] = len(lines)
        result["message"] = (lines[-1] if lines else (out.strip().splitlines() or [""])[-1])[:160]
        result["args"] = args
    finally:
        ctx.close()
    left = wait_leftovers([ctx.token, ctx.helper_token], before, str(folder), GRACE_S)
    if left:
        result["strays"] = [f"{pid}: {cmd[:100]}" for pid, cmd in left.items()]
        kill(list(left))
    if case.check is not None:
        problem = case.check(ctx)
        if problem:
            result["problems"].append(problem)
    result["notes"] = ctx.notes
    result["seconds"] = round(time.monotonic() - t0, 1)
    if result["exit"] == 0:
        result["problems"].append("exit 0")
    if result["traceback"]:
        result["problems"].append("traceback")
    if result["strays"]:
        result["problems"].append(f"{len(result['strays'])} stray process(es)")
    return result


def _skip_reason(case: Case, fx: Fixtures) -> str | None:
    if case.needs == "qemu" and fx.paused_qemu_path is None:
        return "no qemu-system-arm or no firmware build (cmake --preset qemu-mps2-an386)"
    if case.needs == "keras":
        try:
            fx.keras_models
        except (subprocess.SubprocessError, OSError) as exc:
            return f"tf-keras fixtures could not be made: {exc}"
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="only the fast cases (under a minute)")
    ap.add_argument("--only", nargs="+", metavar="NAME", help="only these cases")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = ap.parse_args(argv)
    cases = build_cases()
    if args.list:
        for case in cases:
            print(f"{case.name}{'  (quick)' if case.quick else ''}")
        return 0
    if args.only:
        unknown = set(args.only) - {c.name for c in cases}
        if unknown:
            ap.error(f"unknown case(s): {', '.join(sorted(unknown))}")
        cases = [c for c in cases if c.name in args.only]
    elif args.quick:
        cases = [c for c in cases if c.quick]

    root = Path(tempfile.mkdtemp(prefix="tinyfarm-hostile-"))
    fx = Fixtures(root / "_fixtures")
    run_id = f"{os.getpid()}-{int(time.time())}"
    results, skipped = [], []
    t0 = time.monotonic()
    try:
        for case in cases:
            reason = _skip_reason(case, fx)
            if reason:
                skipped.append(case.name)
                print(f"{case.name:<38} SKIP  {reason}", flush=True)
                continue
            r = run_case(case, fx, root, run_id)
            results.append(r)
            verdict = "ok  " if not r["problems"] else "FAIL"
            print(f"{r['name']:<38} {verdict} exit={r['exit']!s:<4} tb={'yes' if r['traceback'] else 'no '} "
                  f"strays={len(r['strays'])} {r['seconds']:>5.1f}s | {r.get('message', '')}"
                  + (f"  [{'; '.join(r['problems'])}]" if r["problems"] else ""), flush=True)
            for stray in r["strays"]:
                print(f"    stray {stray}", flush=True)
    finally:
        if args.keep:
            print(f"kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
    summary = {
        "cases": len(results),
        "tracebacks": sum(r["traceback"] for r in results),
        "nonzero_exits": sum(r["exit"] not in (0, None) for r in results),
        "stray_processes": sum(len(r["strays"]) for r in results),
        "failed_cases": [r["name"] for r in results if r["problems"]],
        "skipped_cases": skipped,
        "seconds": round(time.monotonic() - t0, 1),
    }
    print(json.dumps(summary))
    return 1 if summary["failed_cases"] else 0


if __name__ == "__main__":
    sys.exit(main())
