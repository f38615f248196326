"""The pipeline's stages, in the order they run — the one place that order is written.

    from pipeline.config import load_config
    from pipeline.stages import run_pipeline
    run_pipeline(load_config("configs/mnist1d.yaml"), "runs/mnist1d")

Each :class:`~pipeline.run_context.Stage` names its ``run(ctx) -> summary`` function (in the module
that wires it to files), when the config enables it, the other config sections it reads (hashed
into its cache key with its own section) and whether it is cached. The engine that walks this list
is :func:`pipeline.stage_runner.run_stages`; what a stage sees is
:class:`pipeline.run_context.StageContext`.

How to add a stage (e.g. ``distill`` or ``deploy``)
---------------------------------------------------
1. Config: in ``pipeline/config.py`` define ``class DistillSection(Section)`` (with an ``enabled``
   flag or a ``None`` default so existing configs do not run it) and add the field
   ``distill: DistillSection = Field(default_factory=DistillSection)`` to ``PipelineConfig``.
   Unknown keys stay errors; validation messages name the field automatically.
2. Code: a module with the plain functions (usable alone) and a thin ``run(ctx) -> dict`` that wires
   them to files; it declares what it writes with ``ctx.output(path, name=...)`` and reads what
   earlier stages wrote with ``ctx.artifact(stage, name)``.
3. List it below, where it belongs in the order. A stage that talks to hardware sets
   ``cache=False`` to always run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from pipeline.config import PipelineConfig
from pipeline.deploy_stage import run_deploy
from pipeline.distill_stage import run_distill
from pipeline.report import run_report
from pipeline.run_context import Stage, StageResult
from pipeline.search_stage import run_search
from pipeline.stage_runner import run_stages
from pipeline.tflite_quantize import quantize_only, run_ptq
from pipeline.tflite_stages import run_evaluate, run_export, run_tflm
from pipeline.training_stages import run_baseline, run_prune, run_quantize


# A float `.tflite` as baseline.model_path (quantize_only): no Keras model, so no training stage
# and no Keras export; the `ptq` stage quantizes the file and publishes the deployable model.
def _trains(config: PipelineConfig) -> bool:
    return not quantize_only(config)


STAGES: tuple[Stage, ...] = (
    Stage("baseline", run_baseline, enabled=_trains, sections=("dataset",)),
    Stage("prune", run_prune, enabled=lambda c: _trains(c) and c.prune.enabled),
    Stage("quantize", run_quantize, enabled=lambda c: _trains(c) and c.quantize.qat,
          sections=("export.representative_samples", "export.strip_strings", "export.drop_softmax")),
    Stage("export", run_export, enabled=_trains),
    # Quantize-only: the user's float .tflite -> full int8 (ai-edge-quantizer), deployable.
    Stage("ptq", run_ptq, enabled=quantize_only,
          sections=("dataset", "baseline.model_path", "export.representative_samples",
                    "export.strip_strings", "export.c_array")),
    # After export, so the deployable model stays the baseline chain's; before evaluate, so its
    # variants are evaluated and TFLM-checked like every other.
    Stage("distill", run_distill, enabled=lambda c: _trains(c) and c.distill.enabled,
          sections=("dataset", "baseline", "prune", "quantize", "export")),
    # The compress-retrain-measure loop against the `target` budget; its choice becomes the
    # deployable model. After export (its PTQ int8 baseline is candidate zero), before evaluate.
    Stage("search", run_search, enabled=lambda c: _trains(c) and c.search.enabled,
          sections=("dataset", "baseline", "export", "target")),
    Stage("evaluate", run_evaluate),
    Stage("tflm", run_tflm, enabled=lambda c: c.tflm.enabled),
    # Talks to a device: always runs (a device's figures are as fresh as the last time it was asked).
    Stage("deploy", run_deploy, enabled=lambda c: c.deploy.enabled, cache=False, sections=("export",)),
    # Cheap, and must reflect everything before it.
    Stage("report", run_report, cache=False),
)


def run_pipeline(config: PipelineConfig, out_dir: str | Path, *, force: bool = False,
                 splits=None, log: Callable[[str], None] | None = None) -> dict[str, StageResult]:
    """Run every enabled stage of :data:`STAGES` into ``out_dir``; returns the results by stage name.

    ``force`` re-runs stages even when their inputs are unchanged. ``splits`` replaces the
    config's data set (tests). ``log`` receives one line per stage (default: the rich console).
    """
    return run_stages(STAGES, config, out_dir, force=force, splits=splits, log=log)
