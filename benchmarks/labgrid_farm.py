"""labgrid farm benchmark: 5 models x 3 paced twins behind 2 exporters and one coordinator, next
to the same twins on local file locks — parallel vs sequential, in one run.

The lab is :class:`device_harness.labgrid.loopback_lab.LoopbackLab` on 127.0.0.1: a labgrid
coordinator, exporters ``host-a`` (2 twins) and ``host-b`` (1 twin), each with its own ser2net
serving the twins' ptys over RFC 2217. The local farm is 3 more twins, attached by their ptys
(``connection: {url: /dev/pts/N}``) and locked with file locks. All twins are paced at the same
baud rate (link-bound, like boards on a UART) and are up before the clock starts, as attached
boards are; the runner's per-device work (take the lock or place, open the line, HELLO, 5 jobs,
release) is inside the timed part.

Speedup = sequential wall time / parallel wall time of the same runner on the same devices; the
goal is >= 0.8 x the number of devices. ``labgrid_vs_local`` is parallel wall time over labgrid
divided by the local one (the cost of the coordinator, RFC 2217 and ser2net).

    .venv/bin/python benchmarks/labgrid_farm.py [--runs 20] [--baud 115200]

The last line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from device_harness.farm.connect import FarmDevice  # noqa: E402
from device_harness.farm.inventory import load_farm  # noqa: E402
from device_harness.farm.model_refs import collect_models  # noqa: E402
from device_harness.farm.scheduler import FarmRunner, RunOptions  # noqa: E402
from device_harness.farm.store import ResultsStore  # noqa: E402
from device_harness.farm.synthetic import write_standard_models  # noqa: E402
from device_harness.labgrid.lab_setup import setup_places  # noqa: E402
from device_harness.labgrid.loopback_lab import LoopbackLab  # noqa: E402
from tinyfarm import child_process  # noqa: E402
from tinyfarm.atomic_files import write_text  # noqa: E402

SHARED = REPO.parent / "shared" / "models"
HOSTS = {"host-a": ["twin-1", "twin-2"], "host-b": ["twin-3"]}


def local_twins(n: int, baud: int) -> list:
    procs = []
    for _ in range(n):
        proc = child_process.spawn([sys.executable, "-m", "device_harness.twin", "--baud",
                                    str(baud), "--exit-with-parent"], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        proc.url = proc.stdout.readline().decode().strip()
        procs.append(proc)
    return procs


def run(farm_path: Path, models, db: Path, parallel: bool, runs: int, warmup: int, tag: str) -> dict:
    farm = load_farm(farm_path)
    with ResultsStore(db) as store:
        summary = FarmRunner(farm, farm.devices, models, store,
                             RunOptions(runs=runs, warmup=warmup, parallel=parallel, retries=1,
                                        job_timeout_s=300),
                             FarmDevice, command=f"benchmarks/labgrid_farm.py {tag}").run()
        rows = store.measurements(summary.run_id)
    failed = [f"{r.model}@{r.device}: {r.reason}" for r in summary.failed]
    print(f"  {tag:<22} wall {summary.wall_s:7.2f} s  jobs ok {len(rows) - len(failed)}/{len(rows)}",
          flush=True)
    for f in failed:
        print(f"    failed: {f}", flush=True)
    return {"wall_s": round(summary.wall_s, 3), "jobs": len(rows), "failed": len(failed)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20, help="timed runs per job")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--baud", type=int, default=115200)
    args = ap.parse_args()
    os.environ.setdefault("TINYFARM_LOCK_DIR", tempfile.mkdtemp(prefix="tinyfarm-bench-locks-"))
    devices = sum(len(t) for t in HOSTS.values())
    goal = 0.8 * devices
    with tempfile.TemporaryDirectory(prefix="tinyfarm-bench-") as tmp:
        work = Path(tmp)
        models, notes = collect_models([str(SHARED), *map(str, write_standard_models(work / "s"))])
        if notes or len(models) != 5:
            raise SystemExit(f"expected 5 distinct models, got {len(models)} ({notes})")
        print(f"labgrid farm: {devices} twins on 2 exporters x {len(models)} models, paced at "
              f"{args.baud} baud, {args.runs} timed runs per job; {os.cpu_count()} CPU cores",
              flush=True)
        figures: dict = {"devices": devices, "models": len(models), "baud": args.baud,
                         "bench_runs": args.runs, "cpu_cores": os.cpu_count(),
                         "goal_speedup": round(goal, 2),
                         "load_average_1min_at_start": round(os.getloadavg()[0], 2)}
        twins = local_twins(devices, args.baud)
        try:
            local = work / "local.yaml"
            write_text(local, "devices:\n" + "".join(
                f"  - {{name: local-{i}, backend: twin, connection: {{url: {t.url}}}}}\n"
                for i, t in enumerate(twins)))
            with LoopbackLab(HOSTS, pace_baud=args.baud) as lab:
                lab_farm = lab.farm_file(work / "lab.yaml")
                setup_places(load_farm(lab_farm))
                for kind, farm_path in (("local_file_locks", local), ("labgrid", lab_farm)):
                    print(f"{kind}:", flush=True)
                    seq = run(farm_path, models, work / "r.sqlite", False, args.runs,
                              args.warmup, f"{kind} sequential")
                    par = run(farm_path, models, work / "r.sqlite", True, args.runs,
                              args.warmup, f"{kind} parallel")
                    speedup = seq["wall_s"] / par["wall_s"]
                    met = speedup >= goal
                    print(f"  speedup x{speedup:.2f} (goal >= x{goal:.1f}: "
                          f"{'met' if met else 'NOT met'})", flush=True)
                    figures[kind] = {"sequential_s": seq["wall_s"], "parallel_s": par["wall_s"],
                                     "speedup": round(speedup, 3), "goal_met": met,
                                     "failed_jobs": seq["failed"] + par["failed"]}
        finally:
            for t in twins:
                child_process.stop(t)
    ratio = figures["labgrid"]["parallel_s"] / figures["local_file_locks"]["parallel_s"]
    figures["labgrid_vs_local_parallel_wall"] = round(ratio, 3)
    print(f"labgrid parallel wall / local parallel wall: x{ratio:.2f}", flush=True)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
