"""The engine that walks a list of stages: each stage cached by what went into it.

:func:`run_stages` walks the stages it is given (the pipeline's are ``pipeline.stages.STAGES``);
for each enabled stage it computes a cache key from the stage's config section, the seed, the data
set's fingerprint, the library versions, a hash of the pipeline's source code and the key and
output hashes of the stage before it. If ``DIR/stages/<name>/record.json`` holds the same key and
every recorded output still has its hash, the stage is skipped and its recorded summary and
artifacts reused; otherwise it runs and a new record is written (config, seed, versions, input and
output hashes, named artifacts, summary, time). Changing anything upstream therefore re-runs
everything after it, and nothing else.

Nothing stale stays beside the new results: a stage that runs again removes the files its
previous record lists and this run did not write (a variant kind dropped from the config, its
reference outputs), and a stage the config now disables has its recorded files and its folder
removed. Only files a record lists, inside the run folder, are ever removed.

This module imports no stage: what a stage is and sees is ``pipeline/run_context.py``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from pipeline.config import PipelineConfig
from pipeline.run_context import STAGES_DIR, Stage, StageContext, StageResult, record_path
from pipeline.tflite_quantize import is_tflite_path
from tinyfarm.provenance import canonical_hash, library_versions, sha256_file, write_json

logger = logging.getLogger(__name__)


def data_fingerprint(splits) -> str:
    """Hash of the arrays themselves: a changed .npz or generator re-runs everything."""
    digest = hashlib.sha256()
    for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        arr = np.ascontiguousarray(getattr(splits, name))
        digest.update(f"{name}{arr.shape}{arr.dtype}".encode())
        digest.update(arr.tobytes())
    return digest.hexdigest()


def code_fingerprint() -> str:
    """Hash of the pipeline's and the data sets' source: editing the code re-runs the stages."""
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
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):
        return None
    return record if isinstance(record, dict) else None


def _changed_output(out_dir: Path, outputs: dict[str, str]) -> str | None:
    """The first recorded output that is missing or changed, else ``None``."""
    for rel, digest in outputs.items():
        path = out_dir / rel
        if not path.is_file() or sha256_file(path) != digest:
            return rel
    return None


def _reusable(record: dict | None, key: str, out_dir: Path, stage: str) -> bool:
    """Whether a stage's record can stand for running it again; the reason goes to the log."""
    if record is None:
        logger.debug("%s: no usable record: runs", stage)
        return False
    if record.get("key") != key:
        logger.debug("%s: cache key changed (%s -> %s): runs", stage, str(record.get("key"))[:12], key[:12])
        return False
    changed = _changed_output(out_dir, record.get("outputs", {}))
    if changed is not None:
        logger.info("%s: output %s is missing or changed since it was recorded: runs", stage, changed)
        return False
    logger.debug("%s: same key %s, outputs intact: skipped", stage, key[:12])
    return True


def preflight(ctx: StageContext):
    """Check what the user gave before anything prints or trains: bad input fails in one line.

    The data set is loaded and validated, and a user model file is checked for existence and
    format, and refused if it carries code, without importing TensorFlow
    (:func:`pipeline.model_files.sniff_model_file`); the full load happens once TensorFlow is up,
    still before any training.
    """
    data = ctx.data()
    if is_tflite_path(ctx.config.baseline.model_path):
        from pipeline.tflite_quantize import check_tflite_file

        check_tflite_file(ctx.config.baseline.model_path, data)  # float32, fits the data: one line if not
    elif ctx.config.baseline.model_path is not None:
        from pipeline.model_files import sniff_model_file

        sniff_model_file(ctx.config.baseline.model_path, trust_code=ctx.config.baseline.trust_model_code)
    return data


def check_user_model(ctx: StageContext) -> None:
    model_path = ctx.config.baseline.model_path
    if model_path is not None and not is_tflite_path(model_path):
        from pipeline.keras_models import check_model_fits, load_user_model

        data = ctx.data()
        model = load_user_model(model_path, trust_code=ctx.config.baseline.trust_model_code)
        check_model_fits(model, data.input_shape, data.num_classes, str(model_path))


