"""Label noise: realised rates within binomial tolerance, the mask, pair mapping, bad matrices."""
import math

import numpy as np
import pytest

from grlib.noise import add_label_noise, pair_noise, symmetric_matrix, symmetric_noise, transition_noise

N, C = 20000, 10
LABELS = np.arange(N) % C


def _within_binomial(k_frac, p, n, z=5.0):
    return abs(k_frac - p) <= z * math.sqrt(p * (1 - p) / n) + 1e-12


@pytest.mark.parametrize("rate", [0.0, 0.2, 0.4, 0.8])
def test_symmetric_rate_mask_and_no_redraw_of_true_class(rate):
    nl = symmetric_noise(LABELS, C, rate, seed=3)
    assert _within_binomial(nl.realised_rate, rate, N)
    np.testing.assert_array_equal(nl.is_noisy, nl.labels != LABELS)
    np.testing.assert_array_equal(nl.true_labels, LABELS)
    if rate > 0:
        # the new class is uniform over the other C-1 classes
        shifts = (nl.labels[nl.is_noisy] - LABELS[nl.is_noisy]) % C
        counts = np.bincount(shifts, minlength=C)[1:]
        expected = nl.is_noisy.sum() / (C - 1)
        assert counts.min() > 0 and np.all(np.abs(counts - expected) < 5 * math.sqrt(expected))


def test_symmetric_include_true_convention():
    rate = 0.5
    nl = symmetric_noise(LABELS, C, rate, seed=1, include_true=True)
    assert _within_binomial(nl.realised_rate, rate * (C - 1) / C, N)
    np.testing.assert_allclose(nl.transition.sum(1), 1.0)


def test_pair_mapping_and_rate():
    nl = pair_noise(LABELS, C, 0.3, seed=0)
    assert _within_binomial(nl.realised_rate, 0.3, N)
    np.testing.assert_array_equal(nl.labels[nl.is_noisy], (LABELS[nl.is_noisy] + 1) % C)


def test_transition_matrix_rows_are_respected():
    t = np.array([[0.7, 0.3, 0.0], [0.0, 1.0, 0.0], [0.25, 0.25, 0.5]])
    y = np.arange(30000) % 3
    nl = transition_noise(y, t, seed=5)
    for k in range(3):
        got = np.bincount(nl.labels[y == k], minlength=3) / (y == k).sum()
        n_k = (y == k).sum()
        for j in range(3):
            assert _within_binomial(got[j], t[k, j], n_k), (k, j)
    assert not nl.is_noisy[y == 1].any()


def test_seeded_and_deterministic():
    a = add_label_noise(LABELS, C, "symmetric", 0.4, seed=7)
    b = add_label_noise(LABELS, C, "symmetric", 0.4, seed=7)
    c = add_label_noise(LABELS, C, "symmetric", 0.4, seed=8)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert (a.labels != c.labels).any()


@pytest.mark.parametrize("matrix,match", [
    (np.array([[0.5, 0.4], [0.0, 1.0]]), r"row-stochastic .* row 0 sums to 0.9"),
    (np.array([[1.2, -0.2], [0.0, 1.0]]), r"non-negative"),
    (np.eye(3), r"shape \(2, 2\)"),
    (np.array([[np.nan, 1.0], [0.0, 1.0]]), r"finite"),
])
def test_bad_matrices_rejected(matrix, match):
    y = np.array([0, 1, 0, 1])
    if matrix.shape == (3, 3):
        y = np.array([0, 1, 2, 5])
        with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\]"):
            transition_noise(y, matrix)
        with pytest.raises(ValueError, match=match):
            from grlib.noise import _check_transition
            _check_transition(matrix, 2)
        return
    with pytest.raises(ValueError, match=match):
        transition_noise(y, matrix)


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5, float("nan")])
def test_bad_rate(rate):
    with pytest.raises(ValueError, match=r"rate="):
        symmetric_noise(LABELS, C, rate)


def test_bad_labels():
    with pytest.raises(TypeError, match=r"labels must be integer class indices, got dtype float64"):
        symmetric_noise(np.array([0.0, 1.0]), 2, 0.1)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 1\] for num_classes=2; got values in \[0, 2\]"):
        symmetric_noise(np.array([0, 2]), 2, 0.1)
    with pytest.raises(ValueError, match=r"labels is empty"):
        symmetric_noise(np.array([], dtype=int), 2, 0.1)
    with pytest.raises(ValueError, match=r"noise kind='uniform' is not one of the allowed values"):
        add_label_noise(LABELS, C, "uniform", 0.2)


def test_symmetric_matrix_is_row_stochastic():
    for inc in (False, True):
        np.testing.assert_allclose(symmetric_matrix(5, 0.3, include_true=inc).sum(1), 1.0)


