"""Data sets, splits, the Fashion-MNIST cache contract, models and devices."""
import json

import numpy as np
import pytest
import torch

import grlib
from grlib.data import DataNotAvailableError, load_dataset


def test_digits_default_split_and_standardised():
    d = load_dataset("digits")
    assert d.num_classes == 10 and d.image_shape == (1, 8, 8)
    assert len(d.y_train) + len(d.y_test) == 1797
    assert len(d.y_test) == pytest.approx(0.25 * 1797, abs=1)
    np.testing.assert_allclose(d.x_train.mean(0), 0.0, atol=1e-5)
    nonconst = d.x_train.std(0) > 0
    np.testing.assert_allclose(d.x_train.std(0)[nonconst], 1.0, atol=1e-4)
    # stratified: each class's test count is within 1 of its proportional share
    from sklearn.datasets import load_digits

    full = np.bincount(load_digits().target, minlength=10)
    counts = np.bincount(d.y_test, minlength=10)
    assert np.all(np.abs(counts - 0.25 * full) <= 1)


def test_splits_are_seeded_and_val_is_held_out():
    a = load_dataset("digits", val_fraction=0.2, split_seed=1)
    b = load_dataset("digits", val_fraction=0.2, split_seed=1)
    c = load_dataset("digits", val_fraction=0.2, split_seed=2)
    np.testing.assert_array_equal(a.y_val, b.y_val)
    assert not np.array_equal(a.x_val, c.x_val)
    assert len(a.y_val) == pytest.approx(0.2 * (len(a.y_train) + len(a.y_val)), abs=1)


def test_moons_and_subset():
    m = load_dataset("moons", n_train=300)
    assert m.num_features == 2 and m.num_classes == 2 and len(m.y_train) == 300


def test_unknown_dataset_and_bad_args():
    with pytest.raises(ValueError, match=r"dataset name='cifar' is unknown; valid names: digits, moons, fashion_mnist"):
        load_dataset("cifar")
    with pytest.raises(ValueError, match=r"val_fraction=1.0 is outside the allowed range"):
        load_dataset("digits", val_fraction=1.0)
    with pytest.raises(ValueError, match=r"n_train=0 is too small"):
        load_dataset("digits", n_train=0)


def test_fashion_mnist_missing_cache_says_how(tmp_path, monkeypatch):
    monkeypatch.setenv("GRLIB_DATA_DIR", str(tmp_path))
    with pytest.raises(DataNotAvailableError, match=r"make data.*grlib data fetch.*digits"):
        load_dataset("fashion_mnist")


def test_fashion_mnist_corrupt_cache_detected(tmp_path, monkeypatch):
    monkeypatch.setenv("GRLIB_DATA_DIR", str(tmp_path))
    np.savez_compressed(tmp_path / "fashion_mnist.npz", x_train=np.zeros((2, 784), np.uint8))
    (tmp_path / "fashion_mnist.json").write_text(json.dumps({"sha256": "0" * 64}))
    with pytest.raises(DataNotAvailableError, match=r"corrupt"):
        load_dataset("fashion_mnist")


@pytest.mark.skipif(not (grlib.data_dir() / "fashion_mnist.npz").is_file(), reason="Fashion-MNIST cache not built "
                    "(make data)")
def test_fashion_mnist_cached():
    d = load_dataset("fashion_mnist", n_train=2000)
    assert d.image_shape == (1, 28, 28) and len(d.y_test) == 10000 and len(d.y_train) == 2000
    assert np.bincount(d.y_test).tolist() == [1000] * 10


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_models_forward(name):
    d = load_dataset("digits")
    m = grlib.get_model(name, in_features=d.num_features, num_classes=10, image_shape=d.image_shape)
    out = m(torch.as_tensor(d.x_train[:5]))
    assert out.shape == (5, 10)


def test_model_and_device_errors():
    with pytest.raises(ValueError, match=r"model name='resnet' is unknown; valid names: mlp, cnn"):
        grlib.get_model("resnet", in_features=4, num_classes=2)
    with pytest.raises(ValueError, match=r"needs an image data set"):
        grlib.get_model("cnn", in_features=2, num_classes=2, image_shape=None)
    assert grlib.resolve_device("cpu").type == "cpu"
    assert grlib.resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"CUDA is not available"):
            grlib.resolve_device("cuda")
    with pytest.raises(ValueError, match=r"not a valid torch device"):
        grlib.resolve_device("tpu9")
