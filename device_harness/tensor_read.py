"""Every op's output tensor from a device (the TENSORS capability), for ``tinyfarm diff --device``.

The model is uploaded after PRESERVE_TENSORS, so the device's TFLM keeps every tensor (the twin:
the wheel's ``kPreserveAllTensors`` interpreter; the firmware: ``MicroInterpreter``'s
``preserve_all_tensors``, in a build with ``-DTINYFARM_TENSOR_DEBUG=ON``); after each sample's INVOKE
the op outputs are read back with READ_TENSOR. A device without the capability is one
:class:`~device_harness.client.TensorsUnsupported` line, before any upload.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def run_device(model: bytes, q: np.ndarray, tensors: Sequence[int], shapes: Sequence[tuple[int, ...]],
               device: str) -> list[np.ndarray]:
    """Tensors ``tensors`` (op outputs, of ``shapes``) of ``model`` on ``device`` for each quantized
    sample of ``q`` (samples on axis 0): one array per tensor, samples on axis 0 (the layout of
    :func:`device_harness.layer_diff.run_tflm`'s values)."""
    from device_harness.session import DeviceSession  # noqa: PLC0415

    rows = []
    with DeviceSession.for_device(device) as session:
        session.client.preserve_tensors()  # TensorsUnsupported (one line) before any upload
        session.require_engine(session.upload(model))
        dims = session.client.inputs[0].dims
        try:
            for i in range(len(q)):
                session.invoke([np.ascontiguousarray(q[i: i + 1]).reshape(dims)])
                rows.append([v.reshape(s) for v, s in zip(session.read_tensors(tensors), shapes)])
        finally:
            session.client.preserve_tensors(False)
    return [np.stack([r[j] for r in rows]) for j in range(len(tensors))]
