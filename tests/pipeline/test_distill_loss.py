"""The distillation loss against values computed by hand (NumPy and closed form), small batches."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.distill import distillation_loss


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _by_hand(y, s, t, T, alpha):
    """Per-sample alpha * CE + (1 - alpha) * T^2 * KL(p_t || p_s), written out in NumPy."""
    ce = -np.log(_softmax(s)[np.arange(len(y)), y])
    p_t, p_s = _softmax(t / T), _softmax(s / T)
    kl = np.sum(p_t * (np.log(p_t) - np.log(p_s)), axis=-1)
    return alpha * ce + (1 - alpha) * T * T * kl, ce, kl


BATCH_Y = np.array([0, 2, 1])
BATCH_S = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3], [-1.5, 3.0, 0.0]], np.float32)
BATCH_T = np.array([[4.0, 1.0, -2.0], [-1.0, 0.5, 2.5], [0.0, 1.0, 1.0]], np.float32)


@pytest.mark.parametrize("temperature", [1.0, 2.0, 5.0])
@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
def test_loss_matches_numpy(temperature, alpha):
    total, hard, soft = (np.asarray(v) for v in distillation_loss(BATCH_Y, BATCH_S, BATCH_T, temperature, alpha))
    want_total, want_ce, want_kl = _by_hand(BATCH_Y, BATCH_S.astype(np.float64), BATCH_T.astype(np.float64),
                                           temperature, alpha)
    np.testing.assert_allclose(hard, want_ce, rtol=1e-5)
    np.testing.assert_allclose(soft, want_kl, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(total, want_total, rtol=1e-4, atol=1e-7)


def test_closed_form_two_classes():
    """Teacher p = (3/4, 1/4), student p = (1/2, 1/2), label 0: every term has a closed form."""
    y = np.array([0])
    s = np.array([[0.0, 0.0]], np.float32)
    t = np.array([[np.log(3.0), 0.0]], np.float32)
    ce = np.log(2.0)                                             # 0.693147
    kl_t1 = 0.75 * np.log(1.5) + 0.25 * np.log(0.5)              # 0.130812
    p = np.sqrt(3) / (np.sqrt(3) + 1)                            # softmax([ln3/2, 0])[0]
    kl_t2 = p * np.log(2 * p) + (1 - p) * np.log(2 * (1 - p))    # 0.036341
    assert kl_t1 == pytest.approx(0.130812, abs=1e-6) and kl_t2 == pytest.approx(0.036341, abs=1e-6)

    total, hard, soft = distillation_loss(y, s, t, 1.0, 1.0)     # alpha = 1: hard labels only
    assert float(total[0]) == pytest.approx(ce, rel=1e-6)
    total, _, _ = distillation_loss(y, s, t, 1.0, 0.0)           # alpha = 0, T = 1: KL only
    assert float(total[0]) == pytest.approx(kl_t1, rel=1e-5)
    total, _, soft = distillation_loss(y, s, t, 2.0, 0.0)        # alpha = 0, T = 2: T^2 * KL
    assert float(soft[0]) == pytest.approx(kl_t2, rel=1e-5)
    assert float(total[0]) == pytest.approx(4 * kl_t2, rel=1e-5)
    total, _, _ = distillation_loss(y, s, t, 2.0, 0.25)          # a mix
    assert float(total[0]) == pytest.approx(0.25 * ce + 0.75 * 4 * kl_t2, rel=1e-5)


def test_alpha_one_ignores_teacher_and_alpha_zero_ignores_labels():
    a, _, _ = distillation_loss(BATCH_Y, BATCH_S, BATCH_T, 3.0, 1.0)
    b, _, _ = distillation_loss(BATCH_Y, BATCH_S, -BATCH_T, 3.0, 1.0)
    np.testing.assert_allclose(a, b)
    c, _, _ = distillation_loss(BATCH_Y, BATCH_S, BATCH_T, 3.0, 0.0)
    d, _, _ = distillation_loss((BATCH_Y + 1) % 3, BATCH_S, BATCH_T, 3.0, 0.0)
    np.testing.assert_allclose(c, d)


def test_student_equal_to_teacher_has_zero_soft_loss():
    _, _, soft = distillation_loss(BATCH_Y, BATCH_T, BATCH_T, 4.0, 0.5)
    np.testing.assert_allclose(soft, 0.0, atol=1e-6)


def test_one_hot_labels_equal_sparse_labels():
    one_hot = np.eye(3, dtype=np.float32)[BATCH_Y]
    sparse, _, _ = distillation_loss(BATCH_Y, BATCH_S, BATCH_T, 2.0, 0.4)
    dense, _, _ = distillation_loss(one_hot, BATCH_S, BATCH_T, 2.0, 0.4)
    np.testing.assert_allclose(sparse, dense, rtol=1e-6)
