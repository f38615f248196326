"""``signal_int16.tflite``: TFLM's signal-library custom operators in one int16 model, written as a
flatbuffer directly (neither TensorFlow nor the tflite-micro wheel has op wrappers for them).

One int16 input, ``audio`` (128 samples, one frame at 16 kHz), feeds two chains of one subgraph:

- the micro_speech front end, output ``features`` (int16, 30): SignalWindow (Hann, Q12) ->
  SignalFftAutoScale -> SignalRfft (128 points) -> SignalEnergy -> SignalFilterBank (10 mel
  channels, 125-7500 Hz) -> SignalFilterBankSquareRoot (by the auto-scale's bits) ->
  SignalFilterBankSpectralSubtraction -> SignalPCAN (its noise estimate) -> SignalFilterBankLog ->
  SignalStacker (2 frames of left context, no right context: valid from the first invoke);
- a streaming chain, output ``resynth`` (int16, 128): SignalDelay (24 samples) -> SignalFramer
  (32-sample frames every 16, prefilled: valid from the first invoke) -> SignalRfft -> SignalIrfft
  -> SignalOverlapAdd.

Every one of the 14 operators of the firmware's ``TF_ENGINE_SIGNAL_OPS``; Delay, Framer, Stacker,
OverlapAdd and the spectral subtraction keep state from invoke to invoke. The options are the
flexbuffer maps each kernel's Init reads (``signal/micro/kernels/*.cc``: values by position in the
key-sorted map, so each map has exactly the op's attributes); the constants (window, filter bank,
PCAN gain table) follow TFLM's microfrontend (``filterbank_util.c``, ``pcan_gain_control_util.c``)
in a smaller configuration. No randomness: the bytes depend on the flatbuffers package only.
"""

from __future__ import annotations

import numpy as np
from flatbuffers import Builder, flexbuffers
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

SAMPLE_RATE = 16000
FRAME = 128               # samples per invoke = FFT length of the front end
CHANNELS = 10             # filter bank channels
LOWER_HZ, UPPER_HZ = 125.0, 7500.0
FILTERBANK_BITS = 12      # weights in Q12 (microfrontend's kFilterbankBits)
SMOOTHING_BITS = 10
SPECTRAL_SUBTRACTION_BITS = 14
PCAN_SNR_BITS, PCAN_OUTPUT_BITS = 12, 6
PCAN_GAIN_BITS, PCAN_STRENGTH, PCAN_OFFSET = 21, 0.95, 80.0
# microfrontend: MostSignificantBit32(fft_length) - 1 - kFilterbankBits / 2
INPUT_CORRECTION_BITS = FRAME.bit_length() - 1 - FILTERBANK_BITS // 2
STACK_LEFT = 2
DELAY, SUB_FRAME, SUB_STEP = 24, 32, 16

T = schema.TensorType


def hann_q12() -> np.ndarray:
    n = np.arange(FRAME)
    return np.round((0.5 - 0.5 * np.cos(2 * np.pi * n / FRAME)) * (1 << 12)).astype(np.int16)


def _mel(hz):
    return 1127.0 * np.log1p(np.asarray(hz, dtype=np.float64) / 700.0)


def filter_bank() -> tuple[dict[str, np.ndarray], int, int]:
    """Triangular mel filters as TFLM's FilterbankConfig: CHANNELS + 1 bands between CHANNELS + 2
    edge bins; band i's weights fall from 1 to 0 (channel i's upper half), its unweights rise
    (channel i + 1's lower half); band 0 is the kernel's scratch channel. Returns the arrays and
    the spectrum range [start, end) the bands read (SignalEnergy's start_index, end_index)."""
    bin_hz = SAMPLE_RATE / FRAME
    mels = np.linspace(_mel(LOWER_HZ), _mel(UPPER_HZ), CHANNELS + 2)
    edges = np.round(700.0 * np.expm1(mels / 1127.0) / bin_hz).astype(np.int64)
    assert np.all(np.diff(edges) > 0), edges
    widths = np.diff(edges)
    weights, unweights = [], []
    for w in widths:
        fall = np.round((1.0 - np.arange(w) / w) * (1 << FILTERBANK_BITS)).astype(np.int64)
        weights.append(fall)
        unweights.append((1 << FILTERBANK_BITS) - fall)
    arrays = {
        "weights": np.concatenate(weights),
        "unweights": np.concatenate(unweights),
        "channel_frequency_starts": edges[:-1],
        "channel_weight_starts": np.concatenate([[0], np.cumsum(widths)[:-1]]),
        "channel_widths": widths,
    }
    return {k: v.astype(np.int16) for k, v in arrays.items()}, int(edges[0]), int(edges[-1])


