"""Outliers and corrupted inputs: exact counts, exact masks, untouched rows bit-identical, seeds,
out-of-distribution-ness, the scale of standardised data, combination with label noise, bad input."""
import contextlib
import math

import numpy as np
import pytest

import grlib
from grlib.corruption import (CORRUPTION_KINDS, CORRUPTION_NAMES, EXAMPLE_KINDS, OUTLIER_SOURCES, InputScale,
                              SourceFallbackWarning, _resize, add_data_noise, add_outliers, corrupt_inputs,
                              input_scale)
from grlib.noise import add_label_noise

HAVE_FMNIST = (grlib.data_dir() / "fashion_mnist.npz").is_file()
needs_fmnist = pytest.mark.skipif(not HAVE_FMNIST, reason="Fashion-MNIST cache missing ('make data' builds it)")


@pytest.fixture(scope="module")
def digits():
    ds = grlib.load_dataset("digits")
    return ds, input_scale("digits")


def _kw(ds, scale):
    return dict(image_shape=ds.image_shape, scale=scale)


def _assert_mask_exact(x_before, x_after, mask):
    """Touched rows differ from the original, untouched rows are bit-identical."""
    changed = (x_after != x_before).any(axis=1)
    np.testing.assert_array_equal(changed, mask)
    assert x_after[~mask].tobytes() == x_before[~mask].tobytes()
    assert x_after.dtype == x_before.dtype and x_after.shape == x_before.shape


def _expected_count(fraction, n):
    return math.floor(fraction * n + 0.5)


# ------------------------------------------------------------------------------------ counts

@pytest.mark.parametrize("n", [1, 7, 1347])
@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.25, 0.5, 0.9])
def test_exact_count_convention(n, fraction):
    rng = np.random.default_rng(0)
    x = rng.random((n, 16)).astype(np.float32)
    y = np.arange(n) % 3
    k = _expected_count(fraction, n)
    o = add_outliers(x, y, fraction, seed=1, source="noise", image_shape=(4, 4))
    c = corrupt_inputs(x, fraction, kind="gaussian", image_shape=(4, 4), seed=1)
    for mask in (o.is_outlier, c.is_corrupted):
        assert mask.dtype == bool and mask.sum() == k
    assert abs(o.realised_fraction - fraction) <= 0.5 / n + 1e-12
    assert abs(c.realised_fraction - fraction) <= 0.5 / n + 1e-12


def test_halves_round_up():
    x = np.random.default_rng(0).random((10, 4))
    assert add_outliers(x, np.zeros(10, int), 0.25, source="noise").is_outlier.sum() == 3   # 2.5 -> 3
    assert add_outliers(x, np.zeros(10, int), 0.24, source="noise").is_outlier.sum() == 2


# ---------------------------------------------------------------------------------- outliers

def _outlier_sources():
    sources = ["noise", "gaussian", "array"]
    if HAVE_FMNIST:
        sources.append("fashion_mnist")
    return sources


@pytest.mark.parametrize("source", _outlier_sources())
def test_outliers_mask_exact_labels_kept_input_untouched(digits, source):
    ds, scale = digits
    x_before = ds.x_train.copy()
    y_before = ds.y_train.copy()
    src = np.random.default_rng(5).normal(size=(50, 64)) * 10 if source == "array" else source
    o = add_outliers(ds.x_train, ds.y_train, 0.2, seed=3, source=src, dataset="digits", **_kw(ds, scale))
    assert o.source == source
    assert o.is_outlier.sum() == _expected_count(0.2, len(ds.y_train))
    _assert_mask_exact(ds.x_train, o.x, o.is_outlier)
    np.testing.assert_array_equal(o.labels, ds.y_train)
    # nothing modified in place
    assert ds.x_train.tobytes() == x_before.tobytes() and ds.y_train.tobytes() == y_before.tobytes()
    assert o.x is not ds.x_train and o.labels is not ds.y_train


