"""spatial_entropy follows Eq. 5-8 on maps whose answer is known, and trains as a loss."""
import math

import numpy as np
import pytest
import torch

import sarvit
from sarvit import SpatialEntropyLoss, spatial_entropy


def blobs_map(size, blobs):
    """A [1, 1, size, size] map: 0 everywhere, `value` on each (y0, y1, x0, x1, value) rectangle."""
    S = torch.zeros(1, 1, size, size, dtype=torch.float64)
    for y0, y1, x0, x1, value in blobs:
        S[0, 0, y0:y1, x0:x1] = value
    return S


def reference_entropy(S: np.ndarray, eps: float, structure=np.ones((3, 3))) -> float:
    """Eq. 5-8 written out with scipy for one map."""
    from scipy import ndimage

    m = S.mean()
    labels, n = ndimage.label(S > m, structure=structure)
    B = np.maximum(S - m, 0) + eps
    p = np.array([B[labels == j].sum() for j in range(1, n + 1)]) / B.sum()
    return float(-(p * np.log(p)).sum())


def test_one_blob_has_zero_entropy():
    S = blobs_map(14, [(3, 7, 4, 9, 2.0)])
    assert spatial_entropy(S).item() == pytest.approx(0.0, abs=1e-6)


def test_two_equal_blobs_have_log_two():
    S = blobs_map(14, [(1, 4, 1, 4, 1.0), (9, 12, 9, 12, 1.0)])
    assert spatial_entropy(S).item() == pytest.approx(math.log(2), abs=1e-6)


def test_three_unequal_blobs_follow_the_formula():
    S = blobs_map(12, [(0, 2, 0, 2, 1.0), (5, 8, 5, 8, 2.0), (10, 12, 0, 4, 3.0)])
    m = S.mean().item()
    masses = torch.tensor([4 * (1.0 - m), 9 * (2.0 - m), 8 * (3.0 - m)], dtype=torch.float64)
    p = masses / masses.sum()
    expected = -(p * p.log()).sum().item()
    assert spatial_entropy(S, eps=0.0).item() == pytest.approx(expected, rel=1e-12)
    assert spatial_entropy(S).item() == pytest.approx(expected, abs=1e-7)


def test_diagonal_touch_is_one_component_only_with_8_connectivity():
    S = blobs_map(6, [(0, 1, 0, 1, 1.0), (1, 2, 1, 2, 1.0)])
    assert spatial_entropy(S, connectivity=8).item() == pytest.approx(0.0, abs=1e-6)
    assert spatial_entropy(S, connectivity=4).item() == pytest.approx(math.log(2), abs=1e-6)


