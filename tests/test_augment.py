"""grlib.augment: per-example shifts (zero padding), flips and input noise; seeds, shapes, devices, errors.

Tolerances follow from the sampling distributions: counts of equally likely
outcomes are multinomial (chi-square test at p = 1e-6, and every cell within
5 binomial standard deviations), the sample standard deviation of N Gaussian
values has standard error sigma / sqrt(2N).  The seeds are fixed, so every
test is deterministic; a correct implementation fails a check for a random
seed with probability below about 1e-6.
"""
import json
import math
import pickle

import numpy as np
import pytest
import torch
from scipy.stats import chi2

import grlib.augment as augment_mod
from grlib.augment import AUGMENT_DEFAULTS, Augment, augment_for

CUDA = torch.cuda.is_available()


# ----------------------------------------------------------------- references
def ref_transform(img: np.ndarray, dy: int, dx: int, flip: bool) -> np.ndarray:
    """Slow, obvious reference: mirror left-right (if flip), then move the content dy down and dx right, fill 0."""
    c, h, w = img.shape
    src = img[:, :, ::-1] if flip else img
    out = np.zeros_like(img)
    for i in range(h):
        for j in range(w):
            si, sj = i - dy, j - dx
            if 0 <= si < h and 0 <= sj < w:
                out[:, i, j] = src[:, si, sj]
    return out


def candidates(img: np.ndarray, shift: int, flip: bool):
    """All (flip, dy, dx) outcomes and their flat outputs, [K, D]."""
    keys, rows = [], []
    for f in ((False, True) if flip else (False,)):
        for dy in range(-shift, shift + 1):
            for dx in range(-shift, shift + 1):
                keys.append((f, dy, dx))
                rows.append(ref_transform(img, dy, dx, f).reshape(-1))
    return keys, torch.as_tensor(np.stack(rows))


def identify(out: torch.Tensor, cands: torch.Tensor) -> torch.Tensor:
    """Index of the candidate each output row equals exactly; asserts exactly one matches."""
    eq = (out.cpu()[:, None, :] == cands[None, :, :]).all(-1)  # [N, K]
    assert bool((eq.sum(1) == 1).all()), "an output row is not exactly one zero-filled shift/flip of the input"
    return eq.float().argmax(1)


def assert_uniform(counts: np.ndarray, what: str):
    """Multinomial counts of K equally likely outcomes: chi-square at p=1e-6 and each cell within 5 sigma."""
    n, k = counts.sum(), len(counts)
    expected = n / k
    stat = float(((counts - expected) ** 2 / expected).sum())
    assert stat < chi2.ppf(1 - 1e-6, k - 1), f"{what}: chi-square {stat:.1f} with {k - 1} dof; counts {counts}"
    sigma = math.sqrt(n * (1 / k) * (1 - 1 / k))
    assert np.all(np.abs(counts - expected) <= 5 * sigma), f"{what}: counts {counts}, expected {expected:.1f}"


def distinct_image(shape, seed=0) -> np.ndarray:
    """An image with distinct non-zero pixels, so that every (flip, dy, dx) outcome is distinguishable."""
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    return (rng.permutation(n) + 1.0).astype(np.float32).reshape(shape) / n


# --------------------------------------------------------------- distribution
def test_shift_is_zero_filled_and_offsets_uniform():
    shape, s = (1, 5, 7), 2  # not square: catches a mixed-up H and W
    img = distinct_image(shape)
    keys, cands = candidates(img, s, False)
    aug = Augment(shape, shift=s)
    n = 400 * len(keys)
    x = torch.as_tensor(img.reshape(1, -1)).repeat(n, 1)
    out = aug.batch(x, torch.Generator().manual_seed(0))
    k = identify(out, cands)
    assert_uniform(np.bincount(k.numpy(), minlength=len(keys)), "shift offsets (dy, dx)")
    # Zero fill, not wrap: an offset (2, -1) leaves the top two rows and the rightmost column 0.
    i = keys.index((False, 2, -1))
    row = out[k == i][0].reshape(shape)
    assert torch.all(row[:, :2, :] == 0) and torch.all(row[:, :, -1] == 0)
    assert torch.equal(row[:, 2:, :-1], torch.as_tensor(img)[:, :-2, 1:])


