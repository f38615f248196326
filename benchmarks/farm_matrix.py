"""Farm matrix benchmark: 3 twins x 5 models, run in parallel across devices vs sequentially.

Two line settings, each measured side by side in this one run:

* paced at 115200 baud — link-bound like real boards (uploads dominate): the goal is a speedup of
  at least 0.8 x the number of devices;
* unpaced — host-CPU-bound (the twins' TFLM runs on this machine's cores): the speedup is bounded
  by the cores, and is reported, not judged.

Models: the three TFLM example models in ../shared/models plus two synthetic int8 MLPs written
without TensorFlow (:mod:`device_harness.farm.synthetic`); all five differ (checked by SHA-256).
Sequential = the same runner, one device after the other; parallel = one worker per device.

Each is timed twice: with the devices already up when the clock starts (as attached boards are:
the goal is judged on this one) and with the runner launching the twins itself (a twin's start-up
is a Python + TFLM import, CPU-bound, so it shares the cores and parallelises less).

    .venv/bin/python benchmarks/farm_matrix.py [--runs 20] [--unpaced-runs 500] [--devices 3]

The last line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from device_harness.farm.connect import FarmDevice  # noqa: E402
from device_harness.farm.inventory import parse_farm  # noqa: E402
from device_harness.farm.model_refs import collect_models  # noqa: E402
from device_harness.farm.scheduler import FarmRunner, RunOptions  # noqa: E402
from device_harness.farm.store import ResultsStore  # noqa: E402
from device_harness.farm.synthetic import write_standard_models  # noqa: E402

SHARED = REPO.parent / "shared" / "models"


def farm_text(devices: int, pace: int | None) -> str:
    launch = f", launch: {{pace_baud: {pace}}}" if pace else ""
    return "devices:\n" + "".join(
        f"  - {{name: twin-{i}, backend: twin, labels: [bench]{launch}}}\n" for i in range(devices))


class AlreadyUp:
    """A device brought up before the timed run and kept up after it (as an attached board is):
    the runner's open/close become no-ops, everything else is the real FarmDevice."""

    def __init__(self, device: FarmDevice):
        self._device = device
        self.spec, self.info = device.spec, device.info

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def restart(self) -> None:
        self._device.restart()

    def abort(self) -> None:
        self._device.abort()

    def measure(self, model, options):
        return self._device.measure(model, options)


def bring_up(farm) -> dict[str, FarmDevice]:
    devices = {spec.name: FarmDevice(farm, spec) for spec in farm.devices}
    threads = [threading.Thread(target=d.open) for d in devices.values()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return devices


def run_matrix(workdir: Path, models, devices: int, pace: int | None, parallel: bool,
               runs: int, warmup: int, launched: bool) -> dict:
    """One timed matrix run. ``launched``: the runner starts the twins itself (timed);
    otherwise they are brought up before the clock starts, as attached boards are."""
    tag = (f"{'paced' if pace else 'unpaced'}-{'parallel' if parallel else 'sequential'}"
           f"{'+launch' if launched else ''}")
    farm = parse_farm(farm_text(devices, pace), workdir / f"{tag}.yaml")
    up = {} if launched else bring_up(farm)
    factory = FarmDevice if launched else (lambda _farm, spec: AlreadyUp(up[spec.name]))
    try:
        with ResultsStore(workdir / "bench.sqlite") as store:
            summary = FarmRunner(farm, farm.devices, models, store,
                                 RunOptions(runs=runs, warmup=warmup, parallel=parallel,
                                            job_timeout_s=300, retries=1),
                                 factory, command=f"benchmarks/farm_matrix.py {tag}").run()
            rows = store.measurements(summary.run_id)
    finally:
        for device in up.values():
            device.close()
    failed = [f"{r.model}@{r.device}: {r.reason}" for r in summary.failed]
    upload_s = sum(r["upload_s"] or 0 for r in rows)
    print(f"  {tag:<27} wall {summary.wall_s:7.2f} s  jobs ok {len(rows) - len(failed)}/"
          f"{len(rows)}  (sum of upload times {upload_s:.2f} s)", flush=True)
    for f in failed:
        print(f"    failed: {f}", flush=True)
    return {"wall_s": round(summary.wall_s, 3), "jobs": len(rows), "failed": len(failed),
            "run_id": summary.run_id}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20, help="timed runs per job, paced")
    ap.add_argument("--unpaced-runs", type=int, default=500,
                    help="timed runs per job, unpaced: enough on-device work to be CPU-bound")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--devices", type=int, default=3)
    ap.add_argument("--baud", type=int, default=115200)
    args = ap.parse_args()

    os.environ.setdefault("TINYFARM_LOCK_DIR", tempfile.mkdtemp(prefix="tinyfarm-bench-locks-"))
    with tempfile.TemporaryDirectory(prefix="tinyfarm-bench-") as tmp:
        workdir = Path(tmp)
        synth = write_standard_models(workdir / "synthetic")
        models, notes = collect_models([str(SHARED), *map(str, synth)])
        if notes or len(models) != 5:
            raise SystemExit(f"expected 5 distinct models, got {len(models)} ({notes})")
        total_kb = sum(m.size_bytes for m in models) / 1024
        print(f"farm matrix: {args.devices} twins x {len(models)} models "
              f"({', '.join(f'{m.name} {m.size_bytes:,} B' for m in models)}; {total_kb:.1f} KiB "
              f"per device), {args.warmup} warm-ups per job; "
              f"{os.cpu_count()} CPU cores", flush=True)
        figures: dict = {"devices": args.devices, "models": len(models),
                         "model_bytes_per_device": sum(m.size_bytes for m in models),
                         "cpu_cores": os.cpu_count(),
                         "load_average_1min_at_start": round(os.getloadavg()[0], 2)}
        goal = 0.8 * args.devices
        for label, pace, runs in ((f"paced_{args.baud}", args.baud, args.runs),
                                  ("unpaced", None, args.unpaced_runs)):
            print(f"{label} ({runs} timed runs per job):", flush=True)
            entry: dict = {"bench_runs": runs}
            for launched in (False, True):
                seq = run_matrix(workdir, models, args.devices, pace, False, runs,
                                 args.warmup, launched)
                par = run_matrix(workdir, models, args.devices, pace, True, runs,
                                 args.warmup, launched)
                speedup = seq["wall_s"] / par["wall_s"]
                key = "including_twin_launch" if launched else "devices_up"
                entry[key] = {"sequential_s": seq["wall_s"], "parallel_s": par["wall_s"],
                              "speedup": round(speedup, 3),
                              "failed_jobs": seq["failed"] + par["failed"]}
                verdict = " (bounded by the CPU cores)"
                if pace and not launched:
                    entry.update(goal_speedup=round(goal, 2), goal_met=speedup >= goal)
                    verdict = f" (goal >= x{goal:.1f}: {'met' if speedup >= goal else 'NOT met'})"
                elif pace:
                    verdict = " (twin start-up is CPU-bound and shares the cores)"
                print(f"  speedup x{speedup:.2f} {key.replace('_', ' ')}{verdict}", flush=True)
            figures[label] = entry
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
