"""The stage runner: stages chained by the config, each cached by what went into it.

How it works
------------
``STAGES`` is the ordered list of :class:`Stage`. :func:`run_pipeline` walks it; for each enabled
stage it computes a cache key from the stage's config section, the seed, the data set's
fingerprint, the library versions, a hash of the pipeline's source code and the key and output
hashes of the stage before it. If ``DIR/stages/<name>/record.json`` holds the same key and every
recorded output still has its hash, the stage is skipped and its recorded summary reused;
otherwise it runs and a new record is written
(config, seed, versions, input and output hashes, summary, time). Changing anything upstream
therefore re-runs everything after it, and nothing else.

A stage is a function ``run(ctx: StageContext) -> dict``. It reads what earlier stages produced
through ``ctx`` (``ctx.result("baseline").summary``, ``ctx.variants()``, ``ctx.path(rel)``), writes
files under ``ctx.stage_dir`` or elsewhere in ``ctx.out_dir``, declares each with
``ctx.output(path)``, and returns a JSON-able summary. Two summary keys have a meaning:

- ``"variants"``: a list of ``.tflite`` files it produced, each ``{"name", "kind", "path"
  (relative to DIR), "source", "method"}``. The evaluate and TFLM stages, and the report, pick
  these up from every stage, in order (``ctx.variants()``).
- ``"deployable"``: ``{"path", "copy_of", ...}``, the model for the device (``ctx.deployable()``;
  the export stage sets it to ``DIR/model_int8.tflite``, a later stage may override it).
- ``"report"``: a mapping merged into the top level of ``report.json`` (e.g. ``{"deploy": {...}}``
  or ``{"distillation": {...}}``).

How to add a stage (e.g. ``distill`` or ``deploy``)
---------------------------------------------------
1. Config: in ``pipeline/config.py`` define ``class DistillSection(Section)`` (with an ``enabled``
   flag or a ``None`` default so existing configs do not run it) and add the field
   ``distill: DistillSection = Field(default_factory=DistillSection)`` to ``PipelineConfig``.
   Unknown keys stay errors; validation messages name the field automatically.
2. Code: a module with the plain functions (usable alone) and a thin ``run(ctx) -> dict`` that wires
   them to files, as in ``pipeline/stages.py``.
3. Register: in the stage's module call
   ``register_stage(Stage("deploy", run, enabled=lambda c: c.deploy.enabled), after="tflm")``
   (or ``before="report"``) and import that module in :func:`_load_builtin_stages` (the built-in
   stages are the tuple at the end of ``pipeline/stages.py``). The section of the same name is
   hashed into the stage's cache key; list other sections, or single ``"section.field"``s, it reads
   in ``sections=``. A stage that talks to hardware can set ``cache=False`` to always run.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np

from pipeline.config import PipelineConfig
from tinyfarm.provenance import canonical_hash, library_versions, sha256_file, write_json

RECORD = "record.json"


@dataclass(frozen=True)
class Stage:
    """One step of the pipeline: ``run(ctx) -> summary``; enabled by the config."""

    name: str
    run: Callable[["StageContext"], dict]
    enabled: Callable[[PipelineConfig], bool] = lambda cfg: True
    sections: tuple[str, ...] = ()  # other config sections or "section.field"s it reads
    cache: bool = True  # False: always runs (the report is cheap and must reflect everything)


@dataclass
class StageResult:
    name: str
    key: str
    summary: dict
    outputs: dict[str, str]  # path relative to DIR -> sha256
    skipped: bool
    seconds: float


@dataclass
class StageContext:
    """What a stage sees: the config, the output folder, the data, and earlier stages' results."""

    config: PipelineConfig
    out_dir: Path
    name: str = ""
    results: dict[str, StageResult] = field(default_factory=dict)
    _splits: Any = None
    _outputs: list[Path] = field(default_factory=list)

    @property
    def section(self) -> Any:
        return getattr(self.config, self.name, None)

    @property
    def seed(self) -> int:
        return self.config.seed

    @property
    def stage_dir(self) -> Path:
        path = self.out_dir / "stages" / self.name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def data(self):
        """The data set's splits, loaded once per run."""
        if self._splits is None:
            from tinyfarm_datasets import load_dataset

            ds = self.config.dataset
            self._splits = load_dataset(ds.name, path=ds.path, val_fraction=ds.val_fraction,
                                        seed=self.config.seed)
        return self._splits

    def set_data(self, splits) -> None:
        """Use these splits instead of loading the config's data set (tests, notebooks)."""
        self._splits = splits

    def path(self, rel: str | Path) -> Path:
        return self.out_dir / rel

    def rel(self, path: str | Path) -> str:
        return Path(path).resolve().relative_to(self.out_dir.resolve()).as_posix()

    def output(self, path: str | Path) -> Path:
        """Declare a file this stage wrote (hashed into its record, checked before skipping)."""
        path = Path(path)
        self._outputs.append(path)
        return path

    def result(self, name: str) -> StageResult | None:
        return self.results.get(name)

    def variants(self) -> list[dict]:
        """Every ``.tflite`` variant declared by the stages run so far, in stage order."""
        out: list[dict] = []
        for res in self.results.values():
            out.extend(res.summary.get("variants", []))
        return out

    def deployable(self) -> dict | None:
        """The deployable int8 model: ``{"path": "model_int8.tflite", "copy_of": variant name, ...}``.

        A later stage may replace it by returning ``"deployable"`` in its summary (last one wins).
        """
        found = None
        for res in self.results.values():
            found = res.summary.get("deployable", found)
        return found