def test_shift_and_flip_joint_uniform_multichannel():
    shape, s = (2, 4, 5), 1
    img = distinct_image(shape, seed=1)
    keys, cands = candidates(img, s, True)
    aug = Augment(shape, shift=s, flip=True)
    n = 300 * len(keys)
    x = torch.as_tensor(img.reshape(1, -1)).repeat(n, 1)
    k = identify(aug.batch(x, torch.Generator().manual_seed(1)), cands)
    counts = np.bincount(k.numpy(), minlength=len(keys))
    assert_uniform(counts, "(flip, dy, dx)")
    flipped = sum(c for c, key in zip(counts, keys) if key[0])
    assert abs(flipped - n / 2) <= 5 * math.sqrt(n / 4), f"{flipped} flips in {n}"


def test_flip_only_is_a_mirror_half_the_time():
    shape = (1, 3, 4)
    img = distinct_image(shape, seed=2)
    keys, cands = candidates(img, 0, True)
    n = 4000
    x = torch.as_tensor(img.reshape(1, -1)).repeat(n, 1)
    k = identify(Augment(shape, flip=True).batch(x, torch.Generator().manual_seed(2)), cands)
    flipped = int((k == keys.index((True, 0, 0))).sum())
    assert abs(flipped - n / 2) <= 5 * math.sqrt(n / 4)


@pytest.mark.parametrize("sigma", [0.05, 0.3, 1.0])
def test_noise_std_and_mean(sigma):
    n, d = 2000, 50
    x = torch.full((n, d), 0.7, dtype=torch.float64)
    eps = Augment(None, noise=sigma).batch(x, torch.Generator().manual_seed(3)) - 0.7
    m = n * d
    assert abs(float(eps.mean())) <= 6 * sigma / math.sqrt(m)
    assert abs(float(eps.std()) - sigma) <= 6 * sigma / math.sqrt(2 * m)
    # independent features: the correlation of neighbouring features is ~0 (standard error 1/sqrt(n*(d-1)))
    r = torch.corrcoef(torch.stack([eps[:, :-1].reshape(-1), eps[:, 1:].reshape(-1)]))[0, 1]
    assert abs(float(r)) <= 6 / math.sqrt(n * (d - 1))


def test_noise_is_added_after_the_shift_from_the_same_stream():
    # Draw order: codes, then noise. The same generator seed gives the same shift with and without noise,
    # and the difference is Gaussian noise of the given std.
    shape, sigma = (1, 8, 8), 0.2
    x = torch.randn(3000, 64, generator=torch.Generator().manual_seed(4))
    shifted = Augment(shape, shift=1).batch(x, torch.Generator().manual_seed(5))
    noisy = Augment(shape, shift=1, noise=sigma).batch(x, torch.Generator().manual_seed(5))
    eps = (noisy - shifted).double()
    m = eps.numel()
    assert abs(float(eps.std()) - sigma) <= 6 * sigma / math.sqrt(2 * m)
    assert abs(float(eps.mean())) <= 6 * sigma / math.sqrt(m)


def test_single_example_path_uses_the_global_generator_with_the_same_distribution():
    shape, s = (1, 4, 4), 1
    img = distinct_image(shape, seed=6)
    keys, cands = candidates(img, s, True)
    aug = Augment(shape, shift=s, flip=True)
    one = torch.as_tensor(img.reshape(-1))
    torch.manual_seed(7)
    out = torch.stack([aug(one) for _ in range(150 * len(keys))])
    assert_uniform(np.bincount(identify(out, cands).numpy(), minlength=len(keys)), "aug(x) outcomes")
    # aug(x) is aug.batch(x[None])[0] from the same generator state
    aug = Augment(shape, shift=s, flip=True, noise=0.1)
    for seed in range(5):
        torch.manual_seed(seed)
        a = aug(one)
        torch.manual_seed(seed)
        b = aug.batch(one[None])[0]
        assert torch.equal(a, b)


def test_identity_returns_the_input_exactly_as_a_new_tensor():
    x = torch.randn(10, 64)
    for aug in (Augment((1, 8, 8)), Augment(None)):
        state = torch.get_rng_state()
        out = aug.batch(x, torch.Generator().manual_seed(0))
        one = aug(x[0])
        assert torch.equal(out, x) and torch.equal(one, x[0])
        assert torch.equal(torch.get_rng_state(), state)  # the identity draws nothing
        out[0, 0] = 99.0
        one[1] = 99.0
        assert x[0, 0] != 99.0 and x[0, 1] != 99.0
        assert aug.is_identity


def test_large_images_compute_the_same_indices_as_the_table(monkeypatch):
    shape = (3, 6, 7)
    aug = Augment(shape, shift=2, flip=True, noise=0.1)
    x = torch.randn(200, 3 * 6 * 7)
    expected = aug.batch(x, torch.Generator().manual_seed(8))
    monkeypatch.setattr(augment_mod, "_TABLE_MAX_ENTRIES", 0)  # force the per-batch computation
    assert torch.equal(aug.batch(x, torch.Generator().manual_seed(8)), expected)


