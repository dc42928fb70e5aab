"""The training loop: records, determinism, persistence, stopping, bad settings, and real separation."""
import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

import grlib
from grlib import RunConfig, train
from grlib.metrics import precision_at_rate, separation_auc

FAST = dict(epochs=3, n_train=300, progress=False)


def test_records_shapes_and_fields():
    r = train(**FAST)
    E, n = 3, 300
    for k in ("p", "weight", "log_emphasis", "loss", "eval_p"):
        assert r.records[k].shape == (E, n) and r.records[k].dtype == np.float32
        assert np.isfinite(r.records[k]).all(), k
    assert r.records["pred"].dtype == np.int16 and (r.records["pred"] >= 0).all()
    assert ((r.records["p"] >= 0) & (r.records["p"] <= 1)).all()
    h = r.history_frame()
    assert list(h["epoch"]) == [1, 2, 3] and h["test_acc"].between(0, 1).all()
    # weights are normalised within each batch: over an epoch they sum to the number of batches
    n_batches = int(np.ceil(n / 64))
    np.testing.assert_allclose(r.records["weight"].sum(1), n_batches, rtol=1e-4)
    # memorisation metrics agree with the eval-pass records
    pred = r.records["eval_pred"][-1]
    noisy = r.is_noisy
    assert h["noisy_fit"].iloc[-1] == pytest.approx((pred[noisy] == r.y_given[noisy]).mean())
    assert h["clean_acc"].iloc[-1] == pytest.approx((pred[~noisy] == r.y_given[~noisy]).mean())


def test_tidy_frame():
    r = train(**FAST)
    df = r.to_frame()
    assert len(df) == 3 * 300
    assert {"epoch", "index", "given", "true", "is_noisy", "p", "weight", "loss", "correct"} <= set(df.columns)
    row = df[(df.epoch == 2) & (df["index"] == 17)].iloc[0]
    assert row.p == pytest.approx(float(r.records["p"][1, 17]))
    assert bool(row.is_noisy) == bool(r.is_noisy[17])
    assert (df.groupby("epoch").size() == 300).all()


def test_same_seed_same_numbers_on_cpu():
    a = train(**FAST, device="cpu", seed=5)
    b = train(**FAST, device="cpu", seed=5)
    c = train(**FAST, device="cpu", seed=6)
    for k in a.records:
        np.testing.assert_array_equal(a.records[k], b.records[k])
    np.testing.assert_array_equal(a.history["test_acc"], b.history["test_acc"])
    assert not np.array_equal(a.records["p"], c.records["p"])


def test_save_and_load_roundtrip(tmp_path):
    r = train(**FAST)
    r.save(tmp_path / "run")
    q = grlib.RunResult.load(tmp_path / "run", with_model=True)
    assert q.config == r.config and q.epochs_completed == 3
    for k in r.records:
        np.testing.assert_array_equal(q.records[k], r.records[k])
    pd.testing.assert_frame_equal(q.history_frame(), r.history_frame())
    assert q.summary() == r.summary()
    d = grlib.load_dataset("digits", n_train=300)
    np.testing.assert_allclose(grlib.predict_proba(q.model, d.x_test[:10]),
                               grlib.predict_proba(r.model, d.x_test[:10]), rtol=1e-6)
    assert not list((tmp_path / "run").glob("*.tmp"))


def test_callback_can_stop():
    seen = []

    def cb(epoch, result):
        seen.append(epoch)
        return epoch == 2

    r = train(**{**FAST, "epochs": 10}, callbacks=[cb])
    assert seen == [1, 2] and r.epochs_completed == 2 and "callback" in r.stopped
    assert len(r.history_frame()) == 2


def test_nonfinite_loss_stops_with_epoch_step_and_keeps_records():
    d = grlib.load_dataset("digits", n_train=300)
    d.x_train[150:] = np.nan  # any batch holding one of these examples gives a NaN loss
    cfg = RunConfig(epochs=3, n_train=300, batch_size=64)
    with pytest.raises(grlib.NonFiniteLossError, match=r"non-finite loss or gradient at epoch 1, step 1") as ei:
        train(cfg, data=d, progress=False)
    err = ei.value
    assert err.epoch == 1 and err.step == 1
    res = err.result
    # no epoch completed; the interrupted epoch's rows are kept and marked partial
    assert res.epochs_completed == 0 and res.partial_epoch == 1 and res.records["p"].shape == (1, 300)
    p1 = res.records["p"][0]
    seen = res.records["pred"][0] >= 0
    assert seen.sum() == 60  # 5 near-equal batches of 60: exactly the failing first step's batch was recorded, every later step dropped
    bad_rows = seen & (np.arange(300) >= 150)
    assert bad_rows.any() and np.isnan(p1[bad_rows]).all() and np.isfinite(p1[seen & ~bad_rows]).all()
    r = train(cfg, data=d, progress=False, on_nonfinite="stop")
    assert r.stopped.startswith("non-finite loss or gradient at epoch 1, step 1")