STAGES: list[Stage] = []


def register_stage(stage: Stage, *, after: str | None = None, before: str | None = None) -> None:
    """Insert (or replace) a stage; ``after``/``before`` name an existing stage."""
    for i, existing in enumerate(STAGES):
        if existing.name == stage.name:
            STAGES[i] = stage
            return
    names = [s.name for s in STAGES]
    if after is not None:
        STAGES.insert(names.index(after) + 1, stage)
    elif before is not None:
        STAGES.insert(names.index(before), stage)
    else:
        STAGES.append(stage)


def _load_builtin_stages() -> None:
    """Import the stage modules (each registers itself once, on first import, in any order)."""
    from pipeline import stages  # noqa: F401 - registers the built-in stages
    from pipeline import distill_stage  # noqa: F401 - registers 'distill' after 'export'
    from pipeline import deploy_stage  # noqa: F401 - registers 'deploy' before 'report'


def data_fingerprint(splits) -> str:
    """Hash of the arrays themselves: a changed .npz or generator re-runs everything."""
    import hashlib

    digest = hashlib.sha256()
    for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        arr = np.ascontiguousarray(getattr(splits, name))
        digest.update(f"{name}{arr.shape}{arr.dtype}".encode())
        digest.update(arr.tobytes())
    return digest.hexdigest()


