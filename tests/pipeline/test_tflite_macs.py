"""op_costs / total_macs: hand-computed MACs from the flatbuffer, unknown ops named, never a crash."""

from __future__ import annotations

import pytest

from tinyfarm.errors import ModelError
from tinyfarm.tflite_macs import OpCost, op_costs, total_macs


def _convert_function(fn, *specs) -> bytes:
    from pipeline.keras_env import tf

    concrete = tf.function(fn).get_concrete_function(*specs)
    return bytes(tf.lite.TFLiteConverter.from_concrete_functions([concrete]).convert())


def _convert_keras(model) -> bytes:
    from pipeline.export import convert

    return convert(model, "float32")


def _edit(data: bytes, change) -> bytes:
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    m = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    change(m, schema)
    builder = flatbuffers.Builder(1024)
    builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


@pytest.fixture(scope="module")
def conv_dense() -> bytes:
    from pipeline.keras_env import keras

    inp = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inp)                   # 6x6x4
    x = keras.layers.DepthwiseConv2D(3, padding="same")(x)                  # 6x6x4
    x = keras.layers.Conv2D(8, 3, groups=2)(x)                              # 4x4x8, 2 in ch/group
    x = keras.layers.MaxPooling2D(2)(x)                                     # 2x2x8
    x = keras.layers.Flatten()(x)                                           # 32
    x = keras.layers.Dense(5)(x)
    out = keras.layers.Softmax()(x)
    return _convert_keras(keras.Model(inp, out))


def test_hand_computed_macs_of_a_conv_dense_model(conv_dense):
    costs = op_costs(conv_dense)
    assert [c.index for c in costs] == list(range(len(costs)))
    expected = [
        ("CONV_2D", 6 * 6 * 4 * 3 * 3 * 1),
        ("DEPTHWISE_CONV_2D", 6 * 6 * 4 * 3 * 3),
        ("CONV_2D", 4 * 4 * 8 * 3 * 3 * (4 // 2)),     # in_c / groups
        ("MAX_POOL_2D", 2 * 2 * 8 * 2 * 2),             # window MACs
        ("RESHAPE", 0),
        ("FULLY_CONNECTED", 32 * 5),
        ("SOFTMAX", 5),                                 # one per output element
    ]
    assert [(c.op, c.macs) for c in costs] == expected
    assert all(c.known for c in costs)
    assert total_macs(conv_dense) == sum(m for _, m in expected) == 5189


def test_transpose_conv_and_batch_matmul():
    from pipeline.keras_env import keras, tf

    inp = keras.Input((4, 4, 2))
    up = keras.layers.Conv2DTranspose(3, 3, strides=2, padding="same", use_bias=False)(inp)
    costs = op_costs(_convert_keras(keras.Model(inp, up)))
    assert [(c.op, c.macs) for c in costs] == [("TRANSPOSE_CONV", 4 * 4 * 2 * 3 * 3 * 3)]

    bmm = _convert_function(lambda a, b: tf.matmul(a, b), tf.TensorSpec([2, 3, 5], tf.float32),
                            tf.TensorSpec([2, 5, 4], tf.float32))
    assert [(c.op, c.macs) for c in op_costs(bmm)] == [("BATCH_MATMUL", 2 * 3 * 4 * 5)]
    bmm_t = _convert_function(lambda a, b: tf.matmul(a, b, transpose_a=True),
                              tf.TensorSpec([2, 5, 3], tf.float32), tf.TensorSpec([2, 5, 4], tf.float32))
    assert [c.macs for c in op_costs(bmm_t) if c.op == "BATCH_MATMUL"] == [2 * 3 * 4 * 5]


def test_unknown_ops_are_named_not_fatal(conv_dense):
    from pipeline.keras_env import tf

    cumsum = _convert_function(lambda x: tf.sin(tf.math.cumsum(x, axis=1)),
                               tf.TensorSpec([1, 16], tf.float32))
    costs = op_costs(cumsum)
    assert OpCost(0, "CUMSUM", 0, False) in costs
    assert OpCost(1, "SIN", 16, True) in costs
    assert total_macs(cumsum) == 16

    def make_custom(m, schema):  # the depthwise conv becomes a custom op nobody knows
        code = m.operatorCodes[m.subgraphs[0].operators[1].opcodeIndex]
        code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
        code.customCode = b"MyVendorOp"

    costs = op_costs(_edit(conv_dense, make_custom))
    assert costs[1] == OpCost(1, "CUSTOM:MyVendorOp", 0, False)
    assert costs[0].known and costs[0].macs == 6 * 6 * 4 * 9

    def drop_filter(m, schema):  # a dense layer without its filter: unknown, not an IndexError
        m.subgraphs[0].operators[5].inputs[1] = -1

    costs = op_costs(_edit(conv_dense, drop_filter))
    assert costs[5] == OpCost(5, "FULLY_CONNECTED", 0, False)


def test_third_party_models(shared_models):
    expected = {"hello_world_int8.tflite": 16 + 16 * 16 + 16,   # three dense layers 1-16-16-1
                "hello_world_float.tflite": 16 + 16 * 16 + 16,
                # depthwise 10x8 filter, x8 channels on a 25x20 output; dense 4000 -> 4; softmax
                "micro_speech_quantized.tflite": 25 * 20 * 8 * 10 * 8 + 4000 * 4 + 4}
    found = 0
    for path in sorted(shared_models.glob("*.tflite")):
        costs = op_costs(path.read_bytes())  # never raises, whatever the ops
        assert [c.index for c in costs] == list(range(len(costs)))
        if path.name in expected:
            found += 1
            assert total_macs(path.read_bytes()) == expected[path.name]
            assert all(c.known for c in costs)
    if not found:
        pytest.skip("none of the known third-party models present")


def test_not_a_model():
    with pytest.raises(ModelError):
        op_costs(b"definitely not a flatbuffer")
