"""Knowledge distillation on tf-keras: a small student learns from a large teacher's soft outputs.

Why a hand-written trainer: Keras 3's ``Distiller`` cannot wrap TF-MOT models, and the student must
stay a plain tf-keras model so it can be pruned, quantization-aware trained and exported afterwards.

Conventions (explicit, because mixing them silently breaks the loss):

* Both networks are used as **logits** models.  A model whose last layer applies softmax (a
  ``Dense(..., activation="softmax")``, a ``Softmax`` layer or ``Activation("softmax")``) is
  rewritten by :func:`as_logits_model` to return the pre-softmax values (same weights). A model
  whose outputs are probabilities for any other reason is refused with a :class:`ModelError`:
  ``log(p)`` is only logits up to a constant, which is fine for the KL term but hides the mistake.
* Labels are integer class ids (sparse); one-hot labels are accepted too (detected by rank).
* Offline mode stores the teacher's **logits** (not probabilities), so any temperature can be
  applied later without recomputing them; see :mod:`pipeline.distill_cache`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.keras_env import keras, tf
from tinyfarm.errors import ModelError

#: Key of the teacher's logits in the ``y`` dict of offline-mode data: ``fit(x, {LABELS: y,
#: TEACHER_LOGITS: t})``.
LABELS = "labels"
TEACHER_LOGITS = "teacher_logits"


def distillation_loss(
    labels: tf.Tensor,
    student_logits: tf.Tensor,
    teacher_logits: tf.Tensor,
    temperature: float,
    alpha: float,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Per-sample ``(total, hard, soft)`` losses (Hinton et al., 2015).

    ``total = alpha * CE(labels, softmax(s)) + (1 - alpha) * T**2 * KL(softmax(t/T) || softmax(s/T))``.
    The ``T**2`` keeps the soft term's gradient scale independent of ``T``. ``hard`` is the
    cross-entropy, ``soft`` the (unscaled) KL divergence; all three have shape ``[batch]``.
    """
    labels = tf.convert_to_tensor(labels)
    student_logits = tf.cast(student_logits, tf.float32)
    teacher_logits = tf.cast(teacher_logits, tf.float32)
    t = tf.cast(temperature, tf.float32)
    if labels.shape.rank == student_logits.shape.rank and labels.shape[-1] == student_logits.shape[-1]:
        hard = keras.losses.categorical_crossentropy(labels, student_logits, from_logits=True)
    else:
        labels = tf.reshape(tf.cast(labels, tf.int32), [-1])
        hard = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=student_logits)
    log_p_teacher = tf.nn.log_softmax(teacher_logits / t, axis=-1)
    log_p_student = tf.nn.log_softmax(student_logits / t, axis=-1)
    soft = tf.reduce_sum(tf.exp(log_p_teacher) * (log_p_teacher - log_p_student), axis=-1)
    total = alpha * hard + (1.0 - alpha) * t * t * soft
    return total, hard, soft


_SOFTMAX_NAMES = ("softmax",)


def _is_softmax_activation(activation: Any) -> bool:
    return getattr(activation, "__name__", str(activation)) in _SOFTMAX_NAMES


def as_logits_model(model: keras.Model, probe: np.ndarray | None = None) -> keras.Model:
    """Return ``model`` if it outputs logits, else the model without its final softmax.

    When the softmax is a layer of its own (``Softmax``, ``Activation("softmax")``, also inside a
    TF-MOT QAT wrapper) the result is a *view* sharing the weights — training it trains ``model``
    (used to fine-tune pruned and QAT students by distillation). A ``Dense(activation="softmax")``
    is cloned with a linear activation and the weights copied. ``probe`` (a few inputs) catches
    models that output probabilities without a recognisable final softmax; those are refused.
    """
    if len(model.outputs) != 1:
        raise ModelError(f"model {model.name!r} has {len(model.outputs)} outputs; distillation needs one")
    # The layer that made the output *in this model's graph* (a layer shared with another model,
    # as clone_model(..., clone_function) leaves them, has several inbound nodes).
    last, node_index, _ = model.outputs[0]._keras_history
    inner = getattr(last, "layer", last)  # a TF-MOT QuantizeWrapper around a Softmax layer counts too
    converted = None
    if isinstance(inner, keras.layers.Softmax) or (
        isinstance(inner, keras.layers.Activation) and _is_softmax_activation(inner.activation)
    ):
        pre_softmax = last._inbound_nodes[node_index].input_tensors
        converted = keras.Model(model.inputs, pre_softmax, name=f"{model.name}_logits")
    elif _is_softmax_activation(getattr(last, "activation", None)):
        def clone(layer: keras.layers.Layer) -> keras.layers.Layer:
            config = layer.get_config()
            if layer is last:
                config["activation"] = "linear"
            return layer.__class__.from_config(config)

        converted = keras.models.clone_model(model, clone_function=clone)
        converted.set_weights(model.get_weights())
    result = converted if converted is not None else model
    if probe is not None and converted is None:
        out = np.asarray(result(probe[:16], training=False))
        if out.ndim == 2 and out.shape[1] > 1 and np.all(out >= 0) and np.allclose(out.sum(axis=1), 1.0, atol=1e-4):
            raise ModelError(
                f"model {model.name!r} outputs probabilities but its last layer is not a softmax "
                "tinyfarm can remove; make the model output logits"
            )
    return result