@pytest.mark.parametrize("changes,exc,match", [
    (dict(batch_size=0), ValueError, r"batch_size=0 is too small; allowed: integers >= 1"),
    (dict(epochs=0), ValueError, r"epochs=0 is too small"),
    (dict(loss="focal"), ValueError, r"valid names: ce, mae, mse, gce, sce, nce\+rce, gr"),
    (dict(model="vit"), ValueError, r"model='vit' is not one of the allowed values: 'mlp', 'cnn'"),
    (dict(noise_rate=1.0), ValueError, r"noise_rate=1.0 is outside the allowed range \[0.0, 1.0\)"),
    (dict(loss_params={"lam": -1.0, "beta": 1.0}), ValueError, r"lam=-1.0"),
    (dict(loss_params={"lam": 1.0, "beta": float("nan")}), ValueError, r"beta=nan must be finite"),
    (dict(loss="gce", loss_params={"q": 2.0}), ValueError, r"q=2.0 is outside the allowed range \(0.0, 1.0\]"),
    (dict(lr=0.0), ValueError, r"lr=0.0 is outside"),
    (dict(optimizer="lbfgs"), ValueError, r"optimizer='lbfgs'"),
    (dict(epochs=2.5), TypeError, r"epochs must be an integer, got 2.5"),
])
def test_bad_settings(changes, exc, match):
    with pytest.raises(exc, match=match):
        RunConfig(**changes)


def test_config_roundtrip_and_unknown_keys():
    cfg = RunConfig(loss="gce", loss_params={"q": 0.5}, hidden=[32])
    assert RunConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match=r"unknown run setting\(s\) \['epoch'\]"):
        RunConfig.from_dict({"epoch": 3})
    assert cfg.label == "gce(q=0.5)"
    assert dataclasses.replace(cfg, seed=3).seed == 3


def test_empty_training_set_rejected():
    d = grlib.load_dataset("digits")
    d.x_train, d.y_train = d.x_train[:0], d.y_train[:0]
    with pytest.raises(ValueError, match=r"labels is empty|training split is empty"):
        train(epochs=1, data=d, progress=False)


def test_clean_labels_have_no_noisy_metrics():
    r = train(**FAST, noise="none")
    assert not r.is_noisy.any() and np.isnan(r.history["noisy_fit"]).all()


def test_validation_split_uses_noisy_labels():
    r = train(**FAST, val_fraction=0.2)
    assert np.isfinite(r.history["val_acc"]).all()


@pytest.mark.slow
def test_gr_separates_clean_from_mislabelled_on_digits():
    """The point of the project: GR on digits with 40% symmetric noise.

    lam=1, beta=12 (IMAE-centred emphasis at p=0.5, selective): after 30 epochs
    the model has learnt the clean majority but fitted few mislabelled examples,
    so the probability of the given label ranks clean above mislabelled.
    """
    r = train(epochs=30, loss="gr", loss_params={"lam": 1.0, "beta": 12.0}, seed=0, progress=False)
    p = r.record("eval_p", -1)
    noisy = r.is_noisy
    assert abs(noisy.mean() - 0.4) < 0.05
    assert p[~noisy].mean() > p[noisy].mean() + 0.3
    auc_p = separation_auc(p, noisy)
    assert auc_p > 0.9, auc_p
    # the training-pass weight: for lam=1 GR emphasises p near 0.5, not the hard (mostly mislabelled)
    # examples, so "higher weight says clean" scores above CE's, whose weight 2(1-p) favours the mislabelled
    ce = train(epochs=30, loss="ce", loss_params={}, seed=0, progress=False)
    auc_w_gr = separation_auc(r.record("weight", -1), noisy)
    auc_w_ce = separation_auc(ce.record("weight", -1), noisy)
    # CE's weight clearly favours the mislabelled (AUC well below 0.5); GR's much less so
    assert auc_w_ce < 0.4 and auc_w_gr > auc_w_ce + 0.1, (auc_w_gr, auc_w_ce)
    print(f"GR(lam=1, beta=12) 30 epochs: AUC p={auc_p:.3f}, AUC weight={auc_w_gr:.3f}; CE AUC weight={auc_w_ce:.3f}")
    assert precision_at_rate(p, noisy) > 0.8


