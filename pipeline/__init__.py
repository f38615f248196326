"""Compression pipeline stages on TF 2 + tf-keras + TF-MOT: baseline, prune, QAT, PTQ, distill,
export, evaluate, TFLM check, report. Each stage is usable alone and chained by a config file.

From the command line: ``tinyfarm run [CONFIG] --out DIR`` (``configs/digits.yaml`` is the default).
From Python, the whole chain or any stage alone::

    from pipeline.config import load_config
    from pipeline.stages import run_pipeline
    run_pipeline(load_config("configs/mnist1d.yaml"), "runs/mnist1d")

    from tinyfarm_datasets import load_dataset
    from pipeline.keras_models import build_cnn               # stage 1
    from pipeline.train import fit_classifier
    from pipeline.prune import prune_model                    # stage 2
    from pipeline.quantize import quantization_aware_training # stage 3
    from pipeline.export import convert, write_c_array        # stage 4
    from pipeline.evaluate import evaluate_tflite             # stage 5
    from pipeline.tflm_check import check_model               # stage 6

    data = load_dataset("digits")
    model = build_cnn(data.input_shape, data.num_classes, width=32, depth=2, dense_units=128)
    fit_classifier(model, data, epochs=30, batch_size=32, learning_rate=3e-3, label="baseline")
    pruned, info = prune_model(model, data, target_sparsity=0.8, epochs=12)
    qat, _ = quantization_aware_training(pruned, data, preserve_sparsity=True, epochs=5)
    int8 = convert(qat, "int8", data.x_train[:200])
    metrics, inputs, outputs = evaluate_tflite(int8, data.x_test, data.y_test)
    print(metrics.accuracy, metrics.sparsity, check_model(int8, inputs, outputs).as_dict())

The stages and their order: ``pipeline/stages.py`` (how to add one is written there); what a stage
sees: ``pipeline/run_context.py``; how they are chained and cached: ``pipeline/stage_runner.py``.
"""