def code_fingerprint() -> str:
    """Hash of the pipeline's and the data sets' source: editing the code re-runs the stages."""
    import hashlib

    import pipeline
    import tinyfarm_datasets

    digest = hashlib.sha256()
    for package in (pipeline, tinyfarm_datasets):
        root = Path(package.__file__).parent
        for path in sorted(root.rglob("*.py")):
            digest.update(path.relative_to(root).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def _section_dump(config: PipelineConfig, name: str) -> Any:
    """A section (``"export"``) or one field of it (``"export.representative_samples"``) as JSON."""
    value: Any = config
    for part in name.split("."):
        value = getattr(value, part, None)
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    return value if isinstance(value, (int, float, str, bool, type(None), list, dict)) else str(value)


def _load_record(path: Path) -> dict | None:
    import json

    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _outputs_intact(out_dir: Path, outputs: dict[str, str]) -> bool:
    for rel, digest in outputs.items():
        path = out_dir / rel
        if not path.is_file() or sha256_file(path) != digest:
            return False
    return True


def preflight(ctx: StageContext):
    """Check what the user gave before anything prints or trains: bad input fails in one line.

    The data set is loaded and validated, and a user model file is checked for existence and
    format without importing TensorFlow (:func:`pipeline.model_files.sniff_model_file`); the full
    load happens once TensorFlow is up, still before any training.
    """
    data = ctx.data()
    if ctx.config.baseline.model_path is not None:
        from pipeline.model_files import sniff_model_file

        sniff_model_file(ctx.config.baseline.model_path)
    return data


def check_user_model(ctx: StageContext) -> None:
    model_path = ctx.config.baseline.model_path
    if model_path is not None:
        from pipeline.models import check_model_fits, load_user_model

        data = ctx.data()
        check_model_fits(load_user_model(model_path), data.input_shape, data.num_classes, str(model_path))


def run_pipeline(config: PipelineConfig, out_dir: str | Path, *, force: bool = False,
                 splits=None, log: Callable[[str], None] | None = None) -> dict[str, StageResult]:
    """Run every enabled stage into ``out_dir``; returns the results by stage name.

    ``force`` re-runs stages even when their inputs are unchanged. ``splits`` replaces the
    config's data set (tests). ``log`` receives one line per stage (default: the rich console).
    """
    from pipeline.progress import console

    _load_builtin_stages()
    say = log or (lambda line: console.print(line))
    out_dir = Path(out_dir)
    ctx = StageContext(config=config, out_dir=out_dir)
    if splits is not None:
        ctx.set_data(splits)
    data = preflight(ctx)
    out_dir.mkdir(parents=True, exist_ok=True)
    versions = library_versions()
    versions.pop("platform", None)
    check_user_model(ctx)  # imports TensorFlow, only when there is a user model to check
    say(f"[bold]tinyfarm run[/] -> {out_dir}  (data set: {config.dataset.path or config.dataset.name}, "
        f"seed {config.seed})")
    fingerprint = data_fingerprint(data)
    code = code_fingerprint()
    previous = {"key": "", "outputs": {}}
    for stage in STAGES:
        if not stage.enabled(config):
            continue
        ctx.name = stage.name
        ctx._outputs = []
        inputs = {"previous_stage_key": previous["key"], "previous_outputs": previous["outputs"]}
        key_material = {
            "stage": stage.name, "config": _section_dump(config, stage.name),
            "sections": {s: _section_dump(config, s) for s in stage.sections},
            "seed": config.seed, "dataset": fingerprint, "versions": versions, "code": code,
            "inputs": inputs}
        key = canonical_hash(key_material)
        record_path = out_dir / "stages" / stage.name / RECORD
        record = _load_record(record_path) if (stage.cache and not force) else None
        if record and record.get("key") == key and _outputs_intact(out_dir, record.get("outputs", {})):
            result = StageResult(stage.name, key, record["summary"], record["outputs"], True,
                                 float(record.get("seconds", 0.0)))
            say(f"[dim]{stage.name}: unchanged inputs, skipped (recorded {record.get('finished', '?')})[/]")
        else:
            say(f"[bold cyan]{stage.name}[/]")
            start = time.monotonic()
            summary = stage.run(ctx)
            seconds = time.monotonic() - start
            outputs = {ctx.rel(p): sha256_file(p) for p in ctx._outputs}
            result = StageResult(stage.name, key, summary, outputs, False, seconds)
            write_json(record_path, {
                "stage": stage.name, "key": key, "status": "done",
                "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "seconds": round(seconds, 3), "seed": config.seed,
                "config": key_material["config"], "other_sections": key_material["sections"],
                "dataset": {**data.summary(), "fingerprint": fingerprint},
                "versions": versions, "code_sha256": code, "inputs": inputs, "outputs": outputs,
                "summary": summary})
            say(f"  {stage.name} done in {seconds:.1f} s")
        ctx.results[stage.name] = result
        previous = {"key": key, "outputs": result.outputs}
    return ctx.results


def clean_stage(out_dir: str | Path, name: str) -> None:
    """Forget one stage's record so the next run re-runs it (and everything after it)."""
    shutil.rmtree(Path(out_dir) / "stages" / name, ignore_errors=True)