@pytest.mark.parametrize("source", ["noise", "gaussian"] + (["fashion_mnist"] if HAVE_FMNIST else []))
def test_outliers_seeded(digits, source):
    ds, scale = digits
    a = add_outliers(ds.x_train, ds.y_train, 0.2, seed=7, source=source, **_kw(ds, scale))
    b = add_outliers(ds.x_train, ds.y_train, 0.2, seed=7, source=source, **_kw(ds, scale))
    c = add_outliers(ds.x_train, ds.y_train, 0.2, seed=8, source=source, **_kw(ds, scale))
    assert a.x.tobytes() == b.x.tobytes()
    np.testing.assert_array_equal(a.is_outlier, b.is_outlier)
    assert not np.array_equal(a.is_outlier, c.is_outlier)
    assert not np.array_equal(a.x, c.x)


def _cv_auc(x, is_outlier):
    """Cross-validated ROC AUC of a logistic regression telling outliers from clean rows."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    p = cross_val_predict(LogisticRegression(max_iter=2000), x, is_outlier.astype(int),
                          cv=StratifiedKFold(5, shuffle=True, random_state=0), method="predict_proba")[:, 1]
    return roc_auc_score(is_outlier, p)


@pytest.mark.parametrize("source", ["noise", "gaussian"] + (["fashion_mnist"] if HAVE_FMNIST else []))
def test_digits_outliers_are_out_of_distribution(digits, source):
    # measured (seed 0, fraction 0.2): fashion_mnist 0.977, noise 1.000, gaussian 1.000
    ds, scale = digits
    o = add_outliers(ds.x_train, ds.y_train, 0.2, seed=0, source=source, dataset="digits", **_kw(ds, scale))
    assert _cv_auc(o.x, o.is_outlier) > 0.95


@needs_fmnist
def test_fashion_outliers_auto_uses_digits_and_are_out_of_distribution():
    # measured (n_train 2000, seed 0): digits source AUC 0.9999
    ds = grlib.load_dataset("fashion_mnist", n_train=2000)
    scale = input_scale("fashion_mnist", n_train=2000)
    o = add_outliers(ds.x_train, ds.y_train, 0.2, seed=0, dataset="fashion_mnist", **_kw(ds, scale))
    assert o.source == "digits"
    _assert_mask_exact(ds.x_train, o.x, o.is_outlier)
    raw = scale.to_raw(o.x[o.is_outlier])
    assert raw.min() >= -1e-5 and raw.max() <= 1 + 1e-5          # Fashion-MNIST's pixel range
    assert _cv_auc(o.x, o.is_outlier) > 0.95


def test_auto_source_per_dataset(digits, monkeypatch, tmp_path):
    ds, scale = digits
    x, y = ds.x_train, ds.y_train
    if HAVE_FMNIST:
        assert add_outliers(x, y, 0.1, dataset="digits", **_kw(ds, scale)).source == "fashion_mnist"
    assert add_outliers(x, y, 0.1, dataset="fashion_mnist", **_kw(ds, scale)).source == "digits"
    assert add_outliers(x, y, 0.1, dataset="mine", **_kw(ds, scale)).source == "noise"
    assert add_outliers(x, y, 0.1).source == "gaussian"          # not images: a far-away Gaussian


def test_outlier_pixels_on_the_data_scale(digits):
    """Image sources are made in raw pixels and standardised like the data: back in [0, 16]."""
    ds, scale = digits
    for source in ["noise"] + (["fashion_mnist"] if HAVE_FMNIST else []):
        o = add_outliers(ds.x_train, ds.y_train, 0.3, seed=2, source=source, **_kw(ds, scale))
        raw = scale.to_raw(o.x[o.is_outlier])
        assert raw.min() >= -1e-3 and raw.max() <= 16 + 1e-3
        assert raw.max() > 8                                      # uses the range, not [0, 1]
    if HAVE_FMNIST:
        # downsampled clothes keep their brightness: mean intensity near Fashion-MNIST's (~0.29 of the range)
        o = add_outliers(ds.x_train, ds.y_train, 0.3, seed=2, source="fashion_mnist", **_kw(ds, scale))
        assert 0.15 < scale.to_raw(o.x[o.is_outlier]).mean() / 16 < 0.45


@pytest.mark.parametrize("source", ["noise"] + (["fashion_mnist"] if HAVE_FMNIST else []))
def test_standardised_with_scale_equals_raw_then_standardised(digits, source):
    """Working on standardised x with its InputScale is the same as working on the raw pixels."""
    ds, scale = digits
    raw = grlib.load_dataset("digits", standardize=False)
    a = add_outliers(ds.x_train, ds.y_train, 0.2, seed=4, source=source, **_kw(ds, scale))
    b = add_outliers(raw.x_train, raw.y_train, 0.2, seed=4, source=source, image_shape=ds.image_shape)
    np.testing.assert_array_equal(a.is_outlier, b.is_outlier)
    np.testing.assert_allclose(scale.to_raw(a.x[a.is_outlier]), b.x[b.is_outlier], atol=1e-3)


def test_gaussian_source_is_far_from_the_data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4000, 3)) * [1.0, 2.0, 0.5] + [0.0, 10.0, -3.0]
    o = add_outliers(x, np.zeros(4000, int), 0.25, seed=1, source="gaussian", shift=4.0)
    clean, out = x[~o.is_outlier], o.x[o.is_outlier]
    sd = x.std(0)
    offset = (out.mean(0) - x.mean(0)) / sd
    # 1000 draws: the mean offset is 4 sd per feature up to 5 standard errors (1 / sqrt(1000))
    np.testing.assert_allclose(np.abs(offset), 4.0, atol=5 / math.sqrt(1000))
    np.testing.assert_allclose(out.std(0) / sd, 1.0, atol=0.1)
    assert clean.shape[0] == 3000


def test_array_source_rows_used_and_reused_evenly():
    x = np.zeros((100, 3))
    pool = np.arange(21.0).reshape(7, 3) + 1
    o = add_outliers(x, np.zeros(100, int), 0.3, seed=0, source=pool)   # 30 outliers from 7 rows
    rows = o.x[o.is_outlier]
    ids = (rows[:, 0] - 1) / 3
    assert np.all(np.isin(rows, pool)) and np.all(ids == np.round(ids))
    counts = np.bincount(ids.astype(int), minlength=7)
    assert counts.min() == 30 // 7 and counts.max() == -(-30 // 7)
    # fewer than the pool: no repeats
    o = add_outliers(x, np.zeros(100, int), 0.05, seed=0, source=pool)
    assert len(np.unique(o.x[o.is_outlier][:, 0])) == 5


def test_exclude_is_respected():
    x = np.random.default_rng(0).random((200, 4))
    exclude = np.zeros(200, bool)
    exclude[:150] = True
    o = add_outliers(x, np.zeros(200, int), 0.2, seed=0, source="noise", exclude=exclude)
    assert o.is_outlier.sum() == 40 and not o.is_outlier[:150].any()
    c = corrupt_inputs(x, 0.2, kind="gaussian", seed=0, exclude=exclude)
    assert c.is_corrupted.sum() == 40 and not c.is_corrupted[:150].any()
    with pytest.raises(ValueError, match="needs 60 examples but only 50 of 200 are eligible"):
        add_outliers(x, np.zeros(200, int), 0.3, seed=0, source="noise", exclude=exclude)


# ---------------------------------------------------------------------------- area resizing

def test_area_resize_matches_block_averaging():
    rng = np.random.default_rng(0)
    img = rng.random((3, 28, 28))
    # reference: 28 -> 56 by repetition, then 7x7 block means -> 8x8 (exact area averaging)
    ref = np.repeat(np.repeat(img, 2, 1), 2, 2).reshape(3, 8, 7, 8, 7).mean(axis=(2, 4))
    np.testing.assert_allclose(_resize(img, (8, 8)), ref, atol=1e-12)
    small = rng.random((3, 8, 8))
    ref = np.repeat(np.repeat(small, 7, 1), 7, 2).reshape(3, 28, 2, 28, 2).mean(axis=(2, 4))
    np.testing.assert_allclose(_resize(small, (28, 28)), ref, atol=1e-12)
    np.testing.assert_allclose(_resize(img, (8, 8)).mean(axis=(1, 2)), img.mean(axis=(1, 2)), atol=1e-12)


# ------------------------------------------------------------------------- corrupted inputs

@pytest.mark.parametrize("kind", CORRUPTION_KINDS)
def test_corruption_mask_exact_and_seeded(digits, kind):
    ds, scale = digits
    x_before = ds.x_train.copy()
    a = corrupt_inputs(ds.x_train, 0.3, kind=kind, seed=11, **_kw(ds, scale))
    assert a.is_corrupted.sum() == _expected_count(0.3, len(ds.y_train))
    _assert_mask_exact(ds.x_train, a.x, a.is_corrupted)
    assert ds.x_train.tobytes() == x_before.tobytes()
    np.testing.assert_array_equal(a.corruption >= 0, a.is_corrupted)
    if kind != "mixed":
        assert set(np.unique(a.corruption[a.is_corrupted])) == {CORRUPTION_NAMES.index(kind)}
    b = corrupt_inputs(ds.x_train, 0.3, kind=kind, seed=11, **_kw(ds, scale))
    c = corrupt_inputs(ds.x_train, 0.3, kind=kind, seed=12, **_kw(ds, scale))
    assert a.x.tobytes() == b.x.tobytes() and np.array_equal(a.corruption, b.corruption)
    assert not np.array_equal(a.is_corrupted, c.is_corrupted)
    assert set(a.corruption_names[a.is_corrupted]) <= set(CORRUPTION_NAMES)
    assert set(a.corruption_names[~a.is_corrupted]) == {"none"}


def test_mixed_draws_each_kind_uniformly():
    x = np.random.default_rng(0).random((30000, 16))
    c = corrupt_inputs(x, 0.5, kind="mixed", image_shape=(4, 4), seed=0)
    counts = np.bincount(c.corruption[c.is_corrupted], minlength=3)
    k = c.is_corrupted.sum()
    sd = math.sqrt(k * (1 / 3) * (2 / 3))
    assert np.all(np.abs(counts - k / 3) < 5 * sd)


@pytest.mark.parametrize("kind,min_drop", [("gaussian", 0.3), ("blur", 0.3), ("occlusion", 0.3), ("mixed", 0.3)])
def test_corruption_is_heavy(digits, kind, min_drop):
    """A classifier trained on clean digits loses most of its accuracy on corrupted inputs.

    Measured (seed 1, severity 0.5, 225 corrupted of 450 test digits; clean rows 0.969):
    gaussian 0.29, blur 0.48, occlusion 0.18, mixed 0.33.  One standard error is ~0.033.
    """
    from sklearn.linear_model import LogisticRegression

    ds, scale = digits
    clf = LogisticRegression(max_iter=3000).fit(ds.x_train, ds.y_train)
    c = corrupt_inputs(ds.x_test, 0.5, kind=kind, seed=1, **_kw(ds, scale))
    right = clf.predict(c.x) == ds.y_test
    assert right[~c.is_corrupted].mean() - right[c.is_corrupted].mean() > min_drop


def test_gaussian_noise_has_the_severity_sd():
    x = np.full((2000, 64), 8.0)
    x[:, 0] = 0.0
    x[:, 1] = 16.0                                  # pixel range [0, 16]
    c = corrupt_inputs(x, 0.5, kind="gaussian", severity=0.1, image_shape=(8, 8), seed=0)
    diff = (c.x - x)[c.is_corrupted][:, 2:]         # mid-grey pixels: 5 sd from the clip, no clipping
    n = diff.size
    assert abs(diff.mean()) < 5 * 1.6 / math.sqrt(n)
    assert abs(diff.std() - 1.6) < 5 * 1.6 / math.sqrt(2 * n)
    assert c.x.min() >= 0 and c.x.max() <= 16       # clipped to the pixel range


def test_blur_has_the_severity_sd():
    x = np.zeros((4, 28 * 28))
    x[:, 14 * 28 + 14] = 1.0                         # one bright pixel
    c = corrupt_inputs(x, 0.5, kind="blur", severity=0.25, image_shape=(28, 28), seed=0)
    img = c.x[c.is_corrupted][0].reshape(28, 28)
    sigma = 0.25 * 28 / 4
    rows = img.sum(1)
    var = (rows * (np.arange(28) - 14) ** 2).sum() / rows.sum()
    assert img.sum() == pytest.approx(1.0, abs=1e-6)
    assert var == pytest.approx(sigma ** 2, rel=0.02)


def test_occlusion_square_size_value_and_position():
    h = w = 6
    x = np.zeros((3000, h * w))
    x.reshape(-1, h, w)[:, 0, :] = 1.0               # ink only in the top row
    x[:, -1] = 0.0
    side = round(math.sqrt(0.12 * h * w))            # 2
    c = corrupt_inputs(x, 0.5, kind="occlusion", severity=0.12, image_shape=(h, w), seed=0)
    changed = (c.x != x)[c.is_corrupted].reshape(-1, h, w)
    assert np.all(c.x[c.is_corrupted][changed.reshape(changed.shape[0], -1)] == 0.0)   # set to the background
    assert np.all(changed[:, 1:, :] == 0)            # only the top row can change: the square must hide ink
    assert np.all(changed[:, 0, :].sum(1) == side)
    first = changed[:, 0, :].argmax(1)
    counts = np.bincount(first, minlength=w - side + 1)
    k, m = changed.shape[0], w - side + 1            # uniform over the 5 positions that hide ink
    assert np.all(np.abs(counts - k / m) < 5 * math.sqrt(k * (1 / m) * (1 - 1 / m)))
    # at severity 1 the square is the whole image
    full = corrupt_inputs(np.ones((4, 36)) * [[1.0] * 35 + [0.0]], 0.5, kind="occlusion", severity=1.0,
                          image_shape=(6, 6))
    assert np.all(full.x[full.is_corrupted] == 0.0)


@pytest.mark.parametrize("kind", ["gaussian", "blur", "occlusion"])
def test_corruption_on_standardised_equals_raw(digits, kind):
    ds, scale = digits
    raw = grlib.load_dataset("digits", standardize=False)
    a = corrupt_inputs(ds.x_train, 0.2, kind=kind, seed=4, **_kw(ds, scale))
    b = corrupt_inputs(raw.x_train, 0.2, kind=kind, seed=4, image_shape=ds.image_shape)
    np.testing.assert_array_equal(a.is_corrupted, b.is_corrupted)
    np.testing.assert_allclose(scale.to_raw(a.x[a.is_corrupted]), b.x[b.is_corrupted], atol=1e-3)


def test_multichannel_images():
    x = np.random.default_rng(0).random((50, 3 * 8 * 8)).astype(np.float32)
    c = corrupt_inputs(x, 0.4, kind="occlusion", image_shape=(3, 8, 8), seed=0)
    _assert_mask_exact(x, c.x, c.is_corrupted)
    d = (c.x != x)[c.is_corrupted].reshape(-1, 3, 8, 8)
    np.testing.assert_array_equal(d[:, 0], d[:, 1])   # the same square on every channel (all pixels > 0)
    o = add_outliers(x, np.zeros(50, int), 0.2, source="digits", image_shape=(3, 8, 8), seed=0)
    img = o.x[o.is_outlier].reshape(-1, 3, 8, 8)
    np.testing.assert_array_equal(img[:, 0], img[:, 2])


# --------------------------------------------------------------------------------- together

def test_add_data_noise_disjoint_kinds_and_masks(digits):
    ds, scale = digits
    n = len(ds.y_train)
    # source "auto": Fashion-MNIST images, or (no cache) uniform noise with a warning
    with contextlib.nullcontext() if HAVE_FMNIST else pytest.warns(SourceFallbackWarning):
        d = add_data_noise(ds.x_train, ds.y_train, 10, noise="symmetric", noise_rate=0.3, outlier_fraction=0.1,
                           corruption_fraction=0.15, seed=3, dataset="digits", **_kw(ds, scale))
    ref = add_label_noise(ds.y_train, 10, "symmetric", 0.3, seed=3)
    np.testing.assert_array_equal(d.is_noisy, ref.is_noisy)        # label noise as without the others
    np.testing.assert_array_equal(d.labels, ref.labels)
    assert d.is_outlier.sum() == _expected_count(0.1, n) and d.is_corrupted.sum() == _expected_count(0.15, n)
    masks = np.stack([d.is_noisy, d.is_outlier, d.is_corrupted])
    assert masks.sum(0).max() == 1                                  # disjoint
    expected_kind = np.select([d.is_noisy, d.is_outlier, d.is_corrupted], [1, 2, 3], 0)
    np.testing.assert_array_equal(d.kind, expected_kind)
    np.testing.assert_array_equal(d.kind_names, np.array(EXAMPLE_KINDS)[expected_kind])
    for name in EXAMPLE_KINDS:
        np.testing.assert_array_equal(d.mask(name), d.kind_names == name)
    np.testing.assert_array_equal(d.mask("touched"), masks.any(0))
    assert d.counts() == {k: int((d.kind_names == k).sum()) for k in EXAMPLE_KINDS}
    assert sum(d.counts().values()) == n
    # inputs change exactly on outliers and corrupted rows; mislabelled rows keep their inputs
    _assert_mask_exact(ds.x_train, d.x, d.is_outlier | d.is_corrupted)
    # outliers and corrupted inputs keep their labels
    np.testing.assert_array_equal(d.labels[~d.is_noisy], ds.y_train[~d.is_noisy])
    np.testing.assert_array_equal(d.corruption >= 0, d.is_corrupted)
    assert d.outlier_source == ("fashion_mnist" if HAVE_FMNIST else "noise")
    assert set(d.masks()) == {"is_noisy", "is_outlier", "is_corrupted"}
    assert d.settings["outlier_fraction"] == 0.1 and d.settings["noise"] == "symmetric"


def test_add_data_noise_seeded(digits):
    ds, scale = digits
    kw = dict(noise="pair", noise_rate=0.2, outlier_fraction=0.1, outlier_source="noise",
              corruption_fraction=0.1, **_kw(ds, scale))
    a = add_data_noise(ds.x_train, ds.y_train, 10, seed=1, **kw)
    b = add_data_noise(ds.x_train, ds.y_train, 10, seed=1, **kw)
    c = add_data_noise(ds.x_train, ds.y_train, 10, seed=2, **kw)
    assert a.x.tobytes() == b.x.tobytes() and np.array_equal(a.kind, b.kind)
    assert not np.array_equal(a.kind, c.kind)


def test_add_data_noise_nothing_asked_is_a_clean_copy(digits):
    ds, _ = digits
    d = add_data_noise(ds.x_train, ds.y_train, 10)
    assert d.x is not ds.x_train and d.x.tobytes() == ds.x_train.tobytes()
    assert d.counts()["clean"] == len(ds.y_train) and d.outlier_source == "none"


# -------------------------------------------------------------------------------- scale

def test_input_scale_reproduces_load_dataset():
    for kwargs in ({}, {"n_train": 500, "val_fraction": 0.2, "split_seed": 3}):
        std = grlib.load_dataset("digits", **kwargs)
        raw = grlib.load_dataset("digits", standardize=False, **kwargs)
        scale = input_scale("digits", **kwargs)
        assert scale.pixel_range == (0.0, 16.0)
        np.testing.assert_allclose(scale.from_raw(raw.x_train), std.x_train, atol=1e-5)
        np.testing.assert_allclose(scale.from_raw(raw.x_test), std.x_test, atol=1e-4)
        np.testing.assert_allclose(scale.to_raw(std.x_train), raw.x_train, atol=1e-4)


# -------------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("fraction", [-0.1, 1.0, 1.5, float("nan")])
def test_bad_fraction(digits, fraction):
    ds, scale = digits
    with pytest.raises(ValueError, match=r"fraction=.*(outside the allowed range|must be finite).*\[0\.0, 1\.0\)"):
        add_outliers(ds.x_train, ds.y_train, fraction, source="noise")
    with pytest.raises(ValueError, match=r"fraction=.*\[0\.0, 1\.0\)"):
        corrupt_inputs(ds.x_train, fraction, kind="gaussian")
    with pytest.raises(ValueError, match=r"outlier_fraction=.*\[0\.0, 1\.0\)"):
        add_data_noise(ds.x_train, ds.y_train, 10, outlier_fraction=fraction)
    with pytest.raises(ValueError, match=r"corruption_fraction=.*\[0\.0, 1\.0\)"):
        add_data_noise(ds.x_train, ds.y_train, 10, corruption_fraction=fraction)


def test_unknown_kinds_and_sources_are_listed(digits):
    ds, scale = digits
    with pytest.raises(ValueError, match="kind='salt' is not one of the allowed values: 'gaussian', 'blur', "
                                         "'occlusion', 'mixed'"):
        corrupt_inputs(ds.x_train, 0.1, kind="salt", image_shape=ds.image_shape)
    with pytest.raises(ValueError, match="corruption_kind='salt' .*'gaussian', 'blur', 'occlusion', 'mixed'"):
        add_data_noise(ds.x_train, ds.y_train, 10, corruption_fraction=0.1, corruption_kind="salt",
                       image_shape=ds.image_shape)
    listed = ", ".join(repr(s) for s in OUTLIER_SOURCES)
    with pytest.raises(ValueError, match=f"source='cifar' is not one of the allowed values: {listed}"):
        add_outliers(ds.x_train, ds.y_train, 0.1, source="cifar", image_shape=ds.image_shape)
    with pytest.raises(ValueError, match="noise='gaussian' is not one of"):
        add_data_noise(ds.x_train, ds.y_train, 10, noise="gaussian", noise_rate=0.1)


def test_other_bad_input(digits):
    ds, scale = digits
    x, y = ds.x_train, ds.y_train
    with pytest.raises(ValueError, match="kind='blur' acts on images and needs image_shape"):
        corrupt_inputs(x, 0.1, kind="blur")
    with pytest.raises(ValueError, match="image_shape=.*holds 49 values but x has 64 features"):
        corrupt_inputs(x, 0.1, kind="blur", image_shape=(7, 7))
    with pytest.raises(ValueError, match=r"severity=0\.0 is outside the allowed range \(0\.0, 1\.0\]"):
        corrupt_inputs(x, 0.1, kind="gaussian", severity=0.0)
    with pytest.raises(ValueError, match=r"severity=1\.5"):
        corrupt_inputs(x, 0.1, kind="gaussian", severity=1.5)
    with pytest.raises(TypeError, match="x must be a floating-point array"):
        add_outliers(np.zeros((5, 4), int), np.zeros(5, int), 0.1)
    with pytest.raises(ValueError, match=r"y must have shape \(1347,\)"):
        add_outliers(x, y[:10], 0.1)
    with pytest.raises(ValueError, match="source='digits' is the data set itself"):
        add_outliers(x, y, 0.1, source="digits", dataset="digits", image_shape=ds.image_shape)
    with pytest.raises(ValueError, match="source='digits' makes images and needs image_shape"):
        add_outliers(x, y, 0.1, source="digits")
    with pytest.raises(ValueError, match=r"non-empty numeric array \[M, 64\]"):
        add_outliers(x, y, 0.1, source=np.zeros((5, 3)))
    with pytest.raises(ValueError, match="scale.mean has 10 entries but x has 64 features"):
        add_outliers(x, y, 0.1, source="noise", scale=InputScale(np.zeros(10), np.ones(10)))
    with pytest.raises(ValueError, match="std must be > 0"):
        InputScale(0.0, 0.0)
    with pytest.raises(ValueError, match=r"noise_rate=0\.5 \+ outlier_fraction=0\.3 \+ corruption_fraction=0\.2 "
                                         r"= 1 must be below 1"):
        add_data_noise(x, y, 10, noise="symmetric", noise_rate=0.5, outlier_fraction=0.3,
                       corruption_fraction=0.2, image_shape=ds.image_shape)
    with pytest.raises(ValueError, match="seed=-1 is too small"):
        corrupt_inputs(x, 0.1, kind="gaussian", seed=-1)


def test_missing_fashion_mnist_cache(digits, monkeypatch, tmp_path):
    ds, scale = digits
    monkeypatch.setenv("GRLIB_DATA_DIR", str(tmp_path))
    with pytest.raises(grlib.DataNotAvailableError, match=r"'make data' or 'grlib data fetch'"):
        add_outliers(ds.x_train, ds.y_train, 0.1, source="fashion_mnist", **_kw(ds, scale))
    with pytest.warns(SourceFallbackWarning, match=r"cache .* is missing .*'make data'.*uniform noise images"):
        o = add_outliers(ds.x_train, ds.y_train, 0.1, source="auto", dataset="digits", **_kw(ds, scale))
    assert o.source == "noise" and o.is_outlier.sum() == _expected_count(0.1, len(ds.y_train))
    with pytest.warns(SourceFallbackWarning):
        d = add_data_noise(ds.x_train, ds.y_train, 10, outlier_fraction=0.1, dataset="digits", **_kw(ds, scale))
    assert d.outlier_source == "noise"
