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