# -- issue 13: N17 / N18 / N19 and the rest of the public surface ------------------------------------
def test_N17_transition_matrix_must_match_num_classes():
    """A 5x5 matrix with num_classes=3 used to give labels up to 4 without error."""
    y = np.arange(300) % 3
    m5 = np.full((5, 5), 0.2)
    with pytest.raises(ValueError, match=r"transition matrix must have shape \(3, 3\) for num_classes=3, got \(5, 5\)"):
        add_label_noise(y, 3, "transition", matrix=m5)
    with pytest.raises(ValueError, match=r"shape \(3, 3\) for num_classes=3, got \(5, 5\)"):
        transition_noise(y, m5, num_classes=3)
    # a matching matrix works through both entry points, and the labels stay in range
    m3 = np.full((3, 3), 1 / 3)
    nl = add_label_noise(y, 3, "transition", matrix=m3, seed=1)
    assert nl.labels.max() <= 2 and nl.kind == "transition"
    np.testing.assert_array_equal(nl.labels, transition_noise(y, m3, num_classes=3, seed=1).labels)


@pytest.mark.parametrize("matrix,match", [
    (np.array([0.5, 0.5, 0.5, 0.5]), r"2-D row-stochastic C x C array .*got shape \(4,\)"),
    (np.full((2, 3), 1 / 3), r"2-D row-stochastic C x C array .*got shape \(2, 3\)"),
    (np.ones((1, 1)), r"at least 2 x 2"),
])
def test_N18_matrix_of_the_wrong_shape_says_so(matrix, match):
    """A 1-D matrix used to get 'labels must lie in [0, 1] for num_classes=2'."""
    with pytest.raises(ValueError, match=match):
        transition_noise(np.array([0, 1, 2, 4]), matrix)


def test_matrix_of_a_wrong_type_is_refused():
    with pytest.raises(TypeError, match=r"transition matrix must be .* of real numbers, got dtype <U1"):
        transition_noise(np.array([0, 1]), [["a", "b"], ["c", "d"]])
    with pytest.raises(TypeError, match=r"real numbers, got dtype complex128"):
        transition_noise(np.array([0, 1]), np.eye(2) + 0j)
    with pytest.raises(ValueError, match=r"transition matrix cannot be read as an array"):
        transition_noise(np.array([0, 1]), [[1.0], [0.0, 1.0]])


@pytest.mark.parametrize("kind", ["symmetric", "pair", "none"])
def test_N19_matrix_with_another_kind_is_refused(kind):
    """matrix= with kind='symmetric' used to be silently ignored."""
    with pytest.raises(ValueError, match=rf"matrix= is used only with noise kind='transition', got kind='{kind}'"):
        add_label_noise(LABELS, C, kind, 0.2, matrix=np.eye(C))


def test_rate_with_transition_kind_is_refused():
    """rate= with kind='transition' used to be silently ignored (the matrix sets the noise)."""
    with pytest.raises(ValueError, match=r"rate=0.3 is not used with noise kind='transition'"):
        add_label_noise(LABELS, C, "transition", 0.3, matrix=symmetric_matrix(C, 0.2))
    with pytest.raises(TypeError, match=r"rate must be a real number"):
        add_label_noise(LABELS, C, "transition", "0.3", matrix=symmetric_matrix(C, 0.2))
    # the reported rate is the matrix's expected rate
    nl = add_label_noise(LABELS, C, "transition", matrix=symmetric_matrix(C, 0.2), seed=2)
    assert nl.rate == pytest.approx(0.2)
    assert _within_binomial(nl.realised_rate, 0.2, N)


def test_other_arguments_are_checked():
    with pytest.raises(TypeError, match=r"include_true must be True or False, got 'yes'"):
        symmetric_noise(LABELS, C, 0.2, include_true="yes")
    with pytest.raises(TypeError, match=r"num_classes must be an integer, got 10.0"):
        add_label_noise(LABELS, 10.0, "transition", matrix=np.eye(10))
    with pytest.raises(ValueError, match=r"seed=-1 is too small"):
        add_label_noise(LABELS, C, "none", seed=-1)
    with pytest.raises(TypeError, match=r"whole-number floats: convert them with labels.astype\(np.int64\)"):
        add_label_noise(LABELS.astype(float), C, "symmetric", 0.2)
    with pytest.raises(TypeError, match=r"got dtype bool"):
        add_label_noise(np.array([True, False]), 2, "symmetric", 0.2)
    with pytest.raises(ValueError, match=r"rate=1.5 is outside the allowed range \[0.0, 1.0\]"):
        transition_noise(LABELS, np.eye(C), rate=1.5)
    with pytest.raises(TypeError, match=r"kind must be a non-empty string"):
        transition_noise(LABELS, np.eye(C), kind=None)


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int32, np.uint64])
def test_any_integer_labels_and_torch_tensors_work(dtype):
    import torch

    a = add_label_noise(LABELS.astype(dtype), C, "pair", 0.3, seed=4)
    b = add_label_noise(torch.as_tensor(LABELS.astype(np.int64)), C, "pair", 0.3, seed=4)
    assert a.labels.dtype == np.int64 and a.true_labels.dtype == np.int64
    np.testing.assert_array_equal(a.labels, b.labels)