def run_stages(stages: Iterable[Stage], config: PipelineConfig, out_dir: str | Path, *,
               force: bool = False, splits=None,
               log: Callable[[str], None] | None = None) -> dict[str, StageResult]:
    """Run every enabled stage of ``stages``, in order, into ``out_dir``; results by stage name.

    ``force`` re-runs stages even when their inputs are unchanged. ``splits`` replaces the
    config's data set (tests). ``log`` receives one line per stage (default: the rich console).
    """
    from pipeline.progress import console

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
    for stage in stages:
        record_file = out_dir / record_path(stage.name)
        if not stage.enabled(config):
            logger.debug("%s: disabled by the config", stage.name)
            old = _load_record(record_file)
            if old is not None:
                removed = remove_outputs(out_dir, old.get("outputs", {}))
                shutil.rmtree(out_dir / STAGES_DIR / stage.name, ignore_errors=True)
                say(f"[dim]{stage.name}: disabled; removed the {removed} file(s) of its earlier run[/]")
            continue
        ctx.begin(stage.name)
        inputs = {"previous_stage_key": previous["key"], "previous_outputs": previous["outputs"]}
        key_material = {
            "stage": stage.name, "config": _section_dump(config, stage.name),
            "sections": {s: _section_dump(config, s) for s in stage.sections},
            "seed": config.seed, "dataset": fingerprint, "versions": versions, "code": code,
            "inputs": inputs}
        key = canonical_hash(key_material)
        if not stage.cache:
            logger.debug("%s: not cached: runs", stage.name)
            record = None
        elif force:
            logger.debug("%s: --force: runs", stage.name)
            record = None
        else:
            record = _load_record(record_file)
        if stage.cache and not force and _reusable(record, key, out_dir, stage.name):
            result = StageResult(stage.name, key, record["summary"], record["outputs"], True,
                                 float(record.get("seconds", 0.0)), record.get("artifacts", {}))
            say(f"[dim]{stage.name}: unchanged inputs, skipped (recorded {record.get('finished', '?')})[/]")
        else:
            say(f"[bold cyan]{stage.name}[/]")
            start = time.monotonic()
            summary = stage.run(ctx)
            seconds = time.monotonic() - start
            declared, named = ctx.declared_outputs()
            outputs = {ctx.rel(p): sha256_file(p) for p in declared}
            artifacts = {name: ctx.rel(p) for name, p in named.items()}
            old = record if record is not None else _load_record(record_file)
            if old is not None:
                removed = remove_outputs(out_dir, old.get("outputs", {}), keep=outputs)
                if removed:
                    say(f"  {stage.name}: removed {removed} file(s) of its earlier run that this run "
                        "did not write")
            result = StageResult(stage.name, key, summary, outputs, False, seconds, artifacts)
            write_json(record_file, {
                "stage": stage.name, "key": key, "status": "done",
                "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "seconds": round(seconds, 3), "seed": config.seed,
                "config": key_material["config"], "other_sections": key_material["sections"],
                "dataset": {**data.summary(), "fingerprint": fingerprint},
                "versions": versions, "code_sha256": code, "inputs": inputs, "outputs": outputs,
                "artifacts": artifacts, "summary": summary})
            logger.debug("%s: wrote %s (%d outputs)", stage.name, record_file, len(outputs))
            say(f"  {stage.name} done in {seconds:.1f} s")
        ctx.results[stage.name] = result
        previous = {"key": key, "outputs": result.outputs}
    return ctx.results


def remove_outputs(out_dir: Path, outputs: dict[str, str] | list[str], keep: Iterable[str] = ()) -> int:
    """Remove the recorded ``outputs`` (paths relative to ``out_dir``) not in ``keep``; how many.

    A path that leads outside the run folder (a damaged or hand-made record) is left alone, and a
    symlink is removed itself, never followed."""
    root, kept, removed = out_dir.resolve(), set(keep), 0
    for rel in outputs if isinstance(outputs, (list, dict)) else ():
        if not isinstance(rel, str) or rel in kept:
            continue
        path = out_dir / rel
        try:
            parent = path.parent.resolve()
            if (parent != root and root not in parent.parents) or path.name in ("", ".", ".."):
                logger.warning("record lists %s, outside %s: left alone", rel, out_dir)
                continue
            if path.is_symlink() or path.is_file():
                path.unlink()
                removed += 1
                logger.info("removed %s (written by an earlier run, not by this one)", path)
        except OSError as exc:
            logger.warning("cannot remove stale %s: %s", path, exc)
    return removed


def clean_stage(out_dir: str | Path, name: str) -> None:
    """Forget one stage's record so the next run re-runs it (and everything after it)."""
    shutil.rmtree(Path(out_dir) / STAGES_DIR / name, ignore_errors=True)
