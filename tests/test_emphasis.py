"""The magnitude table of method.md, checked with float64 autograd."""
import math

import pytest
import torch

import grlib
from grlib import emphasis as em
from grlib.losses import get_loss



def _logits_for_p(p, num_classes=10, spread="even"):
    """Logits whose softmax gives the labelled class 0 probability p, rest spread evenly."""
    rest = (1 - p) / (num_classes - 1)
    probs = torch.full((p.numel(), num_classes), 0.0) + rest[:, None]
    probs[:, 0] = p
    return torch.log(probs)


P = torch.linspace(0.02, 0.98, 25, dtype=torch.float64)


def _autograd_l1(loss_name, logits, targets, **params):
    z = logits.clone().requires_grad_(True)
    vals = get_loss(loss_name, reduction="none", **params)(z, targets)
    (g,) = torch.autograd.grad(vals.sum(), z)
    return g.abs().sum(1)


@pytest.mark.parametrize("name,fn,params", [
    ("ce", em.ce_emphasis, {}),
    ("mae", em.mae_emphasis, {}),
    ("gce", em.gce_emphasis, {"q": 0.7}),
    ("gce", em.gce_emphasis, {"q": 0.3}),
    ("gce", em.gce_emphasis, {"q": 1.0}),
])
def test_table_rows_match_autograd(name, fn, params):
    z = _logits_for_p(P)
    y = torch.zeros(P.numel(), dtype=torch.long)
    torch.testing.assert_close(_autograd_l1(name, z, y, **params), fn(P, **params), rtol=1e-10, atol=1e-12)


def test_mse_exact_for_two_classes_and_labelled_component_in_general():
    z2 = _logits_for_p(P, num_classes=2)
    y = torch.zeros(P.numel(), dtype=torch.long)
    torch.testing.assert_close(_autograd_l1("mse", z2, y), em.mse_emphasis(P, num_classes=2), rtol=1e-10,
                               atol=1e-12)
    # for C classes with the rest spread evenly: twice the labelled component
    z = _logits_for_p(P, num_classes=10).requires_grad_(True)
    vals = get_loss("mse", reduction="none")(z, y)
    (g,) = torch.autograd.grad(vals.sum(), z)
    torch.testing.assert_close(2 * g[:, 0].abs(), em.mse_emphasis(P, num_classes=10), rtol=1e-10, atol=1e-12)


def test_gce_limits():
    # q = 1 is MAE / 2; q -> 0 approaches CE
    torch.testing.assert_close(em.gce_emphasis(P, q=1.0), em.mae_emphasis(P) / 2)
    torch.testing.assert_close(em.gce_emphasis(P, q=1e-9), em.ce_emphasis(P), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("lam", [0.0, 0.5, 1.0, 2.0, 4.0])
def test_gr_mode_is_where_the_curve_peaks(lam):
    grid = torch.linspace(0, 1, 200001, dtype=torch.float64)
    curve = em.gr_emphasis(grid, lam=lam, beta=5.0)
    peak = grid[curve.argmax()].item()
    assert peak == pytest.approx(em.gr_mode(lam), abs=1e-5)
    assert em.emphasis_mode("gr", lam=lam) == em.gr_mode(lam)


def test_modes_of_baselines():
    grid = torch.linspace(0, 1, 100001, dtype=torch.float64)
    for name, params in [("mae", {}), ("mse", {}), ("gce", {"q": 0.7})]:
        peak = grid[em.emphasis_curve(name, grid, **params).argmax()].item()
        assert peak == pytest.approx(em.emphasis_mode(name, **params), abs=1e-4), name


def test_beta_zero_is_flat_and_beta_spreads():
    assert torch.all(em.gr_emphasis(P, lam=1.0, beta=0.0) == 1.0)
    lo = em.normalise_over_batch(em.gr_emphasis(P, lam=1.0, beta=1.0))
    hi = em.normalise_over_batch(em.gr_emphasis(P, lam=1.0, beta=10.0))
    assert hi.max() > lo.max() and hi.min() < lo.min()


def test_normalise_over_p_integrates_to_one():
    grid = torch.linspace(0, 1, 1001, dtype=torch.float64)
    for name in ("ce", "mae", "mse", "gce", "gr"):
        d = em.normalise_over_p(em.emphasis_curve(name, grid), grid)
        assert torch.trapezoid(d, grid).item() == pytest.approx(1.0, abs=1e-12)
    # CE's density is 2(1 - p) exactly
    torch.testing.assert_close(em.normalise_over_p(em.ce_emphasis(grid), grid), 2 * (1 - grid))


def test_normalise_over_batch_sums_to_one():
    w = em.normalise_over_batch(torch.rand(3, 7, dtype=torch.float64) + 0.1)
    torch.testing.assert_close(w.sum(-1), torch.ones(3, dtype=torch.float64))


@pytest.mark.parametrize("bad,exc,match", [
    (dict(lam=-0.1, beta=1.0), ValueError, r"lam=-0.1"),
    (dict(lam=1.0, beta=float("nan")), ValueError, r"beta=nan must be finite"),
    (dict(lam=1.0, beta=float("inf")), ValueError, r"beta=inf must be finite"),
    (dict(lam="1", beta=1.0), TypeError, r"lam must be a real number"),
])
def test_gr_bad_params(bad, exc, match):
    with pytest.raises(exc, match=match):
        em.gr_emphasis(P, **bad)


@pytest.mark.parametrize("q", [0.0, -0.5, 1.5, float("nan")])
def test_gce_bad_q(q):
    with pytest.raises(ValueError, match=r"q=.*(allowed range \(0.0, 1.0\]|finite)"):
        em.gce_emphasis(P, q=q)


def test_unknown_emphasis_name():
    with pytest.raises(ValueError, match=r"valid names: \['ce', 'gce', 'gr', 'mae', 'mse'\]"):
        em.emphasis_curve("focal", P)


# -- issue 13: L41 / L42 / L43 and other bad input ------------------------------------------------
def test_L41_emphasis_mode_refuses_a_mistyped_keyword():
    """emphasis_mode('gr', lamda=3) used to return 0.5 (the default lam's mode) silently."""
    with pytest.raises(TypeError, match=r"emphasis 'gr' got unknown parameter\(s\) 'lamda' \(did you mean 'lam'\?\); "
                                        r"allowed: lam, beta"):
        em.emphasis_mode("gr", lamda=3)
    # a keyword of another loss is unknown to this one, too
    with pytest.raises(TypeError, match=r"emphasis 'gr' got unknown parameter\(s\) 'q'; allowed: lam, beta"):
        em.emphasis_mode("gr", lam=1.0, q=0.7)
    with pytest.raises(TypeError, match=r"emphasis 'ce' got unknown parameter\(s\) 'lam'; allowed: none"):
        em.emphasis_mode("ce", lam=1.0)
    # the right keywords still work, and are validated even where the mode ignores them
    assert em.emphasis_mode("gr", lam=3) == pytest.approx(0.75)
    assert em.emphasis_mode("gr", lam=3, beta=5.0) == pytest.approx(0.75)
    assert em.emphasis_mode("mse", num_classes=10) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match=r"beta=-1.0 is outside the allowed range"):
        em.emphasis_mode("gr", lam=1.0, beta=-1.0)
    with pytest.raises(ValueError, match=r"num_classes=1 is too small"):
        em.emphasis_mode("mse", num_classes=1)