@pytest.mark.parametrize("schedule,expected", [
    ("constant", [0.05] * 8),
    ("step", [0.05] * 4 + [0.005] * 2 + [0.0005] * 2),
])
def test_learning_rate_schedules(schedule, expected):
    r = train(epochs=8, n_train=200, schedule=schedule, progress=False)
    np.testing.assert_allclose(r.history["lr"], expected, rtol=1e-9)


def test_cosine_schedule_and_adam():
    r = train(epochs=4, n_train=200, schedule="cosine", optimizer="adam", lr=1e-3, progress=False)
    expected = [1e-3 * (1 + np.cos(np.pi * e / 4)) / 2 for e in range(4)]
    np.testing.assert_allclose(r.history["lr"], expected, rtol=1e-9)
    assert np.isfinite(r.history["test_acc"]).all()


def test_cnn_run_saves_and_reloads_its_model(tmp_path):
    r = train(epochs=1, n_train=200, model="cnn", progress=False)
    r.save(tmp_path / "cnn")
    q = grlib.RunResult.load(tmp_path / "cnn", with_model=True)
    x = grlib.load_dataset("digits").x_test[:8]
    np.testing.assert_allclose(grlib.predict_proba(q.model, x), grlib.predict_proba(r.model, x), rtol=1e-6)


# -- the open train(): your model, data, optimizer, scheduler, transform (issue 9) ---------------------------------
class _Images(torch.utils.data.Dataset):
    """A user's own map-style Dataset of images [1, 8, 8] (no .targets: train() reads the labels in one pass)."""

    def __init__(self, x, y):
        self.x, self.y = torch.as_tensor(x, dtype=torch.float32).view(-1, 1, 8, 8), torch.as_tensor(y)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


def _cnn():
    return torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
                               torch.nn.Linear(8 * 64, 10))


def _random_roll(x):  # a user's augmentation: uses torch's global RNG (seeded per example by grlib)
    return torch.roll(x, int(torch.randint(-1, 2, ())), dims=-1)


def test_user_model_dataset_transform_adamw_onecycle_same_records_for_any_workers():
    d = grlib.load_dataset("digits", n_train=300)
    runs = {}
    for workers in (0, 2):
        runs[workers] = train(
            data=_Images(d.x_train, d.y_train), test_data=_Images(d.x_test, d.y_test), model=_cnn,
            transform=_random_roll, optimizer=torch.optim.AdamW, lr=1e-3, epochs=3, noise="symmetric",
            scheduler=lambda opt: torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-2, total_steps=3 * 5),
            num_workers=workers, data_name="my-digits", progress=False)
    r = runs[0]
    assert r.config["model"] == "user:Sequential" and r.config["optimizer"] == "adamw"
    assert r.config["schedule"] == "user:OneCycleLR" and r.config["dataset"] == "my-digits"
    assert r.metadata["data_name"] == "my-digits" and np.isfinite(r.history["test_acc"]).all()
    lr = r.history["lr"]
    assert lr[0] < lr[1] and lr[2] < lr[1]  # one-cycle, stepped per batch
    assert r.is_noisy is not None and abs(r.is_noisy.mean() - 0.4) < 0.1
    for f in ("p", "pred", "margin", "weight", "eval_p"):
        np.testing.assert_array_equal(runs[2].records[f], r.records[f], err_msg=f)


def test_arrays_of_any_float_dtype_and_images_for_a_user_model():
    d = grlib.load_dataset("digits", n_train=200)
    x = d.x_train.astype(np.float64).reshape(-1, 1, 8, 8)
    with pytest.warns(UserWarning, match=r"adding symmetric synthetic label noise at rate 0.4 to your data"):
        noisy_run = train(data=(x, d.y_train), model=_cnn(), epochs=1, progress=False)
    assert noisy_run.is_noisy is not None and noisy_run.config["dataset"] == "arrays"
    r = train(data=(x, d.y_train), test_data=(d.x_test.reshape(-1, 1, 8, 8), d.y_test), model=_cnn, epochs=2,
              noise="none", progress=False)
    assert r.is_noisy is None and r.y_true is None  # your labels as they are: the mask is unknown
    assert np.isnan(r.summary()["noisy_fit"]) and np.isfinite(r.summary()["final_acc"])
    assert r.model_inputs["image_shape"] == [1, 8, 8]


