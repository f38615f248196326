"""The pipeline config: one YAML file, validated by pydantic, one section per stage.

Every field has a default, so an empty file (or no file) is the default digits pipeline, and
``configs/digits.yaml`` spells the same defaults out. Unknown keys are errors (``extra="forbid"``):
a typo must not silently fall back to a default. :func:`load_config` turns every problem into a
one-line :class:`~tinyfarm.errors.ConfigError` naming the field.

Adding a section for a new stage: define a ``Section`` subclass and add it as a field of
:class:`PipelineConfig` with a default that keeps the stage off (see ``pipeline/stages.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipeline.distill_config import DistillSection
from pipeline.search_config import SearchSection, TargetSection
from tinyfarm import safe_yaml
from tinyfarm.errors import ConfigError, short

VariantKind = Literal["float32", "dynamic", "float16", "int8", "int16x8"]


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class TrainSettings(Section):
    """How a stage fine-tunes or trains (shared by baseline, pruning and QAT)."""

    epochs: int = Field(30, ge=1)
    batch_size: int = Field(32, ge=1)
    learning_rate: float = Field(3e-3, gt=0)
    early_stopping_patience: int | None = Field(
        None, ge=1, description="stop when val accuracy has not improved for N epochs (None: never)")


class DatasetSection(Section):
    """The data: a built-in by ``name``, or a user's ``.npz`` at ``path`` (then ``name`` is its label).

    ``name`` left out (or null) means ``digits`` without a ``path`` and the file's stem with one
    (``data/cancer.npz`` -> ``cancer``): the report, ``report.md`` and the console call the data
    set by it. An explicit ``name`` is the label, unless it is a built-in's (``digits`` in a copy
    of ``configs/digits.yaml`` given a ``path``): user data is never called by a built-in's name.
    """

    name: str | None = Field(None, description="built-in name (tinyfarm datasets), or a label for the "
                             "user data at `path` (None: digits without a path, else the file's stem)")
    path: Path | None = Field(None, description=".npz with x_train, y_train, x_test, y_test")
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0, description="share of train kept for validation")

    @model_validator(mode="after")
    def _default_name(self) -> "DatasetSection":
        # Re-run on assignment too (validate_assignment): a path set later renames an unnamed set.
        from tinyfarm_datasets import dataset_label

        given = self.name if "name" in self.model_fields_set else None
        # __dict__, not setattr: an assignment would validate again and mark the name as given
        self.__dict__["name"] = dataset_label(given, self.path)
        return self


class BaselineSection(TrainSettings):
    """Stage 1: a small CNN (or, for ``(features,)`` inputs, an MLP) built from width/depth, or a
    user's tf-keras model file.

    ``family: mlp`` (what ``auto`` picks for feature vectors, e.g. tabular data): ``depth`` hidden
    blocks Dense -> BatchNorm -> ReLU of ``width * growth**i`` units, then the same head as the
    CNNs (``dense_units``, ``dropout``, the classifier, a Softmax layer); ``kernel_size``,
    ``downsample*`` and ``head`` are conv-only and ignored.
    """

    model_path: Path | None = Field(None, description="a model file used instead of the built-in family: "
                                    "tf-keras or Keras 3 (.keras, .h5, SavedModel folder; Keras 3 is rebuilt "
                                    "as tf-keras and checked), or a float32 .tflite (quantize-only: no training)")
    trust_model_code: bool = Field(False, description="load user model files (here and in distill) even "
                                   "if they carry code: Lambda layers, custom classes (only for files "
                                   "you trust: their code runs)")
    train: bool = Field(True, description="train the model (False: use a user model as it is)")
    family: Literal["auto", "cnn2d", "cnn1d", "mlp"] = Field(
        "auto", description="auto: mlp for (features,) inputs, cnn1d for (length, channels), "
        "cnn2d for (h, w, c)")
    width: int = Field(32, ge=1, description="filters in the first conv block (mlp: units of the "
                       "first hidden Dense layer)")
    depth: int = Field(2, ge=1, le=8, description="number of conv blocks (mlp: hidden Dense layers)")
    growth: float = Field(2.0, gt=0, description="filters (mlp: units) multiplier from one block to "
                          "the next")
    kernel_size: int = Field(3, ge=1)
    downsample: Literal["pool", "stride"] = "pool"
    downsample_from: int = Field(0, ge=0, description="index of the first block that halves the resolution")
    head: Literal["flatten", "gap"] = "flatten"
    dense_units: int = Field(128, ge=0, description="hidden dense layer before the classifier (0: none)")
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    epochs: int = Field(30, ge=1)
    early_stopping_patience: int | None = Field(None, ge=1)


class PruneSection(TrainSettings):
    """Stage 2: magnitude pruning (TF-MOT prune_low_magnitude), then strip_pruning."""

    enabled: bool = True
    schedule: Literal["polynomial", "constant"] = "polynomial"
    initial_sparsity: float = Field(0.0, ge=0.0, lt=1.0)
    target_sparsity: float = Field(0.8, gt=0.0, lt=1.0)
    m_by_n: tuple[int, int] | None = Field(None, description="structured sparsity, e.g. [2, 4]")
    ramp_fraction: float = Field(0.7, gt=0.0, le=1.0,
                                 description="share of the pruning epochs over which sparsity ramps up")
    frequency: int | None = Field(None, ge=1, description="steps between mask updates (None: derived "
                                  "from steps per epoch so short runs reach the target)")
    exclude: list[str] = Field(default_factory=list, description="layer names left dense")
    epochs: int = Field(12, ge=1)
    learning_rate: float = Field(1e-3, gt=0)
    early_stopping_patience: int | None = None

    @field_validator("m_by_n")
    @classmethod
    def _m_lt_n(cls, v: tuple[int, int] | None) -> tuple[int, int] | None:
        if v is not None and not 0 < v[0] < v[1]:
            raise ValueError(f"m_by_n must be [m, n] with 0 < m < n, got {list(v)}")
        return v


class QuantizeSection(TrainSettings):
    """Stage 3: QAT (pruning-preserving when the model was pruned); PTQ happens at export."""

    qat: bool = True
    preserve_sparsity: bool = Field(True, description="use Default8BitPrunePreserveQuantizeScheme after pruning")
    epochs: int = Field(5, ge=1)
    learning_rate: float = Field(3e-4, gt=0)


class ExportSection(Section):
    """Stage 4: which .tflite variants to write."""

    baseline_kinds: list[VariantKind] = Field(
        default_factory=lambda: ["float32", "dynamic", "float16", "int8", "int16x8"])
    pruned_kinds: list[VariantKind] = Field(default_factory=lambda: ["int8"])
    representative_samples: int = Field(200, ge=1, description="train samples used to calibrate PTQ")
    c_array: bool = Field(True, description="write the deployable int8 model as a C source array")
    strip_strings: bool = Field(True, description="drop tensor names/signatures TFLM does not read")
    drop_softmax: bool = Field(False, description="export the logits: cut a final Softmax layer "
                               "(argmax needs none)")


class EvaluateSection(Section):
    """Stage 5: LiteRT reference kernels on the test split."""

    max_test_samples: int | None = Field(None, ge=1, description="cap on test samples (None: all)")


class TflmSection(Section):
    """Stage 6: the deployable model on the real TFLM runtime (tflite-micro wheel), in a child process."""

    enabled: bool = True
    variants: Literal["deployable", "int8", "all"] = "deployable"
    max_arena_bytes: int = Field(1 << 20, ge=1024)
    max_samples: int | None = Field(None, ge=1, description="test samples compared (None: all)")


class DeploySection(Section):
    """Stage ``deploy``: the deployable int8 model uploaded to a device and measured there."""

    enabled: bool = True
    device: str = Field("twin", description="any --device value: twin, twin:BOARD, qemu, qemu:cmsis-nn, "
                        "renode, a URL, a farm name")
    emulator: str | None = Field("auto", description="also measure on this device: auto = qemu when `make "
                                 "firmware` built its TFLM engine (the firmware users flash, on an emulated "
                                 "Cortex-M4), null = no second device")
    board: str | None = Field(None, description="board profile of a twin started for the run")
    farm: str | None = Field(None, description="farm file whose device names `device` may use")
    runs: int = Field(50, ge=1, le=16000, description="timed invocations for the latency figures")
    warmup: int = Field(5, ge=0, description="untimed invocations before them")
    max_samples: int | None = Field(None, ge=1, description="test samples evaluated on the device (None: all)")


class ReportSection(Section):
    plot: bool = True


class PipelineConfig(Section):
    """The whole pipeline. Sections run in the order of ``pipeline.stages.STAGES``."""

    seed: int = 0
    dataset: DatasetSection = Field(default_factory=DatasetSection)
    baseline: BaselineSection = Field(default_factory=BaselineSection)
    prune: PruneSection = Field(default_factory=PruneSection)
    quantize: QuantizeSection = Field(default_factory=QuantizeSection)
    export: ExportSection = Field(default_factory=ExportSection)
    evaluate: EvaluateSection = Field(default_factory=EvaluateSection)
    tflm: TflmSection = Field(default_factory=TflmSection)
    distill: DistillSection = Field(default_factory=DistillSection)
    target: TargetSection = Field(default_factory=TargetSection)
    search: SearchSection = Field(default_factory=SearchSection)
    deploy: DeploySection = Field(default_factory=DeploySection)
    report: ReportSection = Field(default_factory=ReportSection)

    @model_validator(mode="after")
    def _consistent(self) -> "PipelineConfig":
        if self.baseline.model_path is None and not self.baseline.train:
            raise ValueError("baseline.train: false needs baseline.model_path (nothing to train otherwise)")
        return self


def _field_path(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) if len(str(p)) <= 80 else short(str(p)) for p in loc) or "(top level)"


def validation_message(err: ValidationError, source: str) -> str:
    """The first pydantic error as one line: ``SOURCE: FIELD: problem``."""
    first = err.errors()[0]
    more = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = "unknown field"
    return f"{source}: {_field_path(first['loc'])}: {msg}{more}"


def parse_config(data: dict[str, Any] | None, source: str = "config",
                 base_dir: Path | None = None) -> PipelineConfig:
    """Validate a config mapping; relative paths in it are resolved against ``base_dir``."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of sections at the top level, got {type(data).__name__}")
    try:
        cfg = PipelineConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(validation_message(err, source)) from None
    if base_dir is not None:
        for section, field in (("dataset", "path"), ("baseline", "model_path")):
            value = getattr(getattr(cfg, section), field)
            if value is not None and not Path(value).is_absolute():
                setattr(getattr(cfg, section), field, (base_dir / value).resolve())
        cfg.distill.resolve_paths(base_dir)
    return cfg


def load_config(path: str | Path | None) -> PipelineConfig:
    """Read and validate a YAML config; ``None`` is the default (digits) pipeline."""
    if path is None:
        return PipelineConfig()
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from None
    try:
        data = safe_yaml.load(text, source=str(path))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}: malformed YAML{where}: {problem}") from None
    return parse_config(data, source=str(path), base_dir=path.parent)
