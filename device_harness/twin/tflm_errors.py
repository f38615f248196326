"""What the host TFLM runtime raises: one class per protocol error it can end in.

The twin answers each with its ``code`` (the protocol's, from ``spec.yaml``); the child process
names a failure by the same error name. Model-side failures are :class:`~tinyfarm.errors.ModelError`
(the model cannot run as given), the rest :class:`~tinyfarm.errors.DeviceError`.
"""

from __future__ import annotations

from device_harness.protocol.spec import ErrorCode
from tinyfarm.errors import DeviceError, ModelError


class TflmError(Exception):
    """Base of the errors this module raises; ``code`` is the protocol error the twin answers."""

    code = ErrorCode.INTERNAL


class ModelInvalid(TflmError, ModelError):
    code = ErrorCode.MODEL_INVALID


class OpUnsupported(TflmError, ModelError):
    code = ErrorCode.OP_UNSUPPORTED


class ArenaTooSmall(TflmError, ModelError):
    code = ErrorCode.ARENA_TOO_SMALL


class InvokeFailed(TflmError, DeviceError):
    code = ErrorCode.INVOKE_FAILED


class BadArgument(TflmError, ModelError):
    code = ErrorCode.BAD_ARGUMENT


class NoModel(TflmError, DeviceError):
    code = ErrorCode.NO_MODEL


class DeviceFault(TflmError, DeviceError):
    """The TFLM child died (e.g. SIGSEGV) or hung; it has been discarded and restarts on next use."""

    code = ErrorCode.DEVICE_FAULT


class TflmInternalError(TflmError, DeviceError):
    code = ErrorCode.INTERNAL


#: the child names a failure by its protocol error name
BY_NAME = {c.code.name: c for c in (ModelInvalid, OpUnsupported, ArenaTooSmall, InvokeFailed,
                                BadArgument, NoModel, DeviceFault, TflmInternalError)}