def pcan_gain_lut() -> np.ndarray:
    """PcanGainControlPopulateState's wide-dynamic-function table (125 entries), float32 as in C."""
    input_bits = SMOOTHING_BITS - INPUT_CORRECTION_BITS

    def gain(x: int) -> int:
        xf = np.float32(x) / np.float32(1 << input_bits)
        g = np.float32(1 << PCAN_GAIN_BITS) * np.power(np.float32(xf + np.float32(PCAN_OFFSET)),
                                                       np.float32(-PCAN_STRENGTH))
        return 0x7FFF if g > 0x7FFF else int(g + np.float32(0.5))

    bits = 32
    lut = np.zeros(4 * bits - 3, dtype=np.int64)
    lut[0], lut[1] = gain(0), gain(1)
    for interval in range(2, bits + 1):
        x0 = 1 << (interval - 1)
        x1 = x0 + (x0 >> 1)
        x2 = x0 + (x0 - 1) if interval == bits else 2 * x0
        y0, y1, y2 = gain(x0), gain(x1), gain(x2)
        a1 = 4 * (y1 - y0) - (y2 - y0)
        a2 = (y2 - y0) - a1
        lut[4 * interval - 6: 4 * interval - 3] = (y0, a1, a2)
    return lut.astype(np.int16)


class _Graph:
    """Tensors, buffers and operators of one subgraph, in the schema's object API."""

    def __init__(self) -> None:
        self.tensors: list = []
        self.buffers = [schema.BufferT()]  # buffer 0: the empty sentinel
        self.operators: list = []
        self.codes: list[str] = []

    def tensor(self, name: str, type_: int, shape, data: np.ndarray | None = None) -> int:
        t = schema.TensorT()
        t.name, t.type, t.shape = name, type_, list(shape)
        t.buffer = 0
        if data is not None:
            b = schema.BufferT()
            b.data = np.frombuffer(np.ascontiguousarray(data).tobytes(), dtype=np.uint8)
            t.buffer = len(self.buffers)
            self.buffers.append(b)
        self.tensors.append(t)
        return len(self.tensors) - 1

    def const16(self, name: str, values: np.ndarray) -> int:
        values = np.asarray(values, dtype="<i2")
        return self.tensor(name, T.INT16, values.shape, values)

    def op(self, custom: str, inputs: list[int], outputs: list[int], options: dict | None = None) -> None:
        if custom not in self.codes:
            self.codes.append(custom)
        o = schema.OperatorT()
        o.opcodeIndex = self.codes.index(custom)
        o.inputs, o.outputs = list(inputs), list(outputs)
        if options is not None:
            o.customOptions = np.frombuffer(bytes(flexbuffers.Dumps(options)), dtype=np.uint8)
            o.customOptionsFormat = schema.CustomOptionsFormat.FLEXBUFFERS
        self.operators.append(o)

    def model(self, inputs: list[int], outputs: list[int], description: str) -> bytes:
        sg = schema.SubGraphT()
        sg.tensors, sg.operators, sg.inputs, sg.outputs = self.tensors, self.operators, inputs, outputs
        sg.name = "main"
        codes = []
        for name in self.codes:
            c = schema.OperatorCodeT()
            c.builtinCode = c.deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
            c.customCode, c.version = name, 1
            codes.append(c)
        m = schema.ModelT()
        m.version, m.description = 3, description
        m.operatorCodes, m.subgraphs, m.buffers = codes, [sg], self.buffers
        b = Builder(4096)
        b.Finish(m.Pack(b), file_identifier=b"TFL3")
        return bytes(b.Output())


