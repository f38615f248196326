"""What a stage is, and what it sees while it runs: :class:`Stage`, :class:`StageContext`, :class:`StageResult`.

A stage is a function ``run(ctx: StageContext) -> dict``. It reads what earlier stages produced
through ``ctx`` — their files by name (``ctx.artifact("baseline", "model")``), their summaries
(``ctx.result("prune").summary``), the ``.tflite`` variants (``ctx.variants()``) and the deployable
model (``ctx.deployable()``) — writes files under ``ctx.stage_dir`` or elsewhere in ``ctx.out_dir``,
declares each with ``ctx.output(path)`` (``ctx.output(path, name="model")`` also publishes it to
later stages as an artifact), and returns a JSON-able summary. Summary keys with a meaning:

- ``"variants"``: a list of ``.tflite`` files it produced, each ``{"name", "kind", "path"
  (relative to DIR), "source", "method"}``. The evaluate and TFLM stages, and the report, pick
  these up from every stage, in order (``ctx.variants()``).
- ``"deployable"``: ``{"path", "copy_of", ...}``, the model for the device (``ctx.deployable()``;
  the export stage sets it to ``DIR/model_int8.tflite``, a later stage may override it).
- ``"report"``: a mapping merged into the top level of ``report.json`` (e.g. ``{"deploy": {...}}``
  or ``{"distillation": {...}}``).

This module knows no stage: the list of stages is ``pipeline/stages.py``, the engine that walks it
(cache keys, records) ``pipeline/stage_runner.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from pipeline.config import PipelineConfig
from tinyfarm.errors import TinyfarmError

STAGES_DIR = "stages"  # DIR/stages/<name>/: a stage's own folder and its record
RECORD = "record.json"


def record_path(stage: str) -> str:
    """Where the record of ``stage`` lives, relative to the run folder."""
    return f"{STAGES_DIR}/{stage}/{RECORD}"


@dataclass(frozen=True)
class Stage:
    """One step of the pipeline: ``run(ctx) -> summary``; enabled by the config.

    The config section of the same name is hashed into the stage's cache key; ``sections`` lists
    other sections, or single ``"section.field"``s, it reads. A stage that talks to hardware, or
    must always reflect everything (the report), sets ``cache=False`` to always run.
    """

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
    artifacts: dict[str, str] = field(default_factory=dict)  # artifact name -> path relative to DIR


class MissingArtifact(TinyfarmError):
    """A stage asked for a file another stage did not produce (not run, disabled, or not declared)."""


@dataclass
class StageContext:
    """What a stage sees: the config, the output folder, the data, and earlier stages' results."""

    config: PipelineConfig
    out_dir: Path
    name: str = ""
    results: dict[str, StageResult] = field(default_factory=dict)
    _splits: Any = None
    _outputs: list[Path] = field(default_factory=list)
    _artifacts: dict[str, Path] = field(default_factory=dict)

    @property
    def section(self) -> Any:
        return getattr(self.config, self.name, None)

    @property
    def seed(self) -> int:
        return self.config.seed

    @property
    def stage_dir(self) -> Path:
        path = self.out_dir / STAGES_DIR / self.name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def begin(self, name: str) -> None:
        """Start collecting the outputs of stage ``name`` (called by the engine)."""
        self.name = name
        self._outputs = []
        self._artifacts = {}

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

    def output(self, path: str | Path, name: str | None = None) -> Path:
        """Declare a file this stage wrote (hashed into its record, checked before skipping).

        With ``name`` the file is also an artifact later stages ask for by
        ``ctx.artifact(<this stage>, name)`` instead of building its path.
        """
        path = Path(path)
        self._outputs.append(path)
        if name is not None:
            self._artifacts[name] = path
        return path

    def declared_outputs(self) -> tuple[list[Path], dict[str, Path]]:
        """The files declared by the running stage, and its named artifacts (for the engine)."""
        return list(self._outputs), dict(self._artifacts)

    def artifact(self, stage: str, name: str) -> Path:
        """The file stage ``stage`` published as ``name`` (``ctx.artifact("baseline", "model")``)."""
        result = self.results.get(stage)
        if result is None:
            raise MissingArtifact(f"stage '{self.name}' needs the {name} of stage '{stage}', "
                                  f"which did not run")
        if name not in result.artifacts:
            raise MissingArtifact(f"stage '{stage}' has no artifact {name!r} "
                                  f"(it has: {', '.join(sorted(result.artifacts)) or 'none'})")
        return self.path(result.artifacts[name])

    def has_artifact(self, stage: str, name: str) -> bool:
        result = self.results.get(stage)
        return result is not None and name in result.artifacts

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