# ------------------------------------------------------- seeds, shapes, dtypes
def test_generator_seeds():
    aug = Augment((1, 8, 8), shift=1, noise=0.2)
    x = torch.randn(32, 64)
    x0 = x.clone()
    state = torch.get_rng_state()
    a = aug.batch(x, torch.Generator().manual_seed(10))
    b = aug.batch(x, torch.Generator().manual_seed(10))
    c = aug.batch(x, torch.Generator().manual_seed(11))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(x, x0)  # the input is never modified
    assert torch.equal(torch.get_rng_state(), state)  # a given generator leaves the global one alone
    torch.manual_seed(12)
    d = aug.batch(x)
    torch.manual_seed(12)
    assert torch.equal(aug.batch(x), d)


def test_global_seed_for_one_example():
    aug = Augment((1, 8, 8), shift=1, noise=0.2)
    x = torch.randn(64)
    x0 = x.clone()
    torch.manual_seed(1)
    a = aug(x)
    torch.manual_seed(1)
    b = aug(x)
    torch.manual_seed(2)
    c = aug(x)
    assert torch.equal(a, b) and not torch.equal(a, c) and torch.equal(x, x0)
    # an explicit generator: the same numbers as the batch path, and the global generator untouched
    state = torch.get_rng_state()
    d = aug(x, torch.Generator().manual_seed(3))
    assert torch.equal(d, aug.batch(x[None], torch.Generator().manual_seed(3))[0])
    assert torch.equal(d, aug(x, torch.Generator().manual_seed(3)))
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
def test_shapes_and_dtypes_kept(dtype):
    aug = Augment((2, 4, 4), shift=1, flip=True, noise=0.1)
    flat = torch.randn(5, 32).to(dtype)
    img = flat.reshape(5, 2, 4, 4)
    for inp in (flat, img):
        out = aug.batch(inp, torch.Generator().manual_seed(0))
        assert out.shape == inp.shape and out.dtype == dtype
    for one in (flat[0], img[0]):
        out = aug(one)
        assert out.shape == one.shape and out.dtype == dtype
    # [B, C, H, W] and [B, D] give the same numbers from the same seed
    a = aug.batch(flat, torch.Generator().manual_seed(3))
    b = aug.batch(img, torch.Generator().manual_seed(3))
    assert torch.equal(a, b.reshape(5, 32))
    empty = aug.batch(flat[:0], torch.Generator().manual_seed(0))
    assert empty.shape == (0, 32)


def test_numpy_input_gives_a_tensor_and_is_not_modified():
    aug = Augment((1, 8, 8), shift=1, noise=0.2)
    x = np.random.default_rng(0).normal(size=64).astype(np.float32)
    x0 = x.copy()
    x.setflags(write=False)  # e.g. a memory-mapped data set
    out = aug(x)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and out.shape == (64,)
    assert np.array_equal(x, x0)
    xb = np.tile(x0, (4, 1))
    outb = aug.batch(xb, torch.Generator().manual_seed(0))
    assert outb.shape == (4, 64) and np.array_equal(xb, np.tile(x0, (4, 1)))


class _SeededPerExample(torch.utils.data.Dataset):
    """What a loader does with ``aug(x)``: one random stream per (seed, epoch, example)."""

    def __init__(self, x, aug, seed, epoch):
        self.x, self.aug, self.seed, self.epoch = x, aug, seed, epoch

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        torch.default_generator.manual_seed(hash((self.seed, self.epoch, i)) & 0x7FFFFFFF)
        return self.aug(self.x[i]), i


def test_per_example_seeding_gives_the_same_numbers_for_any_num_workers():
    aug = Augment((1, 8, 8), shift=1, noise=0.2)
    x = torch.randn(40, 64, generator=torch.Generator().manual_seed(0))

    def run(workers, epoch=0):
        dl = torch.utils.data.DataLoader(_SeededPerExample(x, aug, 3, epoch), batch_size=8, num_workers=workers)
        return torch.cat([b for b, _ in dl])

    a = run(0)
    assert torch.equal(a, run(2))
    assert not torch.equal(a, run(0, epoch=1))


