"""Wall time of ``tinyfarm run`` next to a plain TF-MOT script doing the same work, in one run.

The plain script (written out below, run as its own process) uses only tf-keras, TF-MOT and the
TFLite converter/LiteRT: the same data split, the same CNN, the same epochs, pruning schedule,
pruning-preserving QAT, the same .tflite variants, evaluated with LiteRT's reference kernels. What
``tinyfarm run`` does on top — per-stage records and hashes, saving/loading models between stages,
the TFLM check in a child process, the report and plot — is the overhead measured here.

Both run from a fresh interpreter (TensorFlow import included), one after the other, ``--repeats``
times in alternating order. The machine is shared, so CPU time (user + sys of the child) is printed
next to wall time; it is the steadier of the two. Goal: tinyfarm / plain <= 1.15.

    .venv/bin/python benchmarks/pipeline_vs_tfmot.py [--config configs/digits.yaml] [--repeats 1]

The last line of output is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

PLAIN_SCRIPT = r'''
import json, math, os, sys, time
os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np
import tensorflow as tf
import tf_keras as keras
import tensorflow_model_optimization as tfmot
from ai_edge_litert.interpreter import Interpreter, OpResolverType
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

cfg = json.loads(sys.argv[1])
out = sys.argv[2]
b, p, q, e = cfg["baseline"], cfg["prune"], cfg["quantize"], cfg["export"]
keras.utils.set_random_seed(cfg["seed"])

d = load_digits()
x = (d.images / 16.0).astype("float32")[..., None]
x_tr, x_te, y_tr, y_te = train_test_split(x, d.target, test_size=0.25, random_state=0, stratify=d.target)
x_tr, x_val, y_tr, y_val = train_test_split(x_tr, y_tr, test_size=round(len(x_tr) * cfg["dataset"]["val_fraction"]),
                                            random_state=cfg["seed"], stratify=y_tr)

def cnn():
    inp = keras.Input((8, 8, 1)); h = inp
    for i in range(b["depth"]):
        h = keras.layers.Conv2D(int(round(b["width"] * b["growth"] ** i)), b["kernel_size"], padding="same", use_bias=False)(h)
        h = keras.layers.BatchNormalization()(h); h = keras.layers.ReLU()(h)
        h = keras.layers.MaxPooling2D(2)(h)
    h = keras.layers.Flatten()(h)
    if b["dense_units"]:
        h = keras.layers.Dense(b["dense_units"], activation="relu")(h)
    return keras.Model(inp, keras.layers.Softmax()(keras.layers.Dense(10)(h)))

def fit(model, epochs, lr, batch, callbacks=()):
    steps = epochs * math.ceil(len(x_tr) / batch)
    model.compile(keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(lr, steps, alpha=0.05)),
                  keras.losses.SparseCategoricalCrossentropy(), ["accuracy"])
    model.fit(x_tr, y_tr, batch_size=batch, epochs=epochs, validation_data=(x_val, y_val), verbose=0,
              callbacks=list(callbacks))

t0 = time.time()
base = cnn(); fit(base, b["epochs"], b["learning_rate"], b["batch_size"])
spe = math.ceil(len(x_tr) / p["batch_size"]); ramp = int(p["epochs"] * spe * p["ramp_fraction"])
freq = max(1, ramp // 16); end = (ramp // freq) * freq
sched = tfmot.sparsity.keras.PolynomialDecay(p["initial_sparsity"], p["target_sparsity"], 0, end, frequency=freq)
copy = keras.models.clone_model(base); copy.set_weights(base.get_weights())
wrap = lambda l: tfmot.sparsity.keras.prune_low_magnitude(l, pruning_schedule=sched) if isinstance(l, (keras.layers.Conv2D, keras.layers.Dense)) else l
pruned = keras.models.clone_model(copy, clone_function=wrap)
fit(pruned, p["epochs"], p["learning_rate"], p["batch_size"], [tfmot.sparsity.keras.UpdatePruningStep()])
pruned = tfmot.sparsity.keras.strip_pruning(pruned)
qcopy = keras.models.clone_model(pruned); qcopy.set_weights(pruned.get_weights())
qat = tfmot.quantization.keras.quantize_apply(tfmot.quantization.keras.quantize_annotate_model(qcopy),
                                              tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme())
fit(qat, q["epochs"], q["learning_rate"], q["batch_size"])
t_train = time.time() - t0

rep = x_tr[np.sort(np.random.default_rng(cfg["seed"]).permutation(len(x_tr))[:e["representative_samples"]])]
def convert(model, kind):
    if e["drop_softmax"]:
        raise SystemExit("the plain script keeps the softmax (export.drop_softmax: false)")
    fn = tf.function(lambda t: model(t, training=False)).get_concrete_function(tf.TensorSpec([1, 8, 8, 1], tf.float32))
    c = tf.lite.TFLiteConverter.from_concrete_functions([fn], model)
    if kind != "float32": c.optimizations = [tf.lite.Optimize.DEFAULT]
    if kind == "float16": c.target_spec.supported_types = [tf.float16]
    if kind in ("int8", "int16x8"):
        c.representative_dataset = lambda: ([rep[i:i + 1]] for i in range(len(rep)))
        if kind == "int8":
            c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            c.inference_input_type = c.inference_output_type = tf.int8
        else:
            c.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
            c.inference_input_type = c.inference_output_type = tf.int16
    return c.convert()
def accuracy(model_bytes):
    it = Interpreter(model_content=model_bytes, experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    it.allocate_tensors(); i, o = it.get_input_details()[0], it.get_output_details()[0]
    s, z = i["quantization"]; hits = 0
    for k in range(len(x_te)):
        xi = x_te[k:k + 1]
        if s: xi = np.clip(np.round(xi / s + z), np.iinfo(i["dtype"]).min, np.iinfo(i["dtype"]).max).astype(i["dtype"])
        it.set_tensor(i["index"], xi); it.invoke(); hits += int(np.argmax(it.get_tensor(o["index"])[0]) == y_te[k])
    return hits / len(x_te)
results = {}
jobs = [("pruned_pqat_int8", qat, "int8")] + [(f"baseline_{k}", base, k) for k in e["baseline_kinds"]] + \
       [(f"pruned_{k}", pruned, k) for k in e["pruned_kinds"]]
for name, model, kind in jobs:
    blob = convert(model, kind)
    open(os.path.join(out, name + ".tflite"), "wb").write(blob)
    results[name] = accuracy(blob)
print(json.dumps({"train_s": round(t_train, 1), "accuracy": results}))
'''


def _timed(cmd: list[str], cwd: Path) -> tuple[float, float, str]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-3000:])
        raise SystemExit(f"command failed: {' '.join(cmd)}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, proc.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "digits.yaml")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()

    sys.path.insert(0, str(REPO))
    from pipeline.config import load_config

    cfg = load_config(args.config)
    if cfg.dataset.name != "digits" or cfg.dataset.path is not None or cfg.baseline.model_path is not None:
        raise SystemExit("the plain script reproduces the digits CNN pipeline only")
    cfg_json = json.dumps(cfg.model_dump(mode="json"))
    tinyfarm = [str(Path(sys.executable).parent / "tinyfarm")]
    if not Path(tinyfarm[0]).exists():
        tinyfarm = [sys.executable, "-m", "tinyfarm.cli"]
    work = Path(tempfile.mkdtemp(prefix="tinyfarm-bench-"))
    script = work / "plain_tfmot.py"
    script.write_text(PLAIN_SCRIPT)
    rows = {"tinyfarm": [], "plain": []}
    plain_out = ""
    try:
        for r in range(args.repeats):
            order = ["plain", "tinyfarm"] if r % 2 == 0 else ["tinyfarm", "plain"]
            for which in order:
                if which == "plain":
                    (work / "plain").mkdir(exist_ok=True)
                    wall, cpu, plain_out = _timed([sys.executable, str(script), cfg_json, str(work / "plain")], REPO)
                else:
                    out = work / f"run{r}"
                    wall, cpu, _ = _timed([*tinyfarm, "run", str(args.config), "--out", str(out), "--force"], REPO)
                rows[which].append((wall, cpu))
                print(f"run {r + 1}/{args.repeats} {which:9s} wall {wall:6.1f} s   cpu {cpu:6.1f} s", flush=True)
        report = json.loads((work / f"run{args.repeats - 1}" / "report.json").read_text())
    finally:
        shutil.rmtree(work, ignore_errors=True)
    plain = json.loads(plain_out.strip().splitlines()[-1])
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    tf_wall, tf_cpu = mean([w for w, _ in rows["tinyfarm"]]), mean([c for _, c in rows["tinyfarm"]])
    pl_wall, pl_cpu = mean([w for w, _ in rows["plain"]]), mean([c for _, c in rows["plain"]])
    acc_tinyfarm = {v["name"]: v["accuracy"] for v in report["variants"]}
    print(f"{'':10s} {'wall s':>8s} {'cpu s':>8s}")
    print(f"{'tinyfarm':10s} {tf_wall:8.1f} {tf_cpu:8.1f}")
    print(f"{'plain':10s} {pl_wall:8.1f} {pl_cpu:8.1f}")
    print(f"{'ratio':10s} {tf_wall / pl_wall:8.3f} {tf_cpu / pl_cpu:8.3f}   (goal <= 1.15)")
    print(f"int8 PQAT accuracy: tinyfarm {acc_tinyfarm.get('pruned_pqat_int8')}, "
          f"plain {plain['accuracy'].get('pruned_pqat_int8')}")
    print(json.dumps({
        "benchmark": "pipeline_vs_tfmot", "config": str(args.config), "repeats": args.repeats,
        "cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2),
        "tinyfarm_wall_s": round(tf_wall, 2), "plain_wall_s": round(pl_wall, 2),
        "ratio_wall": round(tf_wall / pl_wall, 3), "tinyfarm_cpu_s": round(tf_cpu, 2),
        "plain_cpu_s": round(pl_cpu, 2), "ratio_cpu": round(tf_cpu / pl_cpu, 3), "goal": 1.15,
        "tinyfarm_pqat_int8_accuracy": acc_tinyfarm.get("pruned_pqat_int8"),
        "plain_pqat_int8_accuracy": plain["accuracy"].get("pruned_pqat_int8")}))


if __name__ == "__main__":
    main()
