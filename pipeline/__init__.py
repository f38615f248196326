"""Compression pipeline stages on TF 2 + tf-keras + TF-MOT: baseline, prune, QAT, PTQ, distill,
export, evaluate, TFLM check, report. Each stage is usable alone and chained by a config file."""
