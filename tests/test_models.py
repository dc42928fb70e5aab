"""grlib.models: the BatchNorm option of the MLP and the CNN, checkpoint layout without it, bad inputs."""
import numpy as np
import pytest
import torch
from torch import nn

import grlib
from grlib.models import MLP, SmallCNN, get_model

# The state_dict layout of models saved before the BatchNorm option: it must stay loadable.
OLD_MLP_KEYS = {"net.0.weight": (256, 64), "net.0.bias": (256,), "net.2.weight": (256, 256), "net.2.bias": (256,),
                "net.4.weight": (10, 256), "net.4.bias": (10,)}
OLD_CNN_KEYS = {"features.0.weight": (32, 1, 3, 3), "features.0.bias": (32,), "features.3.weight": (64, 32, 3, 3),
                "features.3.bias": (64,), "head.1.weight": (128, 64 * 2 * 2), "head.1.bias": (128,),
                "head.3.weight": (10, 128), "head.3.bias": (10,)}


def build(name, batchnorm=False, **kw):
    return get_model(name, in_features=64, num_classes=10, image_shape=(1, 8, 8), batchnorm=batchnorm, **kw)


@pytest.mark.parametrize("name, keys", [("mlp", OLD_MLP_KEYS), ("cnn", OLD_CNN_KEYS)])
def test_layout_without_batchnorm_is_unchanged(name, keys, tmp_path):
    torch.manual_seed(0)
    model = build(name)
    sd = model.state_dict()
    assert {k: tuple(v.shape) for k, v in sd.items()} == keys
    assert not any(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) for m in model.modules())
    # a checkpoint written with only the old keys loads strictly and gives the same logits
    torch.save({k: v.clone() for k, v in sd.items()}, tmp_path / "old.pt")
    again = build(name)
    again.load_state_dict(torch.load(tmp_path / "old.pt"), strict=True)
    x = torch.randn(4, 64)
    assert torch.equal(model(x), again(x))


@pytest.mark.parametrize("name, bn_type, count", [("mlp", nn.BatchNorm1d, 2), ("cnn", nn.BatchNorm2d, 2)])
def test_batchnorm_present(name, bn_type, count):
    model = build(name, batchnorm=True)
    bns = [m for m in model.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))]
    assert len(bns) == count and all(type(m) is bn_type for m in bns)
    assert model.batchnorm is True and build(name).batchnorm is False
    # the layer before each BatchNorm has no bias (BatchNorm's shift replaces it)
    mods = list(model.modules())
    for i, m in enumerate(mods):
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            assert mods[i - 1].bias is None
    keys = set(model.state_dict())
    assert any(k.endswith("running_mean") for k in keys) and any(k.endswith("num_batches_tracked") for k in keys)
    out = model(torch.randn(5, 64))
    assert out.shape == (5, 10)
    # order Linear/Conv -> BatchNorm -> ReLU
    seq = model.net if name == "mlp" else model.features
    types = [type(m) for m in seq]
    first = nn.Linear if name == "mlp" else nn.Conv2d
    assert types[:3] == [first, bn_type, nn.ReLU]


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_batchnorm_train_and_eval_modes(name):
    torch.manual_seed(1)
    model = build(name, batchnorm=True)
    bn = next(m for m in model.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)))
    seen = {}
    bn.register_forward_hook(lambda mod, inp, out: seen.__setitem__("out", out.detach()))
    x = torch.randn(32, 64) * 3 + 1
    other = torch.randn(32, 64)

    model.train()
    before = bn.running_mean.clone()
    a = model(x)
    # batch statistics: each channel of the BatchNorm output has mean 0 and (biased) variance ~1 over the batch
    dims = (0,) if name == "mlp" else (0, 2, 3)
    out = seen["out"]
    assert torch.allclose(out.mean(dims), torch.zeros(out.shape[1]), atol=1e-5)
    assert torch.allclose(out.var(dims, unbiased=False), torch.ones(out.shape[1]), atol=1e-3)
    assert not torch.equal(bn.running_mean, before) and int(bn.num_batches_tracked) == 1
    # in train mode an example's logits depend on the rest of the batch
    mixed = model(torch.cat([x[:16], other[:16]]))
    assert not torch.allclose(a[:16], mixed[:16], atol=1e-4)

    model.eval()
    running = bn.running_mean.clone()
    e1 = model(x)
    e2 = model(torch.cat([x[:16], other[:16]]))
    assert torch.allclose(e1[:16], e2[:16], atol=1e-5)  # running statistics: independent of the batch
    assert torch.equal(bn.running_mean, running)  # and not updated
    assert model(x[:1]).shape == (1, 10)  # one example is fine in eval mode


def test_batch_of_one_in_train_mode_is_torchs_error():
    model = build("mlp", batchnorm=True).train()
    with pytest.raises(ValueError, match=r"Expected more than 1 value per channel when training"):
        model(torch.randn(1, 64))


def test_batchnorm_mlp_learns_digits():
    d = grlib.load_dataset("digits")
    torch.manual_seed(0)
    model = get_model("mlp", in_features=d.num_features, num_classes=10, batchnorm=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    x, y = torch.as_tensor(d.x_train), torch.as_tensor(d.y_train)
    g = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(3):
        for idx in torch.randperm(len(y), generator=g).split(128):
            if len(idx) < 2:
                continue
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        acc = float((model(torch.as_tensor(d.x_test)).argmax(1) == torch.as_tensor(d.y_test)).float().mean())
    assert acc > 0.9, acc


def test_classes_take_batchnorm_too():
    assert MLP(4, 2, (8,), batchnorm=np.bool_(True)).batchnorm is True
    assert SmallCNN((1, 8, 8), 3, batchnorm=True).batchnorm is True


@pytest.mark.parametrize("bad", ["yes", 1, 0, None, 1.0])
def test_bad_batchnorm(bad):
    with pytest.raises(TypeError, match=rf"batchnorm must be True or False, got {bad!r}"):
        build("mlp", batchnorm=bad)
    with pytest.raises(TypeError, match=r"batchnorm must be True or False"):
        MLP(4, 2, batchnorm=bad)
    with pytest.raises(TypeError, match=r"batchnorm must be True or False"):
        SmallCNN((1, 8, 8), 2, batchnorm=bad)


def test_bad_model_inputs_still_named():
    with pytest.raises(ValueError, match=r"model name='resnet' is unknown; valid names: mlp, cnn"):
        get_model("resnet", in_features=4, num_classes=2, batchnorm=True)
    with pytest.raises(ValueError, match=r"needs an image data set"):
        get_model("cnn", in_features=64, num_classes=10, image_shape=None, batchnorm=True)
    with pytest.raises(ValueError, match=r"num_classes=1 is too small"):
        get_model("mlp", in_features=4, num_classes=1, batchnorm=True)