@pytest.mark.parametrize("seed", range(5))
def test_random_maps_match_a_scipy_reference(seed):
    S = torch.randn(3, 4, 9, 11, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    got = spatial_entropy(S)
    expected = [[reference_entropy(S[b, h].numpy(), 1e-9) for h in range(4)] for b in range(3)]
    np.testing.assert_allclose(got.numpy(), np.array(expected), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("value", [0.7, 1.1, -3.3])
def test_constant_map_has_zero_entropy_and_finite_gradient(value):
    S = torch.full((2, 3, 14, 14), value, requires_grad=True)
    entropy = spatial_entropy(S)
    assert torch.equal(entropy, torch.zeros(2, 3)) and not torch.signbit(entropy).any()
    entropy.sum().backward()
    assert torch.isfinite(S.grad).all()


def test_output_is_float32_under_autocast_and_for_half_input():
    S = torch.randn(2, 3, 7, 7).to(torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        entropy = spatial_entropy(S)
    assert entropy.dtype == torch.float32 and entropy.shape == (2, 3)
    np.testing.assert_allclose(entropy.numpy(), spatial_entropy(S.float()).numpy(), rtol=1e-6)


cuda_marks = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=cuda_marks)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
def test_every_dtype_on_every_device_matches_the_scipy_reference(dtype, device):
    # Halves of small integers are exact in every dtype, and a map's mean is never within rounding
    # of one of its values, so every dtype sees the same components as the float64 reference.
    values = torch.randint(-3, 4, (3, 2, 9, 8), generator=torch.Generator().manual_seed(2)) / 2
    S = values.to(dtype=dtype, device=device, copy=True).requires_grad_()
    entropy = spatial_entropy(S, check_finite=False)
    assert entropy.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    assert entropy.device == S.device and entropy.shape == (3, 2)
    expected = [[reference_entropy(values[b, h].double().numpy(), 1e-9) for h in range(2)] for b in range(3)]
    tolerance = 1e-10 if dtype == torch.float64 else 1e-5
    np.testing.assert_allclose(entropy.detach().cpu().numpy(), np.array(expected), rtol=tolerance, atol=tolerance)
    entropy.sum().backward()
    assert S.grad.dtype == dtype and torch.isfinite(S.grad.float()).all()


def test_gradcheck_in_float64():
    S = torch.randn(2, 2, 5, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    # keep values away from the mean so a finite-difference step cannot change the components
    S = (S + 0.2 * torch.sign(S - S.mean(dim=(2, 3), keepdim=True))).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: spatial_entropy(x, eps=1e-3), (S,), eps=1e-6, atol=1e-5)


def test_loss_is_the_mean_over_batch_and_heads_of_the_scipy_reference():
    S = torch.randn(4, 6, 9, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    loss = SpatialEntropyLoss()(S)
    expected = np.mean([reference_entropy(S[b, h].numpy(), 1e-9) for b in range(4) for h in range(6)])
    assert loss.shape == ()
    assert loss.item() == pytest.approx(expected, rel=1e-10)


def test_optimising_the_loss_makes_a_scattered_map_blob_like():
    torch.manual_seed(0)
    scattered = torch.zeros(1, 1, 14, 14)
    scattered[0, 0, ::3, ::3] = 1.0  # 25 isolated peaks
    scattered += 0.05 * torch.randn_like(scattered)
    S = scattered.clone().requires_grad_()
    loss_fn = SpatialEntropyLoss()
    optimizer = torch.optim.SGD([S], lr=0.5)
    start = loss_fn(S).item()
    for _ in range(200):
        optimizer.zero_grad()
        loss_fn(S).backward()
        optimizer.step()
    end = loss_fn(S).item()
    labels = sarvit.connected_components(S.detach() > S.detach().mean())
    assert start > 2.5
    assert end < 0.5 * start
    assert labels.max().item() < 25


@pytest.mark.parametrize(
    "bad,error,words",
    [
        (torch.randn(6, 14, 14), ValueError, "B, H, h, w"),
        (torch.randint(0, 5, (1, 1, 4, 4)), TypeError, "floating-point"),
        ("not a tensor", TypeError, "torch.Tensor"),
    ],
)
def test_bad_maps_are_named(bad, error, words):
    with pytest.raises(error, match=words):
        spatial_entropy(bad)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_maps_are_an_error(value):
    S = torch.randn(1, 2, 4, 4)
    S[0, 1, 2, 2] = value
    with pytest.raises(ValueError, match="NaN or inf"):
        SpatialEntropyLoss()(S)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_unchecked_non_finite_maps_give_nan_and_leave_the_others_alone(value):
    S = torch.randn(2, 3, 6, 6, generator=torch.Generator().manual_seed(0), requires_grad=True)
    poisoned = S.detach().clone()
    poisoned[1, 2, 3, 3] = value
    poisoned.requires_grad_()
    entropy = spatial_entropy(poisoned, check_finite=False)
    assert torch.isnan(entropy[1, 2])
    others = torch.ones(2, 3, dtype=torch.bool)
    others[1, 2] = False
    torch.testing.assert_close(entropy[others], spatial_entropy(S)[others])
    entropy[others].sum().backward()
    assert torch.isfinite(poisoned.grad[others]).all()


def test_finite_maps_are_never_negative():
    generator = torch.Generator().manual_seed(0)
    near_constant = 1.0 + 1e-7 * torch.randn(64, 4, 7, 7, generator=generator)
    spiky = torch.randn(64, 4, 7, 7, generator=generator) ** 9
    for S in (near_constant, spiky, torch.full((2, 2, 3, 3), -0.25)):
        entropy = spatial_entropy(S)
        assert torch.isfinite(entropy).all() and not torch.signbit(entropy).any()


def test_bad_connectivity():
    with pytest.raises(ValueError, match="connectivity"):
        SpatialEntropyLoss(connectivity=6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.cuda
def test_cuda_loss_matches_cpu_without_host_sync():
    S = torch.randn(32, 6, 14, 14)
    expected = spatial_entropy(S)
    device_S = S.cuda().requires_grad_()
    spatial_entropy(device_S[:1])  # the first CUDA call compiles and verifies the kernel once
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = SpatialEntropyLoss()(device_S)
        loss.backward()
        entropy = spatial_entropy(device_S)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    np.testing.assert_allclose(entropy.detach().cpu().numpy(), expected.numpy(), rtol=1e-4, atol=1e-5)
    assert torch.isfinite(device_S.grad).all()
