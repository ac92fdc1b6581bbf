"""total_variation (Eq. 14) and nonspatial_entropy follow their formulas on random and hand-made maps."""
import math

import pytest
import torch

from sarvit import SarvitError
from sarvit.losses import NonSpatialEntropyLoss, TotalVariationLoss, nonspatial_entropy, total_variation


def loop_total_variation(S):
    """Eq. 14 written out cell by cell; terms reaching outside the grid are skipped."""
    batch, heads, h, w = S.shape
    out = torch.zeros(batch, heads, dtype=S.dtype)
    for b in range(batch):
        for head in range(heads):
            total = S.new_zeros(())
            for y in range(h):
                for x in range(w):
                    if x + 1 < w:
                        total = total + (S[b, head, y, x] - S[b, head, y, x + 1]).abs()
                    if y + 1 < h:
                        total = total + (S[b, head, y, x] - S[b, head, y + 1, x]).abs()
            out[b, head] = total
    return out


def loop_nonspatial_entropy(S, eps):
    batch, heads, h, w = S.shape
    out = torch.zeros(batch, heads, dtype=S.dtype)
    for b in range(batch):
        for head in range(heads):
            m = S[b, head].mean()
            masses = [torch.relu(S[b, head, y, x] - m) + eps for y in range(h) for x in range(w)]
            total = sum(masses)
            out[b, head] = -sum((mass / total) * torch.log(mass / total) for mass in masses)
    return out


def random_maps(seed, shape=(2, 3, 5, 6)):
    return torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(
    "function,reference",
    [(total_variation, loop_total_variation), (nonspatial_entropy, lambda S: loop_nonspatial_entropy(S, 1e-9))],
    ids=["tv", "nonspatial-entropy"],
)
@pytest.mark.parametrize("seed", range(3))
def test_values_and_gradients_match_a_loop(function, reference, seed):
    S = random_maps(seed).requires_grad_()
    got = function(S)
    expected = reference(S)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    weights = torch.rand(got.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(99))
    (grad_got,) = torch.autograd.grad((got * weights).sum(), S)
    (grad_expected,) = torch.autograd.grad((expected * weights).sum(), S)
    torch.testing.assert_close(grad_got, grad_expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("function", [total_variation, lambda S: nonspatial_entropy(S, eps=1e-3)])
def test_gradcheck(function):
    S = random_maps(7, (1, 2, 4, 5)).requires_grad_()
    assert torch.autograd.gradcheck(function, (S,), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("value", [0.0, 0.7, -3.3])
def test_total_variation_of_a_constant_map_is_zero(value):
    assert torch.equal(total_variation(torch.full((2, 3, 7, 7), value)), torch.zeros(2, 3))


def test_total_variation_counts_each_step_once_per_neighbour_pair():
    S = torch.zeros(1, 1, 4, 4)
    S[0, 0, :, 2:] = 1.0  # a vertical edge: 4 rows cross it once each
    S_checker = (torch.arange(4)[:, None] + torch.arange(4)[None, :]).remainder(2).float().view(1, 1, 4, 4)
    assert total_variation(S).item() == 4.0
    assert total_variation(S_checker).item() == 2 * 4 * 3  # every one of the 24 neighbour pairs differs


def test_nonspatial_entropy_of_a_uniform_B_is_log_k_squared():
    got = nonspatial_entropy(torch.zeros(2, 3, 14, 14))  # B = eps everywhere
    torch.testing.assert_close(got, torch.full((2, 3), math.log(14 * 14)))


def test_nonspatial_entropy_of_a_one_hot_B_is_about_zero():
    S = torch.zeros(2, 3, 14, 14)
    S[..., 5, 9] = 1.0
    assert nonspatial_entropy(S).abs().max().item() < 1e-5


def test_nonspatial_entropy_ignores_adjacency_unlike_the_spatial_one():
    from sarvit import spatial_entropy

    together, apart = torch.zeros(1, 1, 6, 6), torch.zeros(1, 1, 6, 6)
    together[0, 0, 0, 0:2] = 1.0
    apart[0, 0, 0, 0] = apart[0, 0, 5, 5] = 1.0
    torch.testing.assert_close(nonspatial_entropy(together), nonspatial_entropy(apart))
    assert spatial_entropy(together).item() < spatial_entropy(apart).item()


@pytest.mark.parametrize("module,function", [(TotalVariationLoss(), total_variation), (NonSpatialEntropyLoss(), nonspatial_entropy)])
def test_module_is_the_mean_over_batch_and_heads(module, function):
    S = torch.randn(4, 6, 7, 7)
    loss = module(S)
    assert loss.shape == () and loss.dtype == torch.float32
    torch.testing.assert_close(loss, function(S).mean())


@pytest.mark.parametrize("function", [total_variation, nonspatial_entropy])
@pytest.mark.parametrize("dtype,expected", [(torch.float32, torch.float32), (torch.float64, torch.float64), (torch.bfloat16, torch.float32)])
def test_dtype_grid(function, dtype, expected):
    S = random_maps(3).to(dtype)
    got = function(S)
    assert got.dtype == expected
    torch.testing.assert_close(got.double(), function(S.double()), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("function", [total_variation, nonspatial_entropy])
def test_float32_under_autocast(function):
    S = torch.randn(2, 3, 7, 7)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = function(S)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, function(S))


@pytest.mark.parametrize("function", [total_variation, nonspatial_entropy])
@pytest.mark.parametrize(
    "bad,words",
    [(torch.randn(6, 14, 14), r"\[B, H, h, w\].*got shape \(6, 14, 14\)"), (torch.ones(1, 1, 4, 4, dtype=torch.long), "floating-point"),
     ("maps", "torch.Tensor"), (torch.zeros(1, 0, 4, 4), "empty")],
)
def test_bad_maps_are_named(function, bad, words):
    with pytest.raises(SarvitError, match=words):
        function(bad)


def test_bad_eps():
    with pytest.raises(SarvitError, match="eps must be a number > 0, got 0.0"):
        NonSpatialEntropyLoss(eps=0.0)
