"""The ``distill`` section of the pipeline config: who teaches, who learns, and how hard.

Validated by pydantic like every other section (unknown keys are errors). What can only be checked
once the models exist — teacher and student with different numbers of outputs — is checked by
:func:`pipeline.distill_models.check_compatible` and raised as a one-line
:class:`~tinyfarm.errors.ConfigError` too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tinyfarm.errors import ConfigError

BASELINE = "baseline"


class _Section(BaseModel):
    # Same rules as ``pipeline.config.Section`` (which imports this module, hence not shared).
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class StudentSpec(_Section):
    """The student: the baseline's CNN family scaled by width/depth multipliers, or a model file.

    ``width_multiplier`` scales the filters of every conv block (``baseline.width * m``, at least 1)
    and the hidden dense layer if there is one,
    ``depth_multiplier`` the number of blocks (at least 1); everything else (kernel, growth,
    downsampling, head) is the baseline's. A model file is used as it is (it may end in softmax).
    """

    width_multiplier: float = Field(0.25, gt=0, le=4)
    depth_multiplier: float = Field(1.0, gt=0, le=4)
    model_path: Path | None = Field(None, description="a tf-keras student model used instead of the CNN")


class DistillSection(_Section):
    """Knowledge distillation of a small student from a teacher, then the student is compressed.

    ``loss = alpha * CE(labels, student) + (1 - alpha) * T**2 * KL(softmax(teacher/T) || softmax(student/T))``.
    The same student is also trained from scratch (``alpha = 1``, same epochs, optimizer, schedule
    and seed) so the report shows what distillation bought. With ``compress`` the distilled student
    goes through the ``prune`` and ``quantize`` sections' settings (prune -> pruning-preserving QAT)
    and is exported to int8.
    """

    enabled: bool = False
    teacher: str | None = Field(
        None, description="'baseline' (the pipeline's trained baseline) or a tf-keras model file")
    student: StudentSpec = Field(default_factory=StudentSpec)
    temperature: float = Field(4.0, gt=0, description="softmax temperature T of the soft targets")
    alpha: float = Field(0.1, ge=0.0, le=1.0, description="weight of the hard-label loss (1: no teacher)")
    mode: Literal["offline", "online"] = Field(
        "offline", description="offline: teacher logits computed once and cached; online: teacher "
                               "runs in every training step")
    teacher_cache: Path | None = Field(
        None, description="folder of cached teacher logits (default: next to a user .npz, else "
                          "~/.cache/tinyfarm/teacher_logits)")
    seeds: list[int] | None = Field(
        None, min_length=1, description="seeds for student scratch-vs-distilled; accuracies are "
                                        "averaged over them (default: the pipeline seed)")
    mixup: float = Field(0.0, ge=0.0, description="Beta(a, a) mixup of training inputs for both students "
                         "(0: off); the teacher scores the mixed inputs, so it needs mode: online")
    monitor: Literal["val_accuracy", "val_loss"] = "val_accuracy"
    compress: bool = Field(True, description="prune -> pruning-preserving QAT -> int8 the distilled student")
    compress_loss: Literal["distillation", "labels"] = Field(
        "distillation", description="loss of the pruning and QAT fine-tuning: keep the teacher "
                                    "(distillation) or hard labels only (the pipeline's prune/QAT as is)")
    epochs: int = Field(60, ge=1)
    batch_size: int = Field(32, ge=1)
    learning_rate: float = Field(3e-3, gt=0)
    early_stopping_patience: int | None = Field(
        15, ge=1, description="stop when the monitored value has not improved for N epochs (None: never)")

    @field_validator("teacher")
    @classmethod
    def _teacher_not_blank(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            raise ValueError("must be 'baseline' or a model file path, got an empty string")
        return v

    @model_validator(mode="after")
    def _teacher_given(self) -> "DistillSection":
        if self.enabled and self.teacher is None:
            raise ValueError("teacher is missing: set teacher: baseline (the pipeline's baseline) "
                             "or a tf-keras model file")
        if self.mixup > 0 and self.mode != "online":
            raise ValueError("mixup needs mode: online (the teacher must score the mixed inputs)")
        return self

    def teacher_path(self) -> Path | None:
        """The teacher's model file, or ``None`` when the teacher is the pipeline's baseline."""
        return None if self.teacher in (None, BASELINE) else Path(self.teacher)

    def resolve_paths(self, base_dir: Path) -> None:
        """Make relative model/cache paths relative to the config file's folder (like other sections)
        and, when the stage is on, check that the model files exist before anything is trained."""
        if self.teacher_path() is not None and not self.teacher_path().is_absolute():
            self.teacher = str((base_dir / self.teacher_path()).resolve())
        if self.student.model_path is not None and not self.student.model_path.is_absolute():
            self.student.model_path = (base_dir / self.student.model_path).resolve()
        if self.teacher_cache is not None and not self.teacher_cache.is_absolute():
            self.teacher_cache = (base_dir / self.teacher_cache).resolve()
        if self.enabled:
            for field, path in (("teacher", self.teacher_path()), ("student.model_path", self.student.model_path)):
                if path is not None and not path.exists():
                    raise ConfigError(f"distill.{field}: model file not found: {path}")
