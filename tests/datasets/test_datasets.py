"""The data sets: built-in splits as specified, user .npz validated, validation carved from train."""

from __future__ import annotations

import numpy as np
import pytest

from tinyfarm.errors import DataError
from tinyfarm_datasets import Splits, list_datasets, load_dataset


def test_digits_split_is_the_specified_one():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    s = load_dataset("digits", val_fraction=0.1, seed=0)
    assert isinstance(s, Splits) and s.name == "digits"
    assert s.input_shape == (8, 8, 1) and s.num_classes == 10
    assert s.x_train.shape[1:] == (8, 8, 1) and s.x_train.dtype == np.float32
    assert len(s.x_test) == 450 and len(s.x_train) + len(s.x_val) == 1347
    assert 0.0 <= s.x_train.min() and s.x_train.max() <= 1.0 and s.x_train.max() == 1.0
    d = load_digits()
    _, x_te, _, y_te = train_test_split(d.images / 16.0, d.target, test_size=0.25, random_state=0,
                                        stratify=d.target)
    np.testing.assert_allclose(s.x_test[..., 0], x_te, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(s.y_test, y_te)


def test_validation_comes_from_train_never_test():
    from collections import Counter

    s = load_dataset("digits", val_fraction=0.2, seed=3)
    s0 = load_dataset("digits", val_fraction=0.0)
    assert len(s.x_val) == round(1347 * 0.2) and len(s0.x_val) == 0 and len(s0.x_train) == 1347
    # train + val of the split is exactly the original train split (as a multiset of rows) ...
    original = Counter(r.tobytes() for r in s0.x_train)
    carved = Counter(r.tobytes() for r in np.concatenate([s.x_train, s.x_val]))
    assert carved == original
    # ... and the test split is untouched by val_fraction.
    np.testing.assert_array_equal(s0.x_test, s.x_test)
    assert np.bincount(s.y_val).min() >= 25  # stratified: every class present in proportion


def test_split_is_deterministic_per_seed():
    a, b = load_dataset("digits", seed=1), load_dataset("digits", seed=1)
    np.testing.assert_array_equal(a.y_val, b.y_val)
    c = load_dataset("digits", seed=2)
    assert not np.array_equal(a.y_val, c.y_val)


def test_mnist1d_uses_its_own_split():
    s = load_dataset("mnist1d", val_fraction=0.1)
    assert s.input_shape == (40, 1) and s.num_classes == 10
    assert s.x_train.shape == (3600, 40, 1) and s.x_val.shape == (400, 40, 1)
    assert s.x_test.shape == (1000, 40, 1)
    assert set(np.unique(s.y_test)) == set(range(10))


def test_list_datasets_describes_the_builtins():
    names = list_datasets()
    assert set(names) >= {"digits", "mnist1d"}
    assert all(isinstance(d, str) and d for d in names.values())


def test_unknown_name_is_a_one_line_error():
    with pytest.raises(DataError, match="unknown data set 'nope'") as err:
        load_dataset("nope")
    assert "\n" not in str(err.value)


def _npz(tmp_path, **arrays):
    path = tmp_path / "data.npz"
    np.savez(path, **arrays)
    return path


def _good(n=40, m=12, shape=(6,)):
    rng = np.random.default_rng(0)
    return dict(x_train=rng.normal(size=(n, *shape)), y_train=np.arange(n) % 3,
                x_test=rng.normal(size=(m, *shape)), y_test=np.arange(m) % 3)


def test_user_npz_loads(tmp_path):
    s = load_dataset("mine", path=_npz(tmp_path, **_good()), val_fraction=0.25)
    assert s.input_shape == (6,) and s.num_classes == 3
    assert len(s.x_train) == 30 and len(s.x_val) == 10 and len(s.x_test) == 12
    assert s.x_train.dtype == np.float32 and s.y_train.dtype == np.int64
    # a path given as the name works too
    assert load_dataset(str(tmp_path / "data.npz")).name == "data"


@pytest.mark.parametrize("mutate, message", [
    (lambda a: a.pop("y_test"), "missing key(s) y_test"),
    (lambda a: a.update(y_train=a["y_train"][:-1]), "x_train has 40 samples but y_train has 39"),
    (lambda a: a.update(x_test=np.zeros((12, 7))), "x_train samples have shape (6,) but x_test samples have (7,)"),
    (lambda a: a.update(y_train=np.zeros((40, 2), dtype=int)), "y_train must be class indices"),
    (lambda a: a.update(y_test=np.full(12, 0.5)), "y_test must hold integer class indices"),
    (lambda a: a.update(x_train=np.full((40, 6), np.nan)), "x_train contains NaN"),
])
def test_bad_npz_is_a_one_line_error(tmp_path, mutate, message):
    arrays = _good()
    mutate(arrays)
    with pytest.raises(DataError) as err:
        load_dataset("mine", path=_npz(tmp_path, **arrays))
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_not_an_npz_and_missing_file(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip at all")
    with pytest.raises(DataError, match="cannot read"):
        load_dataset("x", path=bad)
    with pytest.raises(DataError, match="not found"):
        load_dataset("x", path=tmp_path / "absent.npz")


def test_subset_keeps_shapes():
    s = load_dataset("digits").subset(train=100, test=50)
    assert len(s.x_train) == 100 and len(s.x_test) == 50 and 1 <= len(s.x_val) <= 100