@pytest.mark.parametrize("optimizer", [None, torch.optim.AdamW, torch.optim.RMSprop])
def test_no_non_finite_update_reaches_the_weights(optimizer):
    """Issue 13 item 3 / issue 9 item 3: MAE with infinite logits has a finite loss but NaN gradients."""
    d = grlib.load_dataset("digits", n_train=300)
    d.x_train[250:, 0] = 1e30  # a marker: the model below gives these examples a +inf logit

    class InfLogit(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = grlib.get_model("mlp", in_features=64, num_classes=10)

        def forward(self, x):
            z = self.net(x)
            return torch.where((x[:, :1] > 1e29) & (torch.arange(10) == 3), torch.tensor(float("inf")), z)

    cfg = RunConfig(epochs=2, n_train=300, loss="mae", loss_params={}, lr=1e-3)
    with pytest.raises(grlib.NonFiniteLossError, match=r"at epoch 1, step \d+") as ei:
        train(cfg, data=d, model=InfLogit, optimizer=optimizer, progress=False)
    res = ei.value.result
    assert all(torch.isfinite(p).all() for p in res.model.parameters())
    # the failing step is the first one whose batch holds a marked example; its rows were recorded, no later ones
    seen = res.records["pred"][0] >= 0
    assert seen[250:].any() and seen.sum() == 60 * ei.value.step


def test_train_refuses_a_string_config():
    with pytest.raises(TypeError, match=r"config must be a grlib.RunConfig or None, got str 'digits'.*"
                                        r"train\(dataset='digits'\)"):
        train("digits")
    with pytest.raises(ValueError, match=r"dataset='mnist' is not one of grlib's data sets"):
        train(dataset="mnist", epochs=1, progress=False)


# -- the paper's protocol (issue 11) ----------------------------------------------------------------------------------
def test_protocol_presets_explicit_overrides_and_replace():
    paper = RunConfig(protocol="paper")
    assert (paper.lr, paper.momentum, paper.weight_decay, paper.schedule) == (0.1, 0.9, 5e-4, "step")
    assert paper.batchnorm and paper.augment
    assert (paper.aug_shift, paper.aug_flip, paper.aug_noise) == (1, False, 0.2)  # digits' defaults
    fm = RunConfig(protocol="paper", dataset="fashion_mnist")
    assert (fm.aug_shift, fm.aug_flip, fm.aug_noise) == (2, True, 0.0)
    mine = RunConfig(protocol="paper", lr=0.02, augment=False)
    assert mine.lr == 0.02 and not mine.augment and mine.schedule == "step"
    assert paper.replace(protocol="none").lr == 0.05 and not paper.replace(protocol="none").batchnorm
    assert mine.replace(protocol="none").lr == 0.02  # given explicitly: kept
    assert RunConfig().replace(protocol="paper").schedule == "step"
    d = paper.to_dict()
    assert d["protocol"] == "paper" and d["lr"] == 0.1 and d["aug_shift"] == 1
    assert RunConfig.from_dict(d) == paper
    with pytest.raises(ValueError, match=r"aug_flip=True is refused for dataset='digits'"):
        RunConfig(augment=True, aug_flip=True)
    with pytest.raises(ValueError, match=r"protocol='cifar' is not one of the allowed values: 'none', 'paper'"):
        RunConfig(protocol="cifar")
    with pytest.raises(TypeError, match=r"hidden must be a sequence of layer widths"):
        RunConfig(hidden="256")


def test_augmentation_is_seeded_and_on_the_training_pass_only():
    cfg = RunConfig(epochs=2, n_train=300, augment=True, batchnorm=True)
    a, b = train(cfg, progress=False), train(cfg, progress=False)
    np.testing.assert_array_equal(a.records["p"], b.records["p"])  # same seed, same numbers
    plain = train(cfg.replace(augment=False), progress=False)
    assert not np.array_equal(plain.records["p"][0], a.records["p"][0])  # the training pass saw augmented inputs
    # the evaluation pass saw the clean inputs: recompute it from the final model
    data, noisy, _ = grlib.prepare(cfg)
    p_clean = grlib.predict_proba(a.model, data.x_train)[np.arange(300), noisy.labels]
    np.testing.assert_allclose(a.record("eval_p", -1), p_clean, rtol=1e-5, atol=1e-6)
    assert a.config["augment"] and a.config["aug_noise"] == 0.2 and a.config["batchnorm"]


@pytest.mark.parametrize("make", [
    lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=5e-4, fused=True),
    lambda ps: torch.optim.AdamW(ps, lr=0.1, fused=True),
    lambda ps: torch.optim.RMSprop(ps, lr=0.1, momentum=0.5, weight_decay=5e-4),  # no fused kernel: restored
])
def test_step_guard_skips_the_update_and_the_optimizer_state_on_the_device(make):
    from grlib.train import _StepGuard

    torch.manual_seed(0)
    net = torch.nn.Linear(4, 3)
    opt = make(net.parameters())
    guard = _StepGuard(opt, torch.device("cpu"))
    x = torch.randn(5, 4)
    loss = net(x).pow(2).mean()
    loss.backward()
    guard.step(loss)  # a good step: state exists now
    snap = lambda: ([p.detach().clone() for p in net.parameters()],  # noqa: E731
                    [t.clone() for st in opt.state.values() for t in st.values() if isinstance(t, torch.Tensor)])
    before = snap()
    for bad in (True, False):  # a non-finite gradient, then a finite one: both skipped (the flag is sticky)
        opt.zero_grad()
        loss = net(x).pow(2).mean()
        loss.backward()
        if bad:
            net.weight.grad[0, 0] = float("nan")
        guard.step(loss)
    after = snap()
    for a, b in zip(before[0] + before[1], after[0] + after[1]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert guard.has_failed() and int(guard.after.item()) == 2


def test_outliers_and_corrupted_inputs_flow_through_train_and_save(tmp_path):
    """Issue 14: the kinds are disjoint, kept as masks on the run, saved, and usable by any separation metric."""
    r = train(epochs=2, n_train=400, noise_rate=0.2, outlier_fraction=0.1, corruption_fraction=0.05,
              outlier_source="noise", progress=False)
    counts = np.bincount(r.example_kind, minlength=4)
    assert counts[2] == 40 and counts[3] == 20 and counts[1] == r.is_noisy.sum()
    assert not (r.mask("is_outlier") & r.is_noisy).any() and not (r.mask("is_corrupted") & r.mask("is_outlier")).any()
    frame = r.to_frame(epochs=[2])
    assert set(frame["kind"]) == {"clean", "mislabelled", "outlier", "corrupted"}
    assert r.metadata["outlier_source_used"] == "noise"
    clean = r.example_kind == 0
    np.testing.assert_allclose(r.history["clean_acc"][-1],
                               (r.record("eval_pred", -1) == r.y_given)[clean].mean(), rtol=1e-6)
    q = grlib.RunResult.load(r.save(tmp_path / "kinds"))
    np.testing.assert_array_equal(q.example_kind, r.example_kind)
    auc = separation_auc(r.record("eval_p", -1), r.mask("is_outlier"))
    assert 0.0 <= auc <= 1.0
    with pytest.raises(KeyError, match=r"mask 'is_blurred' is not known for this run; known: \['is_noisy', "
                                       r"'touched', 'is_corrupted', 'is_outlier'\]"):
        r.mask("is_blurred")
    with pytest.raises(ValueError, match=r"noise_rate \+ outlier_fraction \+ corruption_fraction = 1.1 must be below 1"):
        RunConfig(noise_rate=0.5, outlier_fraction=0.3, corruption_fraction=0.3)


def test_runconfig_default_loss_params_follow_the_loss():
    """GR's (lam, beta) are the default for "gr" only: RunConfig(loss="ce") needs no loss_params={}."""
    from grlib.config import DEFAULT_GR_PARAMS

    assert grlib.RunConfig().loss_params == DEFAULT_GR_PARAMS
    assert grlib.RunConfig(loss="ce").loss_params == {}
    assert grlib.RunConfig(loss="gce").loss_params == {}
    assert grlib.RunConfig(loss="gr", loss_params={"lam": 2.0, "beta": 20.0}).loss_params == {"lam": 2.0, "beta": 20.0}
    with pytest.raises(TypeError, match=r"loss 'ce' got unknown parameter\(s\) \['lam'\]"):
        grlib.RunConfig(loss="ce", loss_params={"lam": 1.0})