# -------------------------------------------------------------------- devices
@pytest.mark.skipif(not CUDA, reason="CUDA not available")
def test_cuda_batch_with_a_cuda_generator_no_host_sync():
    shape, s = (1, 6, 6), 1
    img = distinct_image(shape, seed=9)
    keys, cands = candidates(img, s, True)
    aug = Augment(shape, shift=s, flip=True)
    n = 300 * len(keys)
    x = torch.as_tensor(img.reshape(1, -1)).repeat(n, 1).cuda()
    aug.batch(x, torch.Generator(device="cuda").manual_seed(0))  # builds the cached index table
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = aug.batch(x, torch.Generator(device="cuda").manual_seed(0))
        out2 = Augment(shape, shift=s, flip=True, noise=0.1).batch(x, torch.Generator(device="cuda").manual_seed(0))
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert out.device.type == "cuda" and out2.device.type == "cuda" and out.dtype == x.dtype
    assert torch.equal(out, aug.batch(x, torch.Generator(device="cuda").manual_seed(0)))
    assert_uniform(np.bincount(identify(out, cands).numpy(), minlength=len(keys)), "CUDA outcomes")
    with pytest.raises(ValueError, match=r"generator is on device cpu but x is on cuda"):
        aug.batch(x, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=r"generator is on device cuda"):
        aug.batch(x.cpu(), torch.Generator(device="cuda").manual_seed(0))


# -------------------------------------------------------- settings and saving
def test_repr_dict_pickle_equality():
    aug = Augment([1, 8, 8], shift=1, noise=0.2)
    assert repr(aug) == "Augment(image_shape=(1, 8, 8), shift=1, flip=False, noise=0.2)"
    d = aug.to_dict()
    assert d == {"image_shape": [1, 8, 8], "shift": 1, "flip": False, "noise": 0.2}
    assert Augment.from_dict(json.loads(json.dumps(d))) == aug
    assert pickle.loads(pickle.dumps(aug)) == aug  # DataLoader workers pickle their transform
    assert Augment(None, noise=0.1).to_dict() == {"image_shape": None, "shift": 0, "flip": False, "noise": 0.1}
    assert aug != Augment((1, 8, 8), shift=1, noise=0.3)
    assert aug.num_features == 64 and Augment(None).num_features is None
    assert Augment((1, 8, 8), shift=2, flip=True).num_codes == 50
    with pytest.raises(ValueError, match=r"unknown keys \['shfit'\]"):
        Augment.from_dict({"image_shape": None, "shfit": 1})


def test_augment_for_defaults_and_overrides():
    assert augment_for("digits", (1, 8, 8)) == Augment((1, 8, 8), shift=1, flip=False, noise=0.2)
    assert augment_for("fashion_mnist", (1, 28, 28)) == Augment((1, 28, 28), shift=2, flip=True, noise=0.0)
    assert augment_for("moons", None) == Augment(None, noise=0.1)
    assert augment_for("my_data", (3, 32, 32)) is None  # a user's data set: only explicit values
    assert augment_for("my_data", None) is None
    assert augment_for("my_data", (3, 32, 32), shift=4, flip=True) == Augment((3, 32, 32), shift=4, flip=True)
    assert augment_for("my_table", None, noise=0.05) == Augment(None, noise=0.05)
    # explicit values override the defaults
    assert augment_for("digits", (1, 8, 8), shift=2, noise=0.0) == Augment((1, 8, 8), shift=2)
    assert augment_for("fashion_mnist", (1, 28, 28), flip=False) == Augment((1, 28, 28), shift=2)
    assert augment_for("moons", None, noise=0.0) is None
    assert augment_for("digits", (1, 8, 8), shift=0, flip=False, noise=0) is None
    assert augment_for("digits", None, shift=0, noise=0.2) == Augment(None, noise=0.2)
    assert set(AUGMENT_DEFAULTS) == {"digits", "fashion_mnist", "moons"}
    with pytest.raises(TypeError):
        AUGMENT_DEFAULTS["digits"]["flip"] = True  # read-only: a default cannot be changed by accident


