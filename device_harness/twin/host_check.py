"""Run a model on the host TFLM, in an isolated child process, to check it (not to serve it).

The public way for code outside the twin (the pipeline's TFLM check) to use the real TFLM kernels of
the ``tflite-micro`` wheel: the runtime lives in a child process (:mod:`.tflm_process`), so a model
that crashes TFLM is a reported error, not the end of the caller.

    arena = find_arena(model_bytes, limit=1 << 20)    # op check + smallest arena that allocates
    if arena.arena_bytes is not None:
        for outputs in host_outputs(model_bytes, arena.arena_bytes, inputs):   # one batch at a time
            ...
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from .tflm_errors import ArenaTooSmall, OpUnsupported, TflmError
from .tflm_process import TflmProcess, smallest_arena

__all__ = ["ArenaSearch", "TflmError", "find_arena", "host_outputs"]


@dataclass(frozen=True)
class ArenaSearch:
    """What the arena search found: the smallest arena (``None``: none), whether TFLM has every op,
    and the one-line reason when it failed."""

    arena_bytes: int | None
    ops_supported: bool
    error: str | None = None


def find_arena(model: bytes, *, limit: int = 1 << 20, decompression_bytes: int = 0) -> ArenaSearch:
    """The smallest tensor arena (up to ``limit`` bytes) on which ``model`` loads and invokes once,
    given ``decompression_bytes`` of alternate decompression memory (compressed models; 0: none).

    Never raises for a model TFLM cannot take: an unsupported op, a model that needs more than
    ``limit`` or a crash of the runtime end up in :attr:`ArenaSearch.error`.
    """
    try:
        return ArenaSearch(smallest_arena(model, limit=limit, decompression_bytes=decompression_bytes), True)
    except OpUnsupported as exc:
        return ArenaSearch(None, False, f"not supported by TFLM: {exc}")
    except ArenaTooSmall as exc:
        return ArenaSearch(None, True, str(exc))
    except TflmError as exc:
        return ArenaSearch(None, False, f"{type(exc).__name__}: {exc}")


def host_outputs(model: bytes, arena_bytes: int, inputs: np.ndarray, *,
                 batch: int = 256, decompression_bytes: int = 0) -> Iterator[np.ndarray]:
    """The raw output 0 of ``model`` for ``inputs`` (one row per sample, the model's input dtype),
    ``batch`` samples per round trip to one child process, yielded batch by batch;
    ``decompression_bytes``: alternate decompression memory beside the arena (compressed models).

    Raises :class:`TflmError` (a :class:`~tinyfarm.errors.TinyfarmError`) when the model does not
    load on ``arena_bytes`` or the runtime fails or crashes.
    """
    with TflmProcess() as tflm:
        tflm.load(model, arena_bytes, decompression_bytes=decompression_bytes)
        for i in range(0, len(inputs), batch):
            outs, _ = tflm.invoke_batch([inputs[i: i + batch]])
            yield np.asarray(outs[0])