def test_L42_emphasis_curve_refuses_a_mistyped_keyword_by_name():
    """emphasis_curve('gr', p, lamda=3) used to raise a raw TypeError from inside gr_emphasis."""
    with pytest.raises(TypeError, match=r"emphasis 'gr' got unknown parameter\(s\) 'lamda' \(did you mean 'lam'\?\); "
                                        r"allowed: lam, beta"):
        em.emphasis_curve("gr", P, lamda=3)
    with pytest.raises(TypeError, match=r"emphasis 'gce' got unknown parameter\(s\) 'beta', 'lam'; allowed: q"):
        em.emphasis_curve("gce", P, lam=1.0, beta=2.0)
    assert set(em.EMPHASIS_PARAMETERS) == set(em.EMPHASIS_FUNCTIONS)


@pytest.mark.parametrize("fn", [em.ce_emphasis, em.mae_emphasis, em.mse_emphasis, em.gce_emphasis, em.gr_emphasis,
                                em.gr_score])
def test_L43_p_outside_the_unit_interval_is_refused(fn):
    """gr_emphasis(p=[2.0, -1.0]) used to return two tiny numbers without error."""
    with pytest.raises(ValueError, match=r"p must lie in \[0, 1\] .*2 of 3 entries do not; values found in \[-1, 2\]"):
        fn(torch.tensor([2.0, -1.0, 0.5]))
    with pytest.raises(ValueError, match=r"p must lie in \[0, 1\] .*1 of 2 entries do not \(1 NaN\)"):
        fn([0.5, float("nan")])
    # the ends of the interval are fine, and integers are probabilities too
    assert torch.isfinite(fn(torch.tensor([0.0, 1.0]))).all()
    assert torch.isfinite(fn([0, 1])).all()


def test_p_of_a_wrong_type_is_refused():
    with pytest.raises(TypeError, match=r"p must be real numbers .*got str"):
        em.emphasis_curve("gr", "0.5")
    with pytest.raises(TypeError, match=r"p must be real numbers, got dtype torch.bool"):
        em.ce_emphasis(torch.tensor([True, False]))
    with pytest.raises(TypeError, match=r"p must be real numbers, got dtype torch.complex64"):
        em.ce_emphasis(torch.tensor([0.5 + 0j]))


def test_normalisation_refuses_what_would_give_nan_or_negative_weights():
    grid = torch.linspace(0, 1, 11, dtype=torch.float64)
    # an overflowing exp (huge beta) used to give inf / inf = NaN weights silently
    with pytest.raises(ValueError, match=r"values must be finite; got 2 non-finite .*normalise in log space"):
        em.normalise_over_batch(em.gr_emphasis(torch.tensor([0.5, 0.5], dtype=torch.float64), beta=1e4))
    with pytest.raises(ValueError, match=r"values must be non-negative .*minimum of -1"):
        em.normalise_over_batch(torch.tensor([1.0, -1.0, 2.0]))
    with pytest.raises(ValueError, match=r"values sum to zero"):
        em.normalise_over_batch(torch.zeros(3))
    with pytest.raises(ValueError, match=r"non-empty last \(batch\) dimension"):
        em.normalise_over_batch(torch.zeros(0))
    # an unsorted grid used to give a negative area and a misleading message
    with pytest.raises(ValueError, match=r"strictly increasing grid .*sort them first"):
        em.normalise_over_p(em.ce_emphasis(grid.flip(0)), grid.flip(0))
    with pytest.raises(ValueError, match=r"values must be finite"):
        em.normalise_over_p(torch.full((11,), float("nan")), grid)
    with pytest.raises(ValueError, match=r"p must lie in \[0, 1\]"):
        em.normalise_over_p(torch.ones(11), torch.linspace(-1, 1, 11))
    # the softmax of the log-space score is the overflow-free form the message names
    w = torch.softmax(em.gr_score(torch.tensor([0.2, 0.5], dtype=torch.float64), lam=1.0, beta=1e4), dim=-1)
    assert torch.isfinite(w).all() and w.sum().item() == pytest.approx(1.0)