def test_flips_refused_for_digits():
    with pytest.raises(ValueError, match=r"flip=True is refused for dataset='digits': a mirrored digit"):
        augment_for("digits", (1, 8, 8), flip=True)
    assert augment_for("digits", (1, 8, 8), flip=False).flip is False


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize("kwargs, exc, pattern", [
    (dict(image_shape=(8, 8)), ValueError, r"image_shape=\(8, 8\) is not valid; allowed: None .* \(C, H, W\)"),
    (dict(image_shape=(1, 0, 8)), ValueError, r"image_shape=\(1, 0, 8\) is not valid"),
    (dict(image_shape=(1.0, 8, 8)), ValueError, r"image_shape=\(1.0, 8, 8\) is not valid"),
    (dict(image_shape="1x8x8"), TypeError, r"image_shape='1x8x8' is not valid"),
    (dict(image_shape=64), TypeError, r"image_shape=64 is not valid"),
    (dict(image_shape=(1, 8, 8), shift=-1), ValueError, r"shift=-1 is negative; allowed: integers >= 0"),
    (dict(image_shape=(1, 8, 8), shift=1.5), TypeError, r"shift must be an integer number of pixels, got 1.5"),
    (dict(image_shape=(1, 8, 8), shift=True), TypeError, r"shift must be an integer .* got True"),
    (dict(image_shape=(1, 8, 8), shift=8), ValueError, r"shift=8 is too large for image_shape=\(1, 8, 8\); "
                                                       r"allowed: integers 0 <= shift < 8"),
    (dict(image_shape=(1, 4, 9), shift=4), ValueError, r"shift=4 is too large .* 0 <= shift < 4"),
    (dict(image_shape=(1, 8, 8), flip="yes"), TypeError, r"flip must be True or False, got 'yes'"),
    (dict(image_shape=(1, 8, 8), flip=1), TypeError, r"flip must be True or False, got 1"),
    (dict(image_shape=(1, 8, 8), noise=-0.1), ValueError, r"noise=-0.1 is not allowed; allowed: a finite real >= 0"),
    (dict(image_shape=(1, 8, 8), noise=float("nan")), ValueError, r"noise=nan is not allowed"),
    (dict(image_shape=(1, 8, 8), noise=float("inf")), ValueError, r"noise=inf is not allowed"),
    (dict(image_shape=(1, 8, 8), noise="0.2"), TypeError, r"noise must be a real number .* got '0.2'"),
    (dict(image_shape=None, shift=1), ValueError, r"shift=1 needs image features: image_shape is None"),
    (dict(image_shape=None, flip=True), ValueError, r"flip=True needs image features: image_shape is None"),
])
def test_bad_settings(kwargs, exc, pattern):
    shape = kwargs.pop("image_shape")
    with pytest.raises(exc, match=pattern):
        Augment(shape, **kwargs)


def test_bad_calls():
    aug = Augment((1, 8, 8), shift=1)
    with pytest.raises(TypeError, match=r"x must hold floating-point features .* got dtype torch.int64"):
        aug.batch(torch.zeros(2, 64, dtype=torch.int64))
    with pytest.raises(TypeError, match=r"x must be a torch.Tensor or numpy array, got list"):
        aug([0.0] * 64)
    with pytest.raises(ValueError, match=r"x must be a batch of shape \[B, 64\] or \[B, 1, 8, 8\] .* "
                                         r"got shape \[2, 63\]"):
        aug.batch(torch.zeros(2, 63))
    with pytest.raises(ValueError, match=r"got shape \[64\]"):
        aug.batch(torch.zeros(64))
    with pytest.raises(ValueError, match=r"x must be one example of shape \[64\] or \(1, 8, 8\) .* got shape "
                                         r"\[2, 64\] \(for a batch use aug.batch\(x\)\)"):
        aug(torch.zeros(2, 64))
    with pytest.raises(TypeError, match=r"generator must be a torch.Generator or None, got int"):
        aug.batch(torch.zeros(2, 64), 0)
    with pytest.raises(TypeError, match=r"generator must be a torch.Generator or None, got int"):
        aug(torch.zeros(64), 0)
    with pytest.raises(ValueError, match=r"x must be one example of shape \[D\]; got shape \[2, 3\]"):
        Augment(None, noise=0.1)(torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"x must be a batch of shape \[B, D\]; got shape \[3\]"):
        Augment(None, noise=0.1).batch(torch.zeros(3))


def test_augment_for_bad_input():
    with pytest.raises(TypeError, match=r"dataset must be a data set name .* got None"):
        augment_for(None, (1, 8, 8))
    with pytest.raises(ValueError, match=r"dataset='digits' defaults to shift=1 \(an image data set\) but "
                                         r"image_shape is None"):
        augment_for("digits", None)
    with pytest.raises(ValueError, match=r"dataset='fashion_mnist' defaults to shift=2 and flip=True"):
        augment_for("fashion_mnist", None)
    with pytest.raises(TypeError, match=r"flip must be True or False, got 'no'"):
        augment_for("fashion_mnist", (1, 28, 28), flip="no")
    with pytest.raises(ValueError, match=r"shift=9 is too large"):
        augment_for("digits", (1, 8, 8), shift=9)
    with pytest.raises(ValueError, match=r"image_shape=\(8, 8\) is not valid"):
        augment_for("digits", (8, 8))
