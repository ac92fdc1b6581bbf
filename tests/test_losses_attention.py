"""ARViT's distance and patch-similarity losses follow their formulas, written out pair by pair."""
import math

import pytest
import torch

from sarvit import SarvitError
from sarvit.losses import (
    DistanceAttentionLoss,
    PatchSimilarityLoss,
    distance_attention_loss,
    manhattan_penalty,
    patch_gram_distances,
    patch_similarity_loss,
)


def random_attention(seed, batch=2, heads=3, prefix=1, grid=(3, 3)):
    tokens = prefix + grid[0] * grid[1]
    logits = torch.randn(batch, heads, tokens, tokens, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    return logits.softmax(-1)


def loop_penalty(h, w, penalty, alpha=4.0, beta=500.0):
    cells = [(y, x) for y in range(h) for x in range(w)]
    D = [[abs(y1 - y2) + abs(x1 - x2) for (y2, x2) in cells] for (y1, x1) in cells]
    if penalty == "linear":
        top = max(max(row) for row in D)
        return [[d / top for d in row] for row in D]
    P = []
    for row in D:
        shift = max(row) / alpha
        P.append([(d - shift) / math.sqrt((d - shift) ** 2 + beta) for d in row])
    return P


def loop_per_image(A, weight, prefix, renormalize, reduction):
    """``weight(b, n, m)``; one image at a time, one head at a time, one pair at a time."""
    batch, heads, tokens, _ = A.shape
    out = []
    for b in range(batch):
        per_head = []
        for head in range(heads):
            total = A.new_zeros(())
            for n in range(prefix, tokens):
                row_sum = A[b, head, n, prefix:].sum() if renormalize else 1.0
                for m in range(prefix, tokens):
                    total = total + A[b, head, n, m] / row_sum * weight(b, n - prefix, m - prefix)
            per_head.append(total)
        value = sum(per_head) / heads
        out.append(torch.log1p(torch.relu(value)) if reduction == "log1p" else value)
    return torch.stack(out)


def loop_gram_distances(images, h, w, scale):
    batch, channels, height, width = images.shape
    ph, pw = height // h, width // w
    out = torch.zeros(batch, h * w, h * w, dtype=images.dtype)
    for b in range(batch):
        grams = []
        for y in range(h):
            for x in range(w):
                F = images[b, :, y * ph:(y + 1) * ph, x * pw:(x + 1) * pw].reshape(channels, -1)
                grams.append(F @ F.T / (channels * ph * pw))
        for n in range(h * w):
            for m in range(h * w):
                out[b, n, m] = ((grams[n] - grams[m]) ** 2).mean()
        if scale == "minmax":
            out[b] = (out[b] - out[b].min()) / (out[b].max() - out[b].min())
    return out


@pytest.mark.parametrize("penalty", ["soft-sign", "linear"])
def test_penalty_matches_the_formula(penalty):
    got = manhattan_penalty((3, 4), penalty, dtype=torch.float64)
    torch.testing.assert_close(got, torch.tensor(loop_penalty(3, 4, penalty), dtype=torch.float64))


@pytest.mark.parametrize("penalty", ["soft-sign", "linear"])
@pytest.mark.parametrize("reduction", ["log1p", "sum"])
@pytest.mark.parametrize("prefix,renormalize", [(1, True), (1, False), (0, True), (2, True)])
def test_distance_loss_values_and_gradients_match_a_loop(penalty, reduction, prefix, renormalize):
    A = random_attention(prefix, prefix=prefix, grid=(2, 3)).requires_grad_()
    # alpha=50 keeps the soft-sign sums positive, so "log1p" is tested where it has a gradient
    P = loop_penalty(2, 3, penalty, alpha=50.0, beta=2.0)
    got = distance_attention_loss(
        A, prefix, grid_size=(2, 3), penalty=penalty, alpha=50.0, beta=2.0, renormalize=renormalize, reduction=reduction
    )
    expected = loop_per_image(A, lambda b, n, m: P[n][m], prefix, renormalize, reduction)
    assert (expected > 0).all()
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    (grad_got,) = torch.autograd.grad(got.sum(), A)
    (grad_expected,) = torch.autograd.grad(expected.sum(), A)
    torch.testing.assert_close(grad_got, grad_expected, rtol=1e-10, atol=1e-12)


def test_log1p_clamps_negative_sums_to_zero():
    A = torch.eye(10, dtype=torch.float64).expand(1, 2, 10, 10)  # 3x3 patches attending to themselves
    assert distance_attention_loss(A, reduction="sum").item() < 0
    assert distance_attention_loss(A).item() == 0.0


@pytest.mark.parametrize("penalty", ["soft-sign", "linear"])
def test_distance_loss_is_smallest_when_attention_sits_on_the_diagonal(penalty):
    tokens = 1 + 4 * 4
    diagonal = torch.eye(tokens).expand(1, 2, tokens, tokens)
    uniform = torch.full((1, 2, tokens, tokens), 1.0 / tokens)
    shuffled = diagonal[..., torch.randperm(tokens, generator=torch.Generator().manual_seed(0))]
    others = [uniform, shuffled] + [random_attention(seed, 1, 2, 1, (4, 4)).float() for seed in range(5)]
    best = distance_attention_loss(diagonal, penalty=penalty, reduction="sum").item()
    assert all(best < distance_attention_loss(A, penalty=penalty, reduction="sum").item() for A in others)


def test_distance_loss_gradcheck():
    A = random_attention(3, 1, 2, 1, (2, 2)).requires_grad_()
    assert torch.autograd.gradcheck(lambda a: distance_attention_loss(a, penalty="linear"), (A,), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("scale", ["minmax", "none"])
def test_gram_distances_match_a_loop(scale):
    images = torch.rand(2, 3, 6, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    got = patch_gram_distances(images, (2, 3), scale)
    torch.testing.assert_close(got, loop_gram_distances(images, 2, 3, scale), rtol=1e-10, atol=1e-14)
    assert torch.equal(got, got.transpose(1, 2)) and (got >= 0).all()
    assert got.diagonal(dim1=1, dim2=2).abs().max() < 1e-12


def test_gram_distances_have_no_gradient_and_survive_a_flat_image():
    images = torch.rand(1, 3, 4, 4, requires_grad=True)
    assert not patch_gram_distances(images, (2, 2)).requires_grad
    assert torch.equal(patch_gram_distances(torch.ones(1, 3, 4, 4), (2, 2)), torch.zeros(1, 4, 4))


@pytest.mark.parametrize("reduction", ["log1p", "sum"])
@pytest.mark.parametrize("prefix,renormalize", [(1, True), (0, False)])
def test_similarity_loss_values_and_gradients_match_a_loop(reduction, prefix, renormalize):
    A = random_attention(5, prefix=prefix, grid=(2, 3)).requires_grad_()
    images = torch.rand(2, 3, 8, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    D = loop_gram_distances(images, 2, 3, "minmax")
    got = patch_similarity_loss(A, images, prefix, grid_size=(2, 3), bias=0.3, renormalize=renormalize, reduction=reduction)
    expected = loop_per_image(A, lambda b, n, m: D[b, n, m] + 0.3, prefix, renormalize, reduction)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    (grad_got,) = torch.autograd.grad(got.sum(), A)
    (grad_expected,) = torch.autograd.grad(expected.sum(), A)
    torch.testing.assert_close(grad_got, grad_expected, rtol=1e-10, atol=1e-12)


def test_similarity_loss_prefers_attention_to_look_alike_patches():
    images = torch.zeros(1, 3, 8, 8)
    images[..., :, 4:] = 1.0  # left half dark, right half bright: 2x2 grid, columns alike
    same_column = torch.zeros(1, 1, 4, 4)
    other_column = torch.zeros(1, 1, 4, 4)
    for n in range(4):
        same_column[0, 0, n, n ^ 2] = 1.0  # (y, x) -> (1 - y, x): same brightness
        other_column[0, 0, n, n ^ 1] = 1.0  # (y, x) -> (y, 1 - x): the other brightness
    low = patch_similarity_loss(same_column, images, 0)
    high = patch_similarity_loss(other_column, images, 0)
    assert low.item() == pytest.approx(math.log1p(4 * 0.3))
    assert high.item() == pytest.approx(math.log1p(4 * 1.3))


@pytest.mark.parametrize("dtype,expected", [(torch.float32, torch.float32), (torch.float64, torch.float64), (torch.bfloat16, torch.float32)])
def test_dtype_grid(dtype, expected):
    A = random_attention(1, grid=(4, 4))
    images = torch.rand(2, 3, 16, 16, dtype=torch.float64)
    for got, exact in (
        (distance_attention_loss(A.to(dtype), reduction="sum"), distance_attention_loss(A, reduction="sum")),
        (patch_similarity_loss(A.to(dtype), images.to(dtype)), patch_similarity_loss(A, images)),
    ):
        assert got.dtype == expected and got.shape == (2,)
        tolerance = 2e-2 if dtype == torch.bfloat16 else 1e-5
        torch.testing.assert_close(got.double(), exact, rtol=tolerance, atol=tolerance)


def test_float32_under_autocast_and_modules_give_the_batch_mean():
    A = random_attention(2, grid=(4, 4)).float()
    images = torch.rand(2, 3, 16, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        distance = DistanceAttentionLoss()(A)
        similarity = PatchSimilarityLoss()(A, images)
    assert distance.dtype == similarity.dtype == torch.float32 and distance.shape == similarity.shape == ()
    torch.testing.assert_close(distance, distance_attention_loss(A).mean())
    torch.testing.assert_close(similarity, patch_similarity_loss(A, images).mean())


@pytest.mark.parametrize(
    "call,words",
    [
        (lambda: distance_attention_loss(torch.rand(2, 3, 10)), r"\[B, H, T, T\]"),
        (lambda: distance_attention_loss(torch.rand(2, 3, 10, 9)), "square in its last two dims"),
        (lambda: distance_attention_loss(torch.rand(2, 3, 11, 11)), "10 patch tokens.*not a square grid; pass grid_size"),
        (lambda: distance_attention_loss(torch.rand(2, 3, 10, 10), grid_size=(2, 4)), r"\(2, 4\) has 8 cells"),
        (lambda: distance_attention_loss(torch.rand(2, 3, 10, 10), 10), r"num_prefix_tokens must be an integer >= 0 and < 10, got 10"),
        (lambda: distance_attention_loss(torch.ones(2, 3, 10, 10, dtype=torch.int64)), "floating-point"),
        (lambda: DistanceAttentionLoss(penalty="gauss"), "penalty must be one of 'soft-sign', 'linear'"),
        (lambda: DistanceAttentionLoss(reduction="mean"), "reduction must be one of"),
        (lambda: DistanceAttentionLoss(alpha=0), "alpha must be a number > 0"),
        (lambda: PatchSimilarityLoss(scale="zscore"), "scale must be one of"),
        (lambda: patch_similarity_loss(torch.rand(2, 3, 10, 10), torch.rand(2, 3, 10, 10)), "10x10 pixels do not split into the 3x3"),
        (lambda: patch_similarity_loss(torch.rand(2, 3, 10, 10), torch.rand(3, 3, 9, 9)), "batch of A \\(2 images\\)"),
        (lambda: patch_similarity_loss(torch.rand(2, 3, 10, 10), torch.rand(2, 9, 9)), r"images must have shape \[B, C, H, W\]"),
    ],
)
def test_bad_input_is_named(call, words):
    with pytest.raises(SarvitError, match=words):
        call()