def as_probability_model(model: keras.Model) -> keras.Model:
    """The inverse of :func:`as_logits_model`: the same model (shared weights) ending in a Softmax layer.

    The pipeline's CNNs end in a separate ``Softmax`` layer (export can cut it off, pruning and QAT
    handle it), so the distilled student is handed to the other stages in that same form.
    """
    outputs = keras.layers.Softmax(name="softmax")(model.outputs[0])
    return keras.Model(model.inputs, outputs, name=model.name)


def count_params(model: keras.Model) -> int:
    """Keras parameter count: trainable + non-trainable (BatchNorm statistics included)."""
    return int(model.count_params())


class Distiller(keras.Model):
    """Trains ``student`` on hard labels and a frozen ``teacher``'s softened outputs.

    Online mode: pass ``teacher`` and feed ``fit(x, y)`` as usual; the teacher runs inside every
    step. Offline mode: pass ``teacher=None`` and feed ``fit(x, {"labels": y, "teacher_logits": t})``
    with logits precomputed once (:func:`pipeline.distill_cache.teacher_logits`). Validation data
    has the same form, so ``val_loss`` is the same distillation loss; ``accuracy`` is the student's.
    Works with callbacks and ``EarlyStopping`` (monitor ``val_loss`` or ``val_accuracy``). After
    training use :attr:`student`, a plain tf-keras model (logits out) ready for pruning/QAT/export.
    """

    def __init__(
        self,
        student: keras.Model,
        teacher: keras.Model | None = None,
        temperature: float = 4.0,
        alpha: float = 0.1,
        mixup: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if mixup < 0:
            raise ValueError(f"mixup must be >= 0, got {mixup}")
        if mixup > 0 and teacher is None and alpha < 1.0:
            raise ValueError("mixup needs the teacher online: it must score the mixed inputs")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        self.student = student
        self.teacher = teacher
        if teacher is not None:
            teacher.trainable = False
            if teacher.outputs[0].shape[-1] != student.outputs[0].shape[-1]:
                raise ModelError(
                    f"teacher outputs {teacher.outputs[0].shape[-1]} classes, student "
                    f"{student.outputs[0].shape[-1]}; they must match"
                )
        self.temperature = float(temperature)
        self.alpha = float(alpha)
        self.mixup = float(mixup)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.hard_tracker = keras.metrics.Mean(name="student_loss")
        self.soft_tracker = keras.metrics.Mean(name="distillation_loss")
        self.accuracy_tracker = keras.metrics.SparseCategoricalAccuracy(name="accuracy")

    @property
    def metrics(self) -> list[keras.metrics.Metric]:
        return [self.loss_tracker, self.hard_tracker, self.soft_tracker, self.accuracy_tracker]

    def call(self, inputs: tf.Tensor, training: bool = False) -> tf.Tensor:
        return self.student(inputs, training=training)

    def _split_targets(self, x: tf.Tensor, y: Any) -> tuple[tf.Tensor, tf.Tensor]:
        if isinstance(y, dict):
            if TEACHER_LOGITS not in y or LABELS not in y:
                raise ValueError(f"offline targets must be a dict with {LABELS!r} and {TEACHER_LOGITS!r}")
            return y[LABELS], y[TEACHER_LOGITS]
        if self.teacher is None:
            raise ValueError(
                "offline distillation needs targets {'labels': y, 'teacher_logits': t} "
                "(no teacher model to run online)"
            )
        return y, self.teacher(x, training=False)

    def _step_losses(self, x: tf.Tensor, y: Any, sample_weight: Any, training: bool):
        labels, teacher_logits = self._split_targets(x, y)
        student_logits = self.student(x, training=training)
        total, hard, soft = distillation_loss(
            labels, student_logits, teacher_logits, self.temperature, self.alpha
        )
        if sample_weight is not None:
            sample_weight = tf.reshape(tf.cast(sample_weight, tf.float32), [-1])
            loss = tf.reduce_sum(total * sample_weight) / tf.maximum(tf.reduce_sum(sample_weight), 1e-12)
        else:
            loss = tf.reduce_mean(total)
        return loss, hard, soft, labels, student_logits, sample_weight

    def _update_metrics(self, loss, hard, soft, labels, student_logits, sample_weight) -> dict[str, tf.Tensor]:
        self.loss_tracker.update_state(loss)
        self.hard_tracker.update_state(hard, sample_weight=sample_weight)
        self.soft_tracker.update_state(soft, sample_weight=sample_weight)
        if labels.shape.rank == student_logits.shape.rank and labels.shape[-1] == student_logits.shape[-1]:
            labels = tf.argmax(labels, axis=-1)
        self.accuracy_tracker.update_state(labels, student_logits, sample_weight=sample_weight)
        return {m.name: m.result() for m in self.metrics}

    def _mix(self, x: tf.Tensor, y: Any) -> tuple[tf.Tensor, Any]:
        """Mixup (Zhang et al., 2018) of each sample with another of the batch, lambda ~ Beta(a, a).

        The hard labels are mixed the same way (one-hot); the online teacher scores the *mixed*
        inputs ("function matching", Beyer et al., 2022), so it teaches on points between samples.
        """
        batch = tf.shape(x)[0]
        a = tf.constant(self.mixup, tf.float32)
        g1 = tf.random.gamma([batch], a)
        g2 = tf.random.gamma([batch], a)
        lam = g1 / (g1 + g2)
        perm = tf.random.shuffle(tf.range(batch))
        shape = tf.concat([[batch], tf.ones([tf.rank(x) - 1], tf.int32)], axis=0)
        x = tf.cast(x, tf.float32)
        x_mixed = tf.reshape(lam, shape) * x + tf.reshape(1.0 - lam, shape) * tf.gather(x, perm)
        labels = y[LABELS] if isinstance(y, dict) else y
        k = self.student.outputs[0].shape[-1]
        if labels.shape.rank == 2 and labels.shape[-1] == k:
            one_hot = tf.cast(labels, tf.float32)
        else:
            one_hot = tf.one_hot(tf.reshape(tf.cast(labels, tf.int32), [-1]), k)
        lam = lam[:, None]
        mixed = lam * one_hot + (1.0 - lam) * tf.gather(one_hot, perm)
        if isinstance(y, dict):  # offline, alpha == 1: the stored logits are not used
            return x_mixed, {**y, LABELS: mixed}
        return x_mixed, mixed

    def train_step(self, data: Any) -> dict[str, tf.Tensor]:
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        if self.mixup > 0:
            x, y = self._mix(x, y)
        with tf.GradientTape() as tape:
            loss, hard, soft, labels, logits, sample_weight = self._step_losses(x, y, sample_weight, True)
            # Regularisation losses of the student (e.g. L2 on kernels) belong to the objective.
            if self.student.losses:
                loss += tf.add_n(self.student.losses)
        variables = self.student.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return self._update_metrics(loss, hard, soft, labels, logits, sample_weight)

    def test_step(self, data: Any) -> dict[str, tf.Tensor]:
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        loss, hard, soft, labels, logits, sample_weight = self._step_losses(x, y, sample_weight, False)
        return self._update_metrics(loss, hard, soft, labels, logits, sample_weight)

    def get_config(self) -> dict[str, Any]:
        # Distiller is a training harness, not an artifact: save ``distiller.student`` instead.
        return {"temperature": self.temperature, "alpha": self.alpha}


def fit_distiller(
    student: keras.Model,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    *,
    teacher: keras.Model | None = None,
    teacher_train: np.ndarray | None = None,
    teacher_val: np.ndarray | None = None,
    temperature: float,
    alpha: float,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    early_stopping_patience: int | None = None,
    monitor: str = "val_accuracy",
    mixup: float = 0.0,
    callbacks: list[keras.callbacks.Callback] | tuple = (),
    label: str = "distill",
) -> tuple[Distiller, dict[str, list[float]]]:
    """Train a logits ``student`` by distillation with the pipeline's optimizer (Adam, cosine decay).

    Online: give ``teacher``. Offline: give ``teacher_train`` / ``teacher_val`` logits (and no
    teacher). ``alpha=1`` is plain cross-entropy training: the "from scratch" baseline runs through
    exactly the same loop — :func:`pipeline.train.fit_classifier`'s, given the distiller's ``fit``.
    Early stopping restores the best epoch by ``monitor``. ``mixup`` > 0 mixes training inputs (and
    labels) with ``Beta(mixup, mixup)`` weights; distilling with it needs the teacher online.
    """
    from pipeline.train import TrainArrays, fit_classifier, make_optimizer, steps_per_epoch

    offline = teacher is None
    if offline and (teacher_train is None or (len(x_val) and teacher_val is None)) and alpha < 1.0:
        raise ValueError("offline distillation needs teacher logits for train and val")
    distiller = Distiller(student, teacher, temperature=temperature, alpha=alpha, mixup=mixup)
    distiller.compile(optimizer=make_optimizer(learning_rate, epochs * steps_per_epoch(len(x_train), batch_size)))

    def targets(y: np.ndarray, logits: np.ndarray | None) -> Any:
        if not offline:
            return y
        if logits is None:  # alpha == 1: the soft term is multiplied by 0; any finite logits do
            logits = np.zeros((len(y), student.outputs[0].shape[-1]), np.float32)
        return {LABELS: y, TEACHER_LOGITS: logits}

    # The pipeline's training loop (callbacks, early stopping, progress) with the distiller's fit.
    arrays = TrainArrays(x_train, targets(y_train, teacher_train), x_val, targets(y_val, teacher_val))
    history = fit_classifier(distiller, arrays, epochs=epochs, batch_size=batch_size,
                             learning_rate=learning_rate, label=label,
                             early_stopping_patience=early_stopping_patience, callbacks=callbacks,
                             compile=False, monitor=monitor, fit=distiller.fit)
    return distiller, history
