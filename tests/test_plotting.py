"""grlib.plotting: each helper draws what it claims, returns it, and never shows or saves."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.colors import to_rgb  # noqa: E402

import grlib  # noqa: E402
from grlib import plotting  # noqa: E402
from grlib.figures import METHOD_COLORS  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(autouse=True)
def _no_show_no_save(monkeypatch):
    """Fail the test if a helper shows or saves a figure."""
    def forbid(*args, **kwargs):
        raise AssertionError("a plotting helper must not show or save")

    monkeypatch.setattr(plt, "show", forbid)
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", forbid)
    monkeypatch.setattr(plt, "savefig", forbid)


def _by_gid(ax, prefix):
    return [line for line in ax.lines if (line.get_gid() or "").startswith(prefix)]


def _fake_result(loss="ce", epochs=6, n=200, noise_rate=0.3, seed=0):
    """A RunResult with known records: clean examples' p rises, mislabelled ones' stays low."""
    rng = np.random.default_rng(seed)
    is_noisy = np.zeros(n, bool)
    is_noisy[rng.choice(n, int(noise_rate * n), replace=False)] = True
    t = np.linspace(0.1, 1.0, epochs)[:, None]
    p = np.where(is_noisy, 0.1 * t, 0.9 * t) + 0.01 * rng.random((epochs, n))
    weight = np.where(is_noisy, 0.03, 0.01) + 0.001 * rng.random((epochs, n))
    history = {"test_acc": np.linspace(0.5, 0.8, epochs), "noisy_fit": np.linspace(0.0, 0.6, epochs)}
    y_true = rng.integers(0, 10, n)
    y_given = np.where(is_noisy, (y_true + 1) % 10, y_true)
    return grlib.RunResult(config={"loss": loss, "batch_size": 64}, y_given=y_given, y_true=y_true,
                           is_noisy=is_noisy, num_classes=10, history=history,
                           records={"p": p.astype(np.float32), "eval_p": p.astype(np.float32),
                                    "weight": weight.astype(np.float32)},
                           epochs_completed=epochs)


# -- labels and colours -------------------------------------------------------------
def test_method_label_and_color():
    assert plotting.method_label("gr", {"lam": 1.0, "beta": 12.0}) == "gr(lam=1, beta=12)"
    assert plotting.method_label("gce", {"q": 0.7}) == "gce(q=0.7)"
    assert plotting.method_label("ce", {}) == "ce"
    assert plotting.method_color("gr") == METHOD_COLORS["gr"]
    s = plotting.shades("#1f77b4", 3)
    assert len(s) == 3 and np.allclose(s[-1], to_rgb("#1f77b4"))
    assert not np.allclose(s[0], s[-1])


# -- emphasis curves --------------------------------------------------------------
def test_emphasis_curves_default_draws_one_line_per_method_and_returns_ax():
    fig, ax = plt.subplots()
    out = plotting.plot_emphasis_curves(ax)
    assert out is ax
    curves = _by_gid(ax, "curve:")
    assert [c.get_label() for c in curves] == ["ce", "mae", "gce(q=0.7)", "gr(lam=1, beta=12)"]
    assert np.allclose(to_rgb(curves[0].get_color()), to_rgb(METHOD_COLORS["ce"]))
    assert np.allclose(to_rgb(curves[3].get_color()), to_rgb(METHOD_COLORS["gr"]))
    # mode lines are not in the legend
    legend_texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend_texts == ["ce", "mae", "gce(q=0.7)", "gr(lam=1, beta=12)"]


@pytest.mark.parametrize("lam", [0.0, 0.5, 1.0, 3.0])
def test_gr_mode_lines_at_lam_over_one_plus_lam(lam):
    ax = plotting.plot_emphasis_curves(methods=[("gr", {"lam": lam, "beta": 8.0})])
    (mode,) = _by_gid(ax, "mode:")
    assert mode.get_xdata()[0] == pytest.approx(lam / (1 + lam))
    (curve,) = _by_gid(ax, "curve:")
    x, y = curve.get_xdata(), curve.get_ydata()
    assert x[np.argmax(y)] == pytest.approx(lam / (1 + lam), abs=1e-3)  # grid step 1e-3


def test_emphasis_curves_normalisations():
    p = np.linspace(0, 1, 401)
    methods = [("ce", {}), ("mae", {}), ("mse", {"num_classes": 10}), ("gce", {"q": 0.5})]
    ax = plotting.plot_emphasis_curves(methods=methods, p=p, normalise="p")
    for c in _by_gid(ax, "curve:"):
        assert np.trapezoid(c.get_ydata(), c.get_xdata()) == pytest.approx(1.0, rel=1e-9)
    ax = plotting.plot_emphasis_curves(methods=methods, p=p, normalise="max")
    for c in _by_gid(ax, "curve:"):
        assert c.get_ydata().max() == pytest.approx(1.0)
    ax = plotting.plot_emphasis_curves(methods=[("ce", {})], p=p, normalise=None)
    (c,) = _by_gid(ax, "curve:")
    assert np.allclose(c.get_ydata(), 2 * (1 - p))
    modes = [m.get_xdata()[0] for m in _by_gid(plotting.plot_emphasis_curves(methods=methods, p=p), "mode:")]
    assert modes == pytest.approx([0.0, 0.5, 1 / 3, 0.5 / 1.5])


def test_emphasis_curves_repeated_method_gets_shades_and_flat_gr_no_mode():
    methods = [("gr", {"lam": 1.0, "beta": b}) for b in (0.0, 4.0, 12.0)]
    ax = plotting.plot_emphasis_curves(methods=methods, mark_modes=True)
    curves = _by_gid(ax, "curve:")
    colours = [to_rgb(c.get_color()) for c in curves]
    assert len({tuple(np.round(c, 4)) for c in colours}) == 3
    assert np.allclose(colours[-1], to_rgb(METHOD_COLORS["gr"]))
    assert len(_by_gid(ax, "mode:")) == 2  # beta=0 is flat: no mode
    ax = plotting.plot_emphasis_curves(methods=methods, mark_modes=False, lw=3)
    assert _by_gid(ax, "mode:") == [] and all(c.get_linewidth() == 3 for c in _by_gid(ax, "curve:"))


def test_emphasis_curves_bad_arguments():
    with pytest.raises(ValueError, match="normalise"):
        plotting.plot_emphasis_curves(normalise="area")
    with pytest.raises(ValueError, match="unknown"):
        plotting.plot_emphasis_curves(methods=[("focal", {})])
    with pytest.raises(ValueError, match="sorted"):
        plotting.plot_emphasis_curves(p=[0.5, 0.2, 0.9])
    with pytest.raises(ValueError, match="outside"):
        plotting.plot_emphasis_curves(methods=[("gr", {"lam": -1.0, "beta": 1.0})])


def test_empirical_emphasis_batch_curve_passes_through_real_weights():
    torch.manual_seed(0)
    logits = torch.randn(64, 10) * 3
    targets = torch.randint(0, 10, (64,))
    out = grlib.get_loss("gr", lam=1.0, beta=12.0).details(logits, targets)
    ax = plotting.plot_empirical_emphasis(out.p, out.weight, name="gr", params={"lam": 1.0, "beta": 12.0})
    (line,) = [c for c in ax.lines if c.get_gid() == "analytic"]
    (sc,) = [c for c in ax.collections if c.get_gid() == "empirical"]
    pts = sc.get_offsets()
    assert len(pts) == 64
    # the batch-scaled analytic curve goes through every example's weight
    interp = np.interp(pts[:, 0], line.get_xdata(), line.get_ydata())
    assert np.allclose(interp, pts[:, 1], rtol=2e-2)
    with pytest.raises(ValueError, match="one length"):
        plotting.plot_empirical_emphasis([0.1, 0.2], [0.3], name="ce")


def test_empirical_emphasis_groups_and_batch_mean_scale():
    p = np.array([0.05, 0.1, 0.6, 0.9, 0.95])
    noisy = np.array([True, True, False, False, False])
    rel = 5 * (2 * (1 - p)) / (2 * (1 - p)).sum()  # CE weight x batch size
    ax = plotting.plot_empirical_emphasis(p, rel, name="ce", curve_scale="batch_mean", is_noisy=noisy)
    gids = {c.get_gid(): c for c in ax.collections}
    assert set(gids) == {"empirical:clean", "empirical:noisy"}
    assert len(gids["empirical:noisy"].get_offsets()) == 2
    assert np.allclose(gids["empirical:noisy"].get_facecolor()[0][:3], to_rgb(METHOD_COLORS["noisy"]))
    (line,) = [c for c in ax.lines if c.get_gid() == "analytic"]
    assert np.allclose(np.interp(p, line.get_xdata(), line.get_ydata()), rel, rtol=1e-3)
    ax = plotting.plot_empirical_emphasis(p, 2 * (1 - p), name="ce", curve_scale=1.0)
    (line,) = [c for c in ax.lines if c.get_gid() == "analytic"]
    assert np.allclose(line.get_ydata(), 2 * (1 - line.get_xdata()))
    with pytest.raises(ValueError, match="curve_scale"):
        plotting.plot_empirical_emphasis(p, rel, name="ce", curve_scale="sum")
    with pytest.raises(ValueError, match="is_noisy"):
        plotting.plot_empirical_emphasis(p, rel, name="ce", is_noisy=noisy[:2])


# -- histories and records -------------------------------------------------------
def test_plot_history_one_panel_per_field_one_line_per_run():
    results = {"ce": _fake_result("ce"), "gr(lam=1, beta=12)": _fake_result("gr")}
    fig = plotting.plot_history(results, fields=("test_acc", "noisy_fit", "test_acc"))
    assert isinstance(fig, matplotlib.figure.Figure)
    axes = fig.axes
    assert len(axes) == 3
    for ax in axes:
        assert len(ax.lines) == 2
        assert list(ax.lines[0].get_xdata()) == list(range(1, 7))
    assert np.allclose(axes[1].lines[1].get_ydata(), results["gr(lam=1, beta=12)"].history["noisy_fit"])
    assert np.allclose(to_rgb(axes[0].lines[0].get_color()), to_rgb(METHOD_COLORS["ce"]))
    fig2, given = plt.subplots(1, 2)
    assert plotting.plot_history(results, axes=given) is fig2
    with pytest.raises(ValueError, match="axes"):
        plotting.plot_history(results, axes=given[:1])
    with pytest.raises(KeyError, match="nope"):
        plotting.plot_history(results, fields=("nope",))


def test_weight_histogram_splits_clean_and_mislabelled_in_counts_and_relative_weights():
    res = _fake_result()
    ax = plotting.plot_weight_histogram(res, epoch=-1, field="weight", bins=20)
    groups = {p.get_gid() for p in ax.patches}
    assert groups == {"clean", "mislabelled"}
    clean = [p for p in ax.patches if p.get_gid() == "clean"]
    assert np.allclose(clean[0].get_facecolor()[:3], to_rgb(METHOD_COLORS["clean"]))
    # heights are counts: each group's bars add up to its number of examples
    for group, n in (("clean", int((~res.is_noisy).sum())), ("mislabelled", int(res.is_noisy.sum()))):
        assert _bar_heights(ax, group).sum() == pytest.approx(n)
    assert ax.get_ylabel() == "examples per bin"
    # x is weight x batch size: the mislabelled (0.03 of a batch) sit right of 1, the clean (0.01) left of it
    w = res.records["weight"][-1]
    scale = w.size / w.sum()
    assert peak_x(ax, "mislabelled") > 0.029 * scale > 1 > 0.012 * scale > peak_x(ax, "clean")
    assert ax.get_xlabel() == "weight x batch size (1 = batch average)"
    ax = plotting.plot_weight_histogram(res, epoch=2, field="p", log=True)
    assert ax.get_xscale() == "log" and "epoch 2" in ax.get_title() and ax.get_ylabel() == "examples per log bin"
    with pytest.raises(ValueError, match="not recorded"):
        plotting.plot_weight_histogram(res, epoch=99)
    with pytest.raises(KeyError):
        plotting.plot_weight_histogram(res, field="magnitude")
    with pytest.raises(ValueError, match="stat"):
        plotting.plot_weight_histogram(res, stat="density")


def _bar_heights(ax, group):
    """Heights of a step-filled histogram: the top edge of its polygon, one value per bin."""
    (patch,) = [p for p in ax.patches if p.get_gid() == group]
    v = patch.get_path().vertices
    n = (len(v) - 1) // 4  # stepfilled: up the left side, along the top, down, back along the bottom
    tops = v[1:2 * n + 1:2, 1]
    return tops


def peak_x(ax, group):
    v = np.concatenate([p.get_path().vertices for p in ax.patches if p.get_gid() == group])
    return v[np.argmax(v[:, 1]), 0]


def test_log_histogram_counts_per_bin_not_density():
    """A tail at large weights keeps its true height on log bins (a density would draw it ~40x too low)."""
    values = np.concatenate([np.full(500, 1.0), np.full(500, 80.0)])  # two equal groups of values
    ax = plotting.plot_group_histogram(values, None, bins=np.geomspace(0.5, 100, 9), log=True)
    heights = _bar_heights(ax, "all")
    assert sorted(heights[heights > 0]) == [500, 500]  # counts: both modes equally tall
    ax = plotting.plot_group_histogram(values, np.arange(1000) >= 500, bins=8, log=True, stat="share")
    assert _bar_heights(ax, "clean").sum() == pytest.approx(1)
    assert _bar_heights(ax, "mislabelled").max() == pytest.approx(1)
    assert ax.get_ylabel() == "share of group per log bin"
    # values outside explicit edges are counted in the end bins, not dropped
    ax = plotting.plot_group_histogram(np.array([0.1, 5.0, 500.0]), bins=[1.0, 10.0, 100.0])
    assert _bar_heights(ax, "all").tolist() == [2, 1]
    with pytest.raises(ValueError, match="positive"):
        plotting.plot_group_histogram(np.zeros(4), log=True)
    with pytest.raises(ValueError, match="finite"):
        plotting.plot_group_histogram(np.full(4, np.nan))


def test_trajectories_samples_medians_and_bands():
    res = _fake_result(n=100)
    ax = plotting.plot_trajectories(res, "p", n_per_group=5, quantiles=(0.25, 0.75))
    assert len(_by_gid(ax, "sample:clean")) == 5 and len(_by_gid(ax, "sample:mislabelled")) == 5
    (med_clean,) = _by_gid(ax, "median:clean")
    arr = res.records["p"][:, ~res.is_noisy]
    assert np.allclose(med_clean.get_ydata(), np.median(arr, axis=1))
    assert {c.get_gid() for c in ax.collections} == {"band:clean", "band:mislabelled"}
    # weights are always drawn as weight x batch size (1 = the batch average)
    ax = plotting.plot_trajectories(res, "weight", n_per_group=0, band=False)
    (med,) = _by_gid(ax, "median:mislabelled")
    w = res.records["weight"]
    expected = np.median(w[:, res.is_noisy] * (w.shape[1] / w.sum(axis=1, keepdims=True)), axis=1)
    assert np.allclose(med.get_ydata(), expected)
    assert len(ax.collections) == 0 and ax.get_ylabel().startswith("weight x batch size")
    with pytest.raises(ValueError, match="quantiles"):
        plotting.plot_trajectories(res, quantiles=(0.9, 0.1))


def test_record_views_without_noise_mask_draw_one_group():
    res = _fake_result(n=50)
    res.is_noisy = None  # real data: the mislabelled examples are unknown
    ax = plotting.plot_trajectories(res, "p", n_per_group=3)
    assert len(_by_gid(ax, "median:all")) == 1 and len(_by_gid(ax, "sample:all")) == 3
    ax = plotting.plot_weight_histogram(res)
    assert {p.get_gid() for p in ax.patches} == {"all"}
    assert _bar_heights(ax, "all").sum() == 50
    ax = plotting.plot_share_above(res)
    assert [line.get_gid() for line in ax.lines] == ["share:all"]
    ax = plotting.plot_p_heatmap(res, group="all", colorbar=False)
    with pytest.raises(ValueError, match="noise mask"):
        plotting.plot_p_heatmap(res, group="mislabelled")
    with pytest.raises(ValueError, match="noise mask"):
        plotting.plot_roc(np.zeros(50), None)


def test_share_above_and_heatmap_show_a_bimodal_group():
    """Mislabelled examples at p near 0 or near 1: the share above 0.5 and the two bands of the heat map say so."""
    n, epochs = 200, 5
    is_noisy = np.arange(n) < 80
    p = np.full((epochs, n), 0.95)
    p[:, :40] = 0.02  # half the mislabelled stay unfitted ...
    p[:, 40:80] = 0.98  # ... half are fitted
    res = grlib.RunResult(config={"loss": "gr"}, y_given=np.zeros(n, int), y_true=np.zeros(n, int),
                          is_noisy=is_noisy, num_classes=2, records={"eval_p": p.astype(np.float32)},
                          epochs_completed=epochs)
    ax = plotting.plot_share_above(res)
    (noisy,) = _by_gid(ax, "share:mislabelled")
    (clean,) = _by_gid(ax, "share:clean")
    assert np.allclose(noisy.get_ydata(), 0.5) and np.allclose(clean.get_ydata(), 1.0)
    assert list(noisy.get_xdata()) == [1, 2, 3, 4, 5] and ax.get_ylabel() == "share with p > 0.5"
    fig, ax = plt.subplots()
    plotting.plot_p_heatmap(res, group="mislabelled", bins=10, ax=ax)
    (mesh,) = [c for c in ax.collections if c.get_gid() == "heatmap:mislabelled"]
    shares = np.asarray(mesh.get_array()).reshape(10, epochs)
    assert np.allclose(shares[0], 0.5) and np.allclose(shares[-1], 0.5) and np.allclose(shares[1:-1], 0)
    assert len(fig.axes) == 2  # and its colour bar


def test_distribution_grid_gives_each_run_its_own_x_axis():
    ce, gr = _fake_result("ce"), _fake_result("gr", seed=1)
    gr.records["weight"] = (gr.records["weight"] * 1e-3 + 1 / 200).astype(np.float32)  # a much narrower spread
    fig = plotting.plot_distribution_grid({"ce": ce, "gr": gr}, "weight", [2, -1], log=True, auc_field="p")
    axes = np.asarray(fig.axes).reshape(2, 2)
    assert axes[0, 0].get_xlim() == axes[0, 1].get_xlim()  # shared within a run
    assert axes[0, 0].get_xlim() != axes[1, 0].get_xlim()  # not across runs
    lo, hi = axes[1, 0].get_xlim()
    assert hi / lo < 1.1  # GR fills its panel instead of a sliver of CE's range
    assert axes[0, 1].get_title().startswith("ce, epoch 6: AUC ")
    with pytest.raises(ValueError, match="not recorded"):
        plotting.plot_distribution_grid({"ce": ce}, "p", [50])


# -- separation ------------------------------------------------------------------
def test_plot_roc_matches_separation_auc():
    rng = np.random.default_rng(1)
    is_noisy = rng.random(300) < 0.4
    scores = rng.normal(size=300) + (~is_noisy) * 1.5
    ax = plotting.plot_roc(scores, is_noisy, label="p")
    (roc,) = [line for line in ax.lines if line.get_gid() == "roc"]
    auc = np.trapezoid(roc.get_ydata(), roc.get_xdata())
    assert auc == pytest.approx(grlib.separation_auc(scores, is_noisy), abs=1e-9)
    assert f"{auc:.2f}" in roc.get_label()
    plotting.plot_roc(-scores, is_noisy, ax=ax, label="-p")
    assert sum(line.get_gid() == "chance" for line in ax.lines) == 1
    assert sum(line.get_gid() == "roc" for line in ax.lines) == 2
    with pytest.raises(ValueError, match="both"):
        plotting.plot_roc(scores, np.zeros(300, bool))


def test_plot_separation_auc_lines():
    tables = {"ce": grlib.separation_table(_fake_result("ce")), "gr(lam=1, beta=12)": grlib.separation_table(_fake_result("gr"))}
    ax = plotting.plot_separation_auc(tables, "auc_eval_p")
    lines = [line for line in ax.lines if line.get_gid() in tables]
    assert len(lines) == 2
    assert np.allclose(lines[0].get_ydata(), tables["ce"]["auc_eval_p"])
    assert np.allclose(to_rgb(lines[1].get_color()), to_rgb(METHOD_COLORS["gr"]))
    with pytest.raises(KeyError, match="auc_magnitude"):
        plotting.plot_separation_auc(tables, "auc_magnitude")


def test_plot_image_grid():
    imgs = np.random.default_rng(0).random((5, 64))
    fig = plotting.plot_image_grid(imgs, titles=list("abcde"), image_shape=(8, 8), ncols=3)
    shown = [ax for ax in fig.axes if ax.images]
    assert len(shown) == 5 and len(fig.axes) == 6
    assert [ax.get_title() for ax in shown] == list("abcde")
    assert np.allclose(shown[1].images[0].get_array(), imgs[1].reshape(8, 8))
    with pytest.raises(ValueError, match="titles"):
        plotting.plot_image_grid(imgs, titles=["a"], image_shape=(8, 8))
    with pytest.raises(ValueError, match="H, W"):
        plotting.plot_image_grid(imgs)


def test_weight_histogram_log_keeps_zero_weights_in_first_bin():
    import matplotlib

    matplotlib.use("Agg")
    from grlib.plotting import plot_weight_histogram

    r = grlib.RunResult(config={"loss": "ce"}, y_given=np.zeros(6, int), y_true=np.zeros(6, int),
                        is_noisy=np.array([False, False, False, True, True, True]), num_classes=2,
                        records={"weight": np.array([[0.0, 0.1, 0.2, 0.3, 0.4, 0.5]], np.float32)},
                        epochs_completed=1)
    ax = plot_weight_histogram(r, log=True, bins=5)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[0] == "clean (n=3, 1 at 0 in the first bin)" and labels[1] == "mislabelled (n=3)"
    assert _bar_heights(ax, "clean")[0] == 2  # the zero weight and the smallest positive one


# -- kinds: outliers and corrupted inputs (issue 14) ----------------------------------------------
def _kinds_fake_result(loss="ce", seed=0, n=200, epochs=6):
    """_fake_result with 20 of its clean examples made outliers (p 0.3 t) and 20 corrupted (p 0.6 t)."""
    res = _fake_result(loss, epochs=epochs, n=n, seed=seed)
    clean = np.flatnonzero(~res.is_noisy)
    outlier, corrupted = np.zeros(n, bool), np.zeros(n, bool)
    outlier[clean[:20]], corrupted[clean[20:40]] = True, True
    t = np.linspace(0.1, 1.0, epochs)[:, None]
    for field in ("p", "eval_p"):
        p = res.records[field].astype(np.float64)
        p[:, outlier] = 0.3 * t
        p[:, corrupted] = 0.6 * t
        res.records[field] = p.astype(np.float32)
    res.masks = {"is_outlier": outlier, "is_corrupted": corrupted}
    return res


def test_group_colours_and_labels_of_the_kinds():
    assert plotting.group_color("outlier") == plotting.GROUP_COLORS["outlier"] == "#9467bd"
    assert plotting.group_color("corrupted") == "#ff7f0e"
    assert plotting.group_color("mislabelled") == METHOD_COLORS["noisy"]
    assert plotting.group_color("clean") == METHOD_COLORS["clean"]
    assert len({plotting.group_color(g) for g in ("clean", "mislabelled", "outlier", "corrupted", "all")}) == 5
    assert plotting.GROUP_LABELS["other"] == "other examples"


def test_record_views_draw_one_group_per_kind():
    res = _kinds_fake_result()
    kinds = ["clean", "mislabelled", "outlier", "corrupted"]
    ax = plotting.plot_trajectories(res, "p", n_per_group=2)
    assert [line.get_gid() for line in _by_gid(ax, "median:")] == [f"median:{k}" for k in kinds]
    (med,) = _by_gid(ax, "median:outlier")
    assert np.allclose(med.get_ydata(), np.median(res.records["p"][:, res.masks["is_outlier"]], axis=1))
    assert np.allclose(to_rgb(med.get_color()), to_rgb("#9467bd"))
    ax = plotting.plot_share_above(res)
    assert [line.get_gid() for line in ax.lines] == [f"share:{k}" for k in kinds]
    (outl,) = _by_gid(ax, "share:outlier")
    assert np.allclose(outl.get_ydata(), (0.3 * np.linspace(0.1, 1, 6) > 0.5))  # 0.3 t never above 0.5
    ax = plotting.plot_weight_histogram(res, field="p", stat="share")
    assert {p.get_gid() for p in ax.patches} == set(kinds)
    assert _bar_heights(ax, "corrupted").sum() == pytest.approx(1)
    fig, ax = plt.subplots()
    plotting.plot_p_heatmap(res, group="corrupted", ax=ax, colorbar=False)
    (mesh,) = ax.collections
    assert mesh.get_gid() == "heatmap:corrupted" and mesh.get_cmap().name == "Oranges"
    with pytest.raises(ValueError, match="'is_outlier' mask"):
        plotting.plot_p_heatmap(_fake_result(), group="outlier")


def test_distribution_grid_titles_give_each_kind_against_clean():
    from grlib.views import kind_selection

    res, plain = _kinds_fake_result(), _fake_result("gr")
    fig = plotting.plot_distribution_grid({"ce": res, "gr": plain}, "p", [-1], auc_field="p")
    kinds_title, plain_title = (ax.get_title() for ax in fig.axes)
    p = res.records["p"][-1]
    expected = []
    for kind, short in (("mislabelled", "misl."), ("outlier", "outl."), ("corrupted", "corr.")):
        selected, is_kind = kind_selection(res, kind)
        expected.append(f"{short} {grlib.separation_auc(p[selected], is_kind):.2f}")
    assert kinds_title == "ce, epoch 6\nAUC " + ", ".join(expected)
    # a run with only the noise mask: the title of before
    assert plain_title == f"gr, epoch 6: AUC {grlib.separation_auc(plain.records['p'][-1], plain.is_noisy):.2f}"


def test_separation_by_kind_rows_curves_and_the_plain_case():
    from grlib.views import separation_by_epoch

    ce, gr = _kinds_fake_result("ce"), _kinds_fake_result("gr", seed=1)
    fig = plotting.plot_separation_by_kind({"ce": ce, "gr(lam=1, beta=12)": gr}, "eval_p", [2, -1],
                                           emphasis_field="weight")
    axes = np.asarray(fig.axes).reshape(3, 3)
    assert [row[0].get_title() for row in axes] == [f"{k} vs clean: ROC of p (clean is positive)"
                                                  for k in ("mislabelled", "outlier", "corrupted")]
    assert axes[1, 0].get_xlabel() == "outlier called clean (FPR)"
    # ROC: one line per run and epoch, its AUC that of the kind against the clean examples
    rocs = [line for line in axes[1, 0].lines if line.get_gid() == "roc"]
    assert [r.get_label().split(" (AUC")[0] for r in rocs] == [
        "ce, epoch 2", "ce, epoch 6", "gr(lam=1, beta=12), epoch 2", "gr(lam=1, beta=12), epoch 6"]
    auc = np.trapezoid(rocs[1].get_ydata(), rocs[1].get_xdata())
    expected = separation_by_epoch(ce, ("eval_p", "weight"), kind="outlier")
    assert auc == pytest.approx(expected["auc_eval_p"].iloc[-1], abs=1e-9)
    (ce_line,) = [line for line in axes[1, 1].lines if line.get_gid() == "ce"]
    assert np.allclose(ce_line.get_ydata(), expected["auc_eval_p"])
    (w_line,) = [line for line in axes[2, 2].lines if line.get_gid() == "ce"]
    assert np.allclose(w_line.get_ydata(), separation_by_epoch(ce, ("weight",), kind="corrupted")["auc_weight"])
    # only the noise mask: one row, the titles of before
    fig = plotting.plot_separation_by_kind({"ce": _fake_result("ce")}, "eval_p", {"ce": [-1]})
    assert len(fig.axes) == 3 and fig.axes[0].get_title() == "ROC of p (clean is positive)"
    assert fig.axes[1].get_title() == "separation by p, per epoch" and not fig.axes[2].lines  # no emphasis field
    # a run without the noise mask is left out; with none left, a clear error
    unmasked = _fake_result()
    unmasked.is_noisy = None
    fig = plotting.plot_separation_by_kind({"a": unmasked, "ce": _fake_result()}, "p", [-1])
    assert [r.get_label().split(",")[0] for r in fig.axes[0].lines if r.get_gid() == "roc"] == ["ce"]
    with pytest.raises(ValueError, match="noise mask"):
        plotting.plot_separation_by_kind({"a": unmasked}, "p", [-1])


def test_weight_share_lines_and_population_share():
    from grlib.views import weight_shares

    ce, gr = _kinds_fake_result("ce"), _kinds_fake_result("gr", seed=1)
    ax = plotting.plot_weight_share({"ce": ce, "gr": gr}, "outlier")
    (line,) = _by_gid(ax, "share:ce")
    assert np.allclose(line.get_ydata(), weight_shares(ce)["outlier"])
    (ref,) = _by_gid(ax, "population:gr")
    assert ref.get_ydata()[0] == pytest.approx(20 / 200)
    assert np.allclose(to_rgb(line.get_color()), to_rgb(METHOD_COLORS["ce"]))
    assert ax.get_ylabel() == "share of weight on outlier" and ax.get_ylim() == (0, 1)
    ax = plotting.plot_weight_share({"ce": _fake_result()})  # the mislabelled, as notebook 02 drew it before
    assert ax.get_ylabel() == "share of weight on mislabelled" and len(_by_gid(ax, "share:")) == 1
    with pytest.raises(ValueError, match="'outlier'"):
        plotting.plot_weight_share({"ce": _fake_result()}, "outlier")