def signal_model() -> bytes:
    g = _Graph()
    bins = FRAME // 2 + 1
    audio = g.tensor("audio", T.INT16, [FRAME])

    # the micro_speech front end
    windowed = g.tensor("windowed", T.INT16, [FRAME])
    g.op("SignalWindow", [audio, g.const16("hann_q12", hann_q12())], [windowed], {"shift": 12})
    scaled = g.tensor("scaled", T.INT16, [FRAME])
    scale_bits = g.tensor("scale_bits", T.INT32, [])
    g.op("SignalFftAutoScale", [windowed], [scaled, scale_bits])
    spectrum = g.tensor("spectrum", T.INT16, [2 * bins])
    g.op("SignalRfft", [scaled], [spectrum], {"T": T.INT16, "fft_length": FRAME})
    fb, start, end = filter_bank()
    energy = g.tensor("energy", T.UINT32, [bins])
    g.op("SignalEnergy", [spectrum], [energy], {"end_index": end, "start_index": start})
    channels = g.tensor("channels", T.UINT64, [CHANNELS])
    g.op("SignalFilterBank", [energy] + [g.const16(k, v) for k, v in fb.items()], [channels],
         {"num_channels": CHANNELS})
    roots = g.tensor("roots", T.UINT32, [CHANNELS])
    g.op("SignalFilterBankSquareRoot", [channels, scale_bits], [roots])
    cleaned = g.tensor("cleaned", T.UINT32, [CHANNELS])
    noise = g.tensor("noise_estimate", T.UINT32, [CHANNELS])
    smoothing = round(0.04 * (1 << SPECTRAL_SUBTRACTION_BITS))
    g.op("SignalFilterBankSpectralSubtraction", [roots], [cleaned, noise], {
        "alternate_one_minus_smoothing": (1 << SPECTRAL_SUBTRACTION_BITS) - smoothing,
        "alternate_smoothing": smoothing,
        "clamping": False,
        "min_signal_remaining": round(0.05 * (1 << SPECTRAL_SUBTRACTION_BITS)),
        "num_channels": CHANNELS,
        "one_minus_smoothing": (1 << SPECTRAL_SUBTRACTION_BITS) - smoothing,
        "smoothing": smoothing,
        "smoothing_bits": SMOOTHING_BITS,
        "spectral_subtraction_bits": SPECTRAL_SUBTRACTION_BITS,
    })
    gained = g.tensor("gained", T.UINT32, [CHANNELS])
    g.op("SignalPCAN", [cleaned, noise, g.const16("gain_lut", pcan_gain_lut())], [gained],
         {"snr_shift": PCAN_GAIN_BITS - INPUT_CORRECTION_BITS - PCAN_SNR_BITS})
    logs = g.tensor("log_channels", T.INT16, [CHANNELS])
    g.op("SignalFilterBankLog", [gained], [logs],
         {"input_correction_bits": INPUT_CORRECTION_BITS, "output_scale": 1 << PCAN_OUTPUT_BITS})
    features = g.tensor("features", T.INT16, [CHANNELS * (STACK_LEFT + 1)])
    g.op("SignalStacker", [logs], [features, g.tensor("features_valid", T.BOOL, [])], {
        "num_channels": CHANNELS, "stacker_left_context": STACK_LEFT, "stacker_right_context": 0,
        "stacker_step": 1})

    # the streaming chain
    delayed = g.tensor("delayed", T.INT16, [FRAME])
    g.op("SignalDelay", [audio], [delayed], {"delay_length": DELAY})
    n_frames = FRAME // SUB_STEP
    frames = g.tensor("frames", T.INT16, [n_frames, SUB_FRAME])
    g.op("SignalFramer", [delayed], [frames, g.tensor("frames_valid", T.BOOL, [])],
         {"frame_size": SUB_FRAME, "frame_step": SUB_STEP, "prefill": True})
    frame_spectra = g.tensor("frame_spectra", T.INT16, [n_frames, SUB_FRAME + 2])
    g.op("SignalRfft", [frames], [frame_spectra], {"T": T.INT16, "fft_length": SUB_FRAME})
    frames_back = g.tensor("frames_back", T.INT16, [n_frames, SUB_FRAME])
    g.op("SignalIrfft", [frame_spectra], [frames_back], {"T": T.INT16, "fft_length": SUB_FRAME})
    resynth = g.tensor("resynth", T.INT16, [FRAME])
    g.op("SignalOverlapAdd", [frames_back], [resynth], {"T": T.INT16, "frame_step": SUB_STEP})

    return g.model([audio], [features, resynth], "tinyfarm tests/data: TFLM signal-library operators")
